"""Check and time the int8 weight-only GEMV kernel (`runtime/kernels/gemv.py`) on a CUDA GPU.

For each matrix shape of Llama-2-7B's decode step: the kernel's output against a float32
reference (relative error), then its time and achieved bandwidth against bf16 `F.linear` on a
weight of the same shape, and against the dequantize-then-matmul fallback.

    python benchmarks/int8_gemv_check.py [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from runtime.kernels.gemv import gemv as int8_gemv  # noqa: E402

SHAPES = {  # (N, K): wqkv, wo, w13, w2, output of Llama-2-7B
    "wqkv": (12288, 4096), "wo": (4096, 4096), "w13": (22016, 4096), "w2": (4096, 11008),
    "output": (32000, 4096),
}


def check_shape(name: str, n: int, k: int) -> dict:
    torch.manual_seed(0)
    w = torch.randint(-128, 128, (n, k), dtype=torch.int8, device="cuda")
    s = (torch.rand(n, device="cuda") * 0.02 + 1e-3).to(torch.bfloat16)
    x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
    ref = (w.float() * s.float()[:, None]) @ x.float()
    y = int8_gemv(x, w, s)
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    wb = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    t_int8 = do_bench(lambda: int8_gemv(x, w, s), return_mode="median")
    t_bf16 = do_bench(lambda: F.linear(x[None], wb), return_mode="median")
    t_deq = do_bench(lambda: F.linear(x[None], w.to(torch.bfloat16)) * s, return_mode="median")
    return {
        "shape": [n, k], "rel_err": rel,
        "int8_ms": t_int8, "bf16_ms": t_bf16, "dequant_ms": t_deq,
        "int8_GBps": n * k / t_int8 / 1e6, "bf16_GBps": 2 * n * k / t_bf16 / 1e6,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": {}}
    for name, (n, k) in SHAPES.items():
        r = check_shape(name, n, k)
        results["shapes"][name] = r
        print(f"{name:7s} {n}x{k}: rel_err {r['rel_err']:.2e}  int8 {r['int8_ms']*1e3:.1f} us "
              f"({r['int8_GBps']:.0f} GB/s)  bf16 {r['bf16_ms']*1e3:.1f} us ({r['bf16_GBps']:.0f} GB/s)  "
              f"dequant+mm {r['dequant_ms']*1e3:.1f} us", flush=True)
    ok = all(r["rel_err"] < 1e-2 for r in results["shapes"].values())
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
