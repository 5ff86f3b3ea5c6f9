"""Conversions in real subprocesses: a SIGKILL half-way leaves nothing loadable and the next run
converts cleanly; two processes converting the same model end with one good checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.checkpoint import load_tensors, read_manifest
from runtime.config import ModelConfig
from runtime.errors import CheckpointError
from runtime.store import cached_checkpoint, list_models, resolve_model
from runtime.store.cache import local_model_name
from runtime.weight_map import native_names
from tests.assets import smollm2_gguf
from tests.runtime.test_store_fixtures import python_env

# The child announces itself, waits for a line on stdin (so two children start together), then
# resolves the model and reports whether it did the conversion itself.
CHILD = r"""
import json, sys
from runtime.store import resolve_model
ref, cache = sys.argv[1], sys.argv[2]
phases = []
print("ready", flush=True)
sys.stdin.readline()
path = resolve_model(ref, cache_dir=cache, progress=lambda p, d, t: phases.append(p))
print(json.dumps({"path": str(path), "converted": "convert" in phases}), flush=True)
"""


def _spawn(ref: str, cache: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, ref, str(cache)], env=python_env(), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _partial_weights(models: Path, name: str) -> Path | None:
    for tmp in models.glob(f".tmp-{name}-*"):
        weights = tmp / "model.safetensors"
        if weights.is_file() and weights.stat().st_size > 0:
            return weights
    return None


def test_sigkill_half_way_leaves_nothing_loadable_then_converts_cleanly(tmp_path):
    gguf, cache = smollm2_gguf(), tmp_path / "cache"
    name = local_model_name(gguf)
    target = cache / "models" / name
    proc = _spawn(str(gguf), cache)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 240
    partial = None
    while partial is None and proc.poll() is None and time.monotonic() < deadline:
        partial = _partial_weights(cache / "models", name)
        time.sleep(0.005)  # waiting on the child's disk writes; there is nothing to await
    assert partial is not None, "the conversion never reached its write: " + proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    print(f"killed while {partial.parent.name}/model.safetensors had "
          f"{partial.stat().st_size / 1e6:.0f} MB of ~540 MB")

    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    assert cached_checkpoint(str(gguf), cache) is None
    assert list_models(cache) == []
    with pytest.raises(CheckpointError):
        read_manifest(partial.parent)  # the partial folder is not a checkpoint either

    again = resolve_model(str(gguf), cache_dir=cache)
    assert again == target
    manifest = read_manifest(again)
    tensors = load_tensors(again, manifest)
    assert sorted(tensors) == sorted(native_names(ModelConfig.from_hf_config(manifest.config)))
    assert list((cache / "models").glob(".tmp-*")) == [], "the killed run's folder was not cleaned"
    print(f"second run: {len(tensors)} tensors, partial folder removed")


def test_two_processes_converting_the_same_model_share_one_result(tmp_path):
    gguf, cache = smollm2_gguf(), tmp_path / "cache"
    procs = [_spawn(str(gguf), cache) for _ in range(2)]
    for proc in procs:  # release both at once
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    print("results:", results)
    assert results[0]["path"] == results[1]["path"]
    assert sorted(r["converted"] for r in results) == [False, True]
    ckpt = Path(results[0]["path"])
    read_manifest(ckpt)
    assert [p.name for p in (cache / "models").iterdir()] == [ckpt.name]


def test_cleaning_a_killed_conversion_spares_other_models(tmp_path):
    from runtime.store.cache import clean_partials

    models = tmp_path / "models"
    leftovers_of_foo = [".tmp-foo-1a2b3c4d", ".tmp-foo-rm"]
    others = [".tmp-foo-bar-1a2b3c4d", ".tmp-foo-bar-rm", ".tmp-foo-abcdef12-00112233", "foo", "foo-bar"]
    for name in leftovers_of_foo + others:
        (models / name).mkdir(parents=True)
    clean_partials(models, "foo")
    assert sorted(p.name for p in models.iterdir()) == sorted(others)
