"""Token generation over a static KV cache: prefill, then one token at a time (gpt-fast's loop).

`generate` prefills the prompt from `start_pos` on (the positions before it already hold the
right keys and values: prefix reuse), then decodes one token per step until a stop id, a stop
string, the token budget, the end of the cache or `should_stop()`. Text is streamed through the
tokenizer's incremental decoder; text that could be the start of a stop string is held back until
it is known not to be, so a stop string never reaches the caller.

With `prompt_lookup` and greedy sampling, a step feeds the last token together with up to a few
draft tokens copied from an earlier match in the sequence (`prompt_lookup.py`) and reads the
logits of every position: the drafts that equal the model's own argmax are kept, with the
model's next token after them, so the tokens are those of plain greedy decoding. Cache rows
written for rejected drafts lie past the accepted length; the next step writes its own rows
there before any query reads them (attention is causal by position).

Prompts must fit: the caller (the prompt builders clip history and context to a token budget)
keeps `len(prompt_ids) < max_seq_length`; a longer prompt raises `ContextLengthError`. When the
cache fills up during generation, generation ends with finish_reason "length".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .errors import QuillError
from .model import Transformer
from .prompt_lookup import FIRST_DRAFT, MAX_DRAFT, PromptLookup
from .sampling import Sampler


class ContextLengthError(QuillError):
    """The prompt does not fit the model's context (the KV cache)."""


@torch.no_grad()
def prefill(model: Transformer, tokens: Tensor, input_pos: Tensor, kv_len: int | None = None) -> Tensor:
    """tokens [B, S] at positions input_pos [S] -> logits of the last position [B, V]."""
    return model(tokens, input_pos, last_only=True, kv_len=kv_len)[:, -1]


@torch.no_grad()
def decode_one_token(model: Transformer, cur_token: Tensor, input_pos: Tensor, kv_len: int | None = None) -> Tensor:
    """cur_token [B, 1] at input_pos [1] -> logits [B, V]. No host sync; with kv_len None the
    shapes never change (what CUDA graphs need), with kv_len attention reads only that much cache."""
    return model(cur_token, input_pos, kv_len=kv_len)[:, -1]


@torch.no_grad()
def verify(model: Transformer, tokens: Tensor, input_pos: Tensor, kv_len: int | None = None) -> Tensor:
    """tokens [B, S] at positions input_pos [S] -> logits of every position [B, S, V]: the
    prefill's work with the whole vocabulary projection (a draft needs each position's argmax)."""
    return model(tokens, input_pos, kv_len=kv_len)


class TextStream:
    """Incremental detokenizing with stop strings; `on_text` receives only final text."""

    def __init__(self, tokenizer, stop_strings: Sequence[str], on_text: Callable[[str], None] | None):
        self.decoder = tokenizer.incremental_decoder() if tokenizer is not None else None
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.on_text = on_text
        self.text = ""  # everything decoded so far
        self.emitted = 0  # how much of `text` went to on_text
        self.stopped = False  # a stop string was found; text is cut before it

    def push(self, token_id: int) -> bool:
        """Add one token; return True when a stop string completed."""
        if self.decoder is not None:
            self.text += self.decoder.push(token_id)
        return self._advance(final=False)

    def finish(self) -> str:
        """Flush the decoder and emit what was held back; return the final text."""
        if self.decoder is not None and not self.stopped:
            self.text += self.decoder.flush()
            self._advance(final=True)
        return self.text

    def _advance(self, final: bool) -> bool:
        if self.stopped:
            return True
        longest = max((len(s) for s in self.stop_strings), default=0)
        search_from = max(0, self.emitted - longest)
        hits = [i for s in self.stop_strings if (i := self.text.find(s, search_from)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True
        end = len(self.text) if (final or self.stopped) else len(self.text) - self._held_back()
        if end > self.emitted:
            delta, self.emitted = self.text[self.emitted : end], end
            if self.on_text is not None:
                self.on_text(delta)
        return self.stopped

    def _held_back(self) -> int:
        """Length of the longest tail of text that starts some stop string."""
        for n in range(min(len(self.text), max((len(s) - 1 for s in self.stop_strings), default=0)), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stop_strings):
                return n
        return 0


@dataclass
class Outcome:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"  # "stop" | "length" | "cancelled"
    computed_tokens: int = 0  # prompt tokens actually prefilled
    cached_ids: list[int] = field(default_factory=list)  # ids whose keys/values the cache now holds
    draft_tokens: int = 0  # prompt-lookup tokens proposed
    accepted_draft_tokens: int = 0  # of those, equal to the greedy token and kept


class _TokenReader:
    """Reads sampled ids [1] on the host without waiting for work queued after them.

    `int(token)` would wait for everything queued on the stream, the next decode step included.
    On CUDA `start` copies the id to pinned memory behind an event and `finish` waits for that
    copy alone; elsewhere `finish` reads the id directly. One read is in flight at a time (each
    is finished before the next starts), so one pinned slot and one event serve a generation."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.host = torch.empty(1, dtype=torch.long, pin_memory=True)
            self.copied = torch.cuda.Event()
            self.stream = torch.cuda.current_stream(device)  # the token's GPU, whatever is current
        self.token: Tensor | None = None

    def start(self, token: Tensor) -> None:
        self.token = token
        if self.cuda:
            self.host.copy_(token[:1], non_blocking=True)
            self.copied.record(self.stream)

    def finish(self) -> int:
        if not self.cuda:
            return int(self.token[0])
        self.copied.synchronize()
        return int(self.host[0])


def check_fits(model: Transformer, n_prompt: int) -> None:
    if n_prompt == 0:
        raise ContextLengthError("The prompt is empty; give at least one token.")
    if n_prompt >= model.max_seq_length:
        raise ContextLengthError(
            f"The prompt has {n_prompt} tokens but the context holds {model.max_seq_length}. "
            "Shorten the prompt (lower maxContextLength / contextTokens) or load the model with a "
            "larger max_seq_length."
        )


def generate(
    model: Transformer,
    prompt_ids: Sequence[int],
    *,
    start_pos: int,
    max_new_tokens: int,
    sampler: Sampler,
    stop_ids: frozenset[int] = frozenset(),
    text: TextStream | None = None,
    should_stop: Callable[[], bool] | None = None,
    static_decode: bool = False,
    pipeline: bool | None = None,
    prompt_lookup: bool = False,
) -> Outcome:
    """Generate after `prompt_ids`, whose first `start_pos` tokens are already in the cache.

    Each step tells the model how many cache positions are filled (`kv_len`; positions are host
    ints here, so this costs no sync): the plain `Transformer` then reads only those, and
    `runtime.compile.CompiledModel` does what its compiled steps allow (rounded up off CUDA,
    the whole cache with CUDA graphs). `static_decode` keeps shapes fixed: it says nothing, so
    the plain model reads the whole cache.

    `pipeline` (default: on for CUDA) queues each decode step before the host reads the token it
    feeds, so host work overlaps device work; off, the device idles while the host works. The
    tokens are the same either way.

    `prompt_lookup` (greedy only; ignored when sampling) verifies draft tokens copied from the
    sequence itself; its steps are not pipelined, since the host needs each step's tokens to
    draft the next one."""
    check_fits(model, len(prompt_ids))
    text = text or TextStream(None, (), None)
    cancelled = should_stop or (lambda: False)
    out = Outcome(cached_ids=list(prompt_ids[:start_pos]))
    if cancelled():
        out.finish_reason = "cancelled"
        return out
    device = model.tok_embeddings.weight.device
    n_prompt = len(prompt_ids)
    tokens = torch.tensor([prompt_ids[start_pos:]], dtype=torch.long, device=device)  # [1, S]
    sized = not static_decode
    logits = prefill(model, tokens, torch.arange(start_pos, n_prompt, device=device), n_prompt if sized else None)
    out.computed_tokens = n_prompt - start_pos
    out.cached_ids = list(prompt_ids)
    # Token n (0-based) is fed at position n_prompt + n to produce token n + 1; the last token
    # sampled is never fed, so the cache allows max_seq_length - n_prompt + 1 new tokens.
    budget = min(max_new_tokens, model.max_seq_length - n_prompt + 1)
    # A wrapper says how many tokens it verifies cheaply (`CompiledModel.verify_tokens`); the
    # plain model verifies as it prefills.
    verify_rows = getattr(model, "verify_tokens", MAX_DRAFT + 1)
    if prompt_lookup and sampler.greedy and verify_rows > 1:
        drafts = min(MAX_DRAFT, verify_rows - 1)
        _decode_with_drafts(model, out, list(prompt_ids), logits, budget, sized, drafts, stop_ids, text, cancelled)
        out.text = text.finish()
        return out
    input_pos = torch.tensor([n_prompt], dtype=torch.long, device=device)
    pipelined = device.type == "cuda" if pipeline is None else pipeline

    def step(token: Tensor, n: int) -> Tensor:
        """Feed token n (at position n_prompt + n) and sample token n + 1, all queued on the device."""
        kv_len = n_prompt + n + 1 if sized else None
        return sampler(decode_one_token(model, token.view(1, 1), input_pos, kv_len))

    next_token = sampler(logits)  # [1]
    reader = _TokenReader(device)
    while len(out.token_ids) < budget:
        n = len(out.token_ids)
        reader.start(next_token)
        ahead = None
        if pipelined and n + 1 < budget:
            # Queue the step that feeds this token before reading it, so the device computes while
            # the host waits for the id, detokenizes and checks for stops. When generation stops
            # here instead, that step has only written the cache row after the last id kept in
            # out.cached_ids, a row the next request overwrites before anything reads it.
            ahead = step(next_token, n)
        token_id = reader.finish()
        if _emit(out, token_id, budget, stop_ids, text, cancelled):
            break
        next_token = ahead if ahead is not None else step(next_token, n)
        out.cached_ids.append(token_id)
        input_pos += 1
    out.text = text.finish()
    return out


def _emit(out: Outcome, token_id: int, budget: int, stop_ids, text: TextStream, cancelled) -> bool:
    """Hand one generated token to the caller (plain decode and draft verification alike): stop
    id, stop string, budget, then `cancelled()`; True when generation ends with it
    (out.finish_reason says why)."""
    if token_id in stop_ids:
        out.finish_reason = "stop"
        return True
    out.token_ids.append(token_id)
    if text.push(token_id):
        out.finish_reason = "stop"
        return True
    if len(out.token_ids) >= budget:
        return True
    if cancelled():
        out.finish_reason = "cancelled"
        return True
    return False


def _decode_with_drafts(
    model: Transformer, out: Outcome, prompt_ids: list[int], logits: Tensor, budget: int, sized: bool,
    max_draft: int, stop_ids, text: TextStream, cancelled,
) -> None:
    """Greedy decode after the prefill's `logits`, verifying prompt-lookup drafts (see the module
    docstring). Fills `out`; leaves `out.cached_ids` at the ids whose cache rows are valid."""
    device = logits.device
    n_prompt = len(prompt_ids)
    drafter = PromptLookup(prompt_ids)
    pending = [int(torch.argmax(logits, dim=-1)[0])]  # tokens known, not yet handed out
    valid = n_prompt  # cache rows below this position hold the keys/values of the sequence
    limit = min(FIRST_DRAFT, max_draft)  # the next draft's length, adapted to how the last one fared
    while True:
        start = len(out.token_ids)
        ended = any(_emit(out, t, budget, stop_ids, text, cancelled) for t in pending)
        drafter.extend(out.token_ids[start:])
        if ended:
            break
        pos = n_prompt + len(out.token_ids) - 1  # where the last token, not yet fed, goes
        # Draft no more than the budget can take after the model's own token, nor past the cache.
        room = min(limit, budget - len(out.token_ids) - 1, model.max_seq_length - 1 - pos)
        draft = drafter.draft(room)
        fed = torch.tensor([[out.token_ids[-1], *draft]], dtype=torch.long, device=device)  # [1, 1 + k]
        positions = torch.arange(pos, pos + fed.shape[1], device=device)
        kv_len = pos + fed.shape[1] if sized else None
        if draft:
            greedy = torch.argmax(verify(model, fed, positions, kv_len)[0], dim=-1).tolist()  # [1 + k]
        else:
            greedy = [int(torch.argmax(decode_one_token(model, fed, positions, kv_len), dim=-1)[0])]
        accepted = 0
        while accepted < len(draft) and draft[accepted] == greedy[accepted]:
            accepted += 1
        if draft:
            # Each verified row costs part of a decode step even when it is rejected: after a
            # rejection draft one more than was kept, after a full match up to twice as many.
            limit = min(max_draft, 2 * limit) if accepted == len(draft) else accepted + 1
        out.draft_tokens += len(draft)
        out.accepted_draft_tokens += accepted
        pending = draft[:accepted] + [greedy[accepted]]
        valid = pos + accepted + 1  # the last token and the accepted drafts; rejected rows follow
    out.cached_ids = (prompt_ids + out.token_ids)[:valid]
