"""Where a compiled decode step spends its time: tok/s plus a per-kernel breakdown.

    python benchmarks/decode_profile.py --model llama-2-7b --out $OUT/profile.json
    python benchmarks/decode_profile.py --model llama-2-7b --cdt --precision int8

Builds the model straight from its shape with seeded random bf16 weights (no transformers),
compiles it the way `Engine.load` does on CUDA, times `--steps` greedy decode steps at a cache
position near `--position` (no host reads), times `runtime.generate.generate` on gpt-fast's
parity workload with and without its pipelined decode (host reads of every token), and profiles a few steps with `torch.profiler`, summing CUDA time
per kernel name. `--cdt` turns on Inductor's coordinate-descent tuning (gpt-fast's setting),
`--kv-limit` sets the static cache size, `--unfused` keeps the Triton kernels but not the
fused decode layers of `runtime/kernels/fused_decode.py`. A diagnosis tool for `benchmarks/gpu.py`'s
numbers, not a peer comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import MODEL_SHAPES, environment  # noqa: E402
from runtime.compile import compile_model, configure_compile_cache, warmup  # noqa: E402
from runtime.config import ModelConfig  # noqa: E402
from runtime.model import Transformer  # noqa: E402
from runtime.quantize import quantize, weight_bytes  # noqa: E402


def build(name: str, max_seq: int, precision: str) -> Transformer:
    config = ModelConfig.from_hf_config(MODEL_SHAPES[name])
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Transformer(config).to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02) if p.dim() > 1 else p.fill_(1.0)
    model.setup_caches(1, max_seq)
    if precision != "bf16":
        quantize(model, precision)
    return model.eval()


@torch.no_grad()
def time_decode(model, position: int, steps: int) -> float:
    token = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    for i in range(3):
        model(token, torch.tensor([position + i], device="cuda"))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        logits = model(token, torch.tensor([position + i], device="cuda"))
        token = logits[:, -1].argmax(-1, keepdim=True)
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


@torch.no_grad()
def time_generate(model, new_tokens: int = 200) -> dict:
    """tok/s through `runtime.generate.generate` (what the engine runs: a host read of every token
    for streaming and stops), with the next decode step queued before that read and without."""
    from runtime.generate import generate
    from runtime.sampling import Sampler

    prompt = list(range(100, 105))  # gpt-fast's parity workload: 5 tokens, 200 new

    def seconds(n: int, pipeline: bool) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        generate(model, prompt, start_pos=0, max_new_tokens=n, sampler=Sampler(), pipeline=pipeline)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    rates = {}
    for pipeline in (False, True, False, True):
        seconds(8, pipeline)
        # Decode alone: the run of one token (prefill) taken off the run of new_tokens.
        rate = (new_tokens - 1) / (seconds(new_tokens, pipeline) - seconds(1, pipeline))
        key = "pipelined_tok_s" if pipeline else "read_each_token_tok_s"
        rates[key] = max(rates.get(key, 0.0), rate)
    tokens = [generate(model, prompt, start_pos=0, max_new_tokens=64, sampler=Sampler(), pipeline=pipeline).token_ids
              for pipeline in (False, True)]
    rates["pipelined_tokens_equal"] = tokens[0] == tokens[1]
    return rates


@torch.no_grad()
def forced_logits(model, prompt, tokens: list[int] | None, steps: int):
    """Logits [steps, V] (float32) of greedy decode after `prompt`; with `tokens`, those are fed
    instead of the model's own picks (teacher forcing). Returns (logits, tokens fed)."""
    n = prompt.shape[1]
    logits = model(prompt, torch.arange(n, device="cuda"))[:, -1]
    rows, fed = [], []
    for i in range(steps):
        rows.append(logits[0].float())
        fed.append(tokens[i] if tokens else int(logits[0].argmax()))
        logits = model(torch.tensor([[fed[-1]]], device="cuda"), torch.tensor([n + i], device="cuda"))[:, -1]
    return torch.stack(rows), fed


@torch.no_grad()
def check_against_eager(model, compiled, steps: int = 24) -> dict:
    """The compiled model (Triton kernels, CUDA graphs) against plain eager PyTorch (SDPA over the
    masked cache, cuBLAS) in bf16 and in float32, all fed the float32 model's greedy tokens after
    a 33-token prompt (teacher forcing, so one near-tie cannot send them down different paths).
    Random weights give flat logits full of near-ties, so bf16 against float32 is the yardstick:
    the compiled path should be no further from float32 than eager bf16 is."""
    import copy

    prompt = torch.arange(100, 133, device="cuda")[None]
    exact = copy.deepcopy(model).float()
    ref, tokens = forced_logits(exact, prompt, None, steps)
    del exact
    torch.cuda.empty_cache()
    out = {"steps": steps, "logit_scale": float(ref.abs().mean()), "tokens": tokens}
    for label, m in (("eager_bf16", model), ("compiled", compiled)):
        logits, _ = forced_logits(m, prompt, tokens, steps)
        diff = (logits - ref).abs()
        picked = logits.argmax(-1).tolist()
        out[label] = {"max_abs_diff_vs_fp32": float(diff.max()), "mean_abs_diff_vs_fp32": float(diff.mean()),
                      "argmax_differs_from_fp32_at": [i for i in range(steps) if picked[i] != tokens[i]]}
    return out


@torch.no_grad()
def profile_decode(model, position: int, steps: int = 5, top: int = 25) -> dict:
    from torch.profiler import ProfilerActivity, profile

    token = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            model(token, torch.tensor([position + i], device="cuda"))
        torch.cuda.synchronize()
    per_kernel: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for evt in prof.events():
        if evt.device_type == torch.autograd.DeviceType.CUDA:
            slot = per_kernel[evt.name[:120]]
            slot[0] += evt.device_time_total if hasattr(evt, "device_time_total") else evt.cuda_time_total
            slot[1] += 1
    total = sum(v[0] for v in per_kernel.values())
    rows = sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "gpu_us_per_step": total / steps,
        "kernels_per_step": sum(v[1] for v in per_kernel.values()) / steps,
        "top": [{"kernel": k, "us_per_step": v[0] / steps, "calls_per_step": v[1] / steps} for k, v in rows],
    }


def legacy_config(n, k, itemsize, norm=False, gated=False):
    """`gemv._config` before the chain sweep (`gemv-chain-sweep-h100.json`), for an A/B in one
    run: plain blocks and int8 widened by integer adds."""
    if norm or gated:
        block_n, block_k, warps = (8, 512, 4) if itemsize == 1 else (2, 1024, 4)
    elif itemsize == 1:
        block_n, block_k, warps = (4, 1024, 4) if k % 1024 == 0 else (8, 1024, 8)
    else:
        block_n, block_k, warps = (1, 2048, 8) if k % 2048 == 0 else (2, 1024, 4)
    return block_n, min(block_k, 1 << (k - 1).bit_length()), warps


NEW_CONFIG = None  # gemv._config, fused_decode.swiglu_in_front and decode_attention._step_config as
NEW_SWIGLU = None  # shipped, kept before any patch
NEW_ATTENTION = None


def use_configs(model, spec: dict) -> None:
    """Patch the GEMV configs for the next compile: spec "legacy" (bool) picks the base rules,
    "gated" (bool) int8's SwiGLU placement (false: a kernel of its own, as with "legacy"), and
    "qkv", "o", "w13", "w2", "head" override one role's config (a list, as `gemv` takes it);
    "attention" the attention step's config (a list, as `decode_attention._step_config`
    returns it)."""
    import runtime.kernels.decode_attention as attention
    import runtime.kernels.fused_decode as fused
    import runtime.kernels.gemv as gemv_module

    global NEW_CONFIG, NEW_SWIGLU, NEW_ATTENTION
    if NEW_CONFIG is None:
        NEW_CONFIG, NEW_SWIGLU, NEW_ATTENTION = gemv_module._config, fused.swiglu_in_front, attention._step_config
    if "attention" in spec:
        attention._step_config = lambda *_: tuple(spec["attention"])
    else:
        attention._step_config = NEW_ATTENTION
    base = legacy_config if spec.get("legacy") else NEW_CONFIG
    layer = model.layers[0]
    shapes = {"qkv": layer.attention.wqkv.weight.shape, "o": layer.attention.wo.weight.shape,
              "w13": layer.feed_forward.w13.weight.shape, "w2": layer.feed_forward.w2.weight.shape}
    if model.output is not None:
        shapes["head"] = model.output.weight.shape
    role_of = {(int(n), int(k)): role for role, (n, k) in shapes.items()}

    def config(n, k, itemsize, norm=False, gated=False):
        role = role_of.get((n, k))
        if role in spec:
            return tuple(spec[role])
        return base(n, k, itemsize, norm=norm, gated=gated)

    gemv_module._config = config
    if "gated" in spec or spec.get("legacy"):  # int8's SwiGLU in front of the down projection or not
        gated = bool(spec.get("gated", False))
        fused.swiglu_in_front = lambda weight: weight.dtype != torch.int8 or gated
    else:
        fused.swiglu_in_front = NEW_SWIGLU


def run_variants(model, variants: list[dict], kernel_opts: dict) -> list[dict]:
    """Each variant's configs compiled on the same model and timed through generate()."""
    rows = []
    for spec in variants:
        use_configs(model, spec)
        torch._dynamo.reset()
        compiled = compile_model(model, compile_prefill=False, **kernel_opts)
        warmup(compiled, max_prompt=16, log_fn=lambda m: None)
        row = {"variant": spec, **time_generate(compiled),
               "decode_tok_s_at_1600": time_decode(compiled, 1600, 200) if model.max_seq_length > 1800 else None}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama-2-7b")
    p.add_argument("--precision", default="bf16", help="bf16, int8, int4")
    p.add_argument("--cdt", action="store_true", help="Inductor coordinate-descent tuning")
    p.add_argument("--kv-limit", type=int, default=2048)
    p.add_argument("--no-kernels", action="store_true", help="without Quill's Triton decode kernels")
    p.add_argument("--unfused", action="store_true",
                   help="Triton GEMV and attention, but each layer's small ops unfused (no fused_decode)")
    p.add_argument("--profile-eager", action="store_true", help="also profile without CUDA graphs")
    p.add_argument("--check", action="store_true", help="only compare compiled and eager decode")
    p.add_argument("--position", type=int, default=100)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--legacy-configs", action="store_true",
                   help="the GEMV configs before the chain sweep (see legacy_config), for an A/B")
    p.add_argument("--variants", default=None,
                   help="only: a JSON list of config specs (see use_configs), each compiled and timed")
    p.add_argument("--no-generate", action="store_true", help="skip timing generate()")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch._inductor.config as inductor_config
    configure_compile_cache(tempfile.mkdtemp(prefix="quill-profile-cache-"))
    if args.cdt:
        inductor_config.coordinate_descent_tuning = True
    kernel_opts = dict(kernels=not args.no_kernels, fused=not args.unfused)
    t0 = time.perf_counter()
    model = build(args.model, args.kv_limit, args.precision)
    built = time.perf_counter() - t0
    if args.variants:
        variants = json.loads(Path(args.variants).read_text() if args.variants.endswith(".json") else args.variants)
        save({"environment": environment(), "args": vars(args),
              "variants": run_variants(model, variants, kernel_opts)}, args.out)
        return 0
    if args.legacy_configs:
        use_configs(model, {"legacy": True})
    if args.check:
        import copy
        reference = copy.deepcopy(model)  # plain modules: the swap below happens in place
        compiled = compile_model(model, compile_prefill=False, **kernel_opts)
        save({"args": vars(args), "check": check_against_eager(reference, compiled)}, args.out)
        return 0
    compiled = compile_model(model, compile_prefill=False, **kernel_opts)
    compile_s = warmup(compiled, max_prompt=16, log_fn=lambda m: None)
    rate = time_decode(compiled, args.position, args.steps)
    wbytes = weight_bytes(model)
    result = {
        "environment": environment(), "args": vars(args), "build_s": built, "compile_s": compile_s,
        "decode_tok_s": rate, "weight_bytes": wbytes, "weights_GBps": wbytes * rate / 1e9,
        "generate": None if args.no_generate else time_generate(compiled),
        "profile": profile_decode(compiled, args.position),
    }
    save(result, args.out)
    if args.profile_eager:
        # Kernels replayed from a CUDA graph may not show in the profile: profile the same
        # compiled code launched one kernel at a time too (its launch gaps are not the graph's).
        plain = compile_model(model, cudagraphs=False, compile_prefill=False, **kernel_opts)
        warmup(plain, max_prompt=16, log_fn=lambda m: None)
        result["profile_without_graphs"] = profile_decode(plain, args.position)
        save(result, args.out)
    return 0


def save(result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if out:
        Path(out).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
