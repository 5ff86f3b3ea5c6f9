"""Picking the next token from logits: greedy, temperature, top-k, top-p, seedable.

Sampling stays on the logits' device and never syncs with the host (gpt-fast's "sync-free"
multinomial: argmax of probs / Exp(1) noise draws from the same distribution as
`torch.multinomial`). Settings outside their range degrade gracefully instead of failing:
temperature <= 0 is greedy, top_k <= 0 or None and top_p >= 1 or None are off.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Sampler:
    def __init__(
        self,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ):
        self.temperature = float(temperature or 0.0)
        self.top_k = int(top_k) if top_k and top_k > 0 else None
        self.top_p = float(top_p) if top_p is not None and top_p < 1.0 else None
        self.seed = seed
        self._generator: torch.Generator | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def __call__(self, logits: Tensor) -> Tensor:
        """logits [B, V] -> next token ids [B] (int64, same device)."""
        if self.greedy:
            return torch.argmax(logits, dim=-1)
        probs = self.probs(logits)
        noise = torch.empty_like(probs).exponential_(1, generator=self._generator_for(probs.device))
        return torch.argmax(probs / noise, dim=-1)

    def probs(self, logits: Tensor) -> Tensor:
        """The distribution sampled from: [B, V] float32, zero outside top-k / top-p."""
        logits = logits.float() / max(self.temperature, 1e-5)
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]  # [B, 1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p is not None:
            logits = _top_p(logits, self.top_p)
        return torch.softmax(logits, dim=-1)

    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None  # torch's global RNG
        if self._generator is None or self._generator.device != device:
            try:
                self._generator = torch.Generator(device=device)
            except RuntimeError:  # backends without their own generators (DirectML)
                return None
            self._generator.manual_seed(self.seed)
        return self._generator


def _top_p(logits: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches top_p (at least one)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly more likely tokens
    drop_sorted = before >= top_p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))
