"""Valid small layouts of every dataset, made from real files, for tests/bad_inputs.py.

Records come from the bundled CC0 VQA-RAD sample (questions, answers, organs, JPEGs) and the
DICOM fixtures of tests/fixtures; each builder writes one dataset's original layout under a
folder. Also builders of special DICOM files (raw, JPEG 2000 with a bad box, float pixels).
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from medmm.data.bundled import vqa_rad_sample_root

FIXTURES = Path(__file__).parent / "fixtures"
VQA_JSON = "VQA_RAD Dataset Public.json"
VQA_IMAGES = "VQA_RAD Image Folder"


# --------------------------------------------------------------------------- real sources
def _real_vqa_records(rng: random.Random, n: int) -> list[dict[str, Any]]:
    records = json.loads((vqa_rad_sample_root() / VQA_JSON).read_text(encoding="utf-8"))
    return [dict(r) for r in rng.sample(records, n)]


def _real_jpeg(record: dict[str, Any]) -> bytes:
    return (vqa_rad_sample_root() / VQA_IMAGES / record["image_name"]).read_bytes()


def _png_of(jpeg: bytes) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("L").resize((32, 32)).save(out, format="PNG")
    return out.getvalue()


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- valid layouts
def vqa_rad_root(dst: Path, records: list[dict[str, Any]]) -> Path:
    (dst / VQA_IMAGES).mkdir(parents=True)
    for r in records:
        (dst / VQA_IMAGES / r["image_name"]).write_bytes(_real_jpeg(r))
    (dst / VQA_JSON).write_text(json.dumps(records, indent=1), encoding="utf-8")
    return dst


def slake_root(dst: Path, records: list[dict[str, Any]]) -> Path:
    items = [
        {"qid": i, "img_id": i, "img_name": f"xmlab{i}/source.jpg", "question": r["question"], "answer": r["answer"],
         "q_lang": "en", "answer_type": r["answer_type"], "modality": "CT"}
        for i, r in enumerate(records)
    ]  # fmt: skip
    (dst / "Slake1.0").mkdir(parents=True)
    (dst / "Slake1.0" / "train.json").write_text(json.dumps(items), encoding="utf-8")
    return dst


def medpix2_root(dst: Path, records: list[dict[str, Any]]) -> Path:
    base = dst / "MedPix-2-0"
    (base / "images").mkdir(parents=True)
    (base / "splitted_dataset").mkdir()
    desc, cases = [], []
    for i, r in enumerate(records):
        name = f"MPX{i}_synpic{i}"
        (base / "images" / f"{name}.png").write_bytes(_png_of(_real_jpeg(r)))
        desc.append({"Type": "CT", "U_id": f"MPX{i}", "image": name,
                     "Description": {"Caption": r["question"], "Modality": "CT", "Plane": "Axial"},
                     "Location": r["image_organ"]})  # fmt: skip
        cases.append({"U_id": f"MPX{i}", "TAC": [name], "MRI": [],
                      "Case": {"History": r["question"], "Findings": str(r["answer"]), "Case Diagnosis": "x"},
                      "Topic": {"Category": r["image_organ"]}})  # fmt: skip
    for kind, recs in (("descriptions", desc), ("data", cases)):
        text = "\n".join(json.dumps(x) for x in recs) + "\n"
        (base / "splitted_dataset" / f"{kind}_train.jsonl").write_text(text, encoding="utf-8")
    (base / "Descriptions.json").write_text(json.dumps(desc), encoding="utf-8")
    (base / "Case_topic.json").write_text(json.dumps(cases), encoding="utf-8")
    return dst


COVID_COLUMNS = ["patientid", "finding", "view", "modality", "folder", "filename", "clinical_notes", "license"]


def covid_root(dst: Path, records: list[dict[str, Any]]) -> Path:
    (dst / "images").mkdir(parents=True)
    rows: list[list[Any]] = [COVID_COLUMNS]
    for i, r in enumerate(records):
        name = f"img{i}.png"
        (dst / "images" / name).write_bytes(_png_of(_real_jpeg(r)))
        rows.append([f"p{i}", "Pneumonia/Viral/COVID-19" if i % 2 else "No Finding", "PA", "X-ray", "images", name,
                     r["question"], "CC BY"])  # fmt: skip
    _write_csv(dst / "metadata.csv", rows)
    sev = "## comment line of the original file\nfilename,geographic_mean,opacity_mean\n"
    sev += "".join(f"img{i}.png,{i % 8}.5,{i % 6}.0\n" for i in range(len(records)))
    (dst / "covid-severity-scores.csv").write_text(sev, encoding="utf-8")
    # lung boxes (COCO) over the same images
    lb = dst / "lung_bboxes"
    (lb / "images").mkdir(parents=True)
    (lb / "annotations").mkdir()
    images, anns = [], []
    for i in range(len(records)):
        shutil.copy(dst / "images" / f"img{i}.png", lb / "images" / f"img{i}.png")
        images.append({"id": i, "file_name": f"img{i}.png", "width": 32, "height": 32})
        anns.append({"id": 2 * i, "image_id": i, "category_id": 1, "bbox": [1, 2, 10, 20]})
        anns.append({"id": 2 * i + 1, "image_id": i, "category_id": 2, "bbox": [16, 2, 10, 20]})
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}]}
    (lb / "annotations" / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    # segmentations: cropped masks placed by their box
    seg = dst / "segmentations_100"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    srows: list[list[Any]] = [["#", "Template Name", "Filename", "Mask", "Resolution", "Top", "Left", "Width", "Height"]]
    from PIL import Image

    for i in range(len(records)):
        shutil.copy(dst / "images" / f"img{i}.png", seg / "images" / f"img{i}.png")
        Image.fromarray(np.full((8, 6), 255, np.uint8)).save(seg / "masks" / f"m{i}.png")
        srows.append([i, "Right Lung", f"img{i}.png", f"masks/m{i}.png", "32x32", 2, 3, 6, 8])
    _write_csv(seg / "structure.csv", srows)
    return dst


KAGGLE_COLUMNS = ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"]


def iu_kaggle_root(dst: Path, records: list[dict[str, Any]]) -> Path:
    dst.mkdir(parents=True)
    rows: list[list[Any]] = [KAGGLE_COLUMNS]
    rows += [[str(i + 1), "normal", "normal", "Xray Chest PA", "", "", r["question"], str(r["answer"])] for i, r in enumerate(records)]
    _write_csv(dst / "indiana_reports.csv", rows)
    return dst


def openi_root(dst: Path, n: int) -> Path:
    from medmm.data.datasets.iu_xray import OPENI_LABELS

    dst.mkdir(parents=True)
    rows: list[list[Any]] = [["filename", *OPENI_LABELS]]
    rows += [[f"CXR{i + 1}", *(["0"] * 14), "1"] for i in range(n)]
    _write_csv(dst / "openi_gld_std14.csv", rows)
    return dst


def medmnist_root(dst: Path, labels: np.ndarray, seed: int) -> Path:
    dst.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(len(labels), 28, 28), dtype=np.uint8)
    np.savez(dst / "breastmnist.npz", train_images=images, train_labels=labels.reshape(-1, 1))
    return dst


def roco_root(dst: Path, records: list[dict[str, Any]]) -> Path:
    folder = dst / "data" / "test" / "radiology"
    folder.mkdir(parents=True)
    lines = "".join(f"ROCO_{i:05d}\t{r['question']}\n" for i, r in enumerate(records))
    (folder / "captions.txt").write_text(lines, encoding="utf-8")
    return dst


def monuseg_root(dst: Path, records: list[dict[str, Any]], descriptions: list[Any] | None = None) -> Path:
    import openpyxl

    folder = dst / "MoNuSeg" / "Train_Folder"
    (folder / "img").mkdir(parents=True)
    (folder / "labelcol").mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Image", "Description"])
    for i, r in enumerate(records):
        name = f"TCGA-AA-{1000 + i}-01Z-00-DX1"
        png = _png_of(_real_jpeg(r))
        (folder / "img" / f"{name}.png").write_bytes(png)
        (folder / "labelcol" / f"{name}.png").write_bytes(png)
        ws.append([f"{name}.png", descriptions[i] if descriptions else r["question"]])
    wb.save(folder / "Train_text.xlsx")
    return dst


def manifest_root(dst: Path, records: list[dict[str, Any]], *, jsonl: bool = False) -> Path:
    dst.mkdir(parents=True)
    rows = []
    for i, r in enumerate(records):
        name = f"img{i}.jpg"
        (dst / name).write_bytes(_real_jpeg(r))
        rows.append({"id": f"s{i}", "image": name, "split": "train", "question": r["question"],
                     "answer": str(r["answer"]), "target:organ": r["image_organ"], "patient_id": f"p{i}"})  # fmt: skip
    if jsonl:
        (dst / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        _write_csv(dst / "manifest.csv", [list(rows[0]), *[list(r.values()) for r in rows]])
    return dst


def dicom_root(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("cr_mono1.dcm", "ct_rescale.dcm"):
        shutil.copy(FIXTURES / "dicom" / name, dst / name)
    return dst


def raw_dicom_bytes(fixture: str = "ct_rescale.dcm") -> bytes:
    """A fixture DICOM re-written without preamble and file meta (a valid raw dataset)."""
    import pydicom

    ds = pydicom.dcmread(FIXTURES / "dicom" / fixture)
    ds.decompress() if ds.file_meta.TransferSyntaxUID.is_compressed else None
    del ds.file_meta
    ds.preamble = None
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return out.getvalue()


def jp2_zero_box_dicom(path: Path) -> Path:
    """A DICOM with JPEG 2000 transfer syntax whose frame is a JP2 file with a zero-length box."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 2, 2, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([JP2_ZERO_BOX])
    ds["PixelData"].VR = "OB"
    pydicom.dcmwrite(path, ds, enforce_file_format=False)
    return path


# JP2 signature box, then a box of length 0 that is not the final codestream box: Pillow 13
# loops forever on it.
JP2_ZERO_BOX = bytes.fromhex("0000000c6a5020200d0a870a") + b"\x00\x00\x00\x00jp2h" + b"\x00" * 4


def float_dicom(path: Path, values: np.ndarray) -> Path:
    """A DICOM with FloatPixelData (32-bit float pixels)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated = 1, "MONOCHROME2", 32
    ds.FloatPixelData = values.astype("<f4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
