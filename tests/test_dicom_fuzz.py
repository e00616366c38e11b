"""The image readers never crash, hang or accept garbage: hypothesis fuzzing of the DICOM reader
(nested-sequence depth, JPEG 2000 boxes, byte flips, truncation), the decode guard, JP2 checks,
and raw DICOM read the same way by read_image and dicom_folder (issue 24 item 4)."""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bad_inputs import FIXTURES, JP2_ZERO_BOX, jp2_zero_box_dicom, raw_dicom_bytes
from medmm.data.io import read_dicom_info, read_image
from medmm.data.io.guard import JP2_SIGNATURE, check_jpeg2000, guarded
from medmm.data.registry import load_dataset
from medmm.errors import BadInputError

# Default runs stay short; `pytest -m slow` runs the long fuzzing below.
QUICK = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_or_bad(path: Path) -> None:
    """read_dicom_info and read_image: a result or a BadInputError, nothing else, never a hang."""
    for reader in (read_dicom_info, read_image):
        start = time.monotonic()
        try:
            out = reader(path)
        except BadInputError as exc:
            assert exc.path and Path(exc.path).name == path.name and exc.problem
        else:
            if reader is read_image:
                assert isinstance(out, np.ndarray) and out.ndim in (2, 3) and out.size
                if out.dtype.kind == "f":
                    assert np.isfinite(out).all()
        assert time.monotonic() - start < 30


# ------------------------------------------------------------------ nested sequences
def _nested_dataset(depth: int, width: int, text: str):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.PatientID = text
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 2, 2, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(range(4))
    inner = Dataset()
    inner.CodeValue = text[:16] or "x"
    for level in range(depth):
        outer = Dataset()
        # `width` items at the deepest level only: repeating at every level would be 2**depth items
        outer.ContentSequence = Sequence([inner] * (width if level == 0 else 1))
        inner = outer
    ds.ContentSequence = Sequence([inner])
    return ds


def _nested_file(tmp: Path, depth: int, width: int, text: str, cut: float | None) -> Path:
    ds = _nested_dataset(depth, width, text)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    if cut is not None:
        data = data[: max(1, int(len(data) * cut))]
    path = tmp / "nested.dcm"
    path.write_bytes(data)
    return path


@QUICK
@given(depth=st.integers(0, 40), width=st.integers(1, 2), text=st.text(max_size=20), cut=st.none() | st.floats(0.01, 0.99))
def test_nested_sequences_read_or_fail_cleanly(tmp_path, depth, width, text, cut):
    _read_or_bad(_nested_file(tmp_path, depth, width, text, cut))


@pytest.mark.slow
@LONG
@given(depth=st.integers(0, 400), width=st.integers(1, 3), text=st.text(max_size=40), cut=st.none() | st.floats(0.0, 1.0))
def test_nested_sequences_deep_slow(tmp_path, depth, width, text, cut):
    _read_or_bad(_nested_file(tmp_path, depth, width, text, cut))


def test_very_deep_nesting_is_a_bad_input_or_read(tmp_path):
    """Depth past Python's recursion limit (pydicom parses sequences recursively): a clean
    BadInputError or a read, never a RecursionError or a crash. Built by hand: pydicom cannot
    write this deep."""
    tag = b"\x40\x00\x30\xa7"  # (0040,A730) ContentSequence, explicit VR, undefined lengths
    undefined = b"\xff\xff\xff\xff"
    open_seq, open_item = tag + b"SQ\x00\x00" + undefined, b"\xfe\xff\x00\xe0" + undefined
    close_item, close_seq = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00", b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    depth = 3000
    nested = (open_seq + open_item) * depth + (close_item + close_seq) * depth
    ds = _nested_dataset(0, 1, "p")
    del ds.ContentSequence
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    path = tmp_path / "deep.dcm"
    path.write_bytes(out.getvalue() + nested)
    _read_or_bad(path)


# ------------------------------------------------------------------ JPEG 2000 boxes
_BOX_TYPES = st.sampled_from([b"jp2h", b"ihdr", b"colr", b"jp2c", b"ftyp", b"xml ", b"\x00\x00\x00\x00"])


@st.composite
def jp2_streams(draw) -> bytes:
    """A JP2 signature followed by boxes whose lengths may be 0, 1 (extended), tiny, exact or huge."""
    data = JP2_SIGNATURE
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(_BOX_TYPES)
        payload = draw(st.binary(max_size=24))
        length = draw(st.sampled_from(["exact", "zero", "one", "small", "huge"]))
        if length == "exact":
            data += struct.pack(">I", 8 + len(payload)) + kind + payload
        elif length == "zero":
            data += b"\x00\x00\x00\x00" + kind + payload
        elif length == "one":
            data += b"\x00\x00\x00\x01" + kind + struct.pack(">Q", draw(st.integers(0, 2**64 - 1))) + payload
        elif length == "small":
            data += struct.pack(">I", draw(st.integers(2, 7))) + kind + payload
        else:
            data += struct.pack(">I", draw(st.integers(9 + len(payload), 2**32 - 1))) + kind + payload
    return data


def _jp2_dicom(path: Path, frame: bytes) -> Path:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 2, 2, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    pydicom.dcmwrite(path, ds, enforce_file_format=False)
    return path


@QUICK
@given(stream=jp2_streams())
def test_jp2_boxes_in_dicom_never_hang(tmp_path, stream):
    _read_or_bad(_jp2_dicom(tmp_path / "j.dcm", stream))
    (tmp_path / "j.jp2").write_bytes(stream)  # the same stream as a plain image file
    with contextlib.suppress(BadInputError):
        read_image(tmp_path / "j.jp2")


@pytest.mark.slow
@LONG
@given(stream=jp2_streams())
def test_jp2_boxes_slow(tmp_path, stream):
    _read_or_bad(_jp2_dicom(tmp_path / "j.dcm", stream))


def test_the_reported_zero_length_box_hang(tmp_path):
    path = jp2_zero_box_dicom(tmp_path / "zero_box.dcm")
    with pytest.raises(BadInputError, match="zero_box.dcm: JPEG 2000 pixel data: JP2 box b'jp2h' at byte 12 has length 0"):
        read_image(path)


def test_guard_stops_the_decoder_that_loops(tmp_path):
    """Without the box check, pydicom 3.0's JP2 box walk loops on the zero-length box (the
    reported hang); the watchdog ends it."""
    from pydicom.pixels.utils import get_j2k_parameters

    def decode():
        get_j2k_parameters(JP2_ZERO_BOX)

    start = time.monotonic()
    with pytest.raises(BadInputError, match="x.jp2: decoding did not finish within 1 s"):
        guarded(decode, tmp_path / "x.jp2", "decoding", timeout_s=1.0)
    assert time.monotonic() - start < 10


def test_guard_outside_the_main_thread_and_passes_results():
    assert guarded(lambda: 7, "f", "adding") == 7
    result: list[object] = []

    def worker():
        try:
            guarded(lambda: time.sleep(3), "slow.png", "sleeping", timeout_s=0.3)
        except BadInputError as exc:
            result.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert result and "slow.png: sleeping did not finish within 0.3 s" in str(result[0])


def test_valid_jpeg2000_still_reads(tmp_path):
    from PIL import Image

    arr = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "ok.jp2", irreversible=False)
    check_jpeg2000((tmp_path / "ok.jp2").read_bytes(), tmp_path / "ok.jp2")
    assert np.array_equal(read_image(tmp_path / "ok.jp2"), arr)


# ------------------------------------------------------------------ byte flips and truncation
@QUICK
@given(
    fixture=st.sampled_from(["cr_mono1.dcm", "ct_rescale.dcm", "no_pixels.dcm"]),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.floats(0.0, 1.0),
)
def test_mutated_dicom_fixtures(tmp_path, fixture, flips, cut):
    data = bytearray((FIXTURES / "dicom" / fixture).read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: int(len(data) * cut)]
    path = tmp_path / "m.dcm"
    path.write_bytes(bytes(data))
    _read_or_bad(path)


# ------------------------------------------------------------------ raw DICOM, float pixels
def test_raw_dicom_read_alike_by_read_image_and_dicom_folder(tmp_path):
    (tmp_path / "raw.dcm").write_bytes(raw_dicom_bytes("ct_rescale.dcm"))
    assert (tmp_path / "raw.dcm").read_bytes()[128:132] != b"DICM"
    raw = read_image(tmp_path / "raw.dcm", stored_window=False)
    full = read_image(FIXTURES / "dicom" / "ct_rescale.dcm", stored_window=False)
    assert np.array_equal(raw, full)
    loaded = load_dataset("dicom_folder", tmp_path, "all", skip_bad=True)
    assert [s.id for s in loaded] == ["raw.dcm"] and not loaded.skipped
    assert read_dicom_info(tmp_path / "raw.dcm").has_pixels


def test_float_pixel_dicom_reads_when_finite(tmp_path):
    from bad_inputs import float_dicom

    values = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
    got = read_image(float_dicom(tmp_path / "f.dcm", values))
    assert np.allclose(got, values)
    values[1, 2] = np.inf
    with pytest.raises(BadInputError, match="1 of 16 pixel values are NaN or infinite"):
        read_image(float_dicom(tmp_path / "g.dcm", values))
