"""Word-to-region maps: the model-level pieces tasks build their `WordRegions` from.

`word_region_similarity` (cosine of word and region embeddings, for dual encoders), `square_grid`
(image tokens as a grid), `CrossAttentionRecorder` (a transformer decoder's cross-attention
weights) and `sentence_spans`. The tasks' own maps live in their packages (a dual encoder's
word-region maps, a report decoder's sentence-region maps) and reach `medmm.interpret.explain`
through their `Task.explainable` hook; this module names no task.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from medmm.errors import MedmmError


def word_region_similarity(words: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (L, N) of word embeddings (L, E) and region embeddings (N, E)."""
    return F.normalize(words.float(), dim=-1) @ F.normalize(regions.float(), dim=-1).T


def square_grid(n: int) -> tuple[int, int]:
    """(h, w) of n image tokens laid out as a square grid (MedmmError when they are not)."""
    g = int(round(math.sqrt(n)))
    if g * g != n:
        raise MedmmError(f"{n} image tokens do not form a square grid")
    return g, g


class CrossAttentionRecorder:
    """Makes every decoder layer's cross-attention return its weights and records them."""

    def __init__(self, decoder: torch.nn.Module):
        self.weights: list[torch.Tensor] = []
        self.handles = []
        for layer in decoder.layers:
            mha = layer.multihead_attn
            self.handles.append(mha.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(mha.register_forward_hook(self._post))

    @staticmethod
    def _pre(module, args, kwargs):
        kwargs = dict(kwargs)
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = True
        return args, kwargs

    def _post(self, module, args, output):
        self.weights.append(output[1].detach())

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def sentence_spans(words: list[str]) -> list[tuple[int, int]]:
    """(start, end) word index spans of sentences ending at '.', '!' or '?' (the last may be open)."""
    spans, start = [], 0
    for k, w in enumerate(words):
        if re.fullmatch(r"[.!?]", w):
            spans.append((start, k + 1))
            start = k + 1
    if start < len(words):
        spans.append((start, len(words)))
    return spans
