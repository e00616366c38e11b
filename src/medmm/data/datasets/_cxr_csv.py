"""Streaming CSV reading and CheXpert-style label parsing shared by the MIMIC-CXR and CheXpert loaders.

The index CSVs of these collections have hundreds of thousands of rows: they are read row by
row (plain or ``.gz``), and only the rows of the requested split are kept.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path

from medmm.data.registry import ErrorPolicy
from medmm.data.schema import LabelState
from medmm.errors import BadInputError

# The 14 observations of the CheXpert labeller, as named in both collections' CSV headers.
CHEXPERT_OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)  # fmt: skip

_STATES = {"1.0": LabelState.POSITIVE, "1": LabelState.POSITIVE, "0.0": LabelState.NEGATIVE, "0": LabelState.NEGATIVE,
           "-1.0": LabelState.UNCERTAIN, "-1": LabelState.UNCERTAIN}  # fmt: skip


def find_file(root: Path, name: str) -> Path | None:
    """`name` or `name`.gz in root."""
    for cand in (root / name, root / f"{name}.gz"):
        if cand.is_file():
            return cand
    return None


def iter_csv(path: Path, required: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV or CSV.gz, one row at a time; missing columns are a BadInputError."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = required - set(reader.fieldnames or ())
            if missing:
                raise BadInputError(path, f"missing columns {sorted(missing)}")
            yield from enumerate(reader, start=2)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise BadInputError(path, f"cannot read CSV: {exc}") from exc


def parse_findings(row: dict[str, str], path: Path, line: int, errors: ErrorPolicy) -> dict[str, LabelState] | None:
    """The CheXpert observations of a row: 1 positive, 0 negative, -1 uncertain (kept, never
    mapped to positive), blank = missing (absent from the dict). Another value: the row is bad."""
    out: dict[str, LabelState] = {}
    for name in CHEXPERT_OBSERVATIONS:
        value = (row.get(name) or "").strip()
        if not value:
            continue
        if value not in _STATES:
            errors.handle(BadInputError(path, f"line {line}: {name} = {value!r} is not 1, 0, -1 or blank"))
            return None
        out[name] = _STATES[value]
    return out
