"""medmm.data.io: images (PNG, JPEG, TIFF, DICOM), text, JSON and CSV with errors naming the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from medmm.data.io import (
    apply_window,
    read_csv_rows,
    read_dicom_info,
    read_image,
    read_json,
    read_jsonl,
    read_text,
    sniff_format,
)
from medmm.errors import BadInputError

FIXTURES = Path(__file__).parent / "fixtures" / "dicom"
RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, size=(12, 10), dtype=np.uint8)
RGB = RNG.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- PNG / JPEG / TIFF


def test_png_roundtrip_gray_and_rgb(tmp_path):
    for name, arr in [("g.png", GRAY), ("c.png", RGB)]:
        (tmp_path / name).write_bytes(_png_bytes(arr))
        out = read_image(tmp_path / name)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, arr)


def test_png_16bit_and_palette_and_alpha(tmp_path):
    arr16 = (np.arange(120, dtype=np.uint16).reshape(12, 10) * 500).astype(np.uint16)
    Image.fromarray(arr16).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    np.testing.assert_array_equal(out.astype(np.int64), arr16.astype(np.int64))
    Image.fromarray(RGB).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (12, 10, 3)
    rgba = np.dstack([RGB, np.full((12, 10), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), RGB)


def test_format_detected_from_content_not_suffix(tmp_path):
    path = tmp_path / "really_png.jpg"
    path.write_bytes(_png_bytes(GRAY))
    np.testing.assert_array_equal(read_image(path), GRAY)


def test_jpeg_reads_close_to_source(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    Image.fromarray(smooth).save(tmp_path / "x.jpg", quality=95)
    out = read_image(tmp_path / "x.jpg")
    assert out.shape == (32, 32) and np.abs(out.astype(int) - smooth).max() < 8


def test_tiff_uint16_float_and_planar_rgb(tmp_path):
    arr16 = RNG.integers(0, 65535, size=(9, 7), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", arr16)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), arr16)
    arrf = RNG.random((5, 6), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", arrf)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff"), arrf)
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(RGB, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), RGB)


def test_multipage_tiff_is_rejected(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 4), np.uint8), photometric="minisblack")
    with pytest.raises(BadInputError, match="multi-page"):
        read_image(path)


def test_explicit_window_on_gray_image(tmp_path):
    (tmp_path / "g.png").write_bytes(_png_bytes(GRAY))
    out = read_image(tmp_path / "g.png", window=(128, 64))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out[GRAY < 95], 0.0)
    np.testing.assert_array_equal(out[GRAY > 160], 1.0)


def test_apply_window_formula():
    out = apply_window(np.array([-1050.0, -1000.5, -951.0, 0.0]), -1000, 100)
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError):
        apply_window(np.zeros(3), 0, 0)


# ---------------------------------------------------------------- DICOM


def test_dicom_rescale_and_stored_window():
    raw = read_image(FIXTURES / "ct_rescale.dcm", stored_window=False)
    expected_hu = np.arange(64, dtype=np.float32).reshape(8, 8) * 2 - 1024
    np.testing.assert_array_equal(raw, expected_hu)
    windowed = read_image(FIXTURES / "ct_rescale.dcm")  # WindowCenter -1000 / Width 100
    np.testing.assert_allclose(windowed, apply_window(expected_hu, -1000, 100))
    assert windowed[0, 0] == pytest.approx((-1024 + 1050) / 99)
    explicit = read_image(FIXTURES / "ct_rescale.dcm", window=(-960, 2))
    assert set(np.unique(explicit)) == {0.0, 1.0}
    assert explicit[0, 0] == 0.0 and explicit[-1, -1] == 1.0


def test_dicom_monochrome1_is_inverted():
    out = read_image(FIXTURES / "cr_mono1.dcm")
    np.testing.assert_array_equal(out, 15 - np.arange(16, dtype=np.float32).reshape(4, 4))
    win = read_image(FIXTURES / "cr_mono1.dcm", window=(7.5, 16))
    assert win[0, 0] > win[-1, -1]  # stored 0 is white in MONOCHROME1


def test_dicom_info_reads_header_only():
    info = read_dicom_info(FIXTURES / "cr_mono1.dcm")
    assert (info.patient_id, info.study_id, info.modality, info.view) == ("P2", "1.2.3.2", "CR", "PA")
    assert (info.rows, info.columns) == (4, 4)


def test_dicom_without_preamble_named_dcm_reads(tmp_path):
    import pydicom

    ds = pydicom.dcmread(FIXTURES / "ct_rescale.dcm")
    raw = tmp_path / "raw.dcm"
    ds.preamble = None
    del ds.file_meta  # a bare dataset: no preamble, no "DICM", no group 0002
    ds.save_as(raw, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert sniff_format(raw.read_bytes()[:132]) is None
    assert read_image(raw, stored_window=False)[0, 0] == -1024


@pytest.mark.parametrize(
    "name, make, problem",
    [
        ("no_pixels.dcm", lambda src: (FIXTURES / "no_pixels.dcm").read_bytes(), "no pixel data"),
        ("random.dcm", lambda src: np.random.default_rng(1).bytes(600), "DICOM"),
        ("cut.dcm", lambda src: (FIXTURES / "ct_rescale.dcm").read_bytes()[:-40], "pixel data"),
        ("cut.png", lambda src: _png_bytes(RNG.integers(0, 256, (64, 64), np.uint8))[:300], "truncated"),
        ("junk.png", lambda src: b"hello, I am not an image", "not a recognised image"),
        ("empty.jpg", lambda src: b"", "empty"),
    ],
)
def test_bad_images_raise_one_bad_input_error_naming_the_file(tmp_path, name, make, problem):
    path = tmp_path / name
    path.write_bytes(make(path))
    with pytest.raises(BadInputError, match=problem) as info:
        read_image(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(str(path))


def test_truncated_jpeg_detected_even_if_pil_told_to_allow_it(tmp_path):
    from PIL import ImageFile

    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), np.uint8)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(BadInputError, match="truncated"):
            read_image(path)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_missing_image_and_directory(tmp_path):
    with pytest.raises(BadInputError, match="not found") as info:
        read_image(tmp_path / "nope.png")
    assert info.value.path.endswith("nope.png")
    with pytest.raises(BadInputError, match="not a regular file"):
        read_image(tmp_path)


# ---------------------------------------------------------------- text, JSON, CSV


def test_read_text(tmp_path):
    (tmp_path / "r.txt").write_bytes("\ufeffNo acute disease. Größe 3 cm.".encode())
    assert read_text(tmp_path / "r.txt") == "No acute disease. Größe 3 cm."
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(BadInputError, match="empty") as info:
        read_text(tmp_path / "empty.txt")
    assert info.value.path == str(tmp_path / "empty.txt")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BadInputError, match="byte offset 3"):
        read_text(tmp_path / "latin.txt")
    with pytest.raises(BadInputError, match="not found"):
        read_text(tmp_path / "missing.txt")


def test_read_csv_rows(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('id,text,label\n1,"a, quoted",x\n\n2,short\n', encoding="utf-8")
    assert read_csv_rows(path) == [
        {"id": "1", "text": "a, quoted", "label": "x"},
        {"id": "2", "text": "short", "label": ""},
    ]
    path.write_text("id,text\n1,a,b\n")
    with pytest.raises(BadInputError, match="line 2 has 3 fields"):
        read_csv_rows(path)
    path.write_bytes("id,text\n1,ok\n2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(BadInputError, match="byte offset 18") as info:
        read_csv_rows(path)
    assert info.value.path == str(path)
    path.write_text("a,a\n1,2\n")
    with pytest.raises(BadInputError, match="repeats"):
        read_csv_rows(path)


def test_read_json_and_jsonl(tmp_path):
    (tmp_path / "a.json").write_text('{"a": [1, 2]}')
    assert read_json(tmp_path / "a.json") == {"a": [1, 2]}
    (tmp_path / "b.json").write_text('{"a": \n [1, 2}')
    with pytest.raises(BadInputError, match="line 2"):
        read_json(tmp_path / "b.json")
    (tmp_path / "c.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n{oops\n')
    with pytest.raises(BadInputError, match="line 4"):
        read_jsonl(tmp_path / "c.jsonl")
    (tmp_path / "c.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
    assert read_jsonl(tmp_path / "c.jsonl") == [{"x": 1}, {"x": 2}]


# ---------------------------------------------------------------- fuzz: decode or BadInputError

_SEEDS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"\x00" * 128 + b"DICM"]
_fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_fuzz
@given(
    prefix=st.sampled_from(_SEEDS),
    body=st.binary(max_size=400),
    suffix=st.sampled_from([".png", ".jpg", ".tif", ".dcm", ""]),
)
def test_fuzz_read_image_decodes_or_raises_bad_input(tmp_path, prefix, body, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(prefix + body)
    try:
        out = read_image(path)
    except BadInputError as exc:
        assert exc.path == str(path)
    else:
        assert isinstance(out, np.ndarray) and out.ndim in (2, 3)


@_fuzz
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)))
def test_fuzz_text_and_csv_decode_or_raise_bad_input(tmp_path, data):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    for reader in (read_text, read_csv_rows, read_jsonl):
        try:
            out = reader(path)
        except BadInputError as exc:
            assert exc.path == str(path)
        else:
            assert isinstance(out, (str, list))


@_fuzz
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_fuzz_every_truncation_of_a_png_decodes_or_raises(tmp_path, cut):
    data = _png_bytes(RNG.integers(0, 256, (40, 40), np.uint8))
    path = tmp_path / "t.png"
    path.write_bytes(data[: cut % (len(data) + 1)])
    try:
        out = read_image(path)
    except BadInputError:
        return
    np.testing.assert_array_equal(out.shape, (40, 40))


# ---------------------------------------------------------------- masks


def test_read_mask_full_size_crop_and_clipping(tmp_path):
    from medmm.data.io import read_mask
    from medmm.data.schema import MaskRef

    full = np.zeros((6, 8), np.uint8)
    full[1:3, 2:5] = 255
    Image.fromarray(full).save(tmp_path / "full.png")
    np.testing.assert_array_equal(read_mask(MaskRef("lung", path=str(tmp_path / "full.png")), (6, 8)), full // 255)
    with pytest.raises(BadInputError, match="image is"):
        read_mask(MaskRef("lung", path=str(tmp_path / "full.png")), (5, 8))

    crop = np.zeros((2, 3, 4), np.uint8)  # RGBA crop: foreground = any nonzero RGB, alpha ignored
    crop[..., 3] = 255
    crop[0, 0, 0] = 9
    crop[1, 2, 2] = 9
    Image.fromarray(crop, "RGBA").save(tmp_path / "crop.png")
    ref = MaskRef("probe", path=str(tmp_path / "crop.png"), box=(5.0, 4.0, 3.0, 2.0))
    placed = read_mask(ref, (6, 8))
    assert placed.sum() == 2 and placed[4, 5] == 1 and placed[5, 7] == 1
    clipped = read_mask(MaskRef("edge", array=np.ones((3, 3)), box=(6, 4, 3, 3)), (6, 8))
    assert clipped.sum() == 4  # only the 2x2 part inside the image
    with pytest.raises(ValueError, match="image_shape"):
        read_mask(ref)
    with pytest.raises(BadInputError, match="outside"):
        read_mask(MaskRef("far", array=np.ones((2, 2)), box=(50, 50, 2, 2)), (6, 8))


def test_colour_dicom_reads_as_rgb_and_refuses_a_window(tmp_path):
    import pydicom

    ds = pydicom.dcmread(FIXTURES / "cr_mono1.dcm")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.arange(48, dtype=np.uint8).tobytes()
    ds.save_as(tmp_path / "rgb.dcm")
    out = read_image(tmp_path / "rgb.dcm")
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 1], [3, 4, 5])
    with pytest.raises(ValueError, match="grayscale"):
        read_image(tmp_path / "rgb.dcm", window=(10, 20))
