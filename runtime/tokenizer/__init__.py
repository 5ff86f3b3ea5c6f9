"""Tokenizers for every supported model family, without transformers.

    tokenizer = load_tokenizer(checkpoint_dir)      # or a .gguf file
    ids = tokenizer.encode(user_text)               # special-token strings stay plain text
    stream = tokenizer.incremental_decoder()        # .push(id) -> complete UTF-8 text
    export_gguf_tokenizer(gguf_path, out_dir)       # tokenizer files for a converted GGUF
"""

from runtime.tokenizer.base import AddedToken, Tokenizer
from runtime.tokenizer.detokenizer import IncrementalDecoder
from runtime.tokenizer.export import export_gguf_tokenizer
from runtime.tokenizer.loader import TOKENIZER_FILE_NAMES, load_tokenizer

__all__ = [
    "AddedToken",
    "IncrementalDecoder",
    "TOKENIZER_FILE_NAMES",
    "Tokenizer",
    "export_gguf_tokenizer",
    "load_tokenizer",
]
