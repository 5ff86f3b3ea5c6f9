"""The runtime commands' arguments, including the DirectML sample's spellings."""

from __future__ import annotations

import pytest

from lsp_server.cli import build_parser


@pytest.mark.parametrize("flag", ["--model", "--hf_model", "--checkpoint_path"])
def test_model_flag_spellings(flag):
    args = build_parser().parse_args(["generate", flag, "phi-3", "--prompt", "hi"])
    assert args.model == "phi-3" and args.handler.__name__ == "cmd_generate"


def test_generate_defaults_and_options():
    args = build_parser().parse_args(
        ["generate", "--prompt", "x", "--max_new_tokens", "7", "--temperature", "0.5",
         "--precision", "float16", "--device", "cpu", "--top_k", "5"])
    assert (args.model, args.max_tokens, args.temperature, args.precision, args.device, args.top_k) == (
        "smollm2", 7, 0.5, "float16", "cpu", 5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--prompt", "x", "--precision", "int3"])


def test_pull_models_rm():
    parser = build_parser()
    assert parser.parse_args(["pull"]).model == "smollm2"
    assert parser.parse_args(["pull", "mistral", "--cache-dir", "/c"]).cache_dir == "/c"
    assert parser.parse_args(["models"]).handler.__name__ == "cmd_models"
    assert parser.parse_args(["rm", "phi-2"]).handler.__name__ == "cmd_rm"


def test_cache_dir_comes_from_the_environment_or_the_platform(monkeypatch, tmp_path):
    from runtime.store import default_cache_dir

    monkeypatch.setenv("QUILL_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("QUILL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "quill"
