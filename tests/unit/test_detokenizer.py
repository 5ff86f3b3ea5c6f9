"""The incremental detokenizer on small in-memory vocabularies (no model files): it emits only
complete UTF-8 characters, drops sentencepiece's dummy-prefix space once, emits nothing for
special tokens, and its concatenated stream always equals a one-shot `decode`."""

from __future__ import annotations

import random

import pytest

from runtime.tokenizer.base import AddedToken, Tokenizer
from runtime.tokenizer.bpe import ByteLevelBPE, bytes_to_unicode
from runtime.tokenizer.pretokenizers import GPT2_PATTERN
from runtime.tokenizer.sentencepiece_tokenizer import SentencePieceCodec, proto_from_gguf_vocab

IM_START, IM_END = 259, 260


@pytest.fixture(scope="module")
def byte_level() -> Tokenizer:
    """Byte b has id b; three merges make 'he', 'Ġt', 'Ġthe'."""
    alphabet = bytes_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    merges = [("h", "e"), ("Ġ", "t"), ("Ġt", "he")]
    vocab.update({"he": 256, "Ġt": 257, "Ġthe": 258})
    codec = ByteLevelBPE(vocab, merges, (GPT2_PATTERN,))
    specials = [AddedToken("<|im_start|>", IM_START), AddedToken("<|im_end|>", IM_END)]
    return Tokenizer(codec, specials, bos_id=None, eos_id=IM_END, add_bos=False)


SPM_PIECES = ["▁", "h", "i", "e", "l", "o", "▁h", "▁hi", "ll", "he", "▁he", "llo", "▁hello"]


@pytest.fixture(scope="module")
def spm() -> Tokenizer:
    """<unk> <s> </s>, 256 byte pieces (ids 3..258), then a few normal pieces (259..)."""
    tokens = ["<unk>", "<s>", "</s>", *[f"<0x{b:02X}>" for b in range(256)], *SPM_PIECES]
    types = [2, 3, 3, *[6] * 256, *[1] * len(SPM_PIECES)]
    scores = [0.0] * 259 + [-float(i) for i in range(len(SPM_PIECES))]
    codec = SentencePieceCodec(proto_from_gguf_vocab(tokens, scores, types, unk_id=0, bos_id=1, eos_id=2))
    return Tokenizer(codec, codec.control_tokens(), bos_id=1, eos_id=2, add_bos=True)


def stream(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    decoder = tokenizer.incremental_decoder()
    return [decoder.push(i) for i in ids] + [decoder.flush()]


def test_multibyte_characters_wait_for_their_last_byte(byte_level):
    emoji = list("🦙".encode())  # 4 bytes, ids = byte values
    assert stream(byte_level, [*"é".encode(), *emoji]) == ["", "é", "", "", "", "🦙", ""]


def test_invalid_and_truncated_bytes_match_one_shot_decode(byte_level):
    for ids in ([0xFF, ord("a")], [0xC3, ord("a")], [0xE2, 0x82], [0xF0, 0x9F, 0xA6]):
        pieces = stream(byte_level, ids)
        assert "".join(pieces) == byte_level.decode(ids) == bytes(ids).decode("utf-8", errors="replace")


def test_specials_emit_nothing(byte_level):
    ids = [IM_START, *byte_level.encode("hi the"), IM_END]
    assert "".join(stream(byte_level, ids)) == byte_level.decode(ids) == "hi the"
    assert byte_level.encode(" the") == [258]


def test_sentencepiece_leading_space_and_byte_fallback(spm):
    hi = spm.encode("hi")
    assert [spm.codec.sp.id_to_piece(i) for i in hi] == ["▁hi"]
    assert stream(spm, [1, *hi, *hi]) == ["", "hi", " hi", ""]
    ids = spm.encode("hé")  # é is not a piece: two byte-fallback tokens
    pieces = stream(spm, ids)
    assert "".join(pieces) == "hé" == spm.decode(ids) == spm.codec.sp.decode(ids)
    assert pieces[-3:] == ["", "é", ""]


@pytest.mark.parametrize("name", ["byte_level", "spm"])
def test_random_ids_stream_equals_decode(name, request):
    tokenizer = request.getfixturevalue(name)
    rng = random.Random(7)
    for _ in range(300):
        ids = [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randint(1, 25))]
        pieces = stream(tokenizer, ids)
        assert "".join(pieces) == tokenizer.decode(ids)
        # every emitted piece is whole text: no lone surrogates, encodable as UTF-8
        assert all(p.encode("utf-8") for p in pieces if p)


def test_random_text_roundtrips_through_the_stream(spm, byte_level):
    rng = random.Random(8)
    alphabet = "hello the é中🦙 \n\t"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        for tokenizer in (spm, byte_level):
            ids = tokenizer.encode(text)
            pieces = stream(tokenizer, ids)
            assert "".join(pieces) == tokenizer.decode(ids)
            assert all("\ufffd" not in p for p in pieces)
        assert "".join(stream(byte_level, byte_level.encode(text))) == text
