"""Choice questions for VQA (``model.classifier.choice_options``): answer with one of the options offered.

VQA-RAD's closed questions include alternatives: "Is the trachea deviated to the right or left?",
"Is this a T1 weighted, T2 weighted, or FLAIR image?". A classifier over every closed answer
answers most of them "yes" or "no", which can never be right (on the paraphrase-grouped proxy,
76 of 108 held-out choice questions, 2026-11-29). With the option mask, a question that names
vocabulary answers next to a connector ("or", "vs", "versus", or a comma of the list) is
answered only with those answers, scored by the classifier.

An option must be an answer of the training vocabulary: a named alternative never seen as an
answer in training ("male or female" when neither was) has no classifier score, and the
question is answered as before. Requiring the option to touch a connector keeps the subject
of the question out ("Does the *appendix* appear normal or abnormal?").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medmm.metrics.vqa import normalise_answer

CONNECTORS = frozenset({"or", "vs", "versus"})
_SEPARATORS = CONNECTORS | {","}


def question_tokens(question: str) -> list[str]:
    """The question normalised like an answer (`normalise_answer`), with its commas kept as "," tokens."""
    tokens: list[str] = []
    for k, part in enumerate(str(question).split(",")):
        if k:
            tokens.append(",")
        tokens.extend(normalise_answer(part).split())
    return tokens


def choice_options(question: str, answers: Sequence[str]) -> list[int]:
    """Indices of the `answers` the question offers as alternatives (empty when it offers none).

    An answer is offered when its words occur in the question, with the word just before or just
    after them a connector ("or", "vs", "versus") or a comma, in a question holding a connector.
    Yes and no are never options (a choice question is not answered yes/no).
    """
    tokens = question_tokens(question)
    if not CONNECTORS.intersection(tokens):
        return []
    found = []
    for index, answer in enumerate(answers):
        words = answer.split()
        if not words or answer in ("yes", "no"):
            continue
        k = len(words)
        for i in range(len(tokens) - k + 1):
            if tokens[i : i + k] != words:
                continue
            before = tokens[i - 1] if i > 0 else ""
            after = tokens[i + k] if i + k < len(tokens) else ""
            if before in _SEPARATORS or after in _SEPARATORS:
                found.append(index)
                break
    return found


class ChoiceOptions:
    """Option masks over a fixed answer vocabulary, cached per question text."""

    def __init__(self, answers: Sequence[str]):
        self.answers = list(answers)
        self._cache: dict[str, list[int]] = {}

    def indices(self, question: str) -> list[int]:
        """`choice_options` of the question (cached)."""
        if question not in self._cache:
            self._cache[question] = choice_options(question, self.answers)
        return self._cache[question]

    def mask(self, questions: Sequence[str]) -> torch.Tensor:
        """(B, answers) bool: True at each question's options; an all-False row = not a choice question."""
        out = torch.zeros(len(questions), len(self.answers), dtype=torch.bool)
        for row, question in enumerate(questions):
            out[row, self.indices(question)] = True
        return out


def restrict_to_options(probs: torch.Tensor, options: torch.Tensor) -> torch.Tensor:
    """Rows with options: `probs` renormalised over the options only (uniform when the classifier
    gives them no mass); rows without options: unchanged."""
    has = options.any(-1, keepdim=True)
    kept = probs.masked_fill(~options, 0.0)
    total = kept.sum(-1, keepdim=True)
    uniform = options.to(probs.dtype) / options.sum(-1, keepdim=True).clamp_min(1)
    restricted = torch.where(total > 1e-12, kept / total.clamp_min(1e-12), uniform)
    return torch.where(has, restricted, probs)
