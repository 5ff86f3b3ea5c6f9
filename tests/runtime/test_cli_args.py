"""The commands' arguments, including the DirectML sample's spellings."""

from __future__ import annotations

import pytest

from quill_cli.main import build_parser


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


SERVER_ARGS = ["--model", "phi-3", "--device", "cpu", "--precision", "int8", "--max_context_length", "900",
               "--disable_history", "--data_dir", "/d", "--cache_dir", "/c"]


def test_python_m_lsp_server_and_quill_serve_take_the_same_options():
    from lsp_server.__main__ import build_parser as server_parser

    served = vars(build_parser().parse_args(["serve", *SERVER_ARGS]))
    del served["command"], served["handler"]
    assert served == vars(server_parser().parse_args(SERVER_ARGS))
    assert served["max_context_length"] == 900 and served["disable_history"] is True
    assert served["hf_model"] is None and served["checkpoint_path"] is None


@pytest.mark.parametrize("command", [["try"], ["chat"], ["complete", "f.py", "--line", "0", "--character", "0"]])
def test_client_commands_pass_their_server_options_on(command):
    from lsp_server.__main__ import build_parser as server_parser
    from quill_cli.lsp_session import server_flags

    args = build_parser().parse_args([*command, *SERVER_ARGS])
    passed = server_parser().parse_args(server_flags(args))
    assert vars(passed) == vars(server_parser().parse_args(SERVER_ARGS))
    assert server_flags(build_parser().parse_args(command)) == []


def test_cache_dir_comes_from_the_environment_or_the_platform(monkeypatch, tmp_path):
    from runtime.store import default_cache_dir

    monkeypatch.setenv("QUILL_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("QUILL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "quill"
