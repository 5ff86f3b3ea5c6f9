"""float32-int4, the CPU default where a model allows it: float32 activations, and every linear
whose weights are 4-bit already (a Q4_0/Q4_1 GGUF) kept as its codes (`GridInt4Linear`), so the
model answers as in float32 from a quarter of the bytes."""

from __future__ import annotations

import torch
from torch import nn

from .grid_int4 import GridInt4Linear
from .heads import RescoredHead
from .int4 import Int4Linear
from .linears import untie_output


@torch.no_grad()
def quantize_float32_int4(model: nn.Module, group_size: int = 32) -> bool:
    """Keep float32 activations; store every linear whose weights are on a 4-bit grid as its codes
    (`GridInt4Linear`). A tied or off-grid output head becomes an int4 head (bfloat16 kernel) whose
    top-8 logits are recomputed in float32 from the float32 weights (`RescoredHead`). Returns False
    and leaves the model unchanged when some linear of the layers is not on the grid."""
    body = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if isinstance(child, nn.Linear) and child is not getattr(model, "output", None)]
    made = [GridInt4Linear.from_linear(lin, group_size) for _, _, lin in body]
    if not body or any(m is None for m in made):
        return False
    for (parent, name, _), new in zip(body, made):
        setattr(parent, name, new)
    untie_output(model)
    head = model.output
    exact_head = GridInt4Linear.from_linear(head, group_size) if isinstance(head, nn.Linear) else None
    if exact_head is not None:
        model.output = exact_head
    elif isinstance(head, nn.Linear) and head.bias is None and Int4Linear.supports(head, group_size):
        fast = nn.Linear(head.in_features, head.out_features, bias=False, device="meta")
        fast.weight = nn.Parameter(head.weight.detach().bfloat16(), requires_grad=False)
        model.output = RescoredHead(Int4Linear.from_linear(fast, group_size), head.weight.detach(),
                                    head_dtype=torch.bfloat16)
    return True
