"""The Neovim plugin in a real editor: headless Neovim 0.12 (fetched from Debian sid by
`tests/e2e/fetch_nvim.py`) loads `editor-clients/nvim`, talks to the real server running the
SmolLM2 GGUF on CPU, and a Lua scenario (`tests/e2e/nvim/scenarios.lua`) types like a user.

Each scenario writes a JSON record of what the user would see; the assertions are here:
a ghost-text suggestion appears and <Tab> inserts exactly it (built-in
`vim.lsp.inline_completion`, and the plugin's own virtual text used before 0.12), the server
counts the acceptance, the one request sent on entering insert mode while the server still
converts and loads the model brings the ghost text once the model is ready, `:QuillChat`
streams the reply into the chat buffer delta by delta (also for a line range), and
`:QuillHistory` in a restarted Neovim shows the conversation.
The tests skip only where Neovim cannot be fetched or run, and fail there under CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.assets import smollm2_gguf, unavailable
from tests.e2e.fetch_nvim import nvim_path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN = REPO_ROOT / "editor-clients" / "nvim"
SCENARIOS = Path(__file__).resolve().parent / "nvim" / "scenarios.lua"

SOURCE = '''def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
'''
MESSAGE = "What does the function fibonacci do? Answer in one sentence."
MESSAGE2 = "Explain these lines briefly."

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nvim() -> Path:
    path, why = nvim_path()
    if path is None:
        unavailable(why, "`python tests/e2e/fetch_nvim.py` fetches Neovim")
    return path


def server_command() -> list[str]:
    """`quill serve`, the plugin's default command, from this interpreter's environment."""
    script = Path(sys.executable).parent / "quill"
    return [str(script), "serve"] if script.exists() else [sys.executable, "-m", "lsp_server"]


@pytest.fixture(scope="module")
def quill_env(first_use, session_cache, tmp_path_factory) -> dict:
    """One model cache and one history store for the whole module, like one user's machine.

    The model cache is the e2e session's (`first_use` converted the GGUF into it)."""
    root = tmp_path_factory.mktemp("quill-nvim")
    # float32, as the protocol tests: the CPU default rebuilds the 4-bit codes and compiles the
    # decode step at each of the four server starts here (about 20 s each on two cores); it is
    # covered by first use, the status test, the CLI and the VS Code client's Node test.
    settings = {"model": str(smollm2_gguf()), "device": "cpu", "precision": "float32",
                "completion": {"maxTokens": 24}, "chat": {"maxTokens": 48}}
    return editor_env(root, session_cache, settings, SOURCE)


def editor_env(root: Path, cache: Path, settings: dict, source: str) -> dict:
    """The environment of a Neovim run: the server command and settings, the file to edit (with
    `source`) in a workspace under `root`, the model cache, and Neovim's own folders."""
    workspace = root / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "fib.py").write_text(source)
    env = dict(os.environ)
    env.update(
        QUILL_CACHE_DIR=str(cache),
        QUILL_DATA_DIR=str(root / "data"),
        QUILL_E2E_CMD=json.dumps(server_command()),
        QUILL_E2E_SETTINGS=json.dumps(settings),
        QUILL_E2E_FILE=str(workspace / "fib.py"),
        QUILL_E2E_MESSAGE=MESSAGE,
        QUILL_E2E_MESSAGE2=MESSAGE2,
        # Neovim's own state, logs and config stay out of the user's home.
        XDG_CONFIG_HOME=str(root / "xdg-config"),
        XDG_STATE_HOME=str(root / "xdg-state"),
        XDG_DATA_HOME=str(root / "xdg-data"),
        XDG_CACHE_HOME=str(root / "xdg-cache"),
        # The server imports this checkout whatever folder Neovim starts it in.
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    env["QUILL_E2E_WORKSPACE"] = str(workspace)
    return env


def run_scenario(nvim: Path, env: dict, scenario: str, tmp_path: Path, **extra: str) -> dict:
    """Run one Lua scenario in a fresh headless Neovim; return its JSON record."""
    result = tmp_path / f"{scenario}.json"
    env = dict(env, QUILL_E2E_SCENARIO=scenario, QUILL_E2E_RESULT=str(result), **extra)
    cmd = [str(nvim), "--headless", "-u", "NONE", "-i", "NONE", "-n",
           "--cmd", f"set rtp^={PLUGIN}", "-c", f"luafile {SCENARIOS}"]
    proc = subprocess.run(cmd, cwd=env["QUILL_E2E_WORKSPACE"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)
    log = Path(env["XDG_STATE_HOME"]) / "nvim" / "lsp.log"
    context = (f"nvim exit {proc.returncode}\nstderr: {proc.stderr[-2000:]}\n"
               f"lsp.log tail: {log.read_text()[-4000:] if log.exists() else '(none)'}")
    assert result.exists(), f"the scenario wrote no result\n{context}"
    record = json.loads(result.read_text())
    assert record["ok"], f"{record.get('error')}\nmessages: {record.get('messages')}\n{context}"
    # The plugin's settings reached the server as it expects them (no "bad setting" warnings).
    assert not any("Setting `" in m for m in record["messages"]), record["messages"]
    return record


def check_accepted(record: dict) -> None:
    """The suggestion on display was inserted exactly, and the server counted the acceptance."""
    ghost = record["ghost"]["lines"]
    assert "".join(ghost).strip(), f"the ghost text is empty: {record['ghost']}"
    row = record["row"]
    after = record["lines_after"]
    # What the user saw is what they got: the first line continues the typed line, the other
    # lines follow it.
    assert after[row] == record["line_before"] + ghost[0], (after[row], record["line_before"], ghost)
    assert after[row + 1 : row + len(ghost)] == ghost[1:], (after, ghost)
    assert record.get("ghost_after_accept") is None, "the ghost text is gone once accepted"
    assert record["acceptance_after"]["accepted"] == record["accepted_before"] + 1
    assert not any("does not support command" in m for m in record["messages"]), record["messages"]


def test_builtin_inline_completion_ghost_text_and_accept(nvim, quill_env, tmp_path):
    record = run_scenario(nvim, quill_env, "inline", tmp_path)
    assert record["nvim_version"].startswith("0.12"), record["nvim_version"]
    assert record["builtin"] is True, "Neovim 0.12 uses the built-in vim.lsp.inline_completion"
    assert record["line_before"] == "    return fib"
    check_accepted(record)
    # Model loading showed through Neovim's LSP progress (LspProgress / vim.lsp.status()).
    kinds = [p["kind"] for p in record["progress"]]
    assert "begin" in kinds and "end" in kinds, record["progress"]
    assert any(p["lsp_status"] for p in record["progress"] if p["kind"] != "end"), record["progress"]


def test_virtual_text_fallback_ghost_text_and_accept(nvim, quill_env, tmp_path):
    record = run_scenario(nvim, quill_env, "inline", tmp_path, QUILL_E2E_INLINE="virtual_text")
    assert record["builtin"] is False, "the plugin's own ghost text (Neovim before 0.12)"
    check_accepted(record)


def test_ghost_text_asked_for_while_the_model_loads_appears_once_it_is_ready(nvim, tmp_path):
    """From an empty model cache (the server converts the GGUF first), the user enters insert
    mode at the end of an unfinished line before the model is ready and types nothing more."""
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    # float32 as in `quill_env` (no compile of the decode step); the bound is raised so that a slow machine cannot turn a late answer into an empty one.
    settings = {"model": str(smollm2_gguf()), "device": "cpu", "precision": "float32",
                "completion": {"maxTokens": 24, "waitForModelSeconds": 600}}
    env = editor_env(tmp_path / "editor", cache, settings, SOURCE + "    return fib\n")
    record = run_scenario(nvim, env, "inline_while_loading", tmp_path)
    assert record["builtin"] is True, "Neovim 0.12 uses the built-in vim.lsp.inline_completion"
    # Neovim asked once, on entering insert mode, before the load had ended; that answer is the
    # ghost text (no keystroke after it could have asked again).
    assert record["inline_requests"] == [{"load_ended": False, "items": 1}], record["inline_requests"]
    assert record["load_ended"] is True  # Neovim did see the load's progress end, later
    assert record["line_before"] == "    return fib"
    check_accepted(record)
    completions = record["completions_after"]
    assert completions["requested"] == 1 and completions["generated"] == 1, completions
    assert completions["notReady"] == 0, completions


def check_streamed(turn: dict) -> None:
    reply = turn["reply"]
    assert reply and reply.strip(), turn
    assert turn["deltas"] >= 2, f"the reply came in one piece, not streamed: {turn}"
    # Each delta reached the buffer as it arrived (one buffer update per delta, the text only
    # ever growing), before the reply was complete.
    seen = sorted({s["deltas"] for s in turn["snapshots"]})
    assert seen == list(range(1, turn["deltas"] + 1)), (seen, turn["deltas"])
    texts = [s["text"] for s in turn["snapshots"]]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), texts
    assert reply not in texts[0], f"the first update already held the whole reply: {texts[0]!r}"
    body = "\n".join(turn["lines"])
    assert reply in body, (reply, body)


def test_chat_streams_into_a_buffer_and_history_survives_a_restart(nvim, quill_env, tmp_path):
    chat = run_scenario(nvim, quill_env, "chat", tmp_path)
    first, second = chat["turns"]
    check_streamed(first)
    check_streamed(second)
    assert first["lines"][:3] == ["## You", "", MESSAGE]
    assert MESSAGE2 in second["lines"]

    history = run_scenario(nvim, quill_env, "history", tmp_path)
    text = "\n".join(history["history"])
    for content in (MESSAGE, first["reply"], MESSAGE2, second["reply"]):
        assert content in text, (content, text)
    assert text.index(MESSAGE) < text.index(first["reply"]) < text.index(MESSAGE2)
    assert history["status_line"].startswith("Quill: "), history["status_line"]
    assert "SmolLM2-135M-Instruct" in history["status_line"], history["status_line"]
    assert "vim.NIL" not in history["status_line"], history["status_line"]
    assert history["workspace_folder"].endswith("/workspace"), history["workspace_folder"]
    assert history["history_after_clear"] == ["_No chat history for this workspace folder._"]
