"""Choosing the device and the precision.

`auto` prefers DirectML (Windows / WSL 2 GPUs through `torch_directml`), then CUDA, then Apple's
MPS, then the CPU. `torch_directml` can fail to import in ways other than ImportError (on Linux
without WSL it raises `OSError: libd3d12.so ...`), so any exception on import means "no DirectML";
the reason is logged once and repeated in the error when `directml` is asked for explicitly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import torch

from .errors import DeviceError

log = logging.getLogger(__name__)

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps", "directml")
PRECISIONS = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}


@dataclass(frozen=True)
class Device:
    name: str  # what users see: "cpu", "cuda:0", "mps", "directml:0"
    torch_device: torch.device
    kind: str  # "cpu" | "cuda" | "mps" | "directml"


@lru_cache(maxsize=1)
def directml_status() -> tuple[object | None, str]:
    """(torch_directml module or None, why not). Probed once; the reason is logged once."""
    try:
        import torch_directml
    except Exception as err:  # ImportError, or OSError from a missing libd3d12.so, ...
        reason = f"torch_directml cannot be imported ({type(err).__name__}: {err})"
        log.info("DirectML not used: %s", reason)
        return None, reason
    try:
        count = torch_directml.device_count()
    except Exception as err:
        reason = f"torch_directml found no device ({type(err).__name__}: {err})"
        log.info("DirectML not used: %s", reason)
        return None, reason
    if count < 1:
        log.info("DirectML not used: torch_directml sees no device")
        return None, "torch_directml sees no DirectX 12 device"
    return torch_directml, ""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    if directml_status()[0] is not None:
        names.append("directml")
    return names


def _unavailable(name: str, why: str) -> DeviceError:
    return DeviceError(
        f"Device {name!r} is not available: {why}. Available here: {', '.join(available_devices())} "
        "(or 'auto')."
    )


def resolve_device(name: str | None = "auto") -> Device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        if directml_status()[0] is not None:
            return resolve_device("directml")
        if torch.cuda.is_available():
            return resolve_device("cuda")
        return resolve_device("mps") if _mps_available() else resolve_device("cpu")
    if name == "cpu":
        return Device("cpu", torch.device("cpu"), "cpu")
    if name == "cuda" or name.startswith("cuda:"):
        return _cuda(name)
    if name == "mps":
        if not _mps_available():
            raise _unavailable(name, "this PyTorch build or machine has no Apple MPS support")
        return Device("mps", torch.device("mps"), "mps")
    if name in ("directml", "dml") or name.startswith("directml:"):
        return _directml(name)
    raise DeviceError(f"Unknown device {name!r}. Use one of: {', '.join(DEVICE_NAMES)}.")


def _cuda(name: str) -> Device:
    if not torch.cuda.is_available():
        raise _unavailable(name, "PyTorch sees no CUDA GPU (a CPU-only build, or no driver)")
    index_text = name.partition(":")[2] or str(torch.cuda.current_device())
    if not index_text.isdigit():
        raise DeviceError(f"Unknown device {name!r}. Use one of: {', '.join(DEVICE_NAMES)}.")
    index, count = int(index_text), torch.cuda.device_count()
    if index >= count:
        raise _unavailable(name, f"there {'is' if count == 1 else 'are'} only {count} CUDA device(s)")
    return Device(f"cuda:{index}", torch.device("cuda", index), "cuda")


def _directml(name: str) -> Device:
    module, why = directml_status()
    if module is None:
        raise _unavailable(name, why + "; DirectML needs Windows or WSL 2 and `pip install quill-lsp[directml]`")
    index_text = name.partition(":")[2] or str(module.default_device())
    if not index_text.isdigit() or int(index_text) >= module.device_count():
        raise _unavailable(name, f"torch_directml has {module.device_count()} device(s)")
    index = int(index_text)
    return Device(f"directml:{index}", torch.device(module.device(index)), "directml")


def resolve_dtype(precision: str | None, device: Device) -> torch.dtype:
    """'auto': bfloat16 on CUDA (float16 where bf16 is unsupported), float16 on DirectML and MPS,
    float32 on the CPU."""
    precision = (precision or "auto").strip().lower()
    precision = DTYPE_ALIASES.get(precision, precision)
    if precision == "auto":
        if device.kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.kind in ("directml", "mps") else torch.float32
    if precision not in PRECISIONS:
        raise DeviceError(
            f"Unknown activation dtype {precision!r}. Use one of: auto, {', '.join(PRECISIONS)}."
        )
    return PRECISIONS[precision]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
