"""`quill bench`: time the engine on the workloads an editor produces.

Loads one model, quantizes and compiles it as asked, runs the chosen workloads of
`runtime.workloads` and prints one line per workload (optionally the whole report as JSON).
The peers (Hugging Face transformers, llama.cpp) are timed by the repository's `benchmarks/`
scripts, not here.
"""

from __future__ import annotations

import json
import time

import torch

from runtime.errors import QuillError
from runtime.workloads import WORKLOADS, run_workload


def add_bench_command(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time the engine on editor workloads (peers: benchmarks/gpu.py, benchmarks/cpu.py)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--model", "--hf_model", "--checkpoint_path", dest="model", default=None,
                   help="model alias, repo id, folder, .gguf or checkpoint (default: the default model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="auto, float32, bfloat16, float16, int8, int4, float32-int4")
    p.add_argument("--quantize", choices=["none", "int8", "int4", "int4-f32head"], default="none",
                   help="weight-only quantization (int4-f32head: int4 with a float32 output head)")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the decode step (auto: on CUDA only)")
    p.add_argument("--workloads", default="parity,completion,typing,chat",
                   help=f"comma-separated, from {', '.join(WORKLOADS)}")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    p.add_argument("--json", default=None, help="write the results to this file")
    p.set_defaults(handler=bench_main)


def bench_main(args) -> int:
    from runtime.engine import load_engine

    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise QuillError(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    engine = load_engine(args.model, device=args.device, precision=args.precision)
    load_s = time.perf_counter() - t0
    setup = prepare_engine(engine, quantize=args.quantize, compile=args.compile)
    report = {"model": str(engine.checkpoint_dir), "device": engine.device, "dtype": engine.dtype,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "load_s": load_s,
              **setup, "workloads": {}}
    for name in names:
        try:
            report["workloads"][name] = run_workload(engine, WORKLOADS[name], runs=args.runs)
        except QuillError as err:
            report["workloads"][name] = {"error": str(err)}
        print(format_line(name, report["workloads"][name]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


def prepare_engine(engine, *, quantize: str = "none", compile: str = "auto") -> dict:
    """Quantize and compile an engine as `quill bench` was asked to; return what was done."""
    from runtime.compile import compile_engine
    from runtime.quantize import quantize as apply_quantize

    done = {"quantize": quantize, "compile": False, "compile_s": 0.0}
    if quantize != "none":
        apply_quantize(engine.model, quantize)
    on = compile == "on" or (compile == "auto" and engine.device.startswith("cuda"))
    if on:
        t0 = time.perf_counter()
        compile_engine(engine)
        done.update(compile=True, compile_s=time.perf_counter() - t0)
    return done


def format_line(name: str, m: dict) -> str:
    if "error" in m:
        return f"{name:<11} error: {m['error']}"
    if "p50_s" in m:
        return (f"{name:<11} first {m['first_request_s'] * 1e3:7.1f} ms  p50 {m['p50_s'] * 1e3:7.1f} ms"
                f"  p90 {m['p90_s'] * 1e3:7.1f} ms  ({m['new_tokens']} new tokens per request)")
    decode = m["decode_tok_s"]
    return (f"{name:<11} TTFT {m['ttft_s'] * 1e3:7.1f} ms  decode "
            f"{decode if decode is None else round(decode, 1)} tok/s  total {m['total_s']:.3f} s")
