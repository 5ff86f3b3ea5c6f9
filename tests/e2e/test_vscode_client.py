"""The VS Code extension in CI: it type-checks and builds against the pinned `@types/vscode`
(`npm ci && npm run compile`), packages into a `.vsix`, and its Node test drives the real server
over stdio through vscode-languageserver-protocol (an inline completion and a streamed chat).

`npm ci` runs here when `node_modules` is missing or older than `package-lock.json`, so nothing
from npm is committed. Where `node`/`npm` are not installed the tests skip, and fail under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.assets import smollm2_gguf, unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION = REPO_ROOT / "editor-clients" / "vscode"

pytestmark = pytest.mark.slow


def _run(cmd: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=EXTENSION, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def built() -> Path:
    """`npm ci` (when needed) and `npm run compile`; returns the extension folder."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed to build the VS Code extension and run its Node test",
                    "install Node.js and npm")
    stamp = EXTENSION / "node_modules" / ".package-lock.json"
    lock = EXTENSION / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        _run(["npm", "ci", "--no-audit", "--no-fund"])
    _run(["npm", "run", "compile"])
    return EXTENSION


def test_compiles_against_pinned_vscode_types(built: Path):
    lock = json.loads((built / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@types/vscode"]["version"]
    engine = json.loads((built / "package.json").read_text())["engines"]["vscode"]
    # vsce refuses types newer than the engine: the extension must not use API it cannot rely on.
    assert engine.lstrip("^") == pinned, (engine, pinned)
    for name in ("extension", "chat", "statusBar", "settings", "settingKeys", "protocol"):
        assert (built / "out" / "src" / f"{name}.js").exists(), name


def test_packages_a_vsix(built: Path, tmp_path: Path):
    target = tmp_path / "quill.vsix"
    _run(["npx", "--no-install", "vsce", "package", "--out", str(target)], timeout=300)
    with zipfile.ZipFile(target) as vsix:
        names = set(vsix.namelist())
    assert "extension/out/src/extension.js" in names
    assert "extension/node_modules/vscode-languageclient/package.json" in names  # runtime dependency shipped
    assert not any(n.startswith("extension/src/") or n.startswith("extension/out/test/") for n in names)


def test_node_protocol_test_against_the_real_server(built: Path, tmp_path: Path, first_use, session_cache):
    # first_use converted the GGUF into the e2e session's cache: the server only loads it.
    env = dict(os.environ)
    env.update(
        QUILL_TEST_MODEL=str(smollm2_gguf()),
        QUILL_SERVER_CMD=json.dumps([sys.executable, "-m", "lsp_server"]),
        QUILL_CACHE_DIR=str(session_cache),
        QUILL_DATA_DIR=str(tmp_path / "data"),
        # The server runs from the extension folder: make sure it imports this checkout.
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    proc = _run(["node", "--test", "--test-reporter=tap", "out/test/"], env=env, timeout=900)
    report = proc.stdout
    # Every test ran (a missing QUILL_TEST_MODEL would skip the two against the server) and
    # passed: those two and the two of the settings tree derived from package.json.
    assert "# pass 4" in report and "# fail 0" in report and "# skipped 0" in report, report[-4000:]
