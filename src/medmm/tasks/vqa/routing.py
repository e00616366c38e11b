"""Closed/open routing of VQA questions, predicted from the question alone.

The VQA task answers a closed question (yes/no, a choice) from the closed answers and an open one
from the open answers or the decoder. Which of the two a question is must come from the question:
the dataset's ``answer_type`` annotation is a label a deployed model never gets. With
``model.routing: predicted`` (the default) a logistic regression on the question's words and word
pairs (plus its first word), trained on the TRAINING questions' annotated types, decides; with
``model.routing: annotation`` the annotation routes and the metrics file lists it under
``protocol.oracle_inputs``. When the training questions carry no type, or only one, the rule
`is_closed_question` (a yes/no-style opening word, no " or ") is the router.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medmm.tasks.vqa.answers import is_closed_question

ORACLE_ROUTING = "answer_type annotation routes closed/open questions at inference (model.routing=annotation)"


def _text(question: str) -> str:
    # a start marker makes the opening word a feature of its own ("qstart is", "qstart what")
    return "qstart " + (question or "").lower()


class ClosedOpenRouter:
    """Predicts whether a question is closed: a fitted linear model over binary n-gram features,
    or the yes/no rule when there was nothing to fit."""

    def __init__(self, vocabulary: dict[str, int] | None = None, coef: list[float] | None = None, intercept: float = 0.0):
        self.vocabulary = dict(vocabulary or {})
        self.coef = np.asarray(coef if coef is not None else [], dtype=np.float64)
        self.intercept = float(intercept)
        self._vectorizer = None

    @property
    def kind(self) -> str:
        return "logistic regression on question n-grams" if self.vocabulary else "rule: yes/no-style opening word, no ' or '"

    @classmethod
    def fit(cls, questions: list[str], closed: list[bool | None]) -> ClosedOpenRouter:
        """From training questions and their annotated closed flags (None: not annotated, left out)."""
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression

        pairs = [(q, c) for q, c in zip(questions, closed, strict=True) if c is not None and (q or "").strip()]
        if len({c for _, c in pairs}) < 2:
            return cls()
        vec = CountVectorizer(binary=True, ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b")
        x = vec.fit_transform([_text(q) for q, _ in pairs])
        model = LogisticRegression(max_iter=2000, C=1.0).fit(x, np.array([c for _, c in pairs], dtype=int))
        vocab = {k: int(v) for k, v in vec.vocabulary_.items()}
        return cls(vocab, model.coef_[0].tolist(), float(model.intercept_[0]))

    def predict(self, questions: list[str]) -> list[bool]:
        """True where the question is predicted closed."""
        if not self.vocabulary:
            return [is_closed_question(q, None) for q in questions]
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import CountVectorizer

            self._vectorizer = CountVectorizer(binary=True, ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
                                               vocabulary=self.vocabulary)
        x = self._vectorizer.transform([_text(q) for q in questions])
        return [bool(v > 0) for v in x @ self.coef + self.intercept]

    def state(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary, "coef": self.coef.round(6).tolist(), "intercept": self.intercept}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ClosedOpenRouter:
        return cls(state.get("vocabulary"), state.get("coef"), state.get("intercept", 0.0))


def annotated_closed(question: str, annotated_type: str | None) -> bool | None:
    """The annotation's closed flag (None when the question has no answer type)."""
    return is_closed_question(question, annotated_type) if annotated_type else None
