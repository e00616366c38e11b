"""A seeded generator of bad inputs for every dataset loader and reader (not a test module).

`build_corpus(tmp, seed)` writes small valid layouts made from real files (the bundled CC0
VQA-RAD sample's records and JPEGs, the DICOM and IU X-ray fixtures in tests/fixtures), then one
corrupted copy per case, and returns the cases. Nothing binary is committed: every file is made
here. A case says what must happen:

* loader cases (`Case.dataset` set): with ``skip_bad=False`` a `BadInputError` naming
  `Case.file` and matching `Case.problem`; with ``skip_bad=True`` exactly `Case.n_skipped`
  counted skips and the good records loaded (or, for `whole_file` cases where no record is
  readable, the same error again);
* reader cases (`Case.read` set): the reader raises that `BadInputError`.

Kinds (issue 24 item 4): bad-utf8, nan-label, float-label, duplicate-id, list-as-text,
number-as-text, nul-byte, extra-field, empty-file, bad-bbox, truncated-mask, nan-pixels,
symlink-loop, text-as-image, jp2-zero-box, truncated-image; and for the chest X-ray loaders and
packed shards (tests/bad_inputs_cxr.py) bad-label, missing-image, truncated-shard,
sha256-mismatch, corrupt-npy, missing-index, truncated-index.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bad_inputs_layouts import (  # noqa: F401 - FIXTURES and the DICOM builders are used by the tests too
    FIXTURES,
    JP2_ZERO_BOX,
    VQA_IMAGES,
    VQA_JSON,
    _copy,
    _png_of,
    _real_jpeg,
    _real_vqa_records,
    covid_root,
    dicom_root,
    float_dicom,
    iu_kaggle_root,
    jp2_zero_box_dicom,
    manifest_root,
    medmnist_root,
    medpix2_root,
    monuseg_root,
    openi_root,
    raw_dicom_bytes,
    roco_root,
    slake_root,
    vqa_rad_root,
)


@dataclass
class Case:
    """One corrupted input and the outcome it must have."""

    kind: str
    target: str  # the loader's dataset name or the reader's function name
    file: str  # the error must name this file (its name is enough)
    problem: str  # regex the error message must match
    dataset: str | None = None
    root: Path | None = None
    split: str = "all"
    n_skipped: int = 1
    n_good: int | None = None  # good records still loaded under skip_bad=True (None: any)
    whole_file: bool = False  # no record is readable: an error under skip_bad=True too
    engine: bool = False  # found by the engine's load-time file check, not the loader
    read: Callable[[], Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.target}-{self.kind}"


# --------------------------------------------------------------------------- corruptions
def _edit_json(path: Path, fn: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _replace_bytes(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert old in data, (path, old)
    path.write_bytes(data.replace(old, new, 1))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --------------------------------------------------------------------------- the corpus
def build_corpus(tmp: Path, seed: int = 0) -> list[Case]:
    """Write every case under `tmp` and return them (the same files for the same seed)."""
    rng = random.Random(seed)
    recs = [r for r in _real_vqa_records(rng, 40) if isinstance(r["answer"], str)][:6]
    cases: list[Case] = []
    n = len(recs)

    def fresh(name: str, make: Callable[[Path], Path]) -> Path:
        return make(tmp / name)

    # ---- vqa_rad (JSON)
    def vqa(name: str, edit: Callable[[list[dict[str, Any]]], None] | None = None) -> Path:
        root = vqa_rad_root(tmp / name, [dict(r, phrase_type="freeform") for r in recs])
        if edit:
            _edit_json(root / VQA_JSON, edit)
        return root

    root = vqa("vqa_nan", lambda d: d[0].update(image_organ=float("nan")))
    cases.append(Case("nan-label", "vqa_rad", VQA_JSON, "image_organ is 'nan'", "vqa_rad", root, "train", n_good=n - 1))
    root = vqa("vqa_dup", lambda d: d[1].update(qid=d[0]["qid"]))
    cases.append(Case("duplicate-id", "vqa_rad", VQA_JSON, "qid .* repeats record 0", "vqa_rad", root, "train", n_good=n - 1))
    root = vqa("vqa_list", lambda d: d[2].update(question=["Is", "there", "a", "mass?"]))
    cases.append(Case("list-as-text", "vqa_rad", VQA_JSON, "question is a JSON list", "vqa_rad", root, "train", n_good=n - 1))
    root = vqa("vqa_num", lambda d: d[2].update(question=3.5))
    cases.append(Case("number-as-text", "vqa_rad", VQA_JSON, "question is a JSON number", "vqa_rad", root, "train"))
    root = vqa("vqa_nul", lambda d: d[3].update(question=d[3]["question"] + "\x00\x00"))
    cases.append(Case("nul-byte", "vqa_rad", VQA_JSON, "NUL byte", "vqa_rad", root, "train", n_good=n - 1))
    root = vqa("vqa_three_bad")  # three bad records in ONE file: three skips, not one
    _edit_json(root / VQA_JSON, lambda d: [d[i].update(answer="") for i in (0, 2, 4)])
    cases.append(Case("three-bad-records", "vqa_rad", VQA_JSON, "empty question or answer", "vqa_rad", root, "train", n_skipped=3, n_good=n - 3))
    root = vqa("vqa_utf8")
    _replace_bytes(root / VQA_JSON, b'"question": "', b'"question": "\xff')
    cases.append(Case("bad-utf8", "vqa_rad", VQA_JSON, "not valid UTF-8 at byte offset", "vqa_rad", root, "train", whole_file=True))
    root = vqa("vqa_empty")
    (root / VQA_JSON).write_bytes(b"")
    cases.append(Case("empty-file", "vqa_rad", VQA_JSON, "empty \\(0 bytes\\)", "vqa_rad", root, "train", whole_file=True))
    root = vqa("vqa_textjpg")
    (root / VQA_IMAGES / recs[0]["image_name"]).write_text("this is a text file, not a JPEG\n")
    cases.append(Case("text-as-image", "vqa_rad", recs[0]["image_name"], "not a recognised image format", "vqa_rad", root, "train", engine=True))
    root = vqa("vqa_zero_image")
    (root / VQA_IMAGES / recs[1]["image_name"]).write_bytes(b"")
    cases.append(Case("empty-file", "vqa_rad", recs[1]["image_name"], "empty \\(0 bytes\\)", "vqa_rad", root, "train", engine=True))

    # ---- slake (JSON)
    def slake(name: str, edit: Callable[[list[dict[str, Any]]], None]) -> Path:
        root = slake_root(tmp / name, recs)
        _edit_json(root / "Slake1.0" / "train.json", edit)
        return root

    root = slake("slake_dup", lambda d: d[1].update(qid=d[0]["qid"]))
    cases.append(Case("duplicate-id", "slake", "train.json", "qid .* repeats", "slake", root, "train", n_good=n - 1))
    root = slake("slake_list", lambda d: d[0].update(answer={"yes": 1}))
    cases.append(Case("list-as-text", "slake", "train.json", "answer is a JSON object", "slake", root, "train", n_good=n - 1))
    root = slake("slake_nan", lambda d: d[4].update(answer_type=float("nan")))
    cases.append(Case("nan-label", "slake", "train.json", "answer_type is 'nan'", "slake", root, "train", n_good=n - 1))
    root = slake("slake_nul", lambda d: d[0].update(question="a\x00b"))
    cases.append(Case("nul-byte", "slake", "train.json", "NUL byte", "slake", root, "train"))
    root = slake_root(tmp / "slake_utf8", recs)
    _replace_bytes(root / "Slake1.0" / "train.json", b'"question": "', b'"question": "\xc3\x28')
    cases.append(Case("bad-utf8", "slake", "train.json", "not valid UTF-8", "slake", root, "train", whole_file=True))

    # ---- medpix2 / medpix2_cases (JSONL)
    def medpix(name: str) -> Path:
        return medpix2_root(tmp / name, recs)

    def jsonl_edit(path: Path, i: int, fn: Callable[[dict[str, Any]], None]) -> None:
        lines = path.read_text(encoding="utf-8").splitlines()
        rec = json.loads(lines[i])
        fn(rec)
        lines[i] = json.dumps(rec)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    sd = Path("MedPix-2-0") / "splitted_dataset"
    root = medpix("mp_num")
    jsonl_edit(root / sd / "descriptions_train.jsonl", 0, lambda r: r["Description"].update(Caption=12345))
    cases.append(Case("number-as-text", "medpix2", "descriptions_train.jsonl", "Caption is a JSON number", "medpix2", root, "train", n_good=n - 1))
    root = medpix("mp_dup")
    jsonl_edit(root / sd / "descriptions_train.jsonl", 1, lambda r: r.update(image="MPX0_synpic0"))
    cases.append(Case("duplicate-id", "medpix2", "descriptions_train.jsonl", "image 'MPX0_synpic0' repeats", "medpix2", root, "train", n_good=n - 1))
    root = medpix("mp_list")
    jsonl_edit(root / sd / "data_train.jsonl", 0, lambda r: r["Case"].update(History=["a", "b"]))
    cases.append(Case("list-as-text", "medpix2_cases", "data_train.jsonl", "History is a JSON list", "medpix2_cases", root, "train", n_good=n - 1))
    root = medpix("mp_casedup")
    jsonl_edit(root / sd / "data_train.jsonl", 2, lambda r: r.update(U_id="MPX0"))
    cases.append(Case("duplicate-id", "medpix2_cases", "data_train.jsonl", "U_id 'MPX0' repeats", "medpix2_cases", root, "train", n_good=n - 1))
    root = medpix("mp_nul")
    jsonl_edit(root / sd / "data_train.jsonl", 1, lambda r: r["Case"].update(Findings="ok\x00"))
    cases.append(Case("nul-byte", "medpix2_cases", "data_train.jsonl", "NUL byte", "medpix2_cases", root, "train"))
    root = medpix("mp_empty")
    (root / sd / "descriptions_train.jsonl").write_bytes(b"")
    cases.append(Case("empty-file", "medpix2", "descriptions_train.jsonl", "empty \\(0 bytes\\)", "medpix2", root, "train", whole_file=True))
    root = medpix("mp_utf8")
    _replace_bytes(root / sd / "data_train.jsonl", b'"History": "', b'"History": "\xfe')
    cases.append(Case("bad-utf8", "medpix2_cases", "data_train.jsonl", "not valid UTF-8", "medpix2_cases", root, "train", whole_file=True))

    # ---- covid_cxr, covid_cxr_lungboxes, covid_cxr_seg (CSV, COCO JSON, masks)
    def covid(name: str) -> Path:
        return covid_root(tmp / name, recs)

    root = covid("cv_notes_utf8")
    _replace_bytes(root / "metadata.csv", recs[1]["question"].encode()[:8], b"\xe9" + recs[1]["question"].encode()[1:8])
    cases.append(Case("bad-utf8", "covid_cxr", "metadata.csv", "line 3: not valid UTF-8 \\(byte offset \\d+\\)", "covid_cxr", root, n_good=n - 1))
    root = covid("cv_sev_utf8")
    _replace_bytes(root / "covid-severity-scores.csv", b"img2.png", b"img2\xff.png")
    cases.append(Case("bad-utf8", "covid_cxr", "covid-severity-scores.csv", "not valid UTF-8", "covid_cxr", root, n_good=n))
    root = covid("cv_nan_finding")
    _replace_bytes(root / "metadata.csv", b"No Finding", b"NaN")
    cases.append(Case("nan-label", "covid_cxr", "metadata.csv", "finding is 'NaN'", "covid_cxr", root, n_good=n - 1))
    root = covid("cv_nan_patient")
    _replace_bytes(root / "metadata.csv", b"p2,", b"nan,")
    cases.append(Case("nan-label", "covid_cxr", "metadata.csv", "patientid is 'nan'", "covid_cxr", root, n_good=n - 1))
    root = covid("cv_dup")
    _replace_bytes(root / "metadata.csv", b"img1.png", b"img0.png")
    cases.append(Case("duplicate-id", "covid_cxr", "metadata.csv", "filename 'img0.png' repeats line 2", "covid_cxr", root, n_good=n - 1))
    root = covid("cv_extra")
    _replace_bytes(root / "metadata.csv", b",PA,", b",PA,extra,")
    cases.append(Case("extra-field", "covid_cxr", "metadata.csv", "9 fields but the header has 8", "covid_cxr", root, n_good=n - 1))
    root = covid("cv_nul")
    _replace_bytes(root / "metadata.csv", b"CC BY", b"CC\x00BY")
    cases.append(Case("nul-byte", "covid_cxr", "metadata.csv", "NUL byte", "covid_cxr", root, n_good=n - 1))
    root = covid("cv_empty")
    (root / "metadata.csv").write_bytes(b"")
    cases.append(Case("empty-file", "covid_cxr", "metadata.csv", "empty \\(0 bytes\\)", "covid_cxr", root, whole_file=True))
    root = covid("cv_sev_nan")
    _replace_bytes(root / "covid-severity-scores.csv", b"img1.png,1.5", b"img1.png,nan")
    cases.append(Case("nan-label", "covid_cxr", "covid-severity-scores.csv", "geographic_mean is nan", "covid_cxr", root, n_good=n))
    ann = Path("lung_bboxes") / "annotations" / "annotations.json"
    for kind, box, problem in (
        ("bad-bbox", [float("nan"), 1, -5, 1e12], "not a finite number"),
        ("bad-bbox-size", [1, 1, -5, 10], "non-positive width or height"),
        ("bad-bbox-outside", [1, 1, 10, 1e12], "reaches outside the 32x32 image"),
        ("bad-bbox-list", "1,2,3,4", "is not \\[x, y, width, height\\]"),
    ):
        root = covid(f"cv_{kind}")
        _edit_json(root / ann, lambda d, box=box: d["annotations"][0].update(bbox=box))
        cases.append(Case(kind, "covid_cxr_lungboxes", "annotations.json", problem, "covid_cxr_lungboxes", root, n_good=n - 1))
    root = covid("cv_lb_dup")
    _edit_json(root / ann, lambda d: d["images"][1].update(file_name="img0.png"))
    cases.append(Case("duplicate-id", "covid_cxr_lungboxes", "annotations.json", "file_name 'img0.png' repeats", "covid_cxr_lungboxes", root, n_good=n - 1))
    root = covid("cv_seg_box")
    _replace_bytes(root / "segmentations_100" / "structure.csv", b"32x32,2,3,6,8", b"32x32,2,3,inf,8")
    cases.append(Case("bad-bbox", "covid_cxr_seg", "structure.csv", "not a finite number", "covid_cxr_seg", root, n_good=n - 1))
    root = covid("cv_seg_extra")
    _replace_bytes(root / "segmentations_100" / "structure.csv", b"Right Lung,img1.png", b"Right Lung,oops,img1.png")
    cases.append(Case("extra-field", "covid_cxr_seg", "structure.csv", "10 fields but the header has 9", "covid_cxr_seg", root, n_good=n - 1))
    root = covid("cv_seg_mask")
    _truncate(root / "segmentations_100" / "masks" / "m0.png", 0.6)
    cases.append(Case("truncated-mask", "read_mask", "m0.png", "corrupt or truncated image",
                      read=lambda p=root / "segmentations_100" / "masks" / "m0.png": _read_mask(p)))  # fmt: skip

    # ---- iu_xray (R2Gen JSON), iu_xray_kaggle (CSV), iu_xray_openi_labels (CSV)
    def iu(name: str, fn: Callable[[dict[str, Any]], None]) -> Path:
        root = _copy(FIXTURES / "iu_xray_tiny", tmp / name)
        _edit_json(root / "annotation.json", fn)
        return root

    root = iu("iu_dup", lambda d: d["train"][1].update(id=d["train"][0]["id"]))
    cases.append(Case("duplicate-id", "iu_xray", "annotation.json", "study id .* repeats", "iu_xray", root, "train", n_good=8))
    root = iu("iu_list", lambda d: d["train"][0].update(report=["The heart", "is normal"]))
    cases.append(Case("list-as-text", "iu_xray", "annotation.json", "report is a JSON list", "iu_xray", root, "train", n_good=8))
    root = iu("iu_nul", lambda d: d["train"][0].update(report="Normal.\x00"))
    cases.append(Case("nul-byte", "iu_xray", "annotation.json", "NUL byte", "iu_xray", root, "train", n_good=8))
    root = iu("iu_empty", lambda d: None)
    (root / "annotation.json").write_bytes(b"")
    cases.append(Case("empty-file", "iu_xray", "annotation.json", "empty \\(0 bytes\\)", "iu_xray", root, "train", whole_file=True))
    root = iu_kaggle_root(tmp / "kg_utf8", recs)
    _replace_bytes(root / "indiana_reports.csv", b"\n2,", b"\n2,\x80")
    cases.append(Case("bad-utf8", "iu_xray_kaggle", "indiana_reports.csv", "line 3: not valid UTF-8", "iu_xray_kaggle", root, n_good=n - 1))
    root = iu_kaggle_root(tmp / "kg_extra", recs)
    _replace_bytes(root / "indiana_reports.csv", b"\n3,normal,", b"\n3,normal,shifted,")
    cases.append(Case("extra-field", "iu_xray_kaggle", "indiana_reports.csv", "9 fields but the header has 8", "iu_xray_kaggle", root, n_good=n - 1))
    root = iu_kaggle_root(tmp / "kg_dup", recs)
    _replace_bytes(root / "indiana_reports.csv", b"\n3,normal,", b"\n1,normal,")
    cases.append(Case("duplicate-id", "iu_xray_kaggle", "indiana_reports.csv", "uid '1' repeats line 2", "iu_xray_kaggle", root, n_good=n - 1))
    root = iu_kaggle_root(tmp / "kg_empty", recs)
    (root / "indiana_reports.csv").write_bytes(b"")
    cases.append(Case("empty-file", "iu_xray_kaggle", "indiana_reports.csv", "empty \\(0 bytes\\)", "iu_xray_kaggle", root, whole_file=True))
    root = openi_root(tmp / "oi_nan", 5)
    _replace_bytes(root / "openi_gld_std14.csv", b"CXR2,0,", b"CXR2,nan,")
    cases.append(Case("nan-label", "iu_xray_openi_labels", "openi_gld_std14.csv", "Atelectasis = 'nan'", "iu_xray_openi_labels", root, n_good=4))
    root = openi_root(tmp / "oi_float", 5)
    _replace_bytes(root / "openi_gld_std14.csv", b"CXR3,0,", b"CXR3,0.7,")
    cases.append(Case("float-label", "iu_xray_openi_labels", "openi_gld_std14.csv", "Atelectasis = '0.7'", "iu_xray_openi_labels", root, n_good=4))
    root = openi_root(tmp / "oi_dup", 5)
    _replace_bytes(root / "openi_gld_std14.csv", b"CXR4,", b"CXR1,")
    cases.append(Case("duplicate-id", "iu_xray_openi_labels", "openi_gld_std14.csv", "filename 'CXR1' repeats", "iu_xray_openi_labels", root, n_good=4))

    # ---- medmnist (npz float labels)
    root = medmnist_root(tmp / "mm_nan", np.array([0.0, 1.0, np.nan, 1.0]), seed)
    cases.append(Case("nan-label", "breastmnist", "breastmnist.npz", "train image 2: label is nan", "breastmnist", root, "train", n_good=3))
    root = medmnist_root(tmp / "mm_float", np.array([0.0, 0.7, 1.0, 1.0]), seed)
    cases.append(Case("float-label", "breastmnist", "breastmnist.npz", "label is 0.7, not a whole class index", "breastmnist", root, "train", n_good=3))

    # ---- roco (TSV text)
    root = roco_root(tmp / "roco_dup", recs)
    _replace_bytes(root / "data/test/radiology/captions.txt", b"ROCO_00001", b"ROCO_00000")
    cases.append(Case("duplicate-id", "roco", "captions.txt", "ROCO id 'ROCO_00000' repeats line 1", "roco", root, "test", n_good=n - 1))
    root = roco_root(tmp / "roco_nul", recs)
    _replace_bytes(root / "data/test/radiology/captions.txt", b"ROCO_00002\t", b"ROCO_00002\t\x00")
    cases.append(Case("nul-byte", "roco", "captions.txt", "NUL byte", "roco", root, "test", n_good=n - 1))
    root = roco_root(tmp / "roco_utf8", recs)
    _replace_bytes(root / "data/test/radiology/captions.txt", b"ROCO_00002\t", b"ROCO_00002\t\xff")
    cases.append(Case("bad-utf8", "roco", "captions.txt", "not valid UTF-8", "roco", root, "test", whole_file=True))

    # ---- monuseg_lvit (xlsx)
    root = monuseg_root(tmp / "mo_num", recs, [r["question"] if i != 1 else 3.25 for i, r in enumerate(recs)])
    cases.append(Case("number-as-text", "monuseg_lvit", "Train_text.xlsx", "Description is a JSON number", "monuseg_lvit", root, "train", n_good=n - 1))
    # (no NUL case for xlsx: XML cannot hold a NUL, openpyxl refuses to write one)
    root = monuseg_root(tmp / "mo_dup", recs)
    shutil.copy(root / "MoNuSeg/Train_Folder/Train_text.xlsx", tmp / "mo_dup.xlsx")
    _xlsx_edit(root / "MoNuSeg/Train_Folder/Train_text.xlsx", 3, "TCGA-AA-1000-01Z-00-DX1.png")
    cases.append(Case("duplicate-id", "monuseg_lvit", "Train_text.xlsx", "Image 'TCGA-AA-1000-01Z-00-DX1' repeats row 2", "monuseg_lvit", root, "train", n_good=n - 1))

    # ---- manifest (CSV and JSONL)
    root = manifest_root(tmp / "mf_nan", recs)
    _replace_bytes(root / "manifest.csv", f",{recs[0]['image_organ']},p0".encode(), b",NaN,p0")
    cases.append(Case("nan-label", "manifest", "manifest.csv", "organ is 'NaN'", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mf_nanpid", recs)
    _replace_bytes(root / "manifest.csv", b",p1\r\n", b",nan\r\n")
    cases.append(Case("nan-label", "manifest", "manifest.csv", "patient_id is 'nan'", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mf_dup", recs)
    _replace_bytes(root / "manifest.csv", b"\ns1,", b"\ns0,")
    cases.append(Case("duplicate-id", "manifest", "manifest.csv", "id 's0' repeats line 2", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mf_extra", recs)
    _replace_bytes(root / "manifest.csv", b",train,", b",train,oops,")
    cases.append(Case("extra-field", "manifest", "manifest.csv", "8 fields but the header has 7", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mf_utf8", recs)
    _replace_bytes(root / "manifest.csv", b",train,", b",train,\xff")
    cases.append(Case("bad-utf8", "manifest", "manifest.csv", "not valid UTF-8 \\(byte offset \\d+\\)", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mf_empty", recs)
    (root / "manifest.csv").write_bytes(b"")
    cases.append(Case("empty-file", "manifest", "manifest.csv", "empty", "manifest", root, "train", whole_file=True))
    root = manifest_root(tmp / "mfj_list", recs, jsonl=True)
    jsonl_edit(root / "manifest.jsonl", 0, lambda r: r.update(question=["a", "list"]))
    cases.append(Case("list-as-text", "manifest", "manifest.jsonl", "question is a JSON list", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mfj_num", recs, jsonl=True)
    jsonl_edit(root / "manifest.jsonl", 1, lambda r: r.update(question=42.0))
    cases.append(Case("number-as-text", "manifest", "manifest.jsonl", "question is a JSON number", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mfj_nul", recs, jsonl=True)
    jsonl_edit(root / "manifest.jsonl", 2, lambda r: r.update(answer="no\x00"))
    cases.append(Case("nul-byte", "manifest", "manifest.jsonl", "NUL byte", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mfj_float", recs, jsonl=True)
    jsonl_edit(root / "manifest.jsonl", 3, lambda r: r.update({"target:organ": 0.7}))
    cases.append(Case("float-label", "manifest", "manifest.jsonl", "is 0.7, not a whole class index", "manifest", root, "train", n_good=n - 1))
    root = manifest_root(tmp / "mf_textjpg", recs)
    (root / "img2.jpg").write_text("not a jpeg\n")
    cases.append(Case("text-as-image", "manifest", "img2.jpg", "not a recognised image format", "manifest", root, "train", engine=True))

    # ---- dicom_folder
    root = dicom_root(tmp / "dcm_loop")
    (root / "loop.dcm").symlink_to("loop.dcm")
    cases.append(Case("symlink-loop", "dicom_folder", "loop.dcm", "symlink is broken or points to itself", "dicom_folder", root, n_good=2))
    root = dicom_root(tmp / "dcm_text")
    (root / "notes.dcm").write_text("a text file named .dcm\n")
    cases.append(Case("text-as-image", "dicom_folder", "notes.dcm", "DICOM|no pixel data", "dicom_folder", root, n_good=2))
    root = dicom_root(tmp / "dcm_nopix")
    shutil.copy(FIXTURES / "dicom" / "no_pixels.dcm", root / "no_pixels.dcm")
    cases.append(Case("no-pixels", "dicom_folder", "no_pixels.dcm", "no pixel data", "dicom_folder", root, n_good=2))

    # ---- readers (read_image, read_dicom_info, read_text, read_json, read_csv_rows)
    rd = tmp / "readers"
    rd.mkdir()
    (rd / "text.jpg").write_text("hello, I am text\n")
    cases.append(Case("text-as-image", "read_image", "text.jpg", "not a recognised image format", read=_reader("read_image", rd / "text.jpg")))
    (rd / "cut.jpg").write_bytes(_real_jpeg(recs[0])[:300])
    cases.append(Case("truncated-image", "read_image", "cut.jpg", "corrupt or truncated image", read=_reader("read_image", rd / "cut.jpg")))
    (rd / "cut.png").write_bytes(_png_of(_real_jpeg(recs[1]))[:-40])
    cases.append(Case("truncated-image", "read_image", "cut.png", "corrupt or truncated image", read=_reader("read_image", rd / "cut.png")))
    (rd / "zero.png").write_bytes(b"")
    cases.append(Case("empty-file", "read_image", "zero.png", "empty \\(0 bytes\\)", read=_reader("read_image", rd / "zero.png")))
    import tifffile

    tifffile.imwrite(rd / "nan.tif", np.full((8, 8), np.nan, np.float32))
    cases.append(Case("nan-pixels", "read_image", "nan.tif", "64 of 64 pixel values are NaN", read=_reader("read_image", rd / "nan.tif")))
    float_dicom(rd / "nan_float.dcm", np.full((4, 4), np.nan, np.float32))
    cases.append(Case("nan-pixels", "read_image", "nan_float.dcm", "16 of 16 pixel values are NaN", read=_reader("read_image", rd / "nan_float.dcm")))
    jp2_zero_box_dicom(rd / "jp2_zero_box.dcm")
    cases.append(Case("jp2-zero-box", "read_image", "jp2_zero_box.dcm", "JP2 box .* has length 0", read=_reader("read_image", rd / "jp2_zero_box.dcm")))
    (rd / "zero_box.jpg").write_bytes(JP2_ZERO_BOX)  # a JP2 file under a .jpg name reaches Pillow directly
    cases.append(Case("jp2-zero-box", "read_image", "zero_box.jpg", "JP2 box .* has length 0", read=_reader("read_image", rd / "zero_box.jpg")))
    (rd / "loop.dcm").symlink_to("loop.dcm")
    cases.append(Case("symlink-loop", "read_dicom_info", "loop.dcm", "not found", read=_reader("read_dicom_info", rd / "loop.dcm")))
    cases.append(Case("symlink-loop", "read_image", "loop.dcm", "self-referencing symlink", read=_reader("read_image", rd / "loop.dcm")))
    (rd / "notes.txt").write_bytes(b"caf\xe9 au lait\n")
    cases.append(Case("bad-utf8", "read_text", "notes.txt", "not valid UTF-8 at byte offset 3", read=_reader("read_text", rd / "notes.txt")))
    (rd / "empty.jsonl").write_bytes(b"")
    cases.append(Case("empty-file", "read_jsonl", "empty.jsonl", "empty \\(0 bytes\\)", read=_reader("read_jsonl", rd / "empty.jsonl")))
    (rd / "extra.csv").write_text("a,b\n1,2\n3,4,5\n")
    cases.append(Case("extra-field", "read_csv_rows", "extra.csv", "3 fields but the header has 2", read=_reader("read_csv_rows", rd / "extra.csv")))

    # ---- chexpert, mimic_cxr, shards (tests/bad_inputs_cxr.py)
    from bad_inputs_cxr import cxr_cases

    cases += cxr_cases(tmp, recs, seed)
    return cases


def _xlsx_edit(path: Path, row: int, image: str) -> None:
    import openpyxl

    wb = openpyxl.load_workbook(path)
    wb.active.cell(row=row, column=1, value=image)
    wb.save(path)


def _reader(name: str, path: Path) -> Callable[[], Any]:
    import medmm.data.io as mio

    return lambda: getattr(mio, name)(path)


def _read_mask(path: Path) -> Any:
    from medmm.data.io import read_mask
    from medmm.data.schema import MaskRef

    return read_mask(MaskRef(label="Right Lung", path=str(path), box=(3, 2, 6, 8)), (32, 32))
