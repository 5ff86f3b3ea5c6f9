"""The precision policy (`runtime/precision.py`): what each name a user may pick means on a device."""

from __future__ import annotations

import pytest
import torch

from runtime.devices import PRECISIONS as FLOAT_DTYPES
from runtime.devices import Device
from runtime.errors import DeviceError
from runtime.precision import PRECISION_NAMES, plan_precision

CPU = Device("cpu", torch.device("cpu"), "cpu")
MPS = Device("mps", torch.device("cpu"), "mps")  # resolve_dtype reads only the kind


def test_the_names_are_auto_the_float_dtypes_and_the_weight_schemes():
    assert PRECISION_NAMES[0] == "auto"
    assert len(set(PRECISION_NAMES)) == len(PRECISION_NAMES)
    assert set(PRECISION_NAMES) == {"auto", *FLOAT_DTYPES, "int8", "int4", "float32-int4"}


@pytest.mark.parametrize("name", PRECISION_NAMES)
def test_every_name_has_a_plan_on_a_cpu(name):
    plan = plan_precision(name, CPU)
    assert plan.dtype in FLOAT_DTYPES.values()


@pytest.mark.parametrize(
    "name, dtype, scheme",
    [
        ("int8", torch.bfloat16, "int8"),
        (" INT4 ", torch.bfloat16, "int4"),
        ("float32-int4", torch.float32, "float32-int4"),
        ("bf16", torch.bfloat16, None),
        ("float16", torch.float16, None),
    ],
)
def test_weight_schemes_fix_their_activation_dtype(name, dtype, scheme):
    plan = plan_precision(name, CPU)
    assert (plan.dtype, plan.weight_scheme, plan.float32_int4_if_possible) == (dtype, scheme, False)


def test_auto_tries_float32_int4_on_a_cpu_only():
    on_cpu, on_mps = plan_precision(None, CPU), plan_precision("Auto", MPS)
    assert (on_cpu.dtype, on_cpu.weight_scheme, on_cpu.float32_int4_if_possible) == (torch.float32, None, True)
    assert (on_mps.dtype, on_mps.weight_scheme, on_mps.float32_int4_if_possible) == (torch.float16, None, False)


def test_an_unknown_name_is_refused():
    with pytest.raises(DeviceError, match="Unknown precision 'int3'"):
        plan_precision("int3", CPU)
