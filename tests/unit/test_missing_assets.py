"""A test whose asset or tool is missing skips on a developer's machine and fails under CI
(`tests/assets.py` `unavailable`): a CI run that skipped the real-weight tests would pass without
testing them."""

from __future__ import annotations

import pytest

from tests.assets import unavailable


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_under_ci_a_missing_asset_fails_and_says_how_to_fetch_it(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"the GGUF is missing; CI must have it: `python tests/assets.py`"):
        unavailable("the GGUF is missing")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_elsewhere_it_skips_with_the_reason_and_the_hint(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match=r"node is missing; install Node.js"):
        unavailable("node is missing", "install Node.js")
