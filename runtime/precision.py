"""Precision names, and the policy that turns the one a user picks into a dtype and a weight scheme.

A precision is an activation dtype, and for three names also a weight-only scheme of
`runtime/quantize/`: "int8" and "int4" keep bfloat16 activations and quantize the linear weights;
"float32-int4" keeps float32 activations and stores weights that are 4-bit already as their codes,
exactly. On a CPU, "auto" is float32-int4 where the model's weights allow it, else float32;
elsewhere it is the device's own float dtype (`devices.resolve_dtype`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .devices import DTYPE_ALIASES, Device, resolve_dtype
from .errors import DeviceError

WEIGHT_ONLY_PRECISIONS = ("int8", "int4")  # bfloat16 activations, quantized weights
FLOAT32_INT4 = "float32-int4"
# Every precision a user may pick, in the order that help texts and messages list them.
PRECISION_NAMES = ("auto", "float32", "float16", "bfloat16", *WEIGHT_ONLY_PRECISIONS, FLOAT32_INT4)


@dataclass(frozen=True)
class PrecisionPlan:
    """What a precision name means on one device."""

    dtype: torch.dtype  # of the activations, and of the weights as they are read
    weight_scheme: str | None  # "int8", "int4" or "float32-int4"; None keeps the weights as read
    float32_int4_if_possible: bool  # CPU "auto": float32-int4 where the weights are on a 4-bit grid


def plan_precision(precision: str | None, device: Device) -> PrecisionPlan:
    """The plan for `precision` on `device`; an unknown name raises `DeviceError`."""
    name = (precision or "auto").strip().lower()
    if name not in PRECISION_NAMES and name not in DTYPE_ALIASES:
        raise DeviceError(f"Unknown precision {precision!r}. Use one of: {', '.join(PRECISION_NAMES)}.")
    if name in WEIGHT_ONLY_PRECISIONS:
        activations, scheme = "bfloat16", name
    elif name == FLOAT32_INT4:
        activations, scheme = "float32", name
    else:
        activations, scheme = name, None
    # On a CPU, "auto" keeps float32 arithmetic and stores weights that are 4-bit already (a
    # Q4 GGUF) as their codes: the same answers as float32, read from a quarter of the bytes.
    cpu_auto = device.kind == "cpu" and name == "auto"
    return PrecisionPlan(resolve_dtype(activations, device), scheme, cpu_auto)


def quantize_weights(model: nn.Module, plan: PrecisionPlan, device: Device) -> str | None:
    """Quantize `model`'s linear weights in place as `plan` says; returns the scheme in use, or
    None when the weights stay as they were read."""
    if plan.weight_scheme:
        from .quantize import quantize

        # On a CPU the int4 head's top-8 logits are recomputed in float32: greedy output
        # then stays close to the unquantized model's (benchmarks/README.md).
        rescored = plan.weight_scheme == "int4" and device.kind == "cpu"
        quantize(model, "int4-rescored" if rescored else plan.weight_scheme)
        return plan.weight_scheme
    if plan.float32_int4_if_possible:
        from .quantize import quantize_float32_int4

        return FLOAT32_INT4 if quantize_float32_int4(model) else None
    return None
