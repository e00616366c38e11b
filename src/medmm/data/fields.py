"""Checks of single values read from dataset files, shared by every loader.

A loader calls these on the raw values of one record; each failure is a `BadInputError` naming
the file and the record, which the loader's `ErrorPolicy` raises or counts. They make the same
bad value mean the same thing in every dataset: a NaN label is an error (never a class "nan"),
a float label must be a whole number, text must be text (not a JSON list or a number) without
NUL bytes, ids must be unique, a box must be finite, positive and inside its image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medmm.errors import BadInputError

# Spellings of "not a number" that pandas, numpy and spreadsheets write for a missing value.
_NAN_WORDS = frozenset({"nan", "-nan", "+nan"})


def is_nan_like(value: Any) -> bool:
    """True for float NaN and the strings pandas/numpy write for it ("nan", "NaN", "NAN")."""
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _NAN_WORDS


def text_value(
    value: Any, path: str | Path, what: str, *, required: bool = True, integers_ok: bool = False
) -> str | None:
    """A text field as a stripped str; None when empty and not required.

    Only JSON strings count as text: a list, object or number where text belongs is an error,
    not its Python repr; so are NUL bytes (binary data) and NaN written as text.
    ``integers_ok``: a JSON integer is accepted as its digits (VQA-RAD stores counts as 4, 12).
    """
    if integers_ok and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadInputError(path, f"{what} is empty")
        return None
    if not isinstance(value, str):
        raise BadInputError(path, f"{what} is a JSON {_json_type(value)} ({_short(value)}), expected text")
    if "\x00" in value:
        raise BadInputError(path, f"{what} contains a NUL byte (binary data in a text field)")
    if is_nan_like(value):
        raise BadInputError(path, f"{what} is {value.strip()!r} (a missing value written as NaN)")
    return value.strip()


def label_value(value: Any, path: str | Path, what: str, *, required: bool = True) -> str | None:
    """A categorical label or group id as str: text or a whole number.

    Blank/None is missing: BadInputError when required, else None. NaN is always an error
    (never a class or a patient group named "nan").
    """
    if is_nan_like(value):
        raise BadInputError(path, f"{what} is {str(value).strip()!r} (NaN, not a label)")
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadInputError(path, f"{what} is missing ({value!r})")
        return None
    if isinstance(value, (bool, list, dict)):
        raise BadInputError(path, f"{what} is a JSON {_json_type(value)} ({_short(value)}), expected a label")
    if isinstance(value, float):
        return str(whole_number(value, path, what))
    if isinstance(value, int):
        return str(value)
    if "\x00" in str(value):
        raise BadInputError(path, f"{what} contains a NUL byte")
    return str(value).strip()


def whole_number(value: Any, path: str | Path, what: str) -> int:
    """An integer label stored as int or float: NaN, inf and fractions (0.7) are errors, not 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(path, f"{what} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise BadInputError(path, f"{what} is {number} (missing or invalid label)")
    if number != int(number):
        raise BadInputError(path, f"{what} is {number}, not a whole class index (would be truncated to {int(number)})")
    return int(number)


def finite_number(value: Any, path: str | Path, what: str) -> float:
    """A float that must be finite (scores, box coordinates)."""
    if isinstance(value, bool):
        raise BadInputError(path, f"{what} is {value!r}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(path, f"{what} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise BadInputError(path, f"{what} is {number}, not a finite number")
    return number


def check_box(
    box: Any, path: str | Path, what: str, image_size: tuple[Any, Any] | None = None
) -> tuple[float, float, float, float]:
    """A COCO box [x, y, width, height]: four finite numbers, positive size, inside the image.

    ``image_size = (width, height)`` when the annotation file states it; a box may overhang its
    image by at most one pixel (rounding in rescaled copies).
    """
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise BadInputError(path, f"{what}: bbox {_short(box)} is not [x, y, width, height]")
    x, y, w, h = (finite_number(v, path, f"{what} bbox value") for v in box)
    if w <= 0 or h <= 0:
        raise BadInputError(path, f"{what}: bbox {list(box)} has a non-positive width or height")
    if x < -1 or y < -1:
        raise BadInputError(path, f"{what}: bbox {list(box)} starts outside the image")
    if image_size is not None and all(isinstance(v, (int, float)) and v > 0 for v in image_size):
        width, height = float(image_size[0]), float(image_size[1])
        if x + w > width + 1 or y + h > height + 1:
            raise BadInputError(path, f"{what}: bbox {list(box)} reaches outside the {width:g}x{height:g} image")
    return x, y, w, h


class UniqueIds:
    """Remembers the ids of one file; a repeated id is an error naming both records."""

    def __init__(self, path: str | Path, kind: str = "id"):
        self.path, self.kind = path, kind
        self._first: dict[str, str] = {}

    def add(self, value: str, where: str, *, check: bool = True) -> None:
        """Record `value` seen at `where` ("line 7", "record 3"); raise if seen before.

        ``check=False`` only records it (a record of another split that a later one may repeat).
        """
        if check and value in self._first:
            raise BadInputError(self.path, f"{where}: {self.kind} {value!r} repeats {self._first[value]}")
        self._first.setdefault(value, where)


def _json_type(value: Any) -> str:
    return {list: "list", tuple: "list", dict: "object", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."
