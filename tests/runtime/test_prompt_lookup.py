"""Prompt-lookup speculative decoding (`runtime/prompt_lookup.py`, `generate(prompt_lookup=True)`)
gives plain greedy decoding's tokens and leaves a cache that later steps can trust.

Tiny seeded random models of every architecture get 50 prompts each, built from repeated random
phrases so that drafts are proposed and both kept and rejected; some prompts end on a stop id,
a small token budget or the end of the cache. After rejections, a decode step over the cache
must equal a full forward pass of the sequence the generation says the cache holds.
"""

from __future__ import annotations

import random

import pytest
import torch

from runtime.compile import (VERIFY_ROWS, CompiledModel, _decode, _decode_upto, _prefill, _verify, _verify_upto,
                             compile_model, warmup)
from runtime.config import ModelConfig
from runtime.devices import resolve_device
from runtime.loading import build_model
from runtime.generate import generate
from runtime.prompt_lookup import MAX_DRAFT, PromptLookup
from runtime.sampling import Sampler
from runtime.weight_map import hf_to_native
from tests.runtime.tiny_models import TINY_CONFIGS, VOCAB, tiny_hf_model

MAX_SEQ = 96
N_PROMPTS = 50


def tiny_model(name: str, device: str = "cpu", max_seq_length: int = MAX_SEQ):
    hf, cfg = tiny_hf_model(name)
    config = ModelConfig.from_hf_config(cfg)
    dev = resolve_device(device)
    tensors = {k: v.to(dev.torch_device) for k, v in hf_to_native(hf.state_dict(), config).items()}
    return build_model(config, tensors, dev, max_seq_length=max_seq_length)


def repetitive_prompt(rng: random.Random, length: int) -> list[int]:
    """Random phrases of 2-6 tokens, each used several times, in a random order."""
    phrases = [[rng.randrange(3, VOCAB) for _ in range(rng.randrange(2, 7))] for _ in range(rng.randrange(2, 5))]
    ids: list[int] = []
    while len(ids) < length:
        ids += rng.choice(phrases) if rng.random() < 0.8 else [rng.randrange(3, VOCAB)]
    return ids[:length]


def cases(seed: int = 0):
    """(prompt, max_new_tokens, stop ids) for N_PROMPTS prompts: a fifth stop on a token that
    plain decoding produces, a fifth get a budget of 1-5 tokens, a fifth end at the cache's end."""
    rng = random.Random(seed)
    for i in range(N_PROMPTS):
        kind = ("stop", "budget", "cache end", "plain", "plain")[i % 5]
        if kind == "cache end":
            yield kind, repetitive_prompt(rng, MAX_SEQ - rng.randrange(2, 12)), 16
        else:
            budget = rng.randrange(1, 6) if kind == "budget" else 16
            yield kind, repetitive_prompt(rng, rng.randrange(8, 48)), budget


def run(model, prompt, n, *, lookup: bool, stop_ids=frozenset(), start_pos: int = 0, should_stop=None):
    return generate(model, prompt, start_pos=start_pos, max_new_tokens=n, sampler=Sampler(), stop_ids=stop_ids,
                    should_stop=should_stop, prompt_lookup=lookup)


def test_lookup_copies_what_followed_the_latest_longest_match():
    ids = [1, 2, 3, 9, 9, 7, 2, 3, 5, 6, 1, 2, 3]
    lookup = PromptLookup(ids, max_ngram=3, min_ngram=1)
    assert lookup.draft(4) == [9, 9, 7, 2]  # "1 2 3" matched at the start, not "2 3" at 6..7
    assert lookup.draft(2) == [9, 9]
    lookup.extend([4])  # "3 4", "4": no earlier occurrence
    assert lookup.draft(4) == []
    lookup.extend([2, 3])  # "4 2 3" is new; "2 3" last occurred at 11..12, followed by 4
    assert lookup.draft(4) == [4, 2, 3]
    assert PromptLookup([5, 5, 5, 5], min_ngram=2).draft(3) == [5]  # the latest earlier "5 5 5"
    assert PromptLookup([1, 2, 3, 4], min_ngram=1).draft(4) == []
    assert PromptLookup([1, 2, 1, 2], min_ngram=2).draft(0) == []
    with pytest.raises(ValueError):
        PromptLookup([], max_ngram=1, min_ngram=2)


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_speculative_greedy_equals_plain_greedy(name):
    model = tiny_model(name)
    proposed = accepted = 0
    kinds = set()
    for kind, prompt, n in cases():
        plain = run(model, prompt, n, lookup=False)
        stop_ids = frozenset()
        if kind == "stop" and len(plain.token_ids) > 3:
            stop_ids = frozenset({plain.token_ids[len(plain.token_ids) // 2]})
            plain = run(model, prompt, n, lookup=False, stop_ids=stop_ids)
            assert plain.finish_reason == "stop"
        spec = run(model, prompt, n, lookup=True, stop_ids=stop_ids)
        assert spec.token_ids == plain.token_ids, (kind, prompt)
        assert spec.finish_reason == plain.finish_reason
        # The cache holds at least what plain decoding left, and only ids of this sequence.
        sequence = prompt + spec.token_ids
        assert spec.cached_ids == sequence[: len(spec.cached_ids)]
        assert len(plain.cached_ids) <= len(spec.cached_ids) <= min(len(sequence), MAX_SEQ)
        proposed += spec.draft_tokens
        accepted += spec.accepted_draft_tokens
        kinds.add((kind, plain.finish_reason))
    print(f"{name}: {proposed} draft tokens, {accepted} accepted")
    assert 0 < accepted < proposed  # drafts were kept and drafts were rejected
    assert {("stop", "stop"), ("budget", "length"), ("cache end", "length")} <= kinds


@pytest.mark.parametrize("name", ["llama3.1", "mistral", "phi2"])
@torch.no_grad()
def test_cached_decode_equals_a_full_forward_after_rejections(name):
    """The next step over the cache a speculative generation leaves (rejected rows included)
    gives the logits of a fresh full forward pass over the ids `cached_ids` names."""
    model = tiny_model(name)
    rng = random.Random(1)
    checked = 0
    for _ in range(60):
        if checked == 4:
            break
        prompt = repetitive_prompt(rng, rng.randrange(16, 48))
        out = run(model, prompt, 24, lookup=True)
        if out.accepted_draft_tokens == out.draft_tokens:
            continue  # nothing rejected: nothing to prove here
        sequence = prompt + out.token_ids
        cached = out.cached_ids
        nxt = sequence[len(cached)] if len(sequence) > len(cached) else 7
        pos = len(cached)
        stepped = model(torch.tensor([[nxt]]), torch.tensor([pos]), kv_len=pos + 1)[0, -1]
        full = model(torch.tensor([cached + [nxt]]), torch.arange(pos + 1))[0, -1]
        torch.testing.assert_close(stepped, full, rtol=1e-4, atol=1e-4)
        # Prefix reuse: continuing from the cache gives a fresh generation's tokens.
        follow = cached + [nxt, 11, 12]
        resumed = run(model, follow, 8, lookup=True, start_pos=len(cached))
        assert resumed.token_ids == run(model, follow, 8, lookup=False).token_ids
        checked += 1
    assert checked == 4


def test_should_stop_after_an_accepted_draft_matches_plain_decoding():
    """Cancellation is checked after each token handed out, drafts included: the same calls
    to should_stop see the same tokens."""
    model = tiny_model("smollm2")
    rng = random.Random(2)
    seen_mid_draft = False
    for _ in range(10):
        prompt = repetitive_prompt(rng, 40)
        for limit in (2, 5, 9):
            def stopper():
                calls.append(1)
                return len(calls) > limit

            calls: list[int] = []
            plain = run(model, prompt, 24, lookup=False, should_stop=stopper)
            calls = []
            spec = run(model, prompt, 24, lookup=True, should_stop=stopper)
            assert spec.token_ids == plain.token_ids and spec.finish_reason == plain.finish_reason
            assert spec.cached_ids == (prompt + spec.token_ids)[: len(spec.cached_ids)]
            seen_mid_draft |= spec.accepted_draft_tokens > 0 and spec.finish_reason == "cancelled"
    assert seen_mid_draft


def wrappers(model) -> dict:
    """The two shapes of `CompiledModel` with their steps uncompiled (this checks the wrapper's
    logic; the compiled steps are checked below): attention sized to the cache (the CPU's, any
    verification length) and fixed shapes (CUDA's, verification padded to VERIFY_ROWS)."""
    sized = CompiledModel(model, decode=_decode, prefill=None, buckets=(), decode_upto=_decode_upto,
                          verify=_verify_upto)
    fixed = CompiledModel(model, decode=_decode, prefill=_prefill, buckets=(16, 64), verify=_verify)
    return {"sized": sized, "fixed": fixed}


@pytest.mark.parametrize("shape", ["sized", "fixed"])
@torch.no_grad()
def test_wrappers_verify_drafts_once_warmed(shape):
    """Until `warm_verify`, a wrapper decodes one token at a time under prompt lookup; after it,
    drafts go through its verification step. The tokens are plain greedy decoding's either way,
    and after rejections (padding rows included) the cache still equals a full forward pass."""
    model = tiny_model("qwen2")
    wrapped = wrappers(model)[shape]
    assert wrapped.verify_tokens == 0
    prompt = repetitive_prompt(random.Random(3), 40)
    cold = run(wrapped, prompt, 24, lookup=True)
    assert cold.token_ids == run(model, prompt, 24, lookup=False).token_ids and cold.draft_tokens == 0
    wrapped.warm_verify()
    assert wrapped.verify_tokens == VERIFY_ROWS == MAX_DRAFT + 1
    rng = random.Random(3)
    accepted = rejected = 0
    for i in range(12):
        # The last prompts end near the cache's end, where the padding has no room.
        prompt = repetitive_prompt(rng, 40 if i < 9 else MAX_SEQ - 10)
        ref = run(model, prompt, 24, lookup=False)
        spec = run(wrapped, prompt, 24, lookup=True)
        assert spec.token_ids == ref.token_ids and spec.finish_reason == ref.finish_reason
        accepted += spec.accepted_draft_tokens
        rejected += spec.draft_tokens - spec.accepted_draft_tokens
        cached = spec.cached_ids
        if len(cached) < MAX_SEQ - 1:
            pos = len(cached)
            stepped = model(torch.tensor([[5]]), torch.tensor([pos]), kv_len=pos + 1)[0, -1]
            full = model(torch.tensor([cached + [5]]), torch.arange(pos + 1))[0, -1]
            torch.testing.assert_close(stepped, full, rtol=1e-4, atol=1e-4)
    assert accepted > 0 and rejected > 0


def test_a_verification_dearer_than_the_bound_is_not_used(monkeypatch, caplog):
    """Where verifying VERIFY_ROWS tokens costs more than VERIFY_MAX_COST decode steps (timed by
    `warm_verify`), prompt lookup decodes one token at a time, says so once in the log, and the
    idle warm-up does not try again."""
    import logging

    from runtime.compile import VERIFY_MAX_COST

    model = tiny_model("qwen2")
    wrapped = wrappers(model)["sized"]
    monkeypatch.setattr(CompiledModel, "_verify_cost", lambda self, start: VERIFY_MAX_COST + 1)
    with caplog.at_level(logging.INFO, logger="runtime.compile"):
        wrapped.warm_verify()
    assert wrapped.verify_tokens == 0 and not wrapped.verify_pending
    assert "decode one token at a time" in caplog.text
    prompt = repetitive_prompt(random.Random(3), 40)
    out = run(wrapped, prompt, 24, lookup=True)
    assert out.draft_tokens == 0 and out.token_ids == run(model, prompt, 24, lookup=False).token_ids


def test_verification_cost_is_measured():
    wrapped = wrappers(tiny_model("qwen2"))["fixed"]
    wrapped.warm_verify()
    assert wrapped.verify_cost is not None and wrapped.verify_cost > 0


def test_compile_model_verifies_with_a_compiled_step():
    """`compile_model` on a CPU: decode and the verification step compiled (one symbolic graph
    for every length), warmed by `warmup`; the tokens are the eager model's."""
    model = tiny_model("llama3.1")
    prompts = [repetitive_prompt(random.Random(s), 40) for s in range(6)]
    refs = [run(model, p, 24, lookup=False).token_ids for p in prompts]
    compiled = compile_model(model)
    assert compiled.verify_tokens == 0  # nothing compiled before the warm-up
    warmup(compiled)
    assert compiled.verify_tokens == VERIFY_ROWS
    accepted = 0
    for prompt, ref in zip(prompts, refs):
        spec = run(compiled, prompt, 24, lookup=True)
        assert spec.token_ids == ref
        accepted += spec.accepted_draft_tokens
    assert accepted > 0


def test_sampling_ignores_prompt_lookup():
    model = tiny_model("llama2")
    prompt = repetitive_prompt(random.Random(4), 40)
    sampled = [generate(model, prompt, start_pos=0, max_new_tokens=16, sampler=Sampler(1.0, seed=5),
                        prompt_lookup=lookup) for lookup in (False, True)]
    assert sampled[0].token_ids == sampled[1].token_ids and sampled[1].draft_tokens == 0


@pytest.mark.gpu
def test_speculative_greedy_equals_plain_greedy_on_cuda():
    model = tiny_model("smollm2", device="cuda")
    accepted = 0
    for kind, prompt, n in cases(seed=5):
        plain = run(model, prompt, n, lookup=False)
        spec = run(model, prompt, n, lookup=True)
        assert spec.token_ids == plain.token_ids and spec.finish_reason == plain.finish_reason, kind
        accepted += spec.accepted_draft_tokens
    assert accepted > 0


@pytest.mark.gpu
def test_graphed_verification_equals_plain_greedy_on_cuda():
    """CUDA's route: decode and the padded verification step as CUDA graphs of the eager model
    with Quill's kernels (`compile_model`'s `eager_graphs`), the tokens those of plain greedy
    decoding on the same model."""
    model = tiny_model("smollm2", device="cuda")
    compiled = compile_model(model)
    warmup(compiled)
    assert compiled.eager_steps and compiled.verify_tokens == VERIFY_ROWS
    accepted = 0
    for kind, prompt, n in cases(seed=6):
        plain = run(compiled.model, prompt, n, lookup=False)
        spec = run(compiled, prompt, n, lookup=True)
        assert spec.token_ids == plain.token_ids and spec.finish_reason == plain.finish_reason, kind
        accepted += spec.accepted_draft_tokens
    assert accepted > 0
