"""Answer memory for VQA: the answers of training questions asked about the SAME image.

VQA-RAD's official split is by question: 202 of its 203 test images are training images. When a
question restates a training question about the same image (a paraphrase), a parametric
classifier learns that image-specific answer poorly from one example, so the task keeps a
non-parametric memory of its training questions (kNN-LM style): for a question about an image
seen in training, the answers of that image's training questions, weighted by question
similarity (softmax of cosine / temperature over frozen question embeddings), form a second
answer distribution that is added to the classifier's (``memory.weight``).

What it is worth depends on paraphrases: on held-out questions whose paraphrase is in training
it adds about 11 points; on a split that keeps paraphrase groups together (``group_by:
question``) it changes nothing measurable, and the other questions about the same image carry
no usable signal for a new question (benchmarks/vqa_rad.md, section 2).

Images are matched by a checksum of their file bytes (the same file under any root), so the
memory does nothing for an unseen image: on image-disjoint splits the model is the classifier.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def image_key(path: str | Path | None, array: np.ndarray | None = None) -> str:
    """Checksum identifying an image: sha1 of the file bytes (of the array bytes without a file)."""
    if path is not None:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()
    if array is None:
        return ""
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


class AnswerMemory(nn.Module):
    """Training (image key, question embedding, answer index, question) entries.

    The embeddings are a persistent buffer (saved in the run's weights); keys, answers and
    questions are JSON state (`state()` / `from_state`).
    """

    def __init__(self, keys: list[str], answers: list[int], questions: list[str], dim: int):
        super().__init__()
        if not len(keys) == len(answers) == len(questions):
            raise ValueError("memory keys, answers and questions must have equal length")
        self.keys, self.answers, self.questions = list(keys), list(answers), list(questions)
        self.register_buffer("embeddings", torch.zeros(len(keys), dim))
        self.register_buffer("answer_index", torch.tensor(self.answers, dtype=torch.long), persistent=False)
        self._rows: dict[str, list[int]] = {}
        for i, k in enumerate(self.keys):
            self._rows.setdefault(k, []).append(i)

    def set_embeddings(self, embeddings: torch.Tensor) -> None:
        """Store L2-normalised question embeddings (N, dim)."""
        self.embeddings.copy_(F.normalize(embeddings.float(), dim=-1))

    def state(self) -> dict[str, Any]:
        return {"keys": self.keys, "answers": self.answers, "questions": self.questions, "dim": int(self.embeddings.shape[1])}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AnswerMemory:
        return cls(state["keys"], state["answers"], state["questions"], int(state["dim"]))

    def distribution(self, queries: torch.Tensor, keys: list[str], n_answers: int, temperature: float) -> tuple[torch.Tensor, list[dict[str, Any] | None]]:
        """Per query (B, dim) about image `keys[b]`: an answer distribution (B, n_answers)
        (all zeros for an image not in memory) and the best-matching training question."""
        q = F.normalize(queries.float(), dim=-1)
        out = torch.zeros(len(keys), n_answers, device=q.device)
        best: list[dict[str, Any] | None] = []
        for b, k in enumerate(keys):
            rows = self._rows.get(k)
            if not rows:
                best.append(None)
                continue
            idx = torch.tensor(rows, device=q.device)
            sim = self.embeddings[idx] @ q[b]
            w = torch.softmax(sim / temperature, dim=0)
            ans = self.answer_index.to(q.device)[idx]
            known = ans >= 0  # answers outside the vocabulary cannot be voted for
            out[b].index_add_(0, ans[known], w[known])
            j = int(sim.argmax())
            best.append({"question": self.questions[rows[j]], "similarity": round(float(sim[j]), 4), "n_same_image": len(rows)})
        return out, best
