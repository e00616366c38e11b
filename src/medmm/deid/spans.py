"""The one record every detector returns, and how overlapping detections are merged."""

from __future__ import annotations

from dataclasses import dataclass

# What the issue asks to remove. Phone and fax, MRN and accession are told apart by their context
# words only so the audit says which it was; every category is masked the same way. SERIAL is a
# device serial number: the mask "[SERIAL]" (not "[DEVICE]") keeps the report labeller from reading
# a support device into every masked report.
CATEGORIES = (
    "NAME", "DATE", "AGE", "MRN", "ACCESSION", "ID", "PHONE", "FAX", "EMAIL", "URL",
    "ADDRESS", "POSTCODE", "INSTITUTION", "SERIAL",
)


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of a text are PHI of `category`; `source` is 'rules' or 'model'."""

    start: int
    end: int
    category: str
    source: str = "rules"


def merge_spans(spans: list[Span]) -> list[Span]:
    """Overlapping or touching-inside spans become one; the longest span names the category."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if s.end <= s.start:
            continue
        if out and s.start < out[-1].end:
            prev = out[-1]
            longer = prev if prev.end - prev.start >= s.end - s.start else s
            src = prev.source if prev.source == s.source else "rules+model"
            out[-1] = Span(prev.start, max(prev.end, s.end), longer.category, src)
        else:
            out.append(s)
    return out
