"""The packages are layered: runtime at the bottom, lsp_server on it, quill_cli on both.

    runtime     imports none of lsp_server, quill_cli, pygls, lsprotocol
    lsp_server  may import runtime, never quill_cli
    quill_cli   may import both

Two kinds of check. The import graph between the top-level packages, built with ast from every
.py file of each package: lazy imports inside functions count, and so do `importlib.import_module`
and `__import__` calls with a constant name; relative imports are resolved to the package they
name. And the modules actually loaded when a fresh interpreter imports every module of runtime
(or of lsp_server).
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "lsp_server", "quill_cli")  # bottom first
# What each package must not import, directly or through a function-local or dynamic import.
FORBIDDEN = {
    "runtime": {"lsp_server", "quill_cli", "pygls", "lsprotocol"},
    "lsp_server": {"quill_cli"},
    "quill_cli": set(),
}
# Inside runtime: module (or package) prefix -> prefixes it must not import. A converter reads
# a checkpoint format and writes Quill's; the store (cache, downloads, aliases) calls it, never
# the reverse.
RUNTIME_FORBIDDEN = {
    "runtime.convert": {"runtime.store"},
}


def _package_of(module: str) -> tuple[str, ...]:
    """The package a module's relative imports start from (`a.b.__init__` -> a.b, like `a.b.c`)."""
    return tuple(module.split("."))[:-1]


def _resolve(package: tuple[str, ...], level: int, name: str | None) -> str:
    """`from ..x import y` inside `package` -> the absolute module name."""
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join(base + ((name,) if name else ()))


def _imported_names(tree: ast.AST, module: str = "") -> list[str]:
    """Every module name `tree` (the source of `module`) imports, in source order."""
    package = _package_of(module) if module else ()
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(_resolve(package, node.level, node.module) if node.level else node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                dots = len(first.value) - len(first.value.lstrip("."))
                names.append(_resolve(package, dots, first.value[dots:] or None) if dots else first.value)
    return names


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@functools.lru_cache(maxsize=None)
def _imports_by_package() -> dict[str, list[tuple[str, str]]]:
    """{package: [(file, imported module)]} over every source file of the three packages."""
    found: dict[str, list[tuple[str, str]]] = {}
    for package in PACKAGES:
        sources = sorted((ROOT / package).rglob("*.py"))
        assert sources, f"no sources under {package}/"
        for path in sources:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for name in _imported_names(tree, _module_name(path)):
                found.setdefault(package, []).append((str(path.relative_to(ROOT)), name))
    return found


def _package_graph(imports: dict[str, list[tuple[str, str]]]) -> dict[str, set[str]]:
    """Edges between the three packages (self-imports and third-party packages left out)."""
    return {
        package: {name.split(".")[0] for _, name in pairs if name.split(".")[0] in PACKAGES} - {package}
        for package, pairs in imports.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` as a path that starts and ends at the same node, or []."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return []
        for successor in sorted(graph.get(node, ())):
            found = visit(successor, path + [node])
            if found:
                return found
        done.add(node)
        return []

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return []


@pytest.mark.parametrize("package", ["runtime", "lsp_server"])
def test_each_package_imports_only_what_is_below_it(package):
    pairs = _imports_by_package()[package]
    offenders = [f"{file} imports {name}" for file, name in pairs if name.split(".")[0] in FORBIDDEN[package]]
    assert not offenders, "\n".join(offenders)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_inside_runtime_each_part_imports_only_what_it_may():
    pairs = _imports_by_package()["runtime"]
    checked = 0
    offenders = []
    for file, name in pairs:
        importer = _module_name(ROOT / file)
        for part, forbidden in RUNTIME_FORBIDDEN.items():
            if _within(importer, part):
                checked += 1
                offenders += [f"{file} imports {name}" for bad in forbidden if _within(name, bad)]
    assert checked, "the scan saw no import of the parts it checks"
    assert not offenders, "\n".join(offenders)


def test_the_packages_import_each_other_without_a_cycle():
    imports = _imports_by_package()
    graph = _package_graph(imports)
    cycle = _cycle(graph)
    where = [f"{file} imports {name}" for a, b in zip(cycle, cycle[1:])
             for file, name in imports[a] if name.split(".")[0] == b]
    assert not cycle, " -> ".join(cycle) + "\n" + "\n".join(where)
    # the edges that must exist, so an empty graph (a scan that saw nothing) cannot pass
    assert "runtime" in graph["lsp_server"] and {"runtime", "lsp_server"} <= graph["quill_cli"]


def test_the_scan_sees_lazy_dynamic_and_relative_imports():
    tree = ast.parse(
        "def f():\n    import pygls.server\n    from lsprotocol import types\n"
        "    importlib.import_module('quill_cli.main')\n    __import__('lsp_server')\n"
        "from . import kv_cache\nfrom ..errors import QuillError\nfrom .cache import dir_size\n"
        "import_module('.aliases')\n"
    )
    assert sorted(_imported_names(tree, "runtime.store.download")) == sorted([
        "pygls.server", "lsprotocol", "quill_cli.main", "lsp_server",
        "runtime.store", "runtime.errors", "runtime.store.cache", "runtime.store.aliases",
    ])
    package_init = ast.parse("from .resolve import resolve_model\n")
    assert _imported_names(package_init, "runtime.store.__init__") == ["runtime.store.resolve"]


def test_a_cycle_is_found_and_named():
    assert _cycle({"runtime": {"lsp_server"}, "lsp_server": {"quill_cli"}, "quill_cli": {"runtime"}}) == [
        "lsp_server", "quill_cli", "runtime", "lsp_server"]
    assert _cycle({"lsp_server": {"runtime"}, "quill_cli": {"runtime", "lsp_server"}, "runtime": set()}) == []


def _loaded_modules(package: str, then: str = "") -> list[str]:
    """The modules a fresh interpreter holds after importing every module of `package`."""
    script = (
        "import importlib, json, pkgutil, sys\n"
        f"import {package}\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(m.name)\n"
        f"{then}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_all_of_runtime_loads_no_server_module():
    loaded = _loaded_modules("runtime", then="from runtime import Engine")
    assert "runtime.engine" in loaded and "runtime.model" in loaded
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN["runtime"]]
    assert not bad, bad


def test_importing_all_of_lsp_server_loads_no_cli_module():
    loaded = _loaded_modules("lsp_server")
    assert "lsp_server.server" in loaded and "lsp_server.__main__" in loaded
    assert any(m.startswith("runtime.") for m in loaded)  # the server's own imports did run
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN["lsp_server"]]
    assert not bad, bad
