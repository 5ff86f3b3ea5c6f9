"""The entry point by name: `quantize(model, "int8")` and the other scheme names that the engine,
the benchmarks and the tests pass."""

from __future__ import annotations

from torch import nn

from ..errors import DeviceError
from .float32_int4 import quantize_float32_int4
from .int4 import quantize_int4
from .int8 import quantize_int8


def quantize(model: nn.Module, mode: str) -> nn.Module:
    """Apply a weight-only scheme by name: "int8", "int4" (group 32), "int4-g<N>", or
    "int4-f32head" (int4 with a float32 output head), "int4-rescored" (int4 head whose top-8
    logits are recomputed in float32), "float32-int4" (float32 activations, weights that are
    4-bit already kept as their codes: the CPU default where the model allows it)."""
    if mode == "int8":
        return quantize_int8(model)
    if mode == "int4-f32head":
        return quantize_int4(model, 32, float32_head=True)
    if mode == "int4-rescored":
        return quantize_int4(model, 32, rescore=True)
    if mode == "float32-int4":
        if not quantize_float32_int4(model):
            raise DeviceError("float32-int4 needs weights that are 4-bit already (a Q4_0/Q4_1 GGUF); "
                              "use int4 or float32 for this model.")
        return model
    if mode == "int4" or mode.startswith("int4-g"):
        group = 32 if mode == "int4" else int(mode.removeprefix("int4-g"))
        return quantize_int4(model, group)
    raise DeviceError(f"unknown quantization {mode!r}; use int8, int4 or int4-g<32|64|128|256>.")
