"""Answers scored by what they say (``model.answer_text: true`` of the VQA task).

A plain answer classifier learns one weight vector per answer from that answer's own training
questions. Most of VQA-RAD's open answers occur once or twice, so their weights come from a
single example and say nothing about answers that read alike ("left lung", "left lower lobe").
:class:`AnswerTextHead` adds to the plain head's logits a term computed from the answer TEXT:
the cosine between a projection of the fused question-image feature and a projection of the
frozen text encoder's embedding of the answer string, times a learned scale. Answers that mean
similar things then share evidence, and a rarely seen answer starts from what its words mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class AnswerTextHead(nn.Module):
    """``logits = free(x) + scale * cos(query(x), key(answer_vectors))``.

    `answer_vectors` (answers x text_dim) is a buffer, saved with the weights, so a trained run
    needs no text encoder pass over its answers at load time; fill it with :meth:`set_answer_vectors`.
    """

    def __init__(self, free: nn.Module, in_dim: int, text_dim: int, n_answers: int, proj_dim: int = 256, init_scale: float = 10.0):
        super().__init__()
        self.free = free
        self.query = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, proj_dim))
        self.key = nn.Linear(text_dim, proj_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.register_buffer("answer_vectors", torch.zeros(n_answers, text_dim))

    def set_answer_vectors(self, vectors: torch.Tensor) -> None:
        """Store the answers' text embeddings (one row per answer, in vocabulary order)."""
        if vectors.shape != self.answer_vectors.shape:
            raise ValueError(f"answer vectors of shape {tuple(vectors.shape)}, expected {tuple(self.answer_vectors.shape)}")
        self.answer_vectors.copy_(vectors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = F.normalize(self.query(x), dim=-1)
        k = F.normalize(self.key(self.answer_vectors), dim=-1)
        return self.free(x) + self.log_scale.exp() * q @ k.T


@torch.no_grad()
def embed_texts(texts: list[str], encode: Callable[[list[str]], torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """`encode` (a list of strings -> (n, dim) tensor, e.g. a frozen text encoder's pooled
    output) applied `batch_size` strings at a time, rows concatenated in order."""
    if not texts:
        raise ValueError("no texts to embed")
    return torch.cat([encode(texts[k : k + batch_size]).float() for k in range(0, len(texts), batch_size)])
