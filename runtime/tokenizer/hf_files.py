"""Tokenizers from Hugging Face files: `tokenizer.json`, `vocab.json` + `merges.txt`, and the
side files that name special tokens (`tokenizer_config.json`, `added_tokens.json`,
`special_tokens_map.json`, `generation_config.json`).

Everything that decides the ids is read from the files themselves: vocabulary, merges, added
tokens, the `Split` regexes of the pre-tokenizer, the normalizer, and whether a BOS is prepended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.errors import TokenizerError
from runtime.tokenizer.base import AddedToken, Tokenizer, looks_like_markup
from runtime.tokenizer.bpe import ByteLevelBPE
from runtime.tokenizer.pretokenizers import GPT2_PATTERN, hf_pre_passes

SPECIAL_FIELDS = ("bos_token", "eos_token", "unk_token", "pad_token")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TokenizerError(f"Cannot read {path} ({err}); re-download the model's tokenizer files.") from err


def read_config(model_dir: Path) -> dict[str, Any]:
    """`tokenizer_config.json`, with `special_tokens_map.json` filling fields it lacks."""
    config = read_json(model_dir / "tokenizer_config.json") if (model_dir / "tokenizer_config.json").exists() else {}
    if (model_dir / "special_tokens_map.json").exists():
        for key, value in read_json(model_dir / "special_tokens_map.json").items():
            config.setdefault(key, value)
    return config


def token_text(value: Any) -> str | None:
    """A special-token field: a string, or an AddedToken dict with `content`."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def config_added_tokens(model_dir: Path, config: dict[str, Any]) -> list[AddedToken]:
    """Added tokens from `tokenizer_config.json`'s `added_tokens_decoder` and `added_tokens.json`."""
    tokens: dict[int, AddedToken] = {}
    if (model_dir / "added_tokens.json").exists():
        for content, token_id in read_json(model_dir / "added_tokens.json").items():
            tokens[int(token_id)] = AddedToken(content, int(token_id), special=looks_like_markup(content))
    for key, entry in (config.get("added_tokens_decoder") or {}).items():
        tokens[int(key)] = added_from_entry(entry, int(key))
    return list(tokens.values())


def added_from_entry(entry: dict[str, Any], token_id: int) -> AddedToken:
    content = entry["content"]
    return AddedToken(
        content, token_id,
        special=bool(entry.get("special")) or looks_like_markup(content),
        lstrip=bool(entry.get("lstrip")), rstrip=bool(entry.get("rstrip")),
    )  # fmt: skip


def generation_stop_ids(model_dir: Path) -> tuple[int, ...]:
    """Extra end ids from `generation_config.json` (Llama 3 lists `<|eot_id|>` there)."""
    path = model_dir / "generation_config.json"
    if not path.exists():
        return ()
    value = read_json(path).get("eos_token_id")
    values = value if isinstance(value, list) else [value]
    return tuple(int(v) for v in values if isinstance(v, int))


def id_of(name: str | None, tokens: list[AddedToken], piece_to_id) -> int | None:
    if name is None:
        return None
    for t in tokens:
        if t.content == name:
            return t.id
    return piece_to_id(name)


def byte_level_from_tokenizer_json(model_dir: Path) -> Tokenizer:
    data = read_json(model_dir / "tokenizer.json")
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or _is_metaspace(data):
        raise TokenizerError(
            f"{model_dir / 'tokenizer.json'} is not a byte-level BPE tokenizer and there is no "
            "tokenizer.model beside it. Download the model's tokenizer.model (sentencepiece) too."
        )
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    added = [added_from_entry(entry, int(entry["id"])) for entry in data.get("added_tokens", [])]
    config = read_config(model_dir)
    codec = ByteLevelBPE(
        _base_vocab(model["vocab"], added), merges, hf_pre_passes(data.get("pre_tokenizer")),
        normalizer=_normalizer(data.get("normalizer")), name=model_dir.name or "tokenizer.json",
    )  # fmt: skip
    add_bos = config.get("add_bos_token", _post_processor_adds_bos(data.get("post_processor")))
    return _assemble(model_dir, codec, added, config, bool(add_bos))


def byte_level_from_vocab_merges(model_dir: Path, vocab_name: str, merges_name: str) -> Tokenizer:
    vocab = read_json(model_dir / vocab_name)
    lines = (model_dir / merges_name).read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ", 1)) for line in lines if line and not line.startswith("#version")]
    config = read_config(model_dir)
    added = {t.id: t for t in config_added_tokens(model_dir, config)}
    # GPT2Tokenizer's defaults: <|endoftext|> is BOS, EOS and UNK unless the config says otherwise
    names = [token_text(config.get(field)) for field in SPECIAL_FIELDS] + ["<|endoftext|>"]
    for name in names:
        if name in vocab and vocab[name] not in added:
            added[vocab[name]] = AddedToken(name, vocab[name], special=True)
    codec = ByteLevelBPE(_base_vocab(vocab, list(added.values())), merges, (GPT2_PATTERN,))
    return _assemble(model_dir, codec, list(added.values()), config, bool(config.get("add_bos_token", False)))


def _assemble(model_dir: Path, codec, added: list[AddedToken], config: dict, add_bos: bool) -> Tokenizer:
    bos = id_of(token_text(config.get("bos_token")), added, codec.piece_to_id)
    eos = id_of(token_text(config.get("eos_token")), added, codec.piece_to_id)
    if eos is None:
        eos = id_of("<|endoftext|>", added, codec.piece_to_id)
    return Tokenizer(
        codec, added, bos_id=bos, eos_id=eos, add_bos=add_bos and bos is not None,
        extra_stop_ids=generation_stop_ids(model_dir),
    )  # fmt: skip


def _base_vocab(vocab: dict[str, int], added: list[AddedToken]) -> dict[str, int]:
    added_ids = {t.id for t in added}
    return {token: i for token, i in vocab.items() if i not in added_ids}


def _normalizer(spec: dict | None) -> str | None:
    if spec is None:
        return None
    steps = spec.get("normalizers", []) if spec.get("type") == "Sequence" else [spec]
    kinds = [s.get("type") for s in steps]
    if kinds in ([], ["NFC"]):
        return "NFC" if kinds else None
    raise TokenizerError(f"tokenizer.json uses the normalizer {kinds}, which Quill does not read for byte-level BPE.")


def _is_metaspace(data: dict) -> bool:
    return "Metaspace" in json.dumps(data.get("pre_tokenizer")) + json.dumps(data.get("decoder"))


def _post_processor_adds_bos(spec: dict | None) -> bool:
    if not spec:
        return False
    if spec.get("type") == "Sequence":
        return any(_post_processor_adds_bos(s) for s in spec.get("processors", []))
    single = spec.get("single") if spec.get("type") == "TemplateProcessing" else None
    return bool(single) and "SpecialToken" in single[0]
