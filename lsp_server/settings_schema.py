"""The editors' view of the server settings, generated from `settings.py` (defined once there).

VS Code lists every setting in the extension's `package.json` (`contributes.configuration`): its
type, default, allowed values and description. Those entries are generated here from the
`Settings` dataclasses and their `setting(...)` metadata; the extension derives the tree it sends
to the server from the same keys (`editor-clients/vscode/src/settings.ts`). Settings that only
the extension reads (`quill.serverCommand`) are kept as they are.

    python -m lsp_server.settings_schema            # rewrite package.json's settings
    python -m lsp_server.settings_schema --check    # exit 1 if package.json is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from lsp_server.protocol import camel
from lsp_server.settings import Settings

SECTION = "quill"
CLIENT_ONLY = ("quill.serverCommand",)  # read by the extension, never sent to the server
PACKAGE_JSON = Path(__file__).resolve().parents[1] / "editor-clients" / "vscode" / "package.json"
_JSON_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}


def _plain(value: Any) -> Any:
    """60.0 -> 60, as a hand-written schema would say it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def leaf_fields(cls: type = Settings, prefix: str = SECTION) -> Iterator[tuple[str, dataclasses.Field]]:
    """(dotted camelCase key, field) of every setting, nested dataclasses flattened."""
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{camel(f.name)}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from leaf_fields(type(default), key)
        else:
            yield key, f


def property_schema(f: dataclasses.Field) -> dict:
    """One `contributes.configuration.properties` entry."""
    optional = f.type.startswith("Optional[")
    kind = _JSON_TYPES[f.type.removeprefix("Optional[").removesuffix("]")]
    meta = f.metadata
    entry: dict[str, Any] = {"type": [kind, "null"] if optional else kind, "default": _plain(f.default)}
    if meta.get("choices"):
        entry["enum"] = list(meta["choices"])
    for bound in ("minimum", "maximum"):
        if meta.get(bound) is not None:
            entry[bound] = _plain(meta[bound])
    entry["description"] = meta["doc"]
    return entry


def properties(existing: dict) -> dict:
    """The settings' entries: the extension's own ones from `existing`, then the server's."""
    out = {key: existing[key] for key in CLIENT_ONLY if key in existing}
    out.update((key, property_schema(f)) for key, f in leaf_fields())
    return out


def updated_package(package: dict) -> dict:
    configuration = package["contributes"]["configuration"]
    configuration["properties"] = properties(configuration.get("properties", {}))
    return package


def render(package: dict) -> str:
    return json.dumps(package, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsp_server.settings_schema", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether package.json is up to date")
    parser.add_argument("--package", type=Path, default=PACKAGE_JSON)
    args = parser.parse_args(argv)
    current = args.package.read_text(encoding="utf-8")
    wanted = render(updated_package(json.loads(current)))
    if current == wanted:
        return 0
    if args.check:
        sys.stderr.write(f"{args.package} lists other settings than lsp_server/settings.py; "
                         "run `python -m lsp_server.settings_schema` to update it\n")
        return 1
    args.package.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
