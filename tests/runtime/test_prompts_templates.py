"""Real chat templates render byte-identical to transformers' `apply_chat_template(tokenize=False)`
with the same template, and templates that reach for Python internals are stopped.

Templates: llama.cpp's `models/templates/*.jinja` (Llama 3.1/3.2/3.3, Phi-3.5, Mistral Nemo /
Small 3.2 / Devstral, Qwen2.5/Qwen3 ChatML, SmolLM3), the ones inside the Phi-3, Qwen2 and
SmolLM2 GGUFs, and the `chat_template` strings of the original Llama-2-chat, Llama-3-Instruct and
Mistral-7B-Instruct-v0.1 repos (their tokenizer_config.json; these older ones are not in
llama.cpp's folder).
"""

from __future__ import annotations

import pytest

from runtime.errors import PromptTemplateError
from runtime.prompts import ChatFormat
from runtime.tokenizer.gguf_metadata import read_gguf_metadata
from tests.assets import llama_cpp_models_dir, smollm2_gguf

LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA3_INSTRUCT = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
MISTRAL_V01 = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
JINJA_FILES = (
    "meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct", "meta-llama-Llama-3.3-70B-Instruct",
    "microsoft-Phi-3.5-mini-instruct", "mistralai-Mistral-Nemo-Instruct-2407", "Mistral-Small-3.2-24B-Instruct-2506",
    "unsloth-mistral-Devstral-Small-2507", "Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B", "HuggingFaceTB-SmolLM3-3B",
)  # fmt: skip
SPECIALS = {
    "llama": {"bos_token": "<s>", "eos_token": "</s>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "chatml": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
}
CONVERSATIONS = {
    "system+user": [
        {"role": "system", "content": "You are a careful coding assistant."},
        {"role": "user", "content": "Write a function that reverses a list."},
    ],
    "multi-turn": [
        {"role": "user", "content": "  Hello, who are you?  "},
        {"role": "assistant", "content": "I am an assistant.\n\nI write code."},
        {"role": "user", "content": "Explain `x += 1` in Ελληνικά 🦙\n\tplease"},
    ],
    "single": [{"role": "user", "content": "def f():\n    return 1"}],
}


def _templates() -> dict[str, tuple[str, dict[str, str]]]:
    models = llama_cpp_models_dir()
    out = {
        "llama-2-chat": (LLAMA2_CHAT, SPECIALS["llama"]),
        "llama-3-instruct": (LLAMA3_INSTRUCT, SPECIALS["llama3"]),
        "mistral-v0.1": (MISTRAL_V01, SPECIALS["llama"]),
        "phi-3 (gguf)": (read_gguf_metadata(models / "ggml-vocab-phi-3.gguf")["tokenizer.chat_template"], SPECIALS["llama"]),
        "qwen2 (gguf)": (read_gguf_metadata(models / "ggml-vocab-qwen2.gguf")["tokenizer.chat_template"], SPECIALS["chatml"]),
        "smollm2 (gguf)": (read_gguf_metadata(smollm2_gguf())["tokenizer.chat_template"], SPECIALS["chatml"]),
    }
    for name in JINJA_FILES:
        specials = SPECIALS["llama3"] if "llama" in name.lower() else SPECIALS["chatml" if "Qwen" in name or "SmolLM" in name else "llama"]
        out[name] = ((models / "templates" / f"{name}.jinja").read_text(encoding="utf-8"), specials)
    return out


@pytest.fixture(scope="module")
def templates():
    return _templates()


@pytest.fixture(scope="module")
def reference():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))


def test_templates_render_byte_identical_to_transformers(templates, reference):
    from jinja2.exceptions import TemplateError

    compared = refused = 0
    for name, (source, specials) in templates.items():
        fmt = ChatFormat(template=source, context=specials)
        for conv_name, messages in CONVERSATIONS.items():
            try:
                want = reference.apply_chat_template(
                    messages, chat_template=source, tokenize=False, add_generation_prompt=True, **specials
                )
            except TemplateError:
                with pytest.raises(PromptTemplateError):  # the template refuses this conversation
                    fmt.render(messages)
                refused += 1
                continue
            assert fmt.render(messages) == want, (name, conv_name)
            compared += 1
    print(f"{compared} renders byte-identical over {len(templates)} templates; {refused} refusals raised alike")
    assert compared >= 3 * len(templates) - 4


def test_phi2_builtin_format():
    fmt = ChatFormat.builtin_phi2()
    assert fmt.render([{"role": "user", "content": "Write a haiku."}]) == "Instruct: Write a haiku.\nOutput:"
    two = fmt.render(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    )
    assert two == "Instruct: Hi\nOutput: Hello.\nInstruct: Bye\nOutput:"


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ joiner.__init__.__globals__['os'].system('touch MARKER') }}",
    "{% set x = messages.append({'role': 'user', 'content': 'x'}) %}{{ x }}",
    "{% set ns = namespace(_private=1) %}{{ ns }}",
    "{{ messages.__class__.__base__ }}",
    "{{ raise_exception.__globals__ }}",
    "{{ (messages | first).update({'content': 'changed'}) }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_raise(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fmt = ChatFormat(template=source)
    with pytest.raises(PromptTemplateError):
        fmt.render([{"role": "user", "content": "hi"}])
    assert not (tmp_path / "MARKER").exists()


def test_template_errors_become_prompt_template_errors():
    with pytest.raises(PromptTemplateError, match="roles must alternate"):
        ChatFormat(template=MISTRAL_V01, context=SPECIALS["llama"]).render(
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        )
    with pytest.raises(PromptTemplateError, match="does not parse"):
        ChatFormat(template="{% for %}").render([])
    # transformers' tojson does not HTML-escape, and neither does ours
    assert ChatFormat(template="{{ '<a>&é' | tojson }}").render([]) == '"<a>&é"'
