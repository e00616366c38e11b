"""DICOM reading with pydicom: pixels with rescale, windowing and MONOCHROME1 inversion, and headers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medmm.data.io.guard import check_jpeg2000, guarded
from medmm.errors import BadInputError

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class DicomInfo:
    """Header fields of one DICOM file that medmm uses (no pixel data is read)."""

    path: str
    patient_id: str | None
    study_id: str | None  # StudyInstanceUID
    series_id: str | None  # SeriesInstanceUID
    sop_instance_uid: str | None
    modality: str | None  # CT, MR, CR, DX, US, ...
    view: str | None  # ViewPosition (PA, AP, LL, ...)
    body_part: str | None
    study_description: str | None
    rows: int | None
    columns: int | None
    has_pixels: bool = True


def _dcmread(path: Path, *, force: bool, stop_before_pixels: bool = False, defer_size: str | None = None) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, force=force, stop_before_pixels=stop_before_pixels, defer_size=defer_size)
    except InvalidDicomError as exc:
        raise BadInputError(path, f"not a DICOM file: {exc}") from exc
    except RecursionError:
        raise BadInputError(path, "corrupt DICOM header: sequences nested too deeply to parse") from None
    except Exception as exc:  # pydicom raises EOFError, struct.error, ValueError, ... on corrupt headers
        raise BadInputError(path, f"corrupt DICOM header: {type(exc).__name__}: {exc}") from exc


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value)
    except (TypeError, ValueError, IndexError):
        return None


def _ensure_transfer_syntax(ds: Any) -> None:
    """Raw datasets (no file meta) do not name their transfer syntax; take it from how they were read."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def has_preamble(path: Path) -> bool:
    """True when the file has the 128-byte preamble + "DICM" (False for raw datasets)."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dicom_info(path: str | Path) -> DicomInfo:
    """Read the header of a DICOM file (ids, modality, view) without loading pixel data.

    Large values are deferred (not read), so this is fast, yet it still sees whether a
    PixelData element exists (``has_pixels``). Raw datasets without the preamble + "DICM"
    are read like `read_image` reads them (forced), so both accept the same files.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "DICOM file not found")
    try:
        force = not has_preamble(path)
    except OSError as exc:
        raise BadInputError(path, f"cannot read DICOM file: {exc.strerror or exc}") from exc
    ds = _dcmread(path, force=force, defer_size="2 KB")
    try:
        return _info(path, ds)
    except Exception as exc:  # a garbled header value surfaces only when it is parsed
        raise BadInputError(path, f"invalid DICOM header value: {type(exc).__name__}: {exc}") from exc


def _info(path: Path, ds: Any) -> DicomInfo:
    rows, cols = ds.get("Rows"), ds.get("Columns")
    return DicomInfo(
        path=str(path),
        patient_id=_text(ds, "PatientID"),
        study_id=_text(ds, "StudyInstanceUID"),
        series_id=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        modality=_text(ds, "Modality"),
        view=_text(ds, "ViewPosition"),
        body_part=_text(ds, "BodyPartExamined"),
        study_description=_text(ds, "StudyDescription"),
        rows=int(rows) if rows is not None else None,
        columns=int(cols) if cols is not None else None,
        has_pixels=any(tag in ds for tag in _PIXEL_TAGS),
    )


def read_dicom(
    path: str | Path,
    *,
    window: tuple[float, float] | None = None,
    stored_window: bool = True,
    force: bool = False,
) -> np.ndarray:
    """Decode a single-frame DICOM image; see `medmm.data.io.read_image` for the output rules.

    ``force=True`` accepts files without the 128-byte preamble + "DICM" marker (raw datasets).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "DICOM file not found")
    ds = _dcmread(path, force=force)
    try:
        arr = _decode(path, ds, window, stored_window)
    except BadInputError:
        raise
    except Exception as exc:  # a garbled header value surfaces only when it is parsed
        raise BadInputError(path, f"invalid DICOM header value: {type(exc).__name__}: {exc}") from exc
    if window is not None and arr.ndim == 3:
        raise ValueError(f"{path}: a window applies to grayscale images, this colour DICOM has shape {arr.shape}")
    return arr


def _check_compressed_frame(path: Path, ds: Any) -> None:
    """Reject a malformed JPEG 2000 frame before a decoder sees it (some loop forever on one)."""
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEG2000TransferSyntaxes

    if ds.file_meta.TransferSyntaxUID not in JPEG2000TransferSyntaxes or "PixelData" not in ds:
        return
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as exc:  # a broken item/fragment structure
        raise BadInputError(path, f"encapsulated pixel data is malformed: {type(exc).__name__}: {exc}") from exc
    check_jpeg2000(frame, path, "JPEG 2000 pixel data")


def _check_finite(path: Path, arr: np.ndarray) -> None:
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise BadInputError(path, f"{bad} of {arr.size} pixel values are NaN or infinite")


def _decode(path: Path, ds: Any, window: tuple[float, float] | None, stored_window: bool) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    from medmm.data.io.image import apply_window

    if not any(tag in ds for tag in _PIXEL_TAGS):
        raise BadInputError(path, "DICOM has no pixel data (no PixelData element)")
    frames = _first_number(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        raise BadInputError(path, f"multi-frame DICOM ({int(frames)} frames); read_image expects one 2-D image")
    try:
        _ensure_transfer_syntax(ds)
        _check_compressed_frame(path, ds)
        arr = guarded(lambda: ds.pixel_array, path, "decoding the DICOM pixel data")
    except BadInputError:
        raise
    except Exception as exc:  # truncated data, unsupported transfer syntax, bad Rows/Columns ...
        raise BadInputError(path, f"cannot decode DICOM pixel data: {type(exc).__name__}: {exc}") from exc
    if arr.dtype.kind == "f":
        _check_finite(path, arr)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples > 1:
        if arr.ndim != 3:
            raise BadInputError(path, f"colour DICOM decoded to shape {arr.shape}")
        return np.ascontiguousarray(arr)  # pydicom already converted YBR to RGB
    if arr.ndim != 2:
        raise BadInputError(path, f"DICOM pixel data has shape {arr.shape}; expected (rows, columns)")
    try:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    except Exception as exc:
        raise BadInputError(path, f"invalid rescale / modality LUT: {exc}") from exc
    if window is None and stored_window:
        center, width = _first_number(ds.get("WindowCenter")), _first_number(ds.get("WindowWidth"))
        if center is not None and width is not None and width >= 1:
            window = (center, width)
    monochrome1 = str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"
    if window is not None:
        values = apply_window(values, *window)
        return (1.0 - values).astype(np.float32) if monochrome1 else values
    if monochrome1:
        # MONOCHROME1 stores low values as white; flip within the image's own range.
        values = (values.max() + values.min() - values).astype(np.float32)
    return values
