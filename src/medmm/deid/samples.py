"""De-identify loaded samples on the fly: the text fields of medmm.data Samples (reports, findings,
questions, clinical notes) through a TextDeidentifier, dates shifted per patient_id in surrogate
mode. Any loader's output can pass through it, so no loader needs its own option."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from medmm.deid.text import TextDeidentifier


def deidentify_samples(samples: Iterable[Any], deid: TextDeidentifier | None = None,
                       fields: Iterable[str] | None = None) -> Iterator[Any]:
    """Copies of `samples` whose text fields (all, or `fields`) are de-identified (mask mode by default)."""
    deid = deid or TextDeidentifier()
    wanted = set(fields) if fields is not None else None
    for s in samples:
        pid = s.patient_id or s.case_id or s.id
        text = {k: (deid.deidentify(v, pid)[0] if v and (wanted is None or k in wanted) else v)
                for k, v in s.text.items()}
        yield dataclasses.replace(s, text=text)
