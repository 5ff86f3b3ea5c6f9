"""Stopping on the stream with the real SmolLM2-135M-Instruct: the same suggestions, fewer tokens.

Cursor positions come from the corpus of real Python files in `tests/unit/test_stream_cut_corpus.py`.
First, at every position, the streamed cut over SmolLM2's real tokens (its tokenizer, read from
the GGUF) equals the post-hoc cut, as the unit test checks for character chunks. Then, at one
position in several of each kind, `completion.run` runs twice on a real
`ModelHost` (float32 on CPU, greedy): with `stopEarly` and without it, which generates the full
`maxTokens` and post-processes afterwards. The suggestions must be identical everywhere, and the
tokens generated, as the host counts them for quill/status, must drop in total.
"""

from __future__ import annotations

import dataclasses

import pytest
from lsprotocol import types

from lsp_server import completion, completion_window
from lsp_server.model_host import ModelHost
from lsp_server.settings import CompletionSettings
from tests.assets import smollm2_gguf
from tests.unit.test_stream_cut_corpus import check_corpus, corpus, token_pieces

pytestmark = pytest.mark.slow

# Small enough for a shared 2-core machine: each position prefills its prompt twice and
# generates up to maxTokens once in full. Prompt lookup is off so that only the cut differs.
N_POSITIONS = 8
SETTINGS = CompletionSettings(max_tokens=32, context_tokens=128, prompt_lookup=False)


@pytest.fixture(scope="module")
def host(smollm2_checkpoint, tmp_path_factory):
    host = ModelHost()
    job = host.load(str(smollm2_checkpoint), device="cpu", precision="float32",
                    cache_dir=tmp_path_factory.mktemp("quill-cache"), progress=lambda *_: None)
    job.future.result()
    return host


def test_streamed_cut_equals_post_hoc_cut_in_smollm2_tokens():
    from runtime.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(smollm2_gguf())
    positions = corpus()
    counts = check_corpus(positions, lambda text: token_pieces(tokenizer, text))
    print(f"{len(positions)} positions ({counts['runs']} texts), stopped early {counts['stopped']:.0%}, "
          f"read {counts['read']:.0%} of the text")
    assert counts["stopped"] > 0.7 and counts["read"] < 0.5


def sample_positions():
    positions = corpus()
    step = max(1, len(positions) // N_POSITIONS)
    return positions[::step][:N_POSITIONS]


def cursor(prefix: str) -> types.Position:
    line_prefix = prefix.rsplit("\n", 1)[-1]
    return types.Position(prefix.count("\n"), len(line_prefix.encode("utf-16-le")) // 2)


def complete(host: ModelHost, position, stop_early: bool) -> tuple:
    """(suggestion, tokens generated, tokens shown) of one `completion.run` on the worker."""
    settings = dataclasses.replace(SETTINGS, stop_early=stop_early, multiline=position.multiline)
    request = completion_window.snapshot(position.prefix + position.suffix, cursor(position.prefix), settings,
                                         "utf-16", "python")
    forget_cached_prompt(host)
    generated, shown = host.tokens_generated, host.tokens_shown
    text = host.submit("completion", lambda job: completion.run(host, job, request)).future.result()
    return text, host.tokens_generated - generated, host.tokens_shown - shown


def forget_cached_prompt(host: ModelHost) -> None:
    """Run a one-token prompt that shares nothing with the next one, so both runs of a position
    prefill the whole prompt alike (reusing part of the cache computes the same greedy tokens
    only up to float rounding)."""
    from runtime.engine import GenerationConfig

    engine = host.loaded.engine
    ids = engine.tokenizer.encode(" zebra")[:1]
    host.submit("reset", lambda job: engine.generate(ids, GenerationConfig(max_new_tokens=1))).future.result()


def test_early_stop_shows_the_same_suggestions_for_fewer_tokens(host):
    rows = []
    for position in sample_positions():
        early = complete(host, position, stop_early=True)
        full = complete(host, position, stop_early=False)
        rows.append((position.kind, early, full))
        print(f"{position.kind:14} generated {full[1]:3} -> {early[1]:3}, shown {early[2]:3}: {early[0]!r:.50}")
    generated_early = sum(early[1] for _, early, _ in rows)
    generated_full = sum(full[1] for _, _, full in rows)
    print(f"{len(rows)} positions: tokens generated {generated_full} -> {generated_early}, "
          f"shown {sum(early[2] for _, early, _ in rows)}")
    assert [(kind, early[0]) for kind, early, _ in rows] == [(kind, full[0]) for kind, _, full in rows]
    assert sum(early[0] is not None for _, early, _ in rows) >= len(rows) // 2
    # shown tokens are counted from the suggestion alone, so both runs count the same
    assert [early[2] for _, early, _ in rows] == [full[2] for _, _, full in rows]
    assert all(early[1] <= full[1] for _, early, full in rows)
    # single-line suggestions end at the newline in both runs (an engine stop string); the others
    # must stop early
    assert sum(early[1] < full[1] for _, early, full in rows) >= len(rows) // 4
    assert generated_early < 0.9 * generated_full
