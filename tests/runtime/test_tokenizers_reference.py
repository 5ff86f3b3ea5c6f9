"""llama.cpp's reference tokenizations (`models/ggml-vocab-*.gguf.inp/.out`, 47 cases each) for the
seven vocabularies of the supported families (plus six more byte-level ones, GGUF only), three ways:

1. straight from the vocab GGUF (`load_tokenizer(path.gguf)`);
2. from the files `export_gguf_tokenizer` writes (what a converted GGUF checkpoint carries);
3. for byte-level vocabularies, the exported `tokenizer.json` loaded by Hugging Face `tokenizers`,
   which proves the file is a faithful, standard tokenizer.json and not only readable by Quill.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.tokenizer import export_gguf_tokenizer, load_tokenizer
from tests.assets import llama_cpp_models_dir

VOCABS = ("llama-spm", "phi-3", "llama-bpe", "gpt-2", "qwen2", "deepseek-coder", "starcoder")
# More byte-level vocabularies in the same folder whose pre-tokenizers Quill knows (GGUF path only).
EXTRA_VOCABS = ("mpt", "falcon", "refact", "command-r", "deepseek-llm", "qwen35")
SEPARATOR = "\n__ggml_vocab_test__\n"


def reference_cases(models: Path, name: str) -> list[tuple[str, list[int]]]:
    inputs = (models / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split(SEPARATOR)
    outputs = (models / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    assert len(inputs) == len(outputs) >= 47
    return [(text, [int(x) for x in line.split()]) for text, line in zip(inputs, outputs)]


def _mismatches(encode, cases):
    return [(text, encode(text), want) for text, want in cases if encode(text) != want]


@pytest.fixture(scope="module")
def models() -> Path:
    return llama_cpp_models_dir()


@pytest.mark.parametrize("name", VOCABS + EXTRA_VOCABS)
def test_gguf_vocab_matches_llama_cpp(models, name):
    cases = reference_cases(models, name)
    tokenizer = load_tokenizer(models / f"ggml-vocab-{name}.gguf")
    bad = _mismatches(tokenizer.encode, cases)
    print(f"{name}: {len(cases) - len(bad)}/{len(cases)} llama.cpp cases (GGUF)")
    assert not bad, bad[:3]


@pytest.mark.parametrize("name", VOCABS)
def test_exported_files_match_llama_cpp(models, name, tmp_path):
    cases = reference_cases(models, name)
    written = export_gguf_tokenizer(models / f"ggml-vocab-{name}.gguf", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)
    tokenizer = load_tokenizer(tmp_path)
    bad = _mismatches(tokenizer.encode, cases)
    print(f"{name}: {len(cases) - len(bad)}/{len(cases)} llama.cpp cases (exported {written})")
    assert not bad, bad[:3]
    if "tokenizer.json" in written:
        from tokenizers import Tokenizer as HFTokenizer

        reference = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
        hf_bad = _mismatches(lambda t: reference.encode(t, add_special_tokens=False).ids, cases)
        print(f"{name}: {len(cases) - len(hf_bad)}/{len(cases)} cases with HF tokenizers on the export")
        assert not hf_bad, hf_bad[:3]


@pytest.mark.parametrize("name", VOCABS)
def test_decode_inverts_encode(models, name):
    # For sentencepiece this also checks that the dummy-prefix space is dropped again.
    tokenizer = load_tokenizer(models / f"ggml-vocab-{name}.gguf")
    for text, want in reference_cases(models, name):
        assert tokenizer.decode(want) == text


def test_special_ids_and_bos(models):
    llama3 = load_tokenizer(models / "ggml-vocab-llama-bpe.gguf")
    assert (llama3.bos_id, llama3.eos_id, llama3.add_bos) == (128000, 128001, True)
    assert llama3.special_tokens["<|eot_id|>"] == 128009 and 128009 in llama3.stop_ids
    phi3 = load_tokenizer(models / "ggml-vocab-phi-3.gguf")
    assert {phi3.special_tokens[n] for n in ("<|end|>", "<|user|>", "<|assistant|>")} == {32007, 32010, 32001}
    assert {32000, 32007} <= phi3.stop_ids
    qwen2 = load_tokenizer(models / "ggml-vocab-qwen2.gguf")
    assert qwen2.add_bos is False and {151643, 151645} <= qwen2.stop_ids
    deepseek = load_tokenizer(models / "ggml-vocab-deepseek-coder.gguf")
    assert (deepseek.bos_id, deepseek.add_bos) == (32013, True)
    assert deepseek.token_to_id("<｜fim▁hole｜>") == 32015
