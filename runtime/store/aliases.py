"""Short model names and how a model reference is parsed.

An alias is only a shortcut to a Hugging Face repo id; everything about the model (architecture,
sizes, tokenizer) still comes from the checkpoint's own files.
"""

from __future__ import annotations

import re

DEFAULT_ALIAS = "smollm2"

ALIASES: dict[str, str] = {
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "phi-2": "microsoft/phi-2",
    "phi-3": "microsoft/Phi-3-mini-4k-instruct",
    "llama-2": "meta-llama/Llama-2-7b-chat-hf",
    "llama-3": "meta-llama/Meta-Llama-3-8B-Instruct",
    "mistral": "mistralai/Mistral-7B-Instruct-v0.1",
}

# Hugging Face repo ids: "name" or "org/name"; letters, digits, "-", "_", "." (not leading).
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def alias_for(repo_id: str) -> str | None:
    """The alias that points at `repo_id`, if any (case-insensitive, like the hub)."""
    for alias, target in ALIASES.items():
        if target.lower() == repo_id.lower():
            return alias
    return None


def parse_repo_ref(ref: str) -> tuple[str, str | None] | None:
    """Split `alias`, `org/name` or `org/name@revision` into (repo_id, revision).

    Returns None when `ref` cannot be a repo id (so the caller reports "not found").
    """
    target = ALIASES.get(ref.lower(), ref)
    repo_id, _, revision = target.partition("@")
    if not _REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".", "-")):
        return None
    return repo_id, (revision or None)


def describe_aliases() -> str:
    """One line per alias, for error messages and `--help`."""
    width = max(len(a) for a in ALIASES)
    lines = [f"  {alias:<{width}}  {repo}" for alias, repo in ALIASES.items()]
    return "\n".join(lines)
