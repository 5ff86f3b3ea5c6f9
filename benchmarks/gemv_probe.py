"""Batch-1 matrix-vector products on CUDA: which kernel reads weights closest to bandwidth.

    python benchmarks/gemv_probe.py --out $OUT/gemv.json

For the linear shapes of a model (default Llama-2-7B: fused qkv, wo, fused gate/up, down, head)
it times y = W x with: cuBLAS (`F.linear`), Quill's Triton GEMV (`runtime/kernels/gemv.py`) at its
chosen blocks and, with `--sweep`, at every block size of a grid (bf16 and int8 weights), and
with `--inductor`, Inductor's code under coordinate-descent tuning (what gpt-fast relies on;
slow to compile), and with `--fused`, the fused decode variants of `gemv` (RMSNorm in front with
or without its weight, SwiGLU in front, residual behind) at a few block sizes each. Each variant
is captured in a CUDA graph of `--reps` calls, so launch overhead is out of the numbers; GB/s
counts weight bytes read. Also: read and copy bandwidth. `--pdl LAYERS` instead times a chain of
decoder layers' GEMVs (no attention) with and without programmatic dependent launch.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# (BLOCK_N, bytes of weight per row per loop step, num_warps)
GRID = [(bn, kb, wp) for bn in (1, 2, 4, 8) for kb in (1024, 2048, 4096, 8192) for wp in (4, 8)]
# (BLOCK_N, BLOCK_K, num_warps) tried for the fused variants: more rows a program share the
# per-element work on x (normalising, the gate's sigmoid) that each program repeats.
FUSED_BF16 = [(1, 2048, 8), (2, 1024, 4), (2, 2048, 8), (4, 1024, 8), (4, 512, 4), (8, 512, 8), (8, 256, 4)]
FUSED_INT8 = [(2, 2048, 4), (4, 1024, 4), (4, 2048, 8), (8, 1024, 8), (8, 512, 4), (2, 4096, 8), (1, 4096, 4)]

SHAPES = {
    "llama-2-7b": {"wqkv": (12288, 4096), "wo": (4096, 4096), "w13": (22016, 4096),
                   "w2": (4096, 11008), "head": (32000, 4096)},
    "llama-3-8b": {"wqkv": (6144, 4096), "w13": (28672, 4096), "w2": (4096, 14336),
                   "head": (128256, 4096)},
    "phi-3-mini": {"wqkv": (9216, 3072), "wo": (3072, 3072), "w13": (16384, 3072), "w2": (3072, 8192)},
}


def graph_time(fn, reps: int) -> float:
    """Seconds per call of fn, from a CUDA graph replaying `reps` calls."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    g.replay()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        g.replay()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def fused_variants(xv, w, w8, s, n: int, k: int) -> dict:
    """label@config -> (call, weight bytes) for `gemv`'s fused prologues and epilogues."""
    from runtime.kernels.gemv import gemv

    g = torch.rand(k, device=xv.device, dtype=xv.dtype) + 0.5
    r = torch.randn(n, device=xv.device, dtype=xv.dtype)
    gate_up = torch.randn(2 * k, device=xv.device, dtype=xv.dtype)
    out = {}
    for c in FUSED_BF16:
        tag = "@%d_%d_%d" % c
        out["plain_bf16" + tag] = (lambda c=c: gemv(xv, w, config=c), n * k * 2)
        out["norm_weight_bf16" + tag] = (lambda c=c: gemv(xv, w, config=c, rms_eps=1e-5, norm_weight=g), n * k * 2)
        out["norm_folded_bf16" + tag] = (lambda c=c: gemv(xv, w, config=c, rms_eps=1e-5), n * k * 2)
        out["residual_bf16" + tag] = (lambda c=c: gemv(xv, w, config=c, residual=r), n * k * 2)
        out["swiglu_bf16" + tag] = (lambda c=c: gemv(gate_up, w, config=c, gated=True), n * k * 2)
    for c in FUSED_INT8:
        tag = "@%d_%d_%d" % c
        out["plain_int8" + tag] = (lambda c=c: gemv(xv, w8, s, config=c), n * k)
        out["plain_int8_cvt" + tag] = (lambda c=c: gemv(xv, w8, s, config=c, int8_bits=False), n * k)
        out["norm_weight_int8" + tag] = (lambda c=c: gemv(xv, w8, s, config=c, rms_eps=1e-5, norm_weight=g), n * k)
        out["norm_folded_int8" + tag] = (lambda c=c: gemv(xv, w8, s, config=c, rms_eps=1e-5), n * k)
        out["swiglu_int8" + tag] = (lambda c=c: gemv(gate_up, w8, s, config=c, gated=True), n * k)
    return out


# Layer shapes for --pdl: dim, q size, q/k/v rows, MLP hidden size.
LAYERS = {"llama-2-7b": (4096, 4096, 12288, 11008), "phi-3-mini": (3072, 3072, 9216, 8192),
          "llama-3-8b": (4096, 4096, 6144, 14336)}


def layer_chain(model: str, layers: int, int8: bool):
    """A decode step's GEMVs without attention: per layer q/k/v (RMSNorm in front), the output
    projection (residual behind, fed from q's part), gate/up (RMSNorm), down (SwiGLU, residual),
    each fed by the one before, on distinct weights (so nothing is served from L2). Returns
    (call, weight bytes a call); the call takes pdl and optional `configs`, which map "qkv",
    "o", "w13", "w2" to `gemv` block configs (default: its own choice) and "gated" to whether
    the down projection takes SwiGLU in front (default: as the runtime does, `swiglu_in_front`)."""
    from runtime.kernels.gemv import gemv, swiglu_in_front

    dim, q_size, qkv_rows, hidden = LAYERS[model]
    shapes = [(qkv_rows, dim), (dim, q_size), (2 * hidden, dim), (dim, hidden)]

    def weight(n, k):
        if int8:
            return (torch.randint(-127, 127, (n, k), device="cuda", dtype=torch.int8),
                    torch.rand(n, device="cuda", dtype=torch.bfloat16) * 0.01)
        return torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02, None

    stack = [[weight(n, k) for n, k in shapes] for _ in range(layers)]
    norm = torch.ones(dim, device="cuda", dtype=torch.bfloat16)
    h0 = torch.randn(dim, device="cuda", dtype=torch.bfloat16)

    def step(pdl: bool, configs: dict | None = None):
        configs = configs or {}
        cq, co, c13, c2 = (configs.get(key) for key in ("qkv", "o", "w13", "w2"))
        gated = configs.get("gated", swiglu_in_front(stack[0][3][0]))
        h = h0
        for (wqkv, sqkv), (wo, so), (w13, s13), (w2, s2) in stack:
            qkv = gemv(h, wqkv, sqkv, cq, rms_eps=1e-5, norm_weight=norm, pdl=pdl)
            h = gemv(qkv[:q_size], wo, so, co, residual=h, pdl=pdl)
            gu = gemv(h, w13, s13, c13, rms_eps=1e-5, norm_weight=norm, pdl=pdl)
            if gated:
                h = gemv(gu, w2, s2, c2, gated=True, residual=h, pdl=pdl)
            else:
                g, u = gu.split(hidden)
                h = gemv(F.silu(g) * u, w2, s2, c2, residual=h, pdl=pdl)
        return h

    nbytes = sum(n * k for n, k in shapes) * layers * (1 if int8 else 2)
    return step, nbytes


# Candidates of --chain-sweep, as `gemv` configs: (BLOCK_N, BLOCK_K, warps[, variant]), the
# variant naming the kernel's options ("asm": int8 widened by byte permutes, int8 only; "reduce":
# a row sum each step). The committed sweeps also tried options since dropped from the kernel:
# a prefetch of the next block, Triton's num_stages, a tensor-core and a whole-row kernel.
CHAIN_KLOOP = [(1, 1024, 4), (2, 1024, 4), (4, 1024, 4), (8, 1024, 8), (8, 512, 4), (2, 2048, 4),
               (4, 2048, 8), (1, 2048, 8), (2, 2048, 8)]
CHAIN_VARIANTS = [(8, 1024, 4, "reduce"), (16, 512, 4, "reduce"), (4, 1024, 4, "reduce"), (32, 512, 8, "reduce")]
CHAIN_INT8 = [
    (8, 512, 4, "asm"), (4, 1024, 4, "asm"), (4, 2048, 8, "asm"), (8, 1024, 8, "asm"), (2, 1024, 4, "asm"),
    (2, 2048, 4, "asm"), (16, 512, 8, "asm"), (8, 512, 4, "asm+reduce"), (16, 512, 4, "asm+reduce"),
    (8, 1024, 4, "asm+reduce"),
    # "v8": 8 weights a thread a row, in step with x (see runtime/kernels/gemv.py); blocks spanning
    # every thread once (BLOCK_K = 8 x 32 x warps) and a few that do not
    (2, 1024, 4, "asm+v8"), (4, 1024, 4, "asm+v8"), (8, 1024, 4, "asm+v8"), (4, 512, 2, "asm+v8"),
    (8, 512, 2, "asm+v8"), (16, 512, 2, "asm+v8"), (4, 2048, 8, "asm+v8"), (8, 2048, 8, "asm+v8"),
    (8, 1024, 8, "asm+v8"), (16, 512, 4, "asm+reduce+v8"), (4, 256, 1, "asm+v8"), (8, 256, 1, "asm+v8"),
    # "unroll": the steps unrolled at compile time (K a constant), so their loads can start early
    (2, 1024, 4, "asm+v8+unroll"), (4, 1024, 4, "asm+v8+unroll"), (8, 1024, 4, "asm+v8+unroll"),
    (8, 512, 4, "asm+reduce+unroll"), (16, 512, 4, "asm+reduce+unroll"), (8, 1024, 8, "asm+unroll"),
    (8, 1024, 4, "asm+reduce+unroll"),
    # "sum8": v8, each thread first summing its 8 columns of a row, so a block of many rows holds
    # one running sum a row a thread (not 8), with no exchange either
    (4, 1024, 4, "asm+v8+sum8"), (8, 1024, 4, "asm+v8+sum8"), (16, 1024, 4, "asm+v8+sum8"),
    (8, 512, 2, "asm+v8+sum8"), (16, 512, 2, "asm+v8+sum8"), (4, 512, 2, "asm+v8+sum8"),
    (8, 2048, 8, "asm+v8+sum8"), (8, 256, 1, "asm+v8+sum8"), (4, 1024, 4, "asm+v8+sum8+unroll"),
    (8, 1024, 4, "asm+v8+sum8+unroll"), (8, 512, 2, "asm+v8+sum8+unroll"),
]


def chain_sweep(models: str, layers: int, reps: int, weights: str = "int8,bf16", only: str = "") -> list[dict]:
    """Per model and weight type: the layer chain (with dependent launch) at the runtime's
    configs, then coordinate descent over each GEMV's config (and int8's SwiGLU placement),
    keeping a change only when the whole chain gets faster. The same weights throughout. `only`
    limits the candidates to variants that name it ("sum8": those and the runtime's configs)."""
    from runtime.kernels.gemv import _config, swiglu_in_front

    def jsonable(cfgs: dict) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in cfgs.items()}

    rows = []
    for model in models.split(","):
        dim, q_size, qkv_rows, hidden = LAYERS[model]
        shapes = {"qkv": (qkv_rows, dim, dict(norm=True)), "o": (dim, q_size, {}),
                  "w13": (2 * hidden, dim, dict(norm=True)), "w2": (dim, hidden, dict(gated=True))}
        for int8 in [w == "int8" for w in weights.split(",")]:
            torch.manual_seed(0)
            configs: dict = {key: _config(n, k, 1 if int8 else 2, **role) for key, (n, k, role) in shapes.items()}
            w2 = torch.empty(dim, hidden, dtype=torch.int8 if int8 else torch.bfloat16, device="meta")
            configs["gated"] = swiglu_in_front(w2)  # the runtime's placement, as a baseline
            step, nbytes = layer_chain(model, layers, int8)
            reference = step(True, configs).float()
            tried = []

            def measure(cfgs: dict) -> float:
                entry: dict = {"configs": jsonable(cfgs)}
                tried.append(entry)
                try:
                    run = functools.partial(step, True, cfgs)
                    out = run().float()
                    entry["rel_err"] = float((out - reference).abs().max() / reference.abs().max())
                    sec = graph_time(run, reps)
                except Exception as exc:  # noqa: BLE001 - a config that does not build or run
                    entry["error"] = repr(exc)[:300]
                    return float("inf")
                entry.update(us=sec * 1e6, GBps=nbytes / sec / 1e9)
                # Another summation order moves bf16 results by rounding steps, never more.
                return sec if entry["rel_err"] < 5e-2 else float("inf")

            row = {"model": model, "weights": "int8" if int8 else "bf16", "layers": layers, "bytes": nbytes}
            try:
                base = measure(configs)
                row["runtime"] = tried[-1]
                best = base
                for key in ("w2", "w13", "qkv", "o"):
                    options = [{key: c} for c in CHAIN_KLOOP + CHAIN_VARIANTS + (CHAIN_INT8 if int8 else [])
                               if not only or (len(c) > 3 and only in c[3])]
                    if key == "w2":  # SwiGLU in front of the down projection or in its own kernel
                        options += [dict(option, gated=not configs["gated"]) for option in options]
                    for option in options:
                        trial = dict(configs, **option)
                        sec = measure(trial)
                        if sec < best:
                            best, configs = sec, trial
                    print(json.dumps({"model": model, "int8": int8, "after": key, "us": best * 1e6,
                                      "configs": configs}), flush=True)
                row["best"] = {"configs": jsonable(configs), "us": best * 1e6, "GBps": nbytes / best / 1e9}
            except Exception as exc:  # noqa: BLE001 - record and go on
                row["error"] = repr(exc)[:500]
            row["tried"] = tried
            rows.append(row)
            del step
            torch.cuda.empty_cache()
    return rows


def pdl_rows(models: str, layers: int, reps: int) -> list[dict]:
    """Each model's layer chain in a CUDA graph with and without programmatic dependent launch,
    and whether both give the same output."""
    rows = []
    for model in models.split(","):
        for int8 in (False, True):
            step, nbytes = layer_chain(model, layers, int8)
            row = {"model": model, "weights": "int8" if int8 else "bf16", "layers": layers, "bytes": nbytes}
            try:
                row["same_output"] = bool(torch.equal(step(False), step(True)))
                for pdl in (False, True, False, True):
                    sec = graph_time(lambda: step(pdl), reps)
                    key = "pdl" if pdl else "plain"
                    if key not in row or sec * 1e6 < row[key]["us"]:
                        row[key] = {"us": sec * 1e6, "GBps": nbytes / sec / 1e9}
            except Exception as exc:  # noqa: BLE001 - record and go on
                row["error"] = repr(exc)[:500]
            rows.append(row)
            print(json.dumps(row), flush=True)
            del step
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="llama-2-7b")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", default=None)
    p.add_argument("--sweep", action="store_true", help="time every block size of the grid")
    p.add_argument("--inductor", action="store_true", help="also Inductor with coordinate descent")
    p.add_argument("--fused", action="store_true", help="time the fused variants of gemv")
    p.add_argument("--chain-sweep", type=int, default=0, metavar="LAYERS",
                   help="only: tune each GEMV's config in a chain of LAYERS layers (see chain_sweep)")
    p.add_argument("--weights", default="int8,bf16", help="the chain sweep's weight types")
    p.add_argument("--only", default="", help="the chain sweep's candidates: variants naming this")
    p.add_argument("--pdl", type=int, default=0, metavar="LAYERS",
                   help="only: LAYERS layers' GEMVs in a graph, with and without dependent launch")
    args = p.parse_args(argv)

    import torch._inductor.config as inductor_config
    from runtime.compile import configure_compile_cache
    from runtime.kernels.gemv import _config, gemv

    configure_compile_cache(tempfile.mkdtemp(prefix="quill-gemv-cache-"))
    inductor_config.coordinate_descent_tuning = args.inductor
    dev = "cuda"
    result: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}

    big = torch.randn(1 << 29, device=dev, dtype=torch.bfloat16)  # 1 GiB
    dst = torch.empty_like(big)
    result["read_GBps"] = big.numel() * 2 / graph_time(lambda: big.sum(), 3) / 1e9
    result["copy_GBps"] = big.numel() * 4 / graph_time(lambda: dst.copy_(big), 3) / 1e9
    del big, dst
    if args.chain_sweep:
        result["chain_sweep"] = chain_sweep(args.models, args.chain_sweep, args.reps, args.weights, args.only)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
        return 0
    if args.pdl:
        result["pdl"] = pdl_rows(args.models, args.pdl, args.reps)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
        return 0

    def cdt_linear(x, w):
        return F.linear(x, w)

    def cdt_int8(x, w, s):
        return F.linear(x, w.to(x.dtype)) * s

    lin = torch.compile(cdt_linear, dynamic=False)
    lin8 = torch.compile(cdt_int8, dynamic=False)
    for model in args.models.split(","):
        for name, (n, k) in SHAPES[model].items():
            w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02
            x = torch.randn(1, k, device=dev, dtype=torch.bfloat16)
            w8 = torch.randint(-127, 127, (n, k), device=dev, dtype=torch.int8)
            s = torch.rand(n, device=dev, dtype=torch.bfloat16) * 0.01
            row = {"model": model, "name": name, "n": n, "k": k}
            xv = x.view(-1)
            variants = {
                "cublas_bf16": (lambda: F.linear(x, w), n * k * 2),
                "quill_bf16": (lambda: gemv(xv, w), n * k * 2),
                "quill_int8": (lambda: gemv(xv, w8, s), n * k),
            }
            row["quill_bf16_config"], row["quill_int8_config"] = _config(n, k, 2), _config(n, k, 1)
            if args.inductor:
                variants["inductor_cdt_bf16"] = (lambda: lin(x, w), n * k * 2)
                variants["inductor_cdt_int8"] = (lambda: lin8(x, w8, s), n * k)
            if args.sweep:
                for cfg in GRID:
                    bn, kbytes, warps = cfg
                    if kbytes // 2 <= k:
                        variants[f"sweep_bf16_{bn}_{kbytes // 2}_{warps}"] = (
                            lambda c=(bn, kbytes // 2, warps): gemv(xv, w, config=c), n * k * 2)
                    if kbytes <= k:
                        variants[f"sweep_int8_{bn}_{kbytes}_{warps}"] = (
                            lambda c=(bn, kbytes, warps): gemv(xv, w8, s, config=c), n * k)
            if args.fused:
                variants.update(fused_variants(xv, w, w8, s, n, k))
            for label, (fn, nbytes) in variants.items():
                try:
                    t0 = time.perf_counter()
                    fn()
                    torch.cuda.synchronize()
                    first = time.perf_counter() - t0
                    sec = graph_time(fn, args.reps)
                    row[label] = {"us": sec * 1e6, "GBps": nbytes / sec / 1e9, "first_call_s": first}
                except Exception as exc:  # noqa: BLE001 - record and go on
                    row[label] = {"error": repr(exc)[:300]}
            for dtype in ("bf16", "int8"):
                swept = {key: v["us"] for key, v in row.items() if key.startswith(f"sweep_{dtype}")
                         and isinstance(v, dict) and "us" in v}
                if swept:
                    best = min(swept, key=swept.get)
                    row[f"best_{dtype}"] = {"variant": best, **row[best]}
            prefixes = {key.rsplit("@", 1)[0] for key in row if "@" in key}
            for prefix in sorted(prefixes):  # fastest block sizes of each fused variant
                timed = {key: v["us"] for key, v in row.items() if key.startswith(prefix + "@")
                         and isinstance(v, dict) and "us" in v}
                if timed:
                    best = min(timed, key=timed.get)
                    row[f"best_{prefix}"] = {"variant": best, "us": round(timed[best], 2)}
            result["rows"].append(row)
            print(json.dumps({key: v for key, v in row.items() if not key.startswith("sweep_") and "@" not in key}),
                  flush=True)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
