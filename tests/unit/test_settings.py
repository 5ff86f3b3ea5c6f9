"""Settings: defaults, camelCase merging, bad values reported and replaced by defaults."""

from types import SimpleNamespace

from lsp_server.settings import Settings, from_cli, merge, to_dict


def test_defaults_match_the_design():
    s = Settings()
    assert (s.model, s.device, s.precision, s.max_context_length, s.history) == ("smollm2", "auto", "auto", 1500, True)
    assert s.checkpoint_path is None
    assert to_dict(s)["completion"].keys() == {"maxTokens", "contextTokens", "multiline", "waitForModelSeconds", "stopEarly", "promptLookup"}
    assert to_dict(s)["chat"].keys() == {"maxTokens", "temperature", "topK"}


def test_merge_reads_camel_case_nested_values():
    s, problems = merge(Settings(), {"maxContextLength": 800, "chat": {"topK": 5, "temperature": 1}, "history": False})
    assert problems == []
    assert s.max_context_length == 800 and s.chat.top_k == 5 and s.chat.temperature == 1.0 and not s.history
    assert isinstance(s.chat.temperature, float)
    assert s.completion == Settings().completion  # untouched subtree keeps its defaults


def test_bad_values_give_a_message_and_the_default():
    raw = {"maxContextLength": "lots", "device": "gpu9", "precision": "int3", "chat": {"maxTokens": 0}, "history": "yes"}
    s, problems = merge(Settings(), raw)
    assert s == Settings()
    assert len(problems) == 5
    assert any("quill.maxContextLength" in p and "1500" in p for p in problems)
    assert any("quill.device" in p and "cuda:N" in p for p in problems)
    assert any("quill.chat.maxTokens" in p for p in problems)


def test_a_non_object_section_is_ignored_with_a_message():
    s, problems = merge(Settings(), ["model"])
    assert s == Settings() and "should be an object" in problems[0]


def test_checkpoint_path_wins_and_changes_the_load_key():
    s, _ = merge(Settings(), {"checkpointPath": "/models/x", "device": "cuda:1"})
    assert s.model_ref == "/models/x"
    assert s.load_key() != Settings().load_key()
    same, _ = merge(Settings(), {"chat": {"maxTokens": 9}})
    assert same.load_key() == Settings().load_key()


def test_cli_flags_map_to_settings():
    args = SimpleNamespace(model=None, hf_model="HuggingFaceTB/SmolLM2-135M-Instruct", checkpoint_path=None,
                           device="cpu", precision="float32", max_context_length=900, disable_history=True,
                           data_dir=None, cache_dir=None)
    raw = from_cli(args)
    assert raw == {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "device": "cpu", "precision": "float32",
                   "maxContextLength": 900, "history": False}
    s, problems = merge(Settings(), raw)
    assert problems == [] and not s.history and s.model == args.hf_model
