"""A packed split as a compact, lazy sequence of Samples (`PackedSamples`).

A `list[Sample]` costs about 1 KB of Python objects per sample, held by the main process and
copied page by page into every data-loader worker (reference counts write to every object), so
a split of a million samples costs gigabytes per process. `PackedSamples` keeps only where each
sample's JSON record lies in its shard summary (``<split>-NNNNNN.json``): four numpy arrays,
20 bytes per sample, which forked workers share without copying. ``samples[i]`` reads that
record (one small read, served by the OS page cache) and builds the Sample then; its pixels stay
in the tar shard as `ShardImage`s. A CRC-32 of every record, taken when the split was loaded,
makes a summary changed afterwards a clear error instead of silently different samples.

It supports what the engine does with a split: ``len``, indexing, iteration, slicing, and
`take` (a subset in a given order, optionally relabelled with a split name: the grouped
split's result); `concat` pools several packed splits.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from medmm.data.schema import Sample
from medmm.data.shards.records import sample_from_record
from medmm.errors import BadInputError

_WS = re.compile(r"[ \t\n\r]*")


def scan_summary(data: bytes, path: str | Path) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """A shard summary's fields except ``records``, and the (start, end) byte span of each record.

    Every record is parsed once here (a malformed one is a BadInputError naming the file), but
    none is kept: the spans are all a `PackedSamples` needs to read it again later.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(path, f"not valid UTF-8 at byte offset {exc.start} (byte 0x{data[exc.start]:02x})") from exc
    dec = json.JSONDecoder()
    fields: dict[str, Any] = {}
    spans: list[tuple[int, int]] | None = None
    try:
        pos = _expect(text, _WS.match(text, 0).end(), "{")  # type: ignore[union-attr]
        while text[pos] != "}":
            key, pos = dec.raw_decode(text, pos)
            pos = _expect(text, pos, ":")
            if key == "records":
                if text[pos] != "[":
                    raise BadInputError(path, "'records' is not a list: not a shard summary")
                pos, spans = _WS.match(text, pos + 1).end(), []  # type: ignore[union-attr]
                while text[pos] != "]":
                    rec, end = dec.raw_decode(text, pos)
                    if not isinstance(rec, dict):
                        raise BadInputError(path, f"record {len(spans)} is not a JSON object")
                    spans.append((pos, end))
                    pos = _next(text, end, "]")
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
            else:
                fields[key], pos = dec.raw_decode(text, pos)
            pos = _next(text, pos, "}")
        if text[pos + 1 :].strip():
            raise json.JSONDecodeError("extra data after the summary", text, pos + 1)
    except json.JSONDecodeError as exc:
        raise BadInputError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except IndexError:
        raise BadInputError(path, "truncated JSON (ends inside the summary)") from None
    if spans is None:
        raise BadInputError(path, "not a shard summary (no 'records' list)")
    if len(text) != len(data):  # non-ASCII text: character positions are not byte positions
        spans = _byte_spans(text, spans)
    return fields, spans


def _expect(text: str, pos: int, char: str) -> int:
    """Position after `char` (and whitespace) at `pos`; anything else is a JSONDecodeError."""
    if text[pos] != char:
        raise json.JSONDecodeError(f"expected {char!r}", text, pos)
    return _WS.match(text, pos + 1).end()  # type: ignore[union-attr]


def _next(text: str, pos: int, close: str) -> int:
    """After a value: the position of the next value (a comma is skipped) or of `close`."""
    pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
    if text[pos] == ",":
        return _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text[pos] != close:
        raise json.JSONDecodeError(f"expected ',' or {close!r}", text, pos)
    return pos


def _byte_spans(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character spans (ascending) as UTF-8 byte spans, in one pass over the text."""
    out, char, byte = [], 0, 0
    for a, b in spans:
        byte += len(text[char:a].encode())
        start = byte
        byte += len(text[a:b].encode())
        char = b
        out.append((start, byte))
    return out


# Per packed record: its shard's number, the byte span of its JSON in the shard summary, its CRC-32.
_COLUMNS = {"shard": np.uint32, "start": np.int64, "size": np.uint32, "crc": np.uint32}


def _table(cols: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate(cols[k]).astype(dt, copy=False) if cols[k] else np.zeros(0, dtype=dt) for k, dt in _COLUMNS.items()}


class PackedSamples(Sequence[Sample]):
    """The samples of packed shards, built from their summary records when indexed.

    Construct with `PackedSamples.build`; `samples[i]`, iteration and slices give the same
    Samples `sample_from_record` gives, in packed order (or the order `take` chose).
    """

    def __init__(
        self,
        tars: tuple[str, ...],
        summaries: tuple[str, ...],
        table: dict[str, np.ndarray],
        rows: np.ndarray | None = None,
        split: str | None = None,
    ):
        # table: the `_COLUMNS` arrays, one row per packed record.
        self._tars, self._summaries, self._table = tars, summaries, table
        self._rows = rows  # the records this sequence shows, in order (None: all, as packed)
        self._split = split  # a split name replacing the packed one (a grouped split's part)

    @classmethod
    def build(cls, shards: Iterable[tuple[str, str, bytes, list[tuple[int, int]]]]) -> PackedSamples:
        """From (tar path, summary path, summary bytes, record spans) per shard, in packed order."""
        tars: list[str] = []
        summaries: list[str] = []
        cols: dict[str, list[np.ndarray]] = {k: [] for k in _COLUMNS}
        for k, (tar, summary, data, spans) in enumerate(shards):
            tars.append(str(tar))
            summaries.append(str(summary))
            s = np.array(spans, dtype=np.int64).reshape(-1, 2)
            cols["shard"].append(np.full(len(s), k, dtype=np.uint32))
            cols["start"].append(s[:, 0])
            cols["size"].append((s[:, 1] - s[:, 0]).astype(np.uint32))
            cols["crc"].append(np.fromiter((zlib.crc32(data[a:b]) for a, b in spans), dtype=np.uint32, count=len(spans)))
        return cls(tuple(tars), tuple(summaries), _table(cols))

    @classmethod
    def concat(cls, parts: Sequence[PackedSamples]) -> PackedSamples:
        """Several packed sequences as one (e.g. the source splits a grouped split pools)."""
        if any(p._split is not None for p in parts):
            raise ValueError("concat: parts relabelled with a split name cannot be pooled")
        tars: list[str] = []
        summaries: list[str] = []
        cols: dict[str, list[np.ndarray]] = {k: [] for k in _COLUMNS}
        for p in parts:
            rows = p._row_ids()
            for k in cols:
                col = p._table[k][rows]
                cols[k].append(col + np.uint32(len(tars)) if k == "shard" else col)
            tars.extend(p._tars)
            summaries.extend(p._summaries)
        return cls(tuple(tars), tuple(summaries), _table(cols))

    # ------------------------------------------------------------------ sequence
    def _row_ids(self) -> np.ndarray:
        return np.arange(len(self._table["shard"]), dtype=np.int64) if self._rows is None else self._rows

    def __len__(self) -> int:
        return len(self._table["shard"]) if self._rows is None else len(self._rows)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> PackedSamples: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return PackedSamples(self._tars, self._summaries, self._table, self._row_ids()[i], self._split)
        n = len(self)
        j = int(i)  # also numpy integers (the sampler's indices)
        if not -n <= j < n:
            raise IndexError(f"sample {j} of {n}")
        row = int(self._rows[j]) if self._rows is not None else j % n
        shard = int(self._table["shard"][row])
        start, size = int(self._table["start"][row]), int(self._table["size"][row])
        with open(self._summaries[shard], "rb") as f:
            f.seek(start)
            data = f.read(size)
        return self._sample(row, shard, data)

    def __iter__(self) -> Iterator[Sample]:
        # One read per shard summary instead of one per sample: consecutive rows mostly share a shard.
        cached, data = -1, b""
        for row in self._row_ids().tolist():
            shard = int(self._table["shard"][row])
            if shard != cached:
                data, cached = Path(self._summaries[shard]).read_bytes(), shard
            start = int(self._table["start"][row])
            yield self._sample(row, shard, data[start : start + int(self._table["size"][row])])

    def __add__(self, other: Sequence[Sample]) -> list[Sample]:
        # `samples + extra` (a task adding derived samples) works as on a list, and gives one.
        if not isinstance(other, Sequence):
            return NotImplemented
        return [*self, *other]

    def __radd__(self, other: Sequence[Sample]) -> list[Sample]:
        if not isinstance(other, Sequence):
            return NotImplemented
        return [*other, *self]

    def take(self, indices: Sequence[int] | np.ndarray, split: str | None = None) -> PackedSamples:
        """The samples at `indices` (positions in this sequence), in that order; with `split`,
        each one's ``split`` field reads that name (what `grouped_split` does to its copies)."""
        idx = np.asarray(indices, dtype=np.int64)
        return PackedSamples(self._tars, self._summaries, self._table, self._row_ids()[idx], split or self._split)

    def _sample(self, row: int, shard: int, data: bytes) -> Sample:
        if len(data) != int(self._table["size"][row]) or zlib.crc32(data) != int(self._table["crc"][row]):
            raise BadInputError(
                self._summaries[shard],
                f"record at byte {int(self._table['start'][row])} changed after the split was loaded "
                "(shard summary rewritten or truncated); load the split again",
            )
        s = sample_from_record(json.loads(data), self._tars[shard])
        if self._split is not None:
            s.split = self._split
        return s

    def nbytes(self) -> int:
        """Bytes of the index arrays (what the sequence costs in memory, besides a few objects)."""
        own = 0 if self._rows is None else self._rows.nbytes
        return own + sum(a.nbytes for a in self._table.values())

    def __repr__(self) -> str:
        return f"PackedSamples({len(self)} samples from {len(self._tars)} shards)"
