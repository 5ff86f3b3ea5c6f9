"""Probe: what a prompt-lookup verification step costs against a decode step, and what prompt
lookup then buys end to end (`CompiledModel.warm_verify`, `generate(prompt_lookup=True)`).

Times, in one process, the model as the server compiles it: the decode step and the
verification step for 2 .. VERIFY_ROWS tokens at a filled cache, then greedy generations of
`--new` tokens after windows of a real Python file (CPython's argparse.py), with prompt lookup
off and on: tokens per second, drafts proposed and kept, and whether the tokens are the same.

    # CPU, the default model (SmolLM2-135M-Instruct float32-int4 from the test assets):
    python benchmarks/verify_probe.py --out benchmarks/results/verify-probe-smollm2-cpu.json
    # GPU, seeded random weights of a real shape (timing only: random weights draft nothing
    # useful), or a real checkpoint:
    python3 benchmarks/verify_probe.py --device cuda --shape phi-3-mini --precision int8 --out $OUT/v.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import environment, sync  # noqa: E402


def clock(fn, device: str, repeat: int) -> float:
    """Median seconds of `fn()` over `repeat` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def real_engine(checkpoint: str | None, device: str, precision: str):
    from runtime.engine import Engine

    if checkpoint is None:
        from tests import assets
        from runtime.store import resolve_model

        checkpoint = resolve_model(str(assets.smollm2_gguf()), cache_dir=Path(os.environ.get(
            "QUILL_CACHE_DIR", REPO_ROOT / ".bench-cache")) / "models")
    return Engine.load(checkpoint, device=device, precision=precision)


def random_engine(shape: str, device: str, precision: str, max_seq: int):
    """A random-weight model of a real shape, compiled as `Engine.load` compiles it."""
    from common import MODEL_SHAPES
    from runtime.compile import compile_model, warmup
    from runtime.config import ModelConfig
    from runtime.model import Transformer
    from runtime.quantize import quantize_int8

    config = ModelConfig.from_hf_config(dict(MODEL_SHAPES[shape]))
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = Transformer(config)
    torch.set_default_dtype(default)
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    model.requires_grad_(False).eval()
    model.setup_caches(1, max_seq)
    if precision == "int8":
        quantize_int8(model)
    model = compile_model(model)
    warmup(model, max_prompt=16)
    return model


def step_costs(model, device: str, at: int, repeat: int) -> dict:
    """Decode and verification steps at positions from `at` on (the cache before holds junk)."""
    from runtime.compile import VERIFY_ROWS

    dev = model.tok_embeddings.weight.device
    res = {"at_position": at, "verify_tokens": model.verify_tokens}
    with torch.no_grad():
        one = torch.zeros(1, 1, dtype=torch.long, device=dev)
        res["decode_ms"] = 1e3 * clock(lambda: model(one, torch.tensor([at], device=dev), kv_len=at + 1), device, repeat)
        res["verify_ms"] = {}
        for rows in range(2, VERIFY_ROWS + 1):
            idx = torch.zeros(1, rows, dtype=torch.long, device=dev)
            pos = torch.arange(at, at + rows, device=dev)
            res["verify_ms"][rows] = 1e3 * clock(lambda: model(idx, pos, kv_len=at + rows), device, repeat)
    res["verify_over_decode"] = {r: v / res["decode_ms"] for r, v in res["verify_ms"].items()}
    return res


def kernel_profile(model, rows: int, at: int, top: int = 15) -> list[dict]:
    """The CUDA kernels of one eager verification forward of `rows` tokens, by total time: where
    a multi-token step spends what a decode step does not."""
    from torch.profiler import ProfilerActivity, profile

    dev = model.tok_embeddings.weight.device
    eager = getattr(model, "model", model)
    idx = torch.zeros(1, rows, dtype=torch.long, device=dev)
    pos = torch.arange(at, at + rows, device=dev)
    with torch.no_grad():
        eager(idx, pos)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            eager(idx, pos)
            torch.cuda.synchronize()
    rows_out = []
    for e in sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:top]:
        rows_out.append({"kernel": e.key[:120], "calls": e.count, "total_us": e.device_time_total})
    return rows_out


def generations(model, tokenizer, windows: int, new_tokens: int, device: str) -> dict:
    """Greedy generations after windows of a real Python file, prompt lookup off and on."""
    import sysconfig

    from runtime.generate import generate
    from runtime.sampling import Sampler

    text = (Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_text(encoding="utf-8")
    ids = tokenizer.encode(text)
    rows, totals = [], {False: 0.0, True: 0.0}
    for w in range(windows):
        end = 600 + w * (len(ids) - 1200) // max(1, windows - 1)
        prompt = ids[end - 500: end]
        row = {"end_token": end}
        for lookup in (False, True):
            sync(device)
            t0 = time.perf_counter()
            out = generate(model, prompt, start_pos=0, max_new_tokens=new_tokens, sampler=Sampler(),
                           prompt_lookup=lookup)
            sync(device)
            dt = time.perf_counter() - t0
            totals[lookup] += dt
            row["lookup" if lookup else "plain"] = {
                "seconds": dt, "tokens": len(out.token_ids), "draft_tokens": out.draft_tokens,
                "accepted_draft_tokens": out.accepted_draft_tokens, "ids": out.token_ids}
        row["same_tokens"] = row["plain"]["ids"] == row["lookup"]["ids"]
        rows.append(row)
    same = sum(r["same_tokens"] for r in rows)
    return {"windows": windows, "new_tokens": new_tokens, "prompt_tokens": 500, "same_tokens": f"{same} of {windows}",
            "plain_s": totals[False], "lookup_s": totals[True], "speedup": totals[False] / totals[True],
            "draft_tokens": sum(r["lookup"]["draft_tokens"] for r in rows),
            "accepted_draft_tokens": sum(r["lookup"]["accepted_draft_tokens"] for r in rows),
            "rows": [{k: ({kk: vv for kk, vv in v.items() if kk != "ids"} if isinstance(v, dict) else v)
                      for k, v in r.items()} for r in rows]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--shape", help="random weights of this shape (benchmarks/common.py MODEL_SHAPES)")
    ap.add_argument("--checkpoint", help="a real model (default: SmolLM2 from the test assets)")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    res = {"kind": "verify-probe", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(),
           "args": vars(args)}
    t0 = time.perf_counter()
    if args.shape:
        model, tokenizer = random_engine(args.shape, args.device, args.precision, 4096), None
    else:
        engine = real_engine(args.checkpoint, args.device, args.precision)
        model, tokenizer = engine.model, engine.tokenizer
    res["load_s"] = time.perf_counter() - t0
    res["compile_seconds"] = getattr(model, "compile_seconds", None)
    res["steps"] = step_costs(model, args.device, 512, args.repeat)
    print(json.dumps(res["steps"], indent=1), flush=True)
    if args.device.startswith("cuda"):
        res["verify_kernels"] = kernel_profile(model, 7, 512)
        print(json.dumps(res["verify_kernels"], indent=1), flush=True)
    if tokenizer is not None:
        res["generations"] = generations(model, tokenizer, args.windows, args.new, args.device)
        print(json.dumps({k: v for k, v in res["generations"].items() if k != "rows"}, indent=1), flush=True)
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
