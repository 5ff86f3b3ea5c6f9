"""Probe: can CUDA decode and short prefills skip torch.compile (Quill's fused Triton kernels,
eager, captured in CUDA graphs)? The measurement behind `compile_model`'s `eager_graphs` route.

Times, in one process, on seeded random weights of a real shape: build, the kernels swap, eager
decode (its first call is Triton's JIT), a CUDA graph of the eager decode step, eager prefill per
length and graphs of the short ones; then, with --compiled, the compiled route (compile_model
with reduce-overhead + warmup) on the same model, and the largest logit difference of the two.
Run twice with the same TRITON_CACHE_DIR / TORCHINDUCTOR_CACHE_DIR for cold and warm caches:

    TRITON_CACHE_DIR=/tmp/pc/triton TORCHINDUCTOR_CACHE_DIR=/tmp/pc/inductor \
        python3 benchmarks/cuda_graph_probe.py --precision int8 --compiled --out $OUT/int8-cold.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

T_START = time.perf_counter()
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sync():
    torch.cuda.synchronize()


def timed(fn):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def copy_bw():
    n = (1 << 30) // 2
    src = torch.randn(n, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    sync()
    t0 = time.perf_counter()
    for _ in range(20):
        dst.copy_(src)
    sync()
    dt = (time.perf_counter() - t0) / 20
    del src, dst
    return 2 * (1 << 30) / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="phi-3-mini")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--compiled", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    res = {"model": args.model, "precision": args.precision, "env": {
        "TRITON_CACHE_DIR": os.environ.get("TRITON_CACHE_DIR"),
        "TORCHINDUCTOR_CACHE_DIR": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}}
    from common import MODEL_SHAPES
    from runtime.config import ModelConfig
    from runtime.model import Transformer
    from runtime.fast_paths import use_triton_kernels
    from runtime.quantize import quantize_int8, weight_bytes
    res["import_s"] = time.perf_counter() - T_START
    torch.zeros(1, device="cuda")
    res["cuda_init_s"] = time.perf_counter() - T_START - res["import_s"]
    res["copy_bw"] = copy_bw()

    config = ModelConfig.from_hf_config(dict(MODEL_SHAPES[args.model]))

    def build():
        torch.manual_seed(0)
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            m = Transformer(config)
        torch.set_default_dtype(default)
        for p in m.parameters():
            p.data.normal_(0, 0.02)
        m.requires_grad_(False).eval()
        m.setup_caches(1, 4096)
        return m

    res["build_s"], model = timed(build)
    if args.precision == "int8":
        res["quantize_s"], _ = timed(lambda: quantize_int8(model))
    res["kernels_s"], res["kernels_changed"] = timed(lambda: use_triton_kernels(model))
    res["weight_bytes"] = weight_bytes(model)

    tok = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    pos = torch.zeros(1, dtype=torch.long, device="cuda")
    with torch.no_grad():
        res["eager_decode_first_s"], _ = timed(lambda: model(tok, pos))
        steps = []
        for p in range(1, 41):
            pos.fill_(p)
            steps.append(timed(lambda: model(tok, pos))[0])
        res["eager_decode_ms"] = 1e3 * sorted(steps)[len(steps) // 2]

        # A CUDA graph of the eager decode step.
        def capture():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    model(tok, pos)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = model(tok, pos)
            return g, out

        res["capture_decode_s"], (graph, graph_out) = timed(capture)
        n = 200
        sync()
        t0 = time.perf_counter()
        for p in range(100, 100 + n):
            pos.fill_(p)
            graph.replay()
        sync()
        res["graph_decode_ms"] = 1e3 * (time.perf_counter() - t0) / n
        res["graph_decode_tok_s"] = 1e3 / res["graph_decode_ms"]
        res["graph_decode_bw_fraction"] = res["weight_bytes"] / (res["graph_decode_ms"] / 1e3) / res["copy_bw"]

        prefill = {}
        for length in (16, 64, 256, 1536, 2048):
            idx = torch.zeros(1, length, dtype=torch.long, device="cuda")
            ip = torch.arange(length, device="cuda")
            first, _ = timed(lambda: model(idx, ip, last_only=True))
            rest = sorted(timed(lambda: model(idx, ip, last_only=True))[0] for _ in range(5))
            prefill[length] = {"first_ms": 1e3 * first, "ms": 1e3 * rest[2]}
        for length in (16, 64):
            idx = torch.zeros(1, length, dtype=torch.long, device="cuda")
            ip = torch.arange(1000, 1000 + length, device="cuda")
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    model(idx, ip, last_only=True)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            def cap():
                with torch.cuda.graph(g):
                    model(idx, ip, last_only=True)
            t_cap, _ = timed(cap)
            rest = sorted(timed(g.replay)[0] for _ in range(9))
            prefill[length]["graph_ms"] = 1e3 * rest[4]
            prefill[length]["capture_s"] = t_cap
        res["eager_prefill"] = prefill
        res["eager_route_ready_s"] = time.perf_counter() - T_START

        # Same tokens through the graph: logits of 8 steps for the comparison below.
        eager_logits = []
        for p in range(8):
            pos.fill_(p)
            graph.replay()
            eager_logits.append(graph_out.float().clone())

    if args.compiled:
        from runtime.compile import compile_model, warmup

        t0 = time.perf_counter()
        cm = compile_model(model, kernels=False, eager_graphs=False)
        res["compiled_warmup_s"] = warmup(cm, max_prompt=16)
        res["compiled_setup_s"] = time.perf_counter() - t0
        with torch.no_grad():
            steps = 200
            sync()
            t0 = time.perf_counter()
            for p in range(100, 100 + steps):
                cm(tok, torch.tensor([p], device="cuda"))
            sync()
            res["compiled_decode_ms"] = 1e3 * (time.perf_counter() - t0) / steps
            res["compiled_decode_tok_s"] = 1e3 / res["compiled_decode_ms"]
            t_b, _ = timed(lambda: cm.warm_prefill(2048))
            res["compiled_prefill_2048_compile_s"] = t_b
            idx = torch.zeros(1, 1536, dtype=torch.long, device="cuda")
            ip = torch.arange(1536, device="cuda")
            rest = sorted(timed(lambda: cm(idx, ip, last_only=True))[0] for _ in range(5))
            res["compiled_prefill_1536_ms"] = 1e3 * rest[2]
            diffs = []
            for p in range(8):
                out = cm(tok, torch.tensor([p], device="cuda")).float()
                diffs.append(float((out - eager_logits[p]).abs().max()))
            res["compiled_vs_graph_max_abs_diff"] = max(diffs)
    res["total_s"] = time.perf_counter() - T_START
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
