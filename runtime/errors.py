"""Errors a user can cause, each with a message that says what to do.

Every exception the runtime raises for bad input derives from `QuillError`, so callers (the CLI,
the language server) can show `str(err)` to the user as it is and keep tracebacks for the log.
"""

from __future__ import annotations


class QuillError(Exception):
    """A problem the user can fix; the message names the problem and the remedy."""


class UnsupportedArchitectureError(QuillError):
    """The checkpoint's `config.json` names an architecture the runtime does not implement."""


class CheckpointError(QuillError):
    """A checkpoint is missing, truncated, corrupt or inconsistent with its config."""


class DeviceError(QuillError):
    """An unknown or unavailable device or precision was asked for."""


class ModelNotFoundError(QuillError):
    """A model reference names no alias, repo, directory or file that exists."""


class GatedModelError(QuillError):
    """The Hugging Face repo needs a license accepted and a login."""


class OfflineError(QuillError):
    """The model is not cached and the hub cannot be reached."""


class DiskSpaceError(QuillError):
    """Not enough free disk for a download or conversion."""


class TokenizerError(QuillError):
    """Tokenizer files are missing or in a format the runtime cannot read."""


class PromptTemplateError(QuillError):
    """A chat template failed to render or tried to leave its sandbox."""
