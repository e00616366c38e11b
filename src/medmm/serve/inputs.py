"""Uploaded bytes -> an image array through medmm's own readers, with limits and safe errors.

An upload is checked before it is decoded: its size, its format (PNG, JPEG or DICOM by magic
bytes; anything else is refused) and, for PNG/JPEG, the pixel count its header claims (a
30000 x 30000 header is refused without allocating it). It is then written to a private temp
file and read by `medmm.data.io.read_image`, so windowing, rescale and MONOCHROME1 inversion
are exactly those of training and `medmm predict`; multi-frame DICOM is refused.

Error messages never carry DICOM header values (a patient name in a garbled element could
otherwise be echoed back or logged): for DICOM only the reader's fixed first clause is kept.
"""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np

from medmm.data.io.image import read_image, sniff_format
from medmm.errors import BadInputError

ACCEPTED = ("png", "jpeg", "dicom")
_SUFFIX = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}


class InputError(Exception):
    """A request input the service refuses: HTTP status and a message safe to log and return."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _safe_problem(exc: BadInputError, fmt: str) -> str:
    problem = exc.problem
    if fmt == "dicom":
        # pydicom's own wording may quote element values; keep medmm's fixed clause only.
        problem = problem.split(":", 1)[0]
    return f"image ({fmt}): {problem}"


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """The image array of an uploaded PNG, JPEG or DICOM file; `InputError` (4xx) when unusable."""
    if not data:
        raise InputError(422, "image: the uploaded file is empty")
    fmt = sniff_format(data[:132])
    if fmt not in ACCEPTED:
        raise InputError(415, f"image: not a PNG, JPEG or DICOM file (got {fmt or 'unrecognised bytes'})")
    if fmt != "dicom":
        _check_header_size(data, fmt, max_pixels)
    fd, tmp = tempfile.mkstemp(suffix=_SUFFIX[fmt], prefix="medmm-serve-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        arr = read_image(tmp)
    except BadInputError as exc:
        raise InputError(422, _safe_problem(exc, fmt)) from None
    except (ValueError, OSError, MemoryError) as exc:
        raise InputError(422, f"image ({fmt}): cannot be decoded ({type(exc).__name__})") from None
    finally:
        os.unlink(tmp)
    if arr.shape[0] * arr.shape[1] > max_pixels:
        raise InputError(413, f"image: {arr.shape[1]} x {arr.shape[0]} pixels is over the limit of {max_pixels}")
    return arr


def _check_header_size(data: bytes, fmt: str, max_pixels: int) -> None:
    from PIL import Image

    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":  # PNG: width, height at bytes 16-24
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if w * h > max_pixels:
            raise InputError(413, f"image ({fmt}): header claims {w} x {h} pixels, over the limit of {max_pixels}")
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
    except Image.DecompressionBombError:
        raise InputError(413, f"image ({fmt}): header claims an implausibly large image") from None
    except Exception:  # noqa: BLE001 - PIL raises many types on garbage; all mean "not decodable"
        raise InputError(422, f"image ({fmt}): corrupt or truncated header") from None
    if w * h > max_pixels:
        raise InputError(413, f"image ({fmt}): header claims {w} x {h} pixels, over the limit of {max_pixels}")
