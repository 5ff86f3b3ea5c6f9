"""The first long request after warm-up against later ones, in the engine alone (no server).

Phi-3-mini shape, int8, random weights, `compile_model`'s default route on CUDA, warmed up as
`Engine.load` does; four requests (1,536 tokens, then two that reuse the prefix, then 1,536
again from scratch), 64 new tokens each, and each prefill once more on its own:

    python3 benchmarks/first_request_probe.py /tmp/compile-cache > $OUT/first-request.json
"""
import json, os, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE)); sys.path.insert(0, HERE)
import torch
from common import MODEL_SHAPES
from runtime.config import ModelConfig
from runtime.model import Transformer
from runtime.quantize import quantize_int8
from runtime.compile import compile_model, warmup, configure_compile_cache
from runtime.generate import generate
from runtime.sampling import Sampler

configure_compile_cache(sys.argv[1])
cfg = ModelConfig.from_hf_config(dict(MODEL_SHAPES["phi-3-mini"]))
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    m = Transformer(cfg)
torch.set_default_dtype(torch.float32)
for p in m.parameters(): p.data.normal_(0, 0.02)
m.requires_grad_(False).eval(); m.setup_caches(1, 4096)
quantize_int8(m)
res = {}
with torch.no_grad():
    t0 = time.perf_counter()
    cm = compile_model(m); warmup(cm, max_prompt=16); res["warmup_s"] = time.perf_counter() - t0
    cm.lazy_prefill = True
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 32000, (1600,), generator=g).tolist()
    for i, (n, start) in enumerate([(1536, 0), (1544, 1536), (1552, 1544), (1536, 0)]):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        out = generate(cm, prompt[:n], start_pos=start, max_new_tokens=64, sampler=Sampler(0.0))
        torch.cuda.synchronize(); res[f"request{i}_ms"] = 1e3 * (time.perf_counter() - t0)
        # prefill alone
        t0 = time.perf_counter()
        cm(torch.tensor([prompt[start:n]], device="cuda"), torch.arange(start, n, device="cuda"), last_only=True, kv_len=n)
        torch.cuda.synchronize(); res[f"request{i}_prefill_again_ms"] = 1e3 * (time.perf_counter() - t0)
print(json.dumps(res, indent=1))
