"""Learned same-image context for VQA: attend over the training QA pairs about the same image.

The fixed answer memory (`medmm.tasks.vqa_memory`, ``memory_weight``) adds the answers of the
most similar same-image training questions at inference only, with a fixed weight. That is
right when a test question restates a training question (a paraphrase) and wrong otherwise:
"Is this an MRI?" -> "no" says nothing about "Is there a pneumothorax?". This module learns
when and how to use the other questions about the image:

* keys are the frozen embeddings of the same-image training questions, values add a learned
  embedding of their answers, and the query is the question being answered (learned
  bilinear attention plus a learned multiple of the cosine similarity as a prior);
* the attended vector is added to the fused features before the classifier (so "the answer to
  'where is the mass?' was 'left lung'" can inform "is there a mass?");
* a pointer distribution (the attention weights summed per answer) is mixed into the answer
  distribution with a learned gate (the kNN-LM memory, but trained).

Training must see what testing sees: a test question's paraphrases are not in the training
part (VQA-RAD's official test questions are a held-out set of question groups), so in training
a question never attends to its own paraphrase group (`AnswerMemory.entries(exclude_groups=)`).
An image without training questions gets no context and a gate of zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SameImageContext(nn.Module):
    """Attention over same-image training QA pairs: a context vector and a gated pointer."""

    def __init__(self, text_dim: int, n_answers: int, fused_dim: int, dim: int = 128, temperature: float = 0.05):
        super().__init__()
        self.n_answers, self.dim = n_answers, dim
        self.query = nn.Linear(text_dim, dim)
        self.key = nn.Linear(text_dim, dim)
        self.value = nn.Linear(text_dim, dim)
        # index n_answers: a training answer outside the vocabulary (still informative as a value)
        self.answer = nn.Embedding(n_answers + 1, dim)
        self.cosine_scale = nn.Parameter(torch.tensor(1.0 / temperature))
        self.out = nn.Linear(dim, fused_dim)
        self.gate = nn.Sequential(nn.Linear(fused_dim + dim + 2, 64), nn.GELU(), nn.Linear(64, 1))

    def forward(
        self, query: torch.Tensor, entries: torch.Tensor, answers: torch.Tensor, mask: torch.Tensor, fused: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Context for each question.

        Args:
            query: (B, text_dim) frozen question embeddings.
            entries: (B, K, text_dim) embeddings of the same-image training questions.
            answers: (B, K) their answer indices (-1: outside the vocabulary).
            mask: (B, K) True where an entry exists.
            fused: (B, fused_dim) the fused image-question features.
        Returns:
            (extra (B, fused_dim) to add to the fused features, pointer (B, n_answers) summing
            to 1 over in-vocabulary entries, gate (B, 1) in [0, 1], attention weights (B, K)).
        """
        b, k = answers.shape
        has = mask.any(-1, keepdim=True)
        if k == 0:
            zero = query.new_zeros(b, 1)
            return fused.new_zeros(fused.shape), query.new_zeros(b, self.n_answers), zero, query.new_zeros(b, 0)
        cos = torch.einsum("bd,bkd->bk", F.normalize(query, dim=-1), F.normalize(entries, dim=-1))
        logits = torch.einsum("bd,bkd->bk", self.query(query), self.key(entries)) / math.sqrt(self.dim)
        logits = (logits + self.cosine_scale * cos).masked_fill(~mask, float("-inf"))
        weights = torch.nan_to_num(logits.softmax(-1), nan=0.0) * mask  # rows without entries -> 0
        idx = torch.where(answers >= 0, answers, torch.full_like(answers, self.n_answers))
        values = self.value(entries) + self.answer(idx)
        ctx = torch.einsum("bk,bkd->bd", weights, values)
        known = weights * (answers >= 0)
        pointer = query.new_zeros(b, self.n_answers).scatter_add(1, answers.clamp_min(0), known)
        best_cos = cos.masked_fill(~mask, -1.0).max(-1, keepdim=True).values
        gate = torch.sigmoid(self.gate(torch.cat([fused, ctx, best_cos, has.float()], -1))) * has
        return self.out(ctx) * has, pointer, gate, weights


def mix_with_pointer(probs: torch.Tensor, pointer: torch.Tensor, gate: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(1 - gate * m) * probs + gate * pointer over the allowed answers, m = the pointer's allowed
    mass: the pointer's mass on answers this question type cannot take goes back to `probs`, so
    the result still sums to 1 when `probs` does."""
    p = pointer * allowed
    return probs * (1.0 - gate * p.sum(-1, keepdim=True)) + gate * p
