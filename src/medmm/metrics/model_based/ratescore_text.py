"""RaTEScore's text handling around the NER model: sentences in, typed entity spans out (torch-free).

The reference code (``MAGIC-AI4Med/RaTEScore``) runs the NER model one sentence at a time,
sentences found by medspaCy's PyRuSH; sentences with no word or under 3 characters are dropped.
It decodes BIO tags per sub-word token: an entity starts at a ``B-TYPE`` token, takes the type of
that token, runs through the ``I-…`` tokens that follow, and ends before the next ``B-`` or ``O``;
``I-`` tokens with no ``B-`` before them belong to no entity. Its text is the tokeniser's
``convert_tokens_to_string`` of the span's tokens.

Deviations (see docs/metrics.md): sentences are split by :func:`split_sentences` (a regular
expression: after ``.``, ``!`` or ``?`` followed by white space, and at line breaks), not
PyRuSH; an entity that reaches the sentence's last token is always kept (the reference code
drops it in one rare state of its decoder, when an earlier one-token entity in the same
sentence was followed directly by a ``B-`` tag and the final [SEP] was tagged ``I-``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """The sentences of a report that RaTEScore tags: stripped, with a word and at least 3 characters."""
    out = []
    for part in _SENTENCE_END.split(text):
        s = part.strip()
        if s.split() and len(s) >= 3:
            out.append(s)
    return out


def decode_bio(labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(start, end inclusive, type)`` of each entity in a sentence's per-token BIO labels."""
    spans: list[tuple[int, int, str]] = []
    start: int | None = None
    kind = ""
    for i, label in enumerate(labels):
        if label.startswith("B-"):
            if start is not None:
                spans.append((start, i - 1, kind))
            start, kind = i, label[2:]
        elif label.startswith("I-"):
            continue  # extends an open entity; a stray one opens nothing
        else:
            if start is not None:
                spans.append((start, i - 1, kind))
            start = None
    if start is not None:
        spans.append((start, len(labels) - 1, kind))
    return spans
