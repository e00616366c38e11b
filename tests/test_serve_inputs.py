"""Fuzzed and hostile uploads answer 4xx with a clear message and the server lives on; DICOM goes
through medmm's readers (MONOCHROME1, multi-frame refused) and its header values never appear in
replies or logs."""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from medmm.serve.app import create_app
from medmm.serve.predictor import Predictor
from serve_runs import trained_package

PHI = ("Doe^Jane^SECRETNAME", "PID-SECRET-4711", "St. Hidden Hospital")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    _, pkg_dx = trained_package("diagnosis", tmp_path_factory.mktemp("serve_inputs"))
    _, pkg_vqa = trained_package("vqa", tmp_path_factory.mktemp("serve_inputs"))
    app = create_app({"dx": Predictor(pkg_dx), "vqa": Predictor(pkg_vqa)}, max_body_bytes=200_000, max_pixels=4_000_000)
    with TestClient(app) as c:
        yield c


def dicom_bytes(pixels: np.ndarray, photometric: str = "MONOCHROME2", frames: int = 1, **extra) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = ComputedRadiographyImageStorage, uid
    ds.PatientName, ds.PatientID, ds.InstitutionName = PHI
    ds.Modality = "CR"
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (valid CRC), with no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 4000, size=(48, 48)).astype(np.uint16)
GOOD_DICOM = dicom_bytes(IMG)


def predict(client, model: str, image: bytes | None, **data):
    files = {"image": ("upload", image, "application/octet-stream")} if image is not None else None
    return client.post(f"/v1/models/{model}/predict", files=files, data={"question": "is the lung normal?", **data})


def test_dicom_predicts_and_header_values_never_leak(client, caplog, recwarn):
    caplog.set_level(logging.DEBUG)
    warnings.simplefilter("always")
    r = predict(client, "dx", GOOD_DICOM)
    assert r.status_code == 200, r.text
    bad = predict(client, "dx", GOOD_DICOM[: len(GOOD_DICOM) - 1000])  # pixel data cut short
    assert bad.status_code == 422 and "DICOM" in bad.json()["error"]
    # header values pydicom cannot parse as numbers, written over valid ones of the same length
    garbled_bytes = dicom_bytes(IMG, WindowCenter="1234567890", WindowWidth="123456789012345")
    garbled_bytes = garbled_bytes.replace(b"1234567890", b"SECRETNAME", 1).replace(b"123456789012345", b"PID-SECRET-4711", 1)
    garbled = predict(client, "dx", garbled_bytes)
    assert garbled.status_code in (200, 422)
    seen = r.text + bad.text + garbled.text + caplog.text + str(dict(r.headers)) + " ".join(str(w.message) for w in recwarn)
    for value in (*PHI, "SECRETNAME", "PID-SECRET", "Hidden"):
        assert value not in seen
    assert "medmm-serve-" not in seen  # no temp file paths either


def test_monochrome1_is_inverted_like_training(client):
    mono1 = predict(client, "dx", dicom_bytes(IMG, "MONOCHROME1")).json()["prediction"]["prediction"]
    flipped = (int(IMG.max()) + int(IMG.min()) - IMG.astype(np.int64)).astype(np.uint16)
    mono2 = predict(client, "dx", dicom_bytes(flipped, "MONOCHROME2")).json()["prediction"]["prediction"]
    assert mono1["label"] == mono2["label"]
    for k, v in mono1["probs"].items():
        assert v == pytest.approx(mono2["probs"][k], abs=1e-6)


@pytest.mark.parametrize("name,body,status,words", [
    ("multi-frame DICOM", dicom_bytes(np.stack([IMG, IMG]), frames=2), 422, "multi-frame"),
    ("corrupt DICOM", b"\0" * 128 + b"DICM" + bytes(RNG.integers(0, 256, 3000, dtype=np.uint8)), 422, "DICOM"),
    ("truncated DICOM", GOOD_DICOM[:200], 422, "DICOM"),
    ("30000 x 30000 PNG header", png_header(30000, 30000), 413, "30000 x 30000"),
    ("truncated PNG", png_bytes(IMG.astype(np.uint8))[:60], 422, "png"),
    ("not an image", b"%PDF-1.4 hello", 415, "not a PNG, JPEG or DICOM"),
    ("empty file", b"", 422, "empty"),
])
def test_fuzzed_uploads_answer_4xx_and_server_lives(client, name, body, status, words):
    r = predict(client, "dx", body)
    assert r.status_code == status, (name, r.text)
    assert words.lower() in r.json()["error"].lower(), (name, r.text)
    assert client.get("/healthz").status_code == 200
    assert predict(client, "dx", GOOD_DICOM).status_code == 200


def test_bad_requests(client):
    r = client.post("/v1/models/dx/predict", files={"question": (None, "is the lung normal?")})
    assert r.status_code == 422 and r.json()["error"].startswith("missing field 'image'")
    r = predict(client, "vqa", png_bytes(IMG.astype(np.uint8)), question="")
    assert r.status_code == 422 and "question" in r.json()["error"]
    r = client.post("/v1/models/dx/predict", json={"image": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    r = client.post("/v1/models/dx/predict", data={"image": "text, not a file", "question": "q"},
                    files={"dummy": ("x", b"1")})
    assert r.status_code == 422
    r = predict(client, "dx", GOOD_DICOM, patient_name="x")
    assert r.status_code == 422 and "unknown form field" in r.json()["error"]
    big = client.post("/v1/models/dx/predict", files={"image": ("big", b"\0" * 300_000)})
    assert big.status_code == 413 and "limit" in big.json()["error"]

    def chunks():  # no Content-Length: the streamed size is counted
        for _ in range(30):
            yield b"-" * 10_000

    r = client.post("/v1/models/dx/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    assert client.get("/healthz").status_code == 200


def test_random_mutations_never_crash(client):
    """Seeded byte flips and cuts of valid PNG and DICOM uploads: 200 or 4xx, never 5xx."""
    rng = np.random.default_rng(1)
    seeds = [GOOD_DICOM, png_bytes(IMG.astype(np.uint8))]
    statuses = []
    for i in range(30):
        data = bytearray(seeds[i % 2])
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
            data[pos] = int(rng.integers(0, 256))
        if i % 3 == 0:
            data = data[: int(rng.integers(10, len(data)))]
        r = predict(client, "dx", bytes(data))
        statuses.append(r.status_code)
        assert r.status_code < 500, r.text
    assert client.get("/readyz").status_code == 200
    assert any(s >= 400 for s in statuses)


def test_predictor_three_lines(client, tmp_path: Path):
    import medmm

    (tmp_path / "scan.dcm").write_bytes(GOOD_DICOM)
    pkg = Path(client.app.state.batchers["dx"].predictor.root)
    p = medmm.load_model(pkg)
    out = p.predict(image=tmp_path / "scan.dcm", question="is the lung normal?")
    served = predict(client, "dx", GOOD_DICOM).json()["prediction"]
    assert out["prediction"]["label"] == served["prediction"]["label"]
