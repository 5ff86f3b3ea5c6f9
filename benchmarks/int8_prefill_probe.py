"""Short prompts against int8 weights on CUDA: which matmul reads the weights closest to bandwidth.

    python benchmarks/int8_prefill_probe.py --out $OUT/int8-prefill.json

For each layer linear shape of a model (`gemv_probe.SHAPES`) and prompt lengths of the short prefill
buckets, it times: widening the int8 weight and calling cuBLAS (the route for long prompts),
cuBLAS on a bf16 copy of the weight (what bf16 prefill costs), and `runtime.kernels.int8_matmul` at its
chosen blocks and at each block config of a grid. Each is captured in a CUDA graph of `--reps`
calls; GB/s counts the weight bytes each reads (int8: one a weight; bf16: two).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import environment  # noqa: E402
from gemv_probe import SHAPES, graph_time  # noqa: E402

GRID = [(bn, bk, warps, stages) for bn in (16, 32, 64) for bk in (128, 256) for warps in (4,) for stages in (2, 3, 4)]


def probe(model: str, rows: list[int], reps: int) -> list[dict]:
    import runtime.quantize  # noqa: F401 - registers quill::int8_widened_linear
    from runtime.kernels.int8_matmul import _config, int8_matmul

    out = []
    dev = torch.device("cuda")
    for role, (n, k) in SHAPES[model].items():
        if role == "head":  # prefill runs the head on the last position only (a GEMV)
            continue
        w8 = torch.randint(-128, 128, (n, k), device=dev, dtype=torch.int8)
        s = torch.rand(n, device=dev, dtype=torch.bfloat16) * 0.01
        wb = w8.bfloat16()
        for m in rows:
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            ref = (x.float() @ w8.float().T) * s.float()
            row = {"model": model, "role": role, "n": n, "k": k, "m": m, "us": {}, "GBps": {}}

            def record(label, fn, nbytes):
                us = graph_time(fn, reps) * 1e6
                row["us"][label] = round(us, 2)
                row["GBps"][label] = round(nbytes / us / 1e3, 1)

            record("widened+cublas", lambda: torch.ops.quill.int8_widened_linear(x, w8, s), n * k)
            record("bf16 cublas", lambda: F.linear(x, wb), 2 * n * k)
            chosen = _config(m, n, k)
            for config in [chosen] + [(chosen[0], *c) for c in GRID]:
                label = "triton" if config is chosen else "triton " + ":".join(map(str, config[1:]))
                if label in row["us"]:
                    continue
                y = int8_matmul(x, w8, s, config)
                err = float((y.float() - ref).abs().max() / ref.abs().max())
                assert err < 8e-3, (model, role, m, config, err)
                record(label, lambda config=config: int8_matmul(x, w8, s, config), n * k)
            best = min((v, key) for key, v in row["us"].items() if key.startswith("triton"))
            row["best_triton"] = best[1]
            row["chosen"] = list(chosen)
            print(json.dumps({key: row[key] for key in ("model", "role", "m", "best_triton")}
                             | {"us": {key: row["us"][key] for key in ("widened+cublas", "bf16 cublas", "triton",
                                                                        best[1])}}), flush=True)
            out.append(row)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="phi-3-mini,llama-2-7b,llama-3-8b")
    p.add_argument("--rows", default="16,64", help="prompt lengths (prefill buckets)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("int8_prefill_probe needs CUDA", file=sys.stderr)
        return 2
    rows = [int(r) for r in args.rows.split(",")]
    result = {"environment": environment(), "rows": rows, "shapes": []}
    for model in args.models.split(","):
        result["shapes"] += probe(model, rows, args.reps)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
