"""Device and precision choice, and the errors a wrong setting gives.

The DirectML case uses a real stand-in package on `sys.path` whose import raises the OSError that
torch-directml raises on Linux (`libd3d12.so`), run in a subprocess so the probe starts fresh.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from runtime.devices import available_devices, resolve_device, resolve_dtype
from runtime.errors import DeviceError

HAS_CUDA = torch.cuda.is_available()


def test_cpu_and_auto():
    cpu = resolve_device("cpu")
    assert cpu.name == "cpu" and cpu.torch_device == torch.device("cpu")
    auto = resolve_device("auto")
    if not HAS_CUDA and "mps" not in available_devices() and "directml" not in available_devices():
        assert auto.name == "cpu"
    assert auto.name.split(":")[0] in ("cpu", "cuda", "mps", "directml")


def test_unknown_device_names_the_supported_ones():
    with pytest.raises(DeviceError) as err:
        resolve_device("tpu")
    message = str(err.value)
    assert "'tpu'" in message
    for name in ("cpu", "cuda", "mps", "directml", "auto"):
        assert name in message


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_cuda_when_absent_says_what_is_available():
    for name in ("cuda", "cuda:0"):
        with pytest.raises(DeviceError) as err:
            resolve_device(name)
        assert "not available" in str(err.value) and "cpu" in str(err.value)


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_index_out_of_range():
    with pytest.raises(DeviceError, match="only"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_directml_unavailable_gives_the_reason():
    with pytest.raises(DeviceError) as err:
        resolve_device("directml")
    message = str(err.value)
    assert "torch_directml" in message and "Windows or WSL 2" in message


def test_precisions():
    cpu = resolve_device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("float16", cpu) == torch.float16
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    assert resolve_dtype("fp32", cpu) == torch.float32
    with pytest.raises(DeviceError) as err:
        resolve_dtype("float8", cpu)
    assert "float8" in str(err.value) and "bfloat16" in str(err.value)


def test_directml_import_error_of_any_kind_means_no_directml(tmp_path):
    package = tmp_path / "torch_directml"
    package.mkdir()
    (package / "__init__.py").write_text(
        'raise OSError("libd3d12.so: cannot open shared object file: No such file or directory")\n'
    )
    script = textwrap.dedent(
        f"""
        import logging, sys
        sys.path.insert(0, {str(tmp_path)!r})
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="LOG %(name)s %(message)s")
        from runtime.devices import resolve_device
        from runtime.errors import DeviceError
        assert resolve_device("auto").name in ("cpu", "mps") or resolve_device("auto").name.startswith("cuda")
        resolve_device("auto")
        try:
            resolve_device("directml")
        except DeviceError as err:
            print("ERROR", err)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ERROR ") and "libd3d12.so" in proc.stdout
    assert proc.stdout.count("\n") == 1  # nothing else printed to stdout
    logged = [line for line in proc.stderr.splitlines() if line.startswith("LOG runtime.devices")]
    assert len(logged) == 1 and "OSError" in logged[0]  # the reason, logged once
