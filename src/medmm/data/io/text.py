"""UTF-8 text, JSON and CSV readers that report the file (and byte offset) on bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from medmm.errors import BadInputError


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise BadInputError(path, "file not found")
    if not path.is_file():
        raise BadInputError(path, "not a regular file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInputError(path, f"cannot read file: {exc.strerror or exc}") from exc


def _decode_utf8(path: Path, data: bytes) -> str:
    try:
        # utf-8-sig: files saved by Excel/Notepad start with a BOM that is not part of the text.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            path,
            f"not valid UTF-8 at byte offset {exc.start} (byte 0x{data[exc.start]:02x}); re-save the file as UTF-8",
        ) from exc


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (e.g. a report). Missing, non-UTF-8 or empty -> BadInputError."""
    path = Path(path)
    text = _decode_utf8(path, _read_bytes(path))
    if not text.strip():
        raise BadInputError(path, "text file is empty")
    return text


def read_json(path: str | Path) -> Any:
    """Parse a UTF-8 JSON file; syntax errors name the line and column."""
    path = Path(path)
    text = _decode_utf8(path, _read_bytes(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc


def read_jsonl(path: str | Path) -> list[Any]:
    """Parse a JSON-lines file (one JSON value per non-blank line)."""
    path = Path(path)
    text = _decode_utf8(path, _read_bytes(path))
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise BadInputError(path, f"invalid JSON on line {lineno}: {exc.msg}") from exc
    return records


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """Read a UTF-8 CSV with a header row into dict rows (column -> string value).

    A row with more fields than the header is an error (it usually means an unquoted comma),
    missing trailing fields become "". Non-UTF-8 bytes -> BadInputError naming the byte offset.
    """
    path = Path(path)
    text = _decode_utf8(path, _read_bytes(path))
    if not text.strip():
        raise BadInputError(path, "CSV file is empty (no header row)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        if not any(h.strip() for h in header):
            raise BadInputError(path, "CSV header row is blank")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise BadInputError(path, f"CSV header repeats column(s) {dupes}")
        rows = []
        for values in reader:
            if not values or all(not v.strip() for v in values):
                continue  # blank lines carry no record
            if len(values) > len(header):
                raise BadInputError(
                    path, f"CSV line {reader.line_num} has {len(values)} fields but the header has {len(header)}"
                )
            values = values + [""] * (len(header) - len(values))
            rows.append(dict(zip(header, values, strict=True)))
    except csv.Error as exc:
        raise BadInputError(path, f"malformed CSV near line {reader.line_num}: {exc}") from exc
    return rows
