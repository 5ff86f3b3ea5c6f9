"""The model store: model references -> converted checkpoints in a local cache.

    resolve_model(ref)      alias, HF repo id[@rev], local HF folder, .gguf, model.pth or a
                            converted checkpoint -> checkpoint folder (downloads and converts once)
    default_cache_dir()     QUILL_CACHE_DIR, else the platform's user cache dir + "quill"
    list_models()           the cached checkpoints (name, size, source, architecture)
    remove_model(ref)       delete one from the cache
"""

from __future__ import annotations

from .aliases import ALIASES, DEFAULT_ALIAS
from .cache import CachedModel, default_cache_dir, list_models, remove_model
from .resolve import cached_checkpoint, resolve_model

__all__ = [
    "ALIASES",
    "DEFAULT_ALIAS",
    "CachedModel",
    "cached_checkpoint",
    "default_cache_dir",
    "list_models",
    "remove_model",
    "resolve_model",
]
