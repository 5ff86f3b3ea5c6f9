"""GPU benchmark: Quill vs Hugging Face transformers (eager; static cache + compile), same weights.

One invocation, one GPU, a time budget (default 540 s, under the 10-minute job limit):

    python benchmarks/gpu.py --models llama-2-7b,phi-3-mini --out benchmarks/results/
    python benchmarks/gpu.py --tiny          # CPU smoke test of every stage, seconds

For each model (real shapes, seeded random bf16 weights built as a transformers model, loaded into
Quill through `hf_to_native`, so every engine computes with the same tensors) it runs the
workloads of `runtime.workloads` (parity, completion, typing, chat) in priority order, interleaving
Quill (compiled decode, CUDA graphs), HF static+compile and HF eager; then Quill int8; then two
fresh processes that measure first-call time with an empty and with a warm compile cache.

Every stage is wrapped: an error is recorded in the JSON with its traceback and the run goes on;
a stage that would not fit the remaining time is skipped; the JSON is rewritten after each stage,
so a run cut short keeps its numbers. Reported per engine and workload: TTFT, decode tok/s,
GB/s (weights; weights + KV read) and the fraction of the device-to-device copy bandwidth
measured at the start of the same run, peak memory above the resident weights.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import (  # noqa: E402
    MODEL_SHAPES, RESULTS_DIR, HFRunner, ResultLog, environment, kv_bytes_per_position, quill_from_hf,
    random_hf_model, run_peer_workload, sync,
)
from runtime.workloads import WORKLOADS, first_call, run_workload, scaled  # noqa: E402
from runtime.compile import compile_model, configure_compile_cache, warmup  # noqa: E402
from runtime.quantize import quantize_int8, weight_bytes  # noqa: E402

MAX_SEQ = 2048  # HF's static cache: fits every peer workload (typing: 1,752)
QUILL_MAX_SEQ = 4096  # Quill's (the engine's default), so the 2,048-token prefill fits
ORDER = ["parity", "prefill", "completion", "chat", "typing"]  # most wanted first
QUILL_ONLY = {"prefill"}  # Quill's own target; HF's 2,048-position static cache cannot hold it
ENGINES = ("quill-bf16", "hf-static", "hf-eager", "quill-int8", "start")


def measure_copy_bandwidth(device: str, nbytes: int = 1 << 30, reps: int = 20) -> dict:
    """Device-to-device copy, counting bytes read plus bytes written (as the research notes do)."""
    n = nbytes // 2
    src = torch.randn(n, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"bytes_per_copy": 2 * n * 2, "best_s": best, "GBps": 2 * n * 2 / best / 1e9}


def memory_probe(device: str):
    """Context for peak memory above what was allocated before (activations, graphs, caches)."""
    class Probe:
        def __enter__(self):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.before = torch.cuda.memory_allocated()
            return self

        def __exit__(self, *exc):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                self.extra = torch.cuda.max_memory_allocated() - self.before
                self.reserved = torch.cuda.max_memory_reserved()
            else:
                self.extra = self.reserved = None
            return False
    return Probe()


def add_rates(result: dict, wbytes: int, kvbytes: int, copy_gbps: float | None) -> None:
    rate = result.get("decode_tok_s")
    if not rate:
        return
    result["weights_GBps"] = wbytes * rate / 1e9
    result["weights_kv_GBps"] = (wbytes + kvbytes) * rate / 1e9
    if copy_gbps:
        result["fraction_of_copy_bw"] = result["weights_GBps"] / copy_gbps
        result["fraction_of_copy_bw_with_kv"] = result["weights_kv_GBps"] / copy_gbps


def kv_read(entry: dict, workload, engine_name: str) -> int:
    """KV bytes a decode step reads, on average over the workload: Quill reads the filled
    positions (prompt plus half the new tokens), HF's static cache all of its MAX_SEQ."""
    if engine_name.startswith("quill"):
        positions = workload.prompt_tokens + workload.new_tokens // 2
    else:
        positions = MAX_SEQ
    return entry["kv_bytes_per_position"] * positions


def workloads_for(args) -> list:
    names = [w for w in ORDER if w in args.workloads.split(",")]
    return [scaled(WORKLOADS[n], 1 / 16) if args.tiny else WORKLOADS[n] for n in names]


# Rough stage costs for a 7-8B model on an H100 (seconds), used to skip rather than be killed.
NEED = {"init": 30, "quill-compile": 90, "hf-static-first": 60, "quill": 20, "hf-static": 20,
        "hf-eager": 45, "int8": 90, "child": 120}


def run_model(log: ResultLog, name: str, args, deadline: float, copy_gbps: float | None) -> None:
    shape = MODEL_SHAPES[name]
    entry = log.data["models"].setdefault(name, {"shape": shape, "engines": {}})
    engines = entry["engines"]
    dev, scale = args.device, (0.0 if args.tiny else 1.0)
    need = {k: v * scale for k, v in NEED.items()}
    stage = lambda label, key: log.stage(f"{name}/{label}", need_s=need[key], deadline=deadline)  # noqa: E731
    state: dict = {}
    with stage("init", "init") as r:
        if r is not None:
            t0 = time.perf_counter()
            state["hf"] = random_hf_model(shape, dev, torch.bfloat16, seed=args.seed)
            state["quill"] = quill_from_hf(state["hf"], shape, dev, QUILL_MAX_SEQ)
            q = state["quill"]
            entry["weight_bytes"] = weight_bytes(q.model)
            entry["kv_bytes_per_position"] = kv_bytes_per_position(q)
            entry["params"] = sum(p.numel() for p in state["hf"].parameters())
            r.update(seconds=time.perf_counter() - t0, weight_bytes=entry["weight_bytes"])
    if "quill" not in state:
        return
    wbytes = entry["weight_bytes"]
    with stage("quill-bf16/compile", "quill-compile") as r:
        if r is not None and "quill-bf16" in args.engines:
            eng = state["quill"]
            eng.model = compile_model(eng.model, compile_prefill=args.prefill == "compiled")
            parity = scaled(WORKLOADS["parity"], 1 / 16) if args.tiny else WORKLOADS["parity"]
            r["first_call_s"] = first_call(eng, parity)  # decode + the 16-token prefill bucket
            entry["first_call_in_process_s"] = r["first_call_s"]
    runners = {}
    for wl in workloads_for(args):
        for engine_name in ("quill-bf16", "hf-static", "hf-eager"):
            if engine_name not in args.engines:
                continue
            if engine_name == "hf-eager" and wl.name == "typing":
                continue  # 20 x 64 tokens at eager speed costs more than it tells
            if engine_name != "quill-bf16" and wl.name in QUILL_ONLY:
                continue
            key = "quill" if engine_name == "quill-bf16" else engine_name
            key = "hf-static-first" if key == "hf-static" and key not in runners else key
            with stage(f"{engine_name}/{wl.name}", key) as r:
                if r is None:
                    continue
                with memory_probe(dev) as mem:
                    if engine_name == "quill-bf16":
                        res = run_workload(state["quill"], wl, runs=args.runs)
                    else:
                        if engine_name not in runners:
                            runners[engine_name] = HFRunner(state["hf"], static=engine_name == "hf-static",
                                                            cache_len=MAX_SEQ, device=dev)
                            if engine_name == "hf-static":
                                t0 = time.perf_counter()
                                runners[engine_name].generate([5] * 5, 8)  # compiles decode
                                engines.setdefault(engine_name, {})["first_call_s"] = time.perf_counter() - t0
                        res = run_peer_workload(runners[engine_name], wl, shape["vocab_size"], runs=args.runs)
                res["peak_extra_bytes"], res["peak_reserved_bytes"] = mem.extra, mem.reserved
                add_rates(res, wbytes, kv_read(entry, wl, engine_name), copy_gbps)
                engines.setdefault(engine_name, {})[wl.name] = res
                r.update(summary(res))
    runners.clear()
    run_int8(log, name, args, state, entry, deadline, need, copy_gbps)
    state.clear()
    torch._dynamo.reset()  # drop this model's graphs (and their CUDA graph pools)
    gc.collect()
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
    run_start_children(log, name, args, entry, deadline, need)


def run_int8(log, name, args, state, entry, deadline, need, copy_gbps) -> None:
    if "quill-int8" not in args.engines:
        return
    with log.stage(f"{name}/quill-int8/compile", need_s=need["int8"], deadline=deadline) as r:
        if r is None:
            return
        eng = state["quill"]
        plain = getattr(eng.model, "model", eng.model)  # unwrap the bf16 CompiledModel
        quantize_int8(plain)
        entry["int8_weight_bytes"] = weight_bytes(plain)
        eng.model = compile_model(plain, compile_prefill=args.prefill == "compiled")
        t0 = time.perf_counter()
        warmup(eng.model, max_prompt=16, log_fn=lambda m: None)
        eng.reset()
        r["first_call_s"] = time.perf_counter() - t0
    for wl in workloads_for(args)[:2]:
        with log.stage(f"{name}/quill-int8/{wl.name}", need_s=need["quill"], deadline=deadline) as r:
            if r is None:
                continue
            with memory_probe(args.device) as mem:
                res = run_workload(state["quill"], wl, runs=args.runs)
            res["peak_extra_bytes"] = mem.extra
            add_rates(res, entry["int8_weight_bytes"], kv_read(entry, wl, "quill-int8"), copy_gbps)
            entry["engines"].setdefault("quill-int8", {})[wl.name] = res
            r.update(summary(res))


def run_start_children(log, name, args, entry, deadline, need) -> None:
    """First-call time in fresh processes: empty compile cache, then the same cache warm."""
    if "start" not in args.engines:
        return
    cache = Path(tempfile.mkdtemp(prefix="quill-compile-cache-"))
    for label in ("cold", "warm"):
        with log.stage(f"{name}/start-{label}", need_s=need["child"], deadline=deadline) as r:
            if r is None:
                continue
            limit = max(10, int(deadline - time.monotonic()))
            cmd = [sys.executable, __file__, "--child-start", name, "--cache-dir", str(cache),
                   "--device", args.device] + (["--tiny"] if args.tiny else [])
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"child exited {proc.returncode}: {proc.stderr[-2000:]}")
            res = json.loads(lines[-1])
            res["process_start_to_first_completion_s"] = res["first_completion_done"] - t0
            entry.setdefault("start", {})[label] = res
            r.update(res)


def child_start(args) -> int:
    """A fresh process: random weights straight into Quill, compile with `--cache-dir`, time the
    first parity call and the first completion (1,536-token prompt)."""
    from runtime.config import ModelConfig
    from runtime.devices import resolve_device
    from runtime.engine import Engine
    from runtime.loading import build_model
    from runtime.model import Transformer

    configure_compile_cache(args.cache_dir)
    t_start = time.time()
    config = ModelConfig.from_hf_config(MODEL_SHAPES[args.child_start])
    dev = resolve_device(args.device)
    torch.manual_seed(0)
    with torch.device(dev.torch_device):
        model = Transformer(config).to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02) if p.dim() > 1 else p.fill_(1.0)
    tensors = dict(model.state_dict())
    eng = Engine(build_model(config, tensors, dev, max_seq_length=QUILL_MAX_SEQ), None, device=dev)
    built = time.time()
    eng.model = compile_model(eng.model, compile_prefill=args.prefill == "compiled")
    parity = scaled(WORKLOADS["parity"], 1 / 16) if args.tiny else WORKLOADS["parity"]
    completion = scaled(WORKLOADS["completion"], 1 / 16) if args.tiny else WORKLOADS["completion"]
    first_parity = first_call(eng, parity)
    first_completion = first_call(eng, completion)
    print(json.dumps({"model_built_s": built - t_start, "first_parity_call_s": first_parity,
                      "first_completion_call_s": first_completion,
                      "first_completion_done": time.time()}), flush=True)
    return 0


def summary(res: dict) -> dict:
    keys = ("ttft_s", "decode_tok_s", "gptfast_tok_s", "p50_s", "p90_s", "weights_GBps",
            "fraction_of_copy_bw", "peak_extra_bytes")
    return {k: res[k] for k in keys if k in res}


def ratios(log: ResultLog) -> None:
    for entry in log.data["models"].values():
        eng = entry.get("engines", {})
        out = entry.setdefault("ratios", {})
        for wl in ORDER:
            q = eng.get("quill-bf16", {}).get(wl, {}).get("decode_tok_s")
            for peer in ("hf-static", "hf-eager"):
                p = eng.get(peer, {}).get(wl, {}).get("decode_tok_s")
                if q and p:
                    out[f"{wl}: quill-bf16 / {peer} decode"] = q / p
            q8 = eng.get("quill-int8", {}).get(wl, {}).get("decode_tok_s")
            if q and q8:
                out[f"{wl}: quill-int8 / quill-bf16 decode"] = q8 / q


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="llama-2-7b", help=f"comma-separated: {', '.join(MODEL_SHAPES)}")
    p.add_argument("--workloads", default=",".join(ORDER))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole invocation")
    p.add_argument("--out", default=str(RESULTS_DIR), help="a .json file, or a folder for one")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma-separated subset of: " + ", ".join(ENGINES) +
                   " (start = first-call time in fresh processes, cold and warm compile cache)")
    p.add_argument("--prefill", choices=["compiled", "eager"], default="compiled",
                   help="Quill prefill: compiled per length bucket, or eager")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="tiny shape on the CPU: a smoke test of every stage")
    p.add_argument("--child-start", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.engines = {e.strip() for e in args.engines.split(",") if e.strip()}
    unknown = args.engines - set(ENGINES)
    if unknown:
        p.error(f"unknown engine(s): {', '.join(sorted(unknown))}")
    if args.tiny:
        args.models, args.runs = "tiny", 1
        args.device = args.device or "cpu"
    args.device = args.device or "cuda"
    return args


def output_path(out: str, device_label: str) -> Path:
    path = Path(out)
    if path.suffix == ".json":
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = "".join(c if c.isalnum() else "-" for c in device_label.lower()).strip("-")[:40]
    return path / f"gpu-{slug}-{stamp}.json"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_start:
        return child_start(args)
    env = environment()
    path = output_path(args.out, env.get("device", "cpu") + ("-tiny" if args.tiny else ""))
    log = ResultLog(path, args.budget, {"kind": "gpu", "environment": env, "models": {}})
    configure_compile_cache(tempfile.mkdtemp(prefix="quill-bench-cache-"))  # cold in-process
    copy_gbps = None
    with log.stage("copy_bandwidth") as r:
        r.update(measure_copy_bandwidth(args.device, nbytes=(1 << 24) if args.tiny else (1 << 30)))
        copy_gbps = log.data["copy_bandwidth_GBps"] = r["GBps"]
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for i, name in enumerate(names):
        if name not in MODEL_SHAPES:
            log.data.setdefault("errors", []).append(f"unknown model {name!r}")
            continue
        share = log.remaining() / (len(names) - i)
        run_model(log, name, args, time.monotonic() + share, copy_gbps)
        ratios(log)
        log.flush()
    log.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    log.flush()
    print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
