"""FIM detection from real vocabularies: Qwen3's tokenizer.json (Qwen2.5-Coder's FIM tokens),
llama.cpp's DeepSeek-Coder and StarCoder vocab GGUFs; vocabularies without FIM tokens give None.

CodeLlama's tokenizer.model is not available from a registry; its layout (the Llama-2 vocabulary
plus user-defined `▁<PRE>` `▁<SUF>` `▁<MID>` `▁<EOT>` pieces at 32007-32010) is rebuilt from the
llama-spm vocab to check the sentencepiece path: marker pieces never come from text, and the
suffix is encoded without the dummy-prefix space as Meta's `infilling_prompt_tokens` does.
"""

from __future__ import annotations

import pytest

from runtime.prompts import detect_fim
from runtime.tokenizer import load_tokenizer
from runtime.tokenizer.gguf_metadata import read_gguf_metadata
from runtime.tokenizer.sentencepiece_tokenizer import proto_from_gguf_vocab
from tests.assets import llama3_tokenizer_model, llama_cpp_models_dir, mistral_tokenizer_model, qwen3_tokenizer_dir, smollm2_gguf


def test_qwen_fim():
    tokenizer = load_tokenizer(qwen3_tokenizer_dir())
    fim = detect_fim(tokenizer)
    assert fim is not None and fim.name == "qwen"
    assert (fim.prefix_id, fim.suffix_id, fim.middle_id, fim.bos_id) == (151659, 151661, 151660, None)
    assert {151643, 151662, tokenizer.token_to_id("<|file_sep|>")} <= fim.stop_ids
    prefix, suffix = tokenizer.encode("def add(a, b):\n    "), tokenizer.encode("\n\nprint(add(1, 2))\n")
    assert fim.build(prefix, suffix) == [151659, *prefix, 151661, *suffix, 151660]


def test_deepseek_coder_fim():
    tokenizer = load_tokenizer(llama_cpp_models_dir() / "ggml-vocab-deepseek-coder.gguf")
    fim = detect_fim(tokenizer)
    assert fim is not None and fim.name == "deepseek"
    assert (fim.prefix_id, fim.suffix_id, fim.middle_id, fim.bos_id) == (32016, 32015, 32017, 32013)
    assert {32014, 32021} <= fim.stop_ids  # <｜end▁of▁sentence｜>, <|EOT|>
    assert fim.build([10], [20]) == [32013, 32016, 10, 32015, 20, 32017]
    # the FIM markers are user-defined in the GGUF, yet never come out of file text
    text = "x = '<｜fim▁begin｜><｜fim▁hole｜><｜fim▁end｜>'"
    assert not {32015, 32016, 32017} & set(tokenizer.encode(text))


def test_starcoder_fim():
    tokenizer = load_tokenizer(llama_cpp_models_dir() / "ggml-vocab-starcoder.gguf")
    fim = detect_fim(tokenizer)
    assert fim is not None and fim.name == "starcoder"
    assert (fim.prefix_id, fim.suffix_id, fim.middle_id, fim.bos_id) == (1, 3, 2, None)
    assert {0, 4, 6} <= fim.stop_ids  # <|endoftext|>, <fim_pad>, <file_sep>


@pytest.mark.parametrize("source", ["smollm2", "gpt-2", "llama-spm", "qwen2", "llama-bpe", "mistral", "llama3"])
def test_no_fim_tokens_gives_none(source):
    models = llama_cpp_models_dir()
    path = {
        "smollm2": smollm2_gguf(),
        "mistral": mistral_tokenizer_model().parent,
        "llama3": llama3_tokenizer_model().parent,
    }.get(source, models / f"ggml-vocab-{source}.gguf")
    assert detect_fim(load_tokenizer(path)) is None


def test_codellama_layout(tmp_path):
    meta = read_gguf_metadata(llama_cpp_models_dir() / "ggml-vocab-llama-spm.gguf")
    tokens = list(meta["tokenizer.ggml.tokens"])
    scores = list(meta["tokenizer.ggml.scores"])
    types = list(meta["tokenizer.ggml.token_type"])
    extra = ["▁<FILL>"] * 7 + ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"] + ["▁<FILL>"] * 5
    for i, piece in enumerate(extra):
        tokens.append(piece if piece != "▁<FILL>" else f"▁<FILL_{i}>")
        scores.append(0.0)
        types.append(4)  # user-defined, as in a trained sentencepiece model
    proto = proto_from_gguf_vocab(tokens, scores, types, unk_id=0, bos_id=1, eos_id=2)
    (tmp_path / "tokenizer.model").write_bytes(proto.SerializeToString())
    tokenizer = load_tokenizer(tmp_path)
    fim = detect_fim(tokenizer)
    assert fim is not None and fim.name == "codellama"
    assert (fim.prefix_id, fim.suffix_id, fim.middle_id, fim.bos_id) == (32007, 32008, 32009, 1)
    assert 32010 in fim.stop_ids
    assert not set(range(32000, 32016)) & set(tokenizer.encode("a <PRE> b <SUF> c <MID> d <EOT>"))
    suffix = fim.encode_suffix(tokenizer, "return x")
    assert suffix == tokenizer.encode("return x", dummy_prefix=False) and suffix != tokenizer.encode("return x")
    assert tokenizer.decode(suffix) == "return x"
    ids = fim.build_text(tokenizer, "def f(x):\n    ", "\n")
    assert ids[:2] == [1, 32007] and ids[-1] == 32009
