"""A device's fast paths, swapped into a reference `Transformer` by replacing its modules.

The reference (`model.py`) runs on every device and knows nothing of this. As quantization
replaces `nn.Linear`s, each fast path replaces modules with subclasses that change only
`forward` and share the originals' parameters, buffers and children (nothing is copied, the
state-dict keys stay):

    CUDA (Triton)  nn.Linear -> GemvLinear, Attention -> DecodeAttention; with `fused`, each
                   TransformerBlock that fits -> FusedDecodeBlock, OutputHead -> FusedHead
    DirectML       RMSNorm -> DirectMLRMSNorm, Attention -> DirectMLAttention, for the ops the
                   installed torch-directml has
"""

from __future__ import annotations

from torch import nn

from .model import Attention, OutputHead, RMSNorm, TransformerBlock


def use_triton_kernels(model: nn.Module, *, fused: bool = True) -> int:
    """Route a model's batch-1 decode through Quill's Triton kernels: floating-point linears
    become `GemvLinear` (int8 ones already use the same GEMV), attention layers read only
    the filled cache positions (`DecodeAttention`), and with `fused` each layer that fits runs
    its decode as five kernels (`FusedDecodeBlock`, `FusedHead`). Returns how many modules
    changed; 0 when the kernels are not available for the model's device (DirectML's among
    them, so its modules are never fused over)."""
    from .kernels.decode_attention import DecodeAttention, supported
    from .kernels.fused_decode import FusedDecodeBlock, FusedHead, add_step_counts, block_supported
    from .kernels.fused_decode import head_supported
    from .kernels.gemv import GemvLinear, available, dependent_launch

    device = model.tok_embeddings.weight.device
    if not available(device):
        return 0
    dependent_launch(device)  # decided here, outside the code torch.compile traces
    # Linears first: a replaced attention or block holds the children its original held then.
    floating = lambda m: type(m) is nn.Linear and m.weight.is_floating_point()  # noqa: E731
    changed = _replace(model, floating, GemvLinear.from_linear)
    changed += _replace(model, lambda m: type(m) is Attention and supported(m.head_dim),
                        lambda m: _recast(m, DecodeAttention))
    if fused:

        def fuse(block: nn.Module) -> nn.Module:
            add_step_counts(block)
            return _recast(block, FusedDecodeBlock)

        changed += _replace(model, lambda m: type(m) is TransformerBlock and block_supported(m), fuse)
        if type(model.head) is OutputHead and head_supported(model):
            model.head = _recast(model.head, FusedHead)
            changed += 1
    return changed


def use_directml_ops(model: nn.Module, ops) -> int:
    """Route RMSNorm, RoPE and attention through DirectML's fused kernels where `ops` (a
    `DirectMLOps`) has them; returns how many modules changed."""
    from .kernels.directml_ops import DirectMLAttention, DirectMLRMSNorm

    changed = 0
    if ops.rmsnorm is not None:
        changed += _replace(model, lambda m: type(m) is RMSNorm, lambda m: _recast(m, DirectMLRMSNorm, ops=ops))
    if ops.rotary is not None or ops.attention is not None:
        changed += _replace(model, lambda m: type(m) is Attention, lambda m: _recast(m, DirectMLAttention, ops=ops))
    return changed


def _replace(model: nn.Module, wanted, make) -> int:
    """Replace each module below `model` that `wanted(module)` accepts by `make(module)`."""
    changed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if wanted(child):
                setattr(parent, name, make(child))
                changed += 1
    return changed


def _recast(module: nn.Module, cls: type[nn.Module], **settings) -> nn.Module:
    """A `cls` module (a subclass of module's class that adds only a forward) holding module's
    parameters, buffers, children and attributes, plus `settings`. Its registries are copies,
    so a later replacement inside one does not reach the other."""
    assert cls.__bases__ == (type(module),)
    new = cls.__new__(cls)
    for key, value in vars(module).items():
        vars(new)[key] = value.copy() if isinstance(value, (dict, set)) else value
    for key, value in settings.items():
        setattr(new, key, value)
    return new
