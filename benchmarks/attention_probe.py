"""The decode attention step on CUDA: its time a layer at each context length, per launch config.

    python benchmarks/attention_probe.py --out $OUT/attention.json

For each model's attention shape (heads, kv heads, head size, sliding window, cache length) it
times `attention_step` over a stack of `--layers` layers, each with its own caches, so the keys
and values come from memory and not from L2, as in a real decode step. The stack runs in a CUDA
graph, once with programmatic dependent launch and once without. With `--gemv` each layer's
attention follows its int8 q/k/v projection, as in decode, and the numbers are the stack's time
less that of the projections alone: what attention adds to a step, with the overlap that
dependent launch gives. Each step config (`decode_attention._step_config`: positions a chunk
program reads, its warps, chunks its merge reads at a time, EARLY_EXIT, LATE_CVT) is checked
against SDPA before it is timed; the compiled kernel's registers and spills are listed with it.
GB/s counts the key and value bytes a step must read.
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

from common import MODEL_SHAPES, environment  # noqa: E402
from gemv_probe import graph_time  # noqa: E402

CACHE_LENGTH = {"phi-3-mini": 4096, "llama-2-7b": 2048, "llama-3-8b": 8192}
POSITIONS = [5, 100, 200, 400, 800, 1600, 3000]


def attention_shape(name: str) -> dict:
    shape = MODEL_SHAPES[name]
    heads = shape["num_attention_heads"]
    return {"heads": heads, "kv_heads": shape["num_key_value_heads"],
            "head_dim": shape["hidden_size"] // heads, "window": shape.get("sliding_window"),
            "cache_length": CACHE_LENGTH.get(name, shape["max_position_embeddings"])}


class Recorder:
    """Wraps the chunk kernel so each launch's compiled kernel (registers, spills) is kept."""

    def __init__(self, kernel):
        self.kernel, self.last = kernel, None

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def run(*args, **kwargs):
            self.last = launch(*args, **kwargs)
            return self.last
        return run


def reference(qkv, k_cache, v_cache, cos_table, sin_table, pos: int, a: dict) -> torch.Tensor:
    from runtime.rope import apply_rotary_emb

    h, kvh, d, window = a["heads"], a["kv_heads"], a["head_dim"], a["window"]
    q, k, v = (t.float().view(1, 1, -1, d).transpose(1, 2) for t in qkv.split([h * d, kvh * d, kvh * d], -1))
    cos, sin = cos_table[pos].float()[None], sin_table[pos].float()[None]
    q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
    k_ref, v_ref = k_cache.float(), v_cache.float()
    k_ref[:, :, pos], v_ref[:, :, pos] = k[:, :, 0], v[:, :, 0]
    keys = torch.arange(k_cache.shape[2], device=qkv.device)
    mask = keys <= pos
    if window:
        mask &= keys > pos - window
    return F.scaled_dot_product_attention(
        q, k_ref.repeat_interleave(h // kvh, 1), v_ref.repeat_interleave(h // kvh, 1),
        attn_mask=mask[None, None, None, :]).reshape(1, h * d)


def probe_model(name: str, configs: list, positions: list[int], layers: int, reps: int, gemv: bool) -> dict:
    import runtime.kernels.decode_attention as da

    a = attention_shape(name)
    h, kvh, d, s_max, window = a["heads"], a["kv_heads"], a["head_dim"], a["cache_length"], a["window"]
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    angles = torch.rand(s_max, d // 2, device=dev, generator=g) * 6
    angles = torch.cat([angles, angles], dim=-1)
    cos_table, sin_table = angles.cos().bfloat16(), angles.sin().bfloat16()
    qkv = torch.randn(1, (h + 2 * kvh) * d, device=dev, generator=g).bfloat16()
    caches = [(torch.randn(1, kvh, s_max, d, device=dev, generator=g).bfloat16(),
               torch.randn(1, kvh, s_max, d, device=dev, generator=g).bfloat16()) for _ in range(layers)]
    counts = torch.zeros(h, dtype=torch.int32, device=dev)
    projections = []
    if gemv:  # each layer's int8 q/k/v projection, whose output the attention step reads
        from runtime.kernels.gemv import gemv as gemv_fn

        hidden = h * d
        x = torch.randn(hidden, device=dev, generator=g).bfloat16()
        for _ in range(layers):
            w = torch.randint(-128, 128, (qkv.shape[1], hidden), device=dev, dtype=torch.int8, generator=g)
            scale = torch.rand(qkv.shape[1], device=dev, generator=g).bfloat16() * 1e-3
            projections.append(lambda pdl, w=w, scale=scale: gemv_fn(x, w, scale, pdl=pdl).view(1, -1))
    pos_t = torch.zeros(1, dtype=torch.int64, device=dev)
    positions = [p for p in positions if p < s_max]
    default = da._step_config(s_max, d, window)
    recorder = Recorder(da._chunk_kernel)
    real = da._chunk_kernel, da._step_config, da.dependent_launch
    real_pdl = da.dependent_launch
    rows = []
    projections_us = {}
    try:
        da._chunk_kernel = recorder
        if gemv:
            for pdl in (True, False):
                da.dependent_launch = (lambda device: real_pdl(device)) if pdl else (lambda device: False)
                projections_us[pdl] = graph_time(lambda: [p(pdl) for p in projections], reps) / layers * 1e6
        for config in configs:
            da._step_config = lambda *_, c=tuple(config): c
            row = {"config": list(config), "default": tuple(config) == tuple(default), "us_per_layer": {},
                   "us_per_layer_no_pdl": {}, "gbs": {}}
            worst = 0.0
            for pos in (0, 1, 31, 32, 255, 256, s_max - 1, *positions):  # correctness first
                pos_t.fill_(pos)
                k_cache, v_cache = caches[0][0].clone(), caches[0][1].clone()
                ref = reference(qkv, k_cache, v_cache, cos_table, sin_table, pos, a)
                out = da.attention_step(qkv, k_cache, v_cache, cos_table, sin_table, pos_t, h, window, counts)
                worst = max(worst, float((out.float() - ref).abs().max()))
                assert not counts.any(), (config, pos)
            row["max_abs_error"] = worst
            compiled = recorder.last
            row["registers"] = getattr(compiled, "n_regs", None)
            row["spills"] = getattr(compiled, "n_spills", None)
            for pdl in (True, False):
                da.dependent_launch = (lambda device: real_pdl(device)) if pdl else (lambda device: False)
                for pos in positions:
                    pos_t.fill_(pos)

                    def step():
                        for i, (k_cache, v_cache) in enumerate(caches):
                            src = projections[i](pdl) if gemv else qkv
                            da.attention_step(src, k_cache, v_cache, cos_table, sin_table, pos_t, h, window,
                                              counts)
                    us = graph_time(step, reps) / layers * 1e6 - projections_us.get(pdl, 0.0)
                    (row["us_per_layer"] if pdl else row["us_per_layer_no_pdl"])[pos] = round(us, 2)
                    if pdl:
                        first = max(0, pos - window + 1) if window else 0
                        kv_bytes = 2 * kvh * (pos + 1 - first) * d * 2
                        row["gbs"][pos] = round(kv_bytes / us / 1e3, 1)
            rows.append(row)
            print(name, row, flush=True)
    finally:
        da._chunk_kernel, da._step_config, da.dependent_launch = real
    return {"shape": a, "layers": layers, "default_config": list(default), "configs": rows,
            "projection_us_per_layer": {("pdl" if k else "no_pdl"): round(v, 2) for k, v in projections_us.items()}}


def parse_configs(text: str) -> list:
    """'64:4:64:1:0,32:2:8:0:0' -> [(64, 4, 64, True, False), (32, 2, 8, False, False)]."""
    configs = []
    for item in filter(None, text.split(",")):
        chunk, warps, merge, early, late = (int(x) for x in item.split(":"))
        configs.append((chunk, warps, merge, bool(early), bool(late)))
    return configs


def default_grid(s_max: int, window: int | None) -> list:
    """The shipped config, with each option on and off, and chunk sizes around it."""
    import runtime.kernels.decode_attention as da

    shipped = da._step_config(s_max, 0, window)
    chunk, warps, merge, *_ = shipped
    configs = [shipped]
    for early in (False, True):
        for late in (False, True):
            configs.append((chunk, warps, merge, early, late))
    for c, w in ((32, 2), (64, 4), (128, 4)):
        configs.append((c, w, 8, True, True))
        configs.append((c, w, 8, False, True))
    return list(dict.fromkeys(configs))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="phi-3-mini,llama-2-7b,llama-3-8b")
    p.add_argument("--configs", default=None,
                   help="CHUNK:WARPS:MERGE_BLOCK:EARLY_EXIT:LATE_CVT,... (default: the shipped config, "
                        "its options on and off, other chunk sizes)")
    p.add_argument("--positions", default=",".join(map(str, POSITIONS)))
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--gemv", action="store_true", help="each attention step after its q/k/v projection")
    p.add_argument("--reps", type=int, default=10, help="steps of all layers a CUDA graph replays")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("attention_probe needs CUDA", file=sys.stderr)
        return 2
    positions = [int(x) for x in args.positions.split(",")]
    result = {"environment": environment(), "models": {}}
    for name in args.models.split(","):
        shape = attention_shape(name)
        configs = parse_configs(args.configs) if args.configs else default_grid(shape["cache_length"], shape["window"])
        result["models"][name] = probe_model(name, configs, positions, args.layers, args.reps, args.gemv)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
