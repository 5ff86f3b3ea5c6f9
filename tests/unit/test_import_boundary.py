"""`runtime/` must never import the language server side: pygls, lsprotocol or lsp_server.

Two checks: every import statement in runtime's source (parsed with ast, so lazy imports inside
functions count too), and the modules actually loaded when a fresh interpreter imports every
runtime module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
FORBIDDEN = ("pygls", "lsprotocol", "lsp_server")


def _imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            names += [a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return names


def test_runtime_sources_do_not_import_the_server():
    offenders = []
    sources = sorted(RUNTIME.rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        for name in _imported_names(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(RUNTIME.parent)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_lazy_and_dynamic_imports():
    tree = ast.parse(
        "def f():\n    import pygls.server\n    from lsprotocol import types\n"
        "    importlib.import_module('lsp_server.cli')\n"
    )
    assert _imported_names(tree) == ["pygls.server", "lsprotocol", "lsp_server.cli"]


def test_importing_all_of_runtime_loads_no_server_module():
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import runtime\n"
        "for m in pkgutil.walk_packages(runtime.__path__, 'runtime.'):\n"
        "    importlib.import_module(m.name)\n"
        "from runtime import Engine\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=RUNTIME.parent)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "runtime.engine" in loaded and "runtime.model" in loaded
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert not bad, bad
