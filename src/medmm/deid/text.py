"""De-identify report text: detectors -> merged spans -> masks or surrogates; CSV in, CSV out."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from medmm.deid.detect import detect_rules
from medmm.deid.spans import Span, merge_spans
from medmm.deid.surrogate import Surrogates, make_secret
from medmm.errors import BadInputError


class TextDeidentifier:
    """Finds PHI with the rules (and a model when given) and writes masks or surrogates.

    mode: "mask" writes [CATEGORY]; "surrogate" writes realistic stand-ins and shifts dates per
    patient. seed: derive the secret from it (reproducible); None = a random secret for this run.
    model: a token-classification checkpoint (hub name or folder) merged with the rules.
    """

    def __init__(self, mode: str = "mask", seed: int | None = None, model: str | None = None,
                 secret: bytes | None = None):
        if mode not in ("mask", "surrogate"):
            raise BadInputError(None, f"mode must be 'mask' or 'surrogate', not {mode!r}")
        self.mode = mode
        self.surrogates = Surrogates(secret if secret is not None else make_secret(seed))
        self.model = None
        if model is not None:
            from medmm.deid.model import ModelDetector

            self.model = ModelDetector(model)

    def detect(self, text: str) -> list[Span]:
        """Merged PHI spans of `text`."""
        spans = detect_rules(text)
        if self.model is not None:
            spans += self.model.detect(text)
        return merge_spans(spans)

    def replacement(self, span: Span, text: str, patient_id: str) -> str:
        """What one span becomes."""
        if self.mode == "mask":
            return f"[{span.category}]"
        return self.surrogates.value(span.category, text[span.start:span.end], patient_id)

    def deidentify(self, text: str, patient_id: str = "") -> tuple[str, list[dict[str, Any]]]:
        """(clean text, one audit record per span: category, start, end in the input, replacement)."""
        spans = self.detect(text)
        out, audit, pos = [], [], 0
        for s in spans:
            rep = self.replacement(s, text, patient_id)
            out.extend((text[pos:s.start], rep))
            audit.append({"category": s.category, "start": s.start, "end": s.end, "replacement": rep,
                          "source": s.source})
            pos = s.end
        out.append(text[pos:])
        return "".join(out), audit


def deidentify_text(text: str, mode: str = "mask", patient_id: str = "", seed: int | None = None) -> str:
    """One-off convenience: the de-identified text (rules only)."""
    return TextDeidentifier(mode=mode, seed=seed).deidentify(text, patient_id)[0]


def deidentify_csv(src: Path, out: Path, text_columns: list[str], deid: TextDeidentifier,
                   id_column: str | None = None, audit: Path | None = None) -> dict[str, int]:
    """Rewrite `text_columns` of a CSV; every other column is copied. Returns counts per category."""
    csv.field_size_limit(sys.maxsize)
    try:
        fh = src.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise BadInputError(src, f"cannot read: {exc}") from exc
    counts: dict[str, int] = {}
    with fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        for col in [*text_columns, *([id_column] if id_column else [])]:
            if col not in fields:
                raise BadInputError(src, f"no column {col!r} (columns: {', '.join(fields)})")
        if out.resolve() == src.resolve():
            raise BadInputError(out, "the output would overwrite the input")
        audit_rows: list[dict[str, Any]] = []
        with out.open("w", newline="", encoding="utf-8") as fo:
            writer = csv.DictWriter(fo, fieldnames=fields)
            writer.writeheader()
            for n, row in enumerate(reader, 1):
                pid = row[id_column] if id_column else ""
                for col in text_columns:
                    row[col], spans = deid.deidentify(row[col] or "", pid)
                    for s in spans:
                        counts[s["category"]] = counts.get(s["category"], 0) + 1
                        if audit is not None:
                            audit_rows.append({"row": n, "id": pid, "column": col, **s})
                writer.writerow(row)
    if audit is not None:
        with audit.open("w", newline="", encoding="utf-8") as fa:
            w = csv.DictWriter(fa, fieldnames=["row", "id", "column", "category", "start", "end",
                                               "replacement", "source"])
            w.writeheader()
            w.writerows(audit_rows)
    return counts
