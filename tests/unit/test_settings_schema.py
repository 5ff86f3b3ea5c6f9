"""The VS Code extension's settings are generated from `lsp_server/settings.py` and stay in step.

package.json's `contributes.configuration.properties` must be exactly what
`python -m lsp_server.settings_schema` writes: every server setting with its default, allowed
values and description from the dataclasses, plus the extension's own `quill.serverCommand`.
"""

from __future__ import annotations

import json

from lsp_server import settings_schema
from lsp_server.settings import PRECISIONS, Settings, merge
from runtime.devices import DEVICE_NAMES
from runtime.precision import PRECISION_NAMES


def _properties() -> dict:
    package = json.loads(settings_schema.PACKAGE_JSON.read_text(encoding="utf-8"))
    return package["contributes"]["configuration"]["properties"]


def test_package_json_is_generated_from_the_settings():
    assert settings_schema.main(["--check"]) == 0, "run `python -m lsp_server.settings_schema`"


def test_every_server_setting_is_listed_with_its_default():
    props = _properties()
    keys = [key for key, _ in settings_schema.leaf_fields()]
    assert "quill.completion.stopEarly" in keys and "quill.chat.topK" in keys
    assert list(props) == ["quill.serverCommand", *keys]
    for key, f in settings_schema.leaf_fields():
        assert props[key]["default"] == f.default, key
        assert props[key]["description"], key


def test_name_lists_come_from_the_runtime():
    props = _properties()
    assert PRECISIONS == PRECISION_NAMES
    assert props["quill.precision"]["enum"] == list(PRECISION_NAMES)
    assert props["quill.device"]["enum"] == [n for n in DEVICE_NAMES if ":" not in n]


def test_ranges_in_the_schema_are_the_ones_the_server_enforces():
    props = _properties()
    low = props["quill.completion.maxTokens"]["minimum"]
    high = props["quill.completion.maxTokens"]["maximum"]
    for value, ok in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
        merged, problems = merge(Settings(), {"completion": {"maxTokens": value}})
        assert (merged.completion.max_tokens == value) is ok and (not problems) is ok, value
    _, problems = merge(Settings(), {"precision": "int3"})
    assert problems == ["Setting `quill.precision` = 'int3' is not valid (expected one of "
                        + ", ".join(PRECISION_NAMES) + "); using 'auto'."]
