"""Question types for VQA (``model.classifier.question_type_mask``): answer with answers of the asked type.

VQA-RAD annotates every question with the type of what it asks (MODALITY, PLANE, ORGAN, POS, PRES,
...; SLAKE has a content type). A plain answer classifier ignores this and, having seen most
open answers once, answers "What modality is this?" with a brain region. With the mask, the
task learns to predict the type from the fused question-image feature (a small head trained on
the TRAINING annotations; no annotation is read at inference) and multiplies the answer
probabilities by how compatible each answer is with the predicted type: the probability that
the question is of a type the answer was seen with in training.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from medmm.data.schema import Sample
from medmm.tasks.vqa.answers import normalise_vqa_answer, question_type


def annotated_types(sample: Sample) -> list[str]:
    """The sample's annotated question types ("PRES, POS" -> ["PRES", "POS"]); [] when not annotated."""
    raw = question_type(sample) or ""
    return [k.strip().upper() for k in raw.split(",") if k.strip()]


class QuestionTypes:
    """Types seen at least `min_count` times in training and, per type, the answers seen with it."""

    def __init__(self, types: list[str], compatible: list[list[int]]):
        self.types = list(types)
        self.index = {t: i for i, t in enumerate(self.types)}
        self.compatible = [list(c) for c in compatible]  # per type: answer indices seen with it

    @classmethod
    def fit(cls, samples: list[Sample], answer_index: dict[str, int], min_count: int = 5) -> QuestionTypes | None:
        """From training samples; None when fewer than two types are annotated (nothing to mask)."""
        counts = Counter(t for s in samples for t in annotated_types(s))
        types = sorted(t for t, n in counts.items() if n >= min_count)
        if len(types) < 2:
            return None
        seen: dict[str, set[int]] = {t: set() for t in types}
        for s in samples:
            a = answer_index.get(normalise_vqa_answer(s.text.get("answer", "")))
            if a is None:
                continue
            for t in annotated_types(s):
                if t in seen:
                    seen[t].add(a)
        return cls(types, [sorted(seen[t]) for t in types])

    def labels(self, samples: list[Sample]) -> torch.Tensor:
        """Training target per sample: its first known type, -100 (ignored) when none."""
        out = []
        for s in samples:
            known = [self.index[t] for t in annotated_types(s) if t in self.index]
            out.append(known[0] if known else -100)
        return torch.tensor(out, dtype=torch.long)

    def compatibility(self, n_answers: int) -> torch.Tensor:
        """(types, answers) 0/1 matrix: answer seen with a question of that type in training."""
        m = torch.zeros(len(self.types), n_answers)
        for i, answers in enumerate(self.compatible):
            m[i, answers] = 1.0
        return m

    def state(self) -> dict[str, Any]:
        return {"types": self.types, "compatible": self.compatible}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QuestionTypes:
        return cls(state["types"], state["compatible"])


def mask_by_question_type(probs: torch.Tensor, type_logits: torch.Tensor, compatibility: torch.Tensor) -> torch.Tensor:
    """Answer probabilities (B, A) times P(the question is of a type the answer was seen with)
    = softmax(type_logits) @ compatibility, renormalised (left unchanged where that removes all mass)."""
    weight = type_logits.float().softmax(-1) @ compatibility.to(probs.dtype)
    masked = probs * weight
    total = masked.sum(-1, keepdim=True)
    return torch.where(total > 1e-12, masked / total.clamp_min(1e-12), probs)
