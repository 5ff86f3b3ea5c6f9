"""The steps of `Engine.load` around reading the files: check the manifest against the model's
config, build the model around its tensors, name the CPU kernel path it runs, and compile and
warm it up where that pays. Which dtype and weight scheme to load in is `precision.py`'s part.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import Manifest, read_manifest
from .config import ModelConfig
from .devices import Device
from .errors import CheckpointError
from .model import Transformer
from .precision import FLOAT32_INT4
from .progress import ProgressCallback

DEFAULT_MAX_SEQ_LENGTH = 4096  # KV cache size when the caller does not choose one
LOAD_WARM_PROMPT = 16  # prefill buckets compiled before `Engine.load` returns; `warm_next` the needed rest


def read_config(checkpoint_dir: Path) -> tuple[Manifest, ModelConfig]:
    """The checkpoint's manifest and model config, refused when they describe different families."""
    manifest = read_manifest(checkpoint_dir)
    config = ModelConfig.from_hf_config(manifest.config)
    if manifest.architecture != config.family:
        raise CheckpointError(
            f"{checkpoint_dir}: the manifest says {manifest.architecture!r} but config.json describes "
            f"a {config.family!r} model. Remove it with `quill rm` and convert again."
        )
    return manifest, config


def build_model(
    config: ModelConfig,
    tensors: dict[str, torch.Tensor],
    device: Device,
    *,
    max_seq_length: int | None = None,
) -> Transformer:
    """Build the model around already-loaded native tensors (no second copy of the weights)."""
    with torch.device("meta"):
        model = Transformer(config)
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"The checkpoint's tensors do not match its config.json ({err}). Convert the model again."
        ) from err
    model.eval().requires_grad_(False)
    seq = max_seq_length or min(config.max_position_embeddings, DEFAULT_MAX_SEQ_LENGTH)
    model.setup_caches(max_batch_size=1, max_seq_length=seq)
    if device.kind == "directml":
        from .fast_paths import use_directml_ops
        from .kernels.directml_ops import DirectMLOps

        use_directml_ops(model, DirectMLOps.load())
    return model


def cpu_kernel_path(model) -> str:
    """Which CPU code path the model's matrix products run: Quill's 4-bit kernel's path when its
    layers use it ("avx512", "avx2", "plain"), else PyTorch's own dispatch ("aten-avx2", ...)."""
    from .kernels import grid_int4_cpu
    from .quantize import GridInt4Linear

    if any(isinstance(m, GridInt4Linear) and m.use_kernel for m in model.modules()):
        return grid_int4_cpu.kernel_path() or "plain"
    return "aten-" + str(torch.backends.cpu.get_cpu_capability()).lower()


def wants_compile(compile: bool | str, device: Device, weight_scheme: str | None) -> bool:
    """`compile` True, or "auto" on CUDA and for float32-int4 on any device: float32-int4 decodes
    through a fused loop over the codes that only the compiler makes."""
    return compile in (True, "whole") or (compile == "auto" and (device.kind == "cuda" or weight_scheme == FLOAT32_INT4))


def compile_and_warm(model: Transformer, report: ProgressCallback, graph_key: str | None = None,
                     whole: bool = False):
    """The model in compiled steps, its decode and shortest prefill bucket compiled already. Run
    it on the thread that will generate (CUDA-graph trees are kept per thread).

    With `graph_key` (a CPU's sized steps, `whole_graph_cache.graph_key`), the whole-model graph
    is compiled only when the compile cache holds it already; otherwise each layer is compiled
    on its own, a quicker first start (`compile_model(regional=True)`), and the caller may
    compile the whole graph for the next start (`runtime.precompile`, which passes `whole`)."""
    from . import whole_graph_cache
    from .compile import compile_model, warmup

    report("compile", 0, 1)
    regional = graph_key is not None and not whole and not whole_graph_cache.is_cached(graph_key)
    model = compile_model(model, regional=regional)
    # Decode and the shortest prompts (a completion's few new tokens after prefix reuse)
    # now; longer prompt buckets run eagerly until `warm_next` compiles them, so the
    # first answer does not wait for every bucket (minutes for a 7B model, cold).
    warmup(model, max_prompt=LOAD_WARM_PROMPT)  # junk in the KV cache: nothing is cached
    if whole and model.verify_pending:
        model.warm_verify()  # the next start finds every graph it compiles at load
    if (graph_key is not None and not regional and not model.verify_pending
            and not whole_graph_cache.is_cached(graph_key)):
        whole_graph_cache.mark_cached(graph_key)  # a second start with no note would still be quick
    model.lazy_prefill = True
    report("compile", 1, 1)
    return model
