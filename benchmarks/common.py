"""Shared pieces of the benchmark scripts: model shapes, same-weights setup, results, peers.

Every engine gets the same tensors: a Hugging Face model is built from a real model's
`config.json` numbers with seeded random weights (N(0, 0.02), transformers' own init), and Quill
loads exactly those tensors through `runtime.weight_map.hf_to_native` (research notes, section 9:
optimum-benchmark's "no_weights", vLLM's dummy load). Results go to one JSON file that is
rewritten after every stage, so a run that is cut short still leaves every finished number.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from runtime.workloads import percentile, single_request_metrics, synthetic_tokens, typing_metrics  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

_LLAMA = dict(hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
# Real shapes, from each model's config.json (random weights).
MODEL_SHAPES: dict[str, dict] = {
    "llama-2-7b": dict(_LLAMA, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       intermediate_size=11008, vocab_size=32000, max_position_embeddings=4096,
                       rope_theta=10000.0),
    "llama-3-8b": dict(_LLAMA, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192,
                       rope_theta=500000.0, bos_token_id=128000, eos_token_id=128001),
    "mistral-7b": dict(_LLAMA, architectures=["MistralForCausalLM"], model_type="mistral", hidden_size=4096,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       intermediate_size=14336, vocab_size=32000, max_position_embeddings=32768,
                       rope_theta=10000.0, sliding_window=4096),
    "phi-3-mini": dict(_LLAMA, architectures=["Phi3ForCausalLM"], model_type="phi3", hidden_size=3072,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       intermediate_size=8192, vocab_size=32064, max_position_embeddings=4096,
                       original_max_position_embeddings=4096, rope_theta=10000.0, sliding_window=2047,
                       pad_token_id=32000, eos_token_id=32000),
    "phi-2": dict(architectures=["PhiForCausalLM"], model_type="phi", hidden_size=2560, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, intermediate_size=10240,
                  vocab_size=51200, max_position_embeddings=2048, rope_theta=10000.0,
                  partial_rotary_factor=0.4, hidden_act="gelu_new", layer_norm_eps=1e-5,
                  tie_word_embeddings=False, bos_token_id=50256, eos_token_id=50256),
    "smollm2-135m": dict(_LLAMA, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=576,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, vocab_size=49152, max_position_embeddings=8192,
                         rope_theta=100000.0, tie_word_embeddings=True),
    # Smoke-test shape: runs on a CPU in seconds (`--tiny`).
    "tiny": dict(_LLAMA, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                 vocab_size=512, max_position_embeddings=4096, rope_theta=10000.0),
}


def environment() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), device_memory_bytes=props.total_memory,
                    cuda=torch.version.cuda)
    else:
        info["device"] = platform.processor() or "cpu"
    from runtime.kernels import cpu_features

    # Every result file names the CPU: its model, its vector flags, the kernel path Quill chose
    # (and a cap set through QUILL_CPU_KERNEL / ATEN_CPU_CAPABILITY, when a run stands in for
    # a smaller CPU).
    info["cpu"] = {"model": cpu_features.cpu_model(), "vector_flags": cpu_features.vector_flags(),
                   "supported_paths": cpu_features.supported_paths(),
                   "kernel_path": cpu_features.chosen_path(),
                   "caps": {k: os.environ[k] for k in (cpu_features.OVERRIDE_ENV, "ATEN_CPU_CAPABILITY",
                                                       "ONEDNN_MAX_CPU_ISA", "TORCHINDUCTOR_CPP_MARCH",
                                                       "MKL_ENABLE_INSTRUCTIONS") if k in os.environ},
                   "aten_capability": str(torch.backends.cpu.get_cpu_capability())}
    return info


class ResultLog:
    """A JSON result file, rewritten atomically after every stage; a deadline for the run."""

    def __init__(self, path: Path, budget_s: float, meta: dict):
        self.path = path
        self.deadline = time.monotonic() + budget_s
        self.data = {"schema": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta, "stages": []}
        self.flush()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def flush(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.path)

    @contextmanager
    def stage(self, name: str, *, need_s: float = 0.0, deadline: float | None = None):
        """Run a stage, recording its time and any error; skip it when too little time is left.

        Yields a dict the stage fills with results (or None when skipped)."""
        left = (deadline if deadline is not None else self.deadline) - time.monotonic()
        entry = {"name": name, "status": "skipped", "seconds": 0.0}
        self.data["stages"].append(entry)
        if left < need_s:
            entry["reason"] = f"{left:.0f}s left, stage needs about {need_s:.0f}s"
            print(f"[bench] skip {name}: {entry['reason']}", flush=True)
            self.flush()
            yield None
            return
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        out: dict = {}
        try:
            yield out
            entry["status"] = "ok"
        except Exception as err:  # a stage's failure must not lose the others
            entry["status"] = "error"
            entry["error"] = f"{type(err).__name__}: {err}"
            entry["traceback"] = traceback.format_exc()[-4000:]
            print(f"[bench] {name} failed: {entry['error']}", flush=True)
        finally:
            entry["seconds"] = time.perf_counter() - t0
            if out:
                entry["result"] = out
            print(f"[bench] {name} {entry['status']} in {entry['seconds']:.1f}s", flush=True)
            self.flush()


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def clock(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# --- models with the same weights --------------------------------------------------------


def hf_config(shape: dict, attn: str = "sdpa"):
    import transformers

    cls = transformers.CONFIG_MAPPING[shape["model_type"]]
    fields = {k: v for k, v in shape.items() if k != "model_type"}
    config = cls(**fields)
    config._attn_implementation = attn
    return config


def random_hf_model(shape: dict, device: str, dtype: torch.dtype, seed: int = 0):
    """A transformers causal LM of `shape` with seeded N(0, 0.02) weights, on `device`."""
    import transformers

    config = hf_config(shape)
    cls = getattr(transformers, shape["architectures"][0])
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in bf16 directly: no float32 copy of a 7B model
    try:
        with torch.device(device):
            model = cls(config).to(dtype).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.eos_token_id = None  # fixed output lengths: never stop early
    model.generation_config.pad_token_id = 0
    return model


def quill_from_hf(hf_model, shape: dict, device: str, max_seq_length: int):
    """A tokenizer-free Quill `Engine` over the HF model's own tensors (converted names)."""
    from runtime.config import ModelConfig
    from runtime.devices import resolve_device
    from runtime.engine import Engine
    from runtime.loading import build_model
    from runtime.weight_map import hf_to_native

    config = ModelConfig.from_hf_config(dict(shape))
    native = hf_to_native(hf_model.state_dict(), config)
    dev = resolve_device(device)
    # hf_to_native shares untouched tensors with HF and concatenates wqkv/w13; clone the rest
    # so quantizing Quill in place never changes the peer's weights.
    native = {k: v.clone() for k, v in native.items()}
    model = build_model(config, native, dev, max_seq_length=max_seq_length)
    return Engine(model, None, device=dev)


def kv_bytes_per_position(engine) -> int:
    """Bytes of keys and values one cache position holds over all layers. On CUDA, Quill's
    decode attention reads the filled positions only (`runtime/kernels/decode_attention.py`)."""
    cfg = engine.config
    itemsize = engine.model.tok_embeddings.weight.element_size()
    return 2 * cfg.n_layer * cfg.n_local_heads * cfg.head_dim * itemsize


# --- Hugging Face transformers peers -------------------------------------------------------


class HFRunner:
    """transformers `generate`, eager (dynamic cache) or static cache + torch.compile
    (mode="reduce-overhead", fullgraph; transformers compiles the decode forward itself)."""

    def __init__(self, model, *, static: bool, cache_len: int, device: str):
        self.model, self.static, self.device = model, static, device
        self.cache = self.compile_config = None
        if static:
            from transformers import CompileConfig, StaticCache

            self.cache = StaticCache(config=model.config, max_cache_len=cache_len)
            # One config object for every call: transformers re-wraps the forward when it changes.
            self.compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead")
            if not str(device).startswith("cuda"):
                self.compile_config._compile_all_devices = True  # CPU smoke test: compiled path too

    def generate(self, prompt: list[int], new_tokens: int):
        ids = torch.tensor([prompt], device=self.device)
        kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                      attention_mask=torch.ones_like(ids))
        if self.static:
            self.cache.reset()
            kwargs.update(past_key_values=self.cache, compile_config=self.compile_config)
        with torch.no_grad():
            out = self.model.generate(ids, **kwargs)
        produced = out.shape[1] - ids.shape[1]
        if produced != new_tokens:
            raise RuntimeError(f"transformers produced {produced} of {new_tokens} tokens")
        return out


def run_peer_workload(runner, workload, vocab: int, *, runs: int, warmup: int = 1, seed: int = 0) -> dict:
    """The `runtime.workloads` method for any runner with `generate(prompt, n)` (no prefix reuse)."""
    prompt_len = workload.prompt_tokens + workload.step_tokens * (workload.requests - 1)
    tokens = synthetic_tokens(prompt_len, vocab, seed)
    dev = runner.device
    if workload.requests > 1:
        for _ in range(warmup):
            runner.generate(tokens[: workload.prompt_tokens], workload.new_tokens)
        lat = [clock(lambda: runner.generate(tokens[: workload.prompt_tokens + i * workload.step_tokens],
                                             workload.new_tokens), dev)
               for i in range(workload.requests)]
        return typing_metrics(lat, workload.new_tokens)
    prompt = tokens[: workload.prompt_tokens]
    for _ in range(warmup):
        runner.generate(prompt, workload.new_tokens)
    first = [clock(lambda: runner.generate(prompt, 1), dev) for _ in range(runs)]
    total = [clock(lambda: runner.generate(prompt, workload.new_tokens), dev) for _ in range(runs)]
    return single_request_metrics(first, total, workload.new_tokens)


def median(values):
    return statistics.median(values) if values else None


__all__ = ["percentile", "median"]
