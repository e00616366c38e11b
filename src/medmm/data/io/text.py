"""UTF-8 text, JSON and CSV readers that report the file (and byte offset) on bad input."""

from __future__ import annotations

import csv
import io
import json
import re
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


def _non_empty(path: Path, data: bytes) -> bytes:
    if not data.strip():
        raise BadInputError(path, "file is empty (0 bytes)" if not data else "file holds only whitespace")
    return data


def read_json(path: str | Path) -> Any:
    """Parse a UTF-8 JSON file; syntax errors name the line and column; empty -> BadInputError."""
    path = Path(path)
    text = _decode_utf8(path, _non_empty(path, _read_bytes(path)))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc


def read_jsonl(path: str | Path) -> list[Any]:
    """Parse a JSON-lines file (one JSON value per non-blank line); empty -> BadInputError."""
    path = Path(path)
    text = _decode_utf8(path, _non_empty(path, _read_bytes(path)))
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


_BAD_BYTE = re.compile("[\udc80-\udcff]")
CsvRecord = tuple[str, "dict[str, str] | BadInputError"]


def read_csv_records(path: str | Path, *, comment: str | None = None) -> tuple[list[str], list[CsvRecord]]:
    """(header, records) of a UTF-8 CSV, where one bad row spoils only itself.

    Each record is (label "line N", row dict) or (label, the BadInputError of that row): a row
    with bytes that are not UTF-8 (named by byte offset) or with more fields than the header
    (an unquoted comma would shift every later column). Missing trailing fields become "".
    Lines starting with `comment` are ignored. An empty file, a blank or non-UTF-8 header, a
    repeated column name or broken quoting raise BadInputError for the whole file.
    """
    path = Path(path)
    data = _non_empty(path, _read_bytes(path))
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    # surrogateescape keeps undecodable bytes as marker characters, so one bad row does not
    # lose the whole file; that row is reported with the byte offset of its first bad byte.
    text = data[bom:].decode("utf-8", errors="surrogateescape")
    bad_offsets = _bad_byte_offsets(text, bom) if _BAD_BYTE.search(text) else []
    lines = text.splitlines(keepends=True)
    if comment is not None:
        lines = [ln if not ln.startswith(comment) else "\n" for ln in lines]  # keep line numbers
    reader = csv.reader(lines)
    seen_bad = 0
    try:
        header = next(reader, None)
        while header == [] and comment is not None:  # comment lines before the header
            header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise BadInputError(path, "CSV header row is blank")
        if any(_count_bad_bytes(h) for h in header):
            raise BadInputError(path, f"CSV header is not valid UTF-8 (byte offset {bad_offsets[0]})")
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise BadInputError(path, f"CSV header repeats column(s) {dupes}")
        records: list[CsvRecord] = []
        for values in reader:
            label = f"line {reader.line_num}"
            n_bad = sum(_count_bad_bytes(v) for v in values)
            if n_bad:
                offset = bad_offsets[seen_bad]
                seen_bad += n_bad
                records.append((label, BadInputError(path, f"{label}: not valid UTF-8 (byte offset {offset})")))
                continue
            if not values or all(not v.strip() for v in values):
                continue  # blank lines carry no record
            if any("\x00" in v for v in values):
                records.append((label, BadInputError(path, f"{label}: contains a NUL byte (binary data in a text file)")))
                continue
            if len(values) > len(header):
                problem = f"{label} has {len(values)} fields but the header has {len(header)} (an unquoted comma?)"
                records.append((label, BadInputError(path, problem)))
                continue
            values = values + [""] * (len(header) - len(values))
            records.append((label, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        raise BadInputError(path, f"malformed CSV near line {reader.line_num}: {exc}") from exc
    return header, records


def _count_bad_bytes(value: str) -> int:
    return sum("\udc80" <= ch <= "\udcff" for ch in value)


def _bad_byte_offsets(text: str, start: int) -> list[int]:
    """Byte offsets of the undecodable bytes (surrogate-escaped characters) of `text`."""
    offsets, pos = [], start
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            offsets.append(pos)
            pos += 1
        else:
            pos += len(ch.encode("utf-8", "surrogatepass"))
    return offsets
