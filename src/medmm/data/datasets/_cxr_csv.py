"""Streaming CSV reading and CheXpert-style label parsing shared by the MIMIC-CXR and CheXpert loaders.

The index CSVs of these collections have hundreds of thousands of rows: they are read row by
row (plain or ``.gz``), and only the rows of the requested split are kept.
"""

from __future__ import annotations

import csv
import gzip
import re
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


_BAD_BYTE = re.compile("[\udc80-\udcff]")


def find_file(root: Path, name: str) -> Path | None:
    """`name` or `name`.gz in root."""
    for cand in (root / name, root / f"{name}.gz"):
        if cand.is_file():
            return cand
    return None


def iter_csv(path: Path, required: set[str]) -> Iterator[tuple[int, dict[str, str] | BadInputError]]:
    """(line number, row) of a CSV or CSV.gz, streamed one row at a time.

    A row that is not UTF-8, holds a NUL byte or has more fields than the header (an unquoted
    comma shifts every later column) comes as the BadInputError of that row, so one bad row
    spoils only itself (the caller's ErrorPolicy raises or counts it). An empty file, missing
    columns or broken quoting raise BadInputError for the whole file.
    """
    if path.stat().st_size == 0:
        raise BadInputError(path, "CSV file is empty (0 bytes)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        # surrogateescape keeps undecodable bytes as marker characters: the row is reported, not the file lost
        with opener(path, "rt", newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise BadInputError(path, "CSV file is empty (no header row)")
            if any(_BAD_BYTE.search(h) for h in header):
                raise BadInputError(path, "CSV header is not valid UTF-8")
            missing = required - set(header)
            if missing:
                raise BadInputError(path, f"missing columns {sorted(missing)}")
            for values in reader:
                line = reader.line_num
                if not values or all(not v.strip() for v in values):
                    continue
                if any(_BAD_BYTE.search(v) for v in values):
                    yield line, BadInputError(path, f"line {line}: not valid UTF-8")
                elif any("\x00" in v for v in values):
                    yield line, BadInputError(path, f"line {line}: contains a NUL byte (binary data in a text file)")
                elif len(values) > len(header):
                    yield line, BadInputError(path, f"line {line} has {len(values)} fields but the header has {len(header)} (an unquoted comma?)")
                else:
                    yield line, dict(zip(header, values + [""] * (len(header) - len(values)), strict=True))
    except (OSError, EOFError, csv.Error) as exc:
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
