"""Loaders vqa_rad, medpix2(_cases), MedMNIST, manifest, dicom_folder: real counts + bad records."""

from __future__ import annotations

import collections
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_dataset
from medmm.data import LabelState, load_dataset
from medmm.data.io import verify_images
from medmm.data.registry import dataset_info
from medmm.errors import BadInputError

FIXTURES = Path(__file__).parent / "fixtures" / "dicom"


def _png(path: Path, value: int = 100, size: int = 8) -> Path:
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
    return path


# ---------------------------------------------------------------- VQA-RAD


@pytest.mark.shared_data
def test_vqa_rad_real_counts():
    root = shared_dataset("vqa_rad")
    train = load_dataset("vqa_rad", root, "train")
    assert len(train) == 1797 and not train.skipped
    # This copy holds train QA only: 313 images referenced (314 with the official test QA).
    assert len({s.image_id for s in train}) == 313
    assert collections.Counter(s.targets["organ"] for s in train) == {"CHEST": 620, "HEAD": 596, "ABD": 581}
    assert {s.targets["answer_type"] for s in train} == {"CLOSED", "OPEN"}
    assert {s.meta["phrase_type"] for s in train} == {"freeform", "para"}
    assert all(Path(s.images[0].path).is_file() and s.text["question"] and s.text["answer"] for s in train)
    assert len(load_dataset("vqa_rad", root, "test")) == 0
    assert dataset_info("vqa_rad").group_by == "image"
    # paraphrase groups (qid_linked_id): every "para" question shares one with a free-form question
    # on the same image, so group_by "question" keeps a question and its rewordings together
    groups = collections.defaultdict(list)
    for s in train:
        groups[s.group("question")].append(s)
    assert len(groups) == 1155
    paired = [g for g in groups.values() if any(s.meta["phrase_type"] == "para" for s in g)]
    assert len(paired) == 579 and all(any(s.meta["phrase_type"] == "freeform" for s in g) for g in paired)
    assert sum(len({s.image_id for s in g}) > 1 for g in groups.values()) == 1


def _vqa_root(tmp_path: Path, records: list[dict]) -> Path:
    (tmp_path / "VQA_RAD Image Folder").mkdir()
    for name in {r["image_name"] for r in records if r["image_name"] != "missing.jpg"}:
        _png(tmp_path / "VQA_RAD Image Folder" / name)
    (tmp_path / "VQA_RAD Dataset Public.json").write_text(json.dumps(records))
    return tmp_path


def _qa(qid, phrase, image="synpic1.jpg", answer_type="CLOSED", organ="HEAD", answer="yes"):
    return {
        "qid": qid,
        "phrase_type": phrase,
        "image_name": image,
        "image_organ": organ,
        "question": f"q{qid}?",
        "question_type": "PRES",
        "answer": answer,
        "answer_type": answer_type,
    }


def test_vqa_rad_both_splits_and_bad_records(tmp_path):
    records = [
        _qa(1, "freeform"),
        _qa(2, "para", answer_type="CLOSED ", answer=3),
        _qa(3, "test_freeform", image="synpic2.jpg", answer_type="OPEN", organ="CHEST"),
        _qa(4, "test_para", image="synpic2.jpg"),
        _qa(5, "freeform", image="missing.jpg"),
        _qa(6, "test_freeform", answer_type="MAYBE"),
    ]
    root = _vqa_root(tmp_path, records)
    with pytest.raises(BadInputError, match="missing.jpg"):
        load_dataset("vqa_rad", root, "train")
    train = load_dataset("vqa_rad", root, "train", skip_bad=True)
    assert [s.id for s in train] == ["1", "2"] and len(train.skipped) == 1
    assert train[1].targets["answer_type"] == "CLOSED" and train[1].text["answer"] == "3"
    test = load_dataset("vqa_rad", root, "test", skip_bad=True)
    assert [s.id for s in test] == ["3", "4"] and "MAYBE" in str(test.skipped[0])
    assert test[0].targets == {"organ": "CHEST", "answer_type": "OPEN"} and test[0].image_id == "synpic2.jpg"


def test_vqa_rad_root_without_json(tmp_path):
    with pytest.raises(BadInputError, match="VQA_RAD Dataset Public.json"):
        load_dataset("vqa_rad", tmp_path, "train")


# ---------------------------------------------------------------- MedPix 2.0


@pytest.mark.shared_data
def test_medpix2_real_counts_and_case_grouping():
    root = shared_dataset("medpix2")
    counts = {s: len(load_dataset("medpix2", root, s)) for s in ("train", "dev", "test", "all")}
    assert counts == {"train": 1653, "dev": 197, "test": 0, "all": 1850}
    cases = {s: load_dataset("medpix2_cases", root, s) for s in ("train", "dev", "all")}
    assert {s: len(v) for s, v in cases.items()} == {"train": 535, "dev": 67, "all": 602}
    assert sum(len(c.images) for c in cases["all"]) == 1850
    train = load_dataset("medpix2", root / "MedPix-2-0", "train")
    dev = load_dataset("medpix2", root, "dev")
    assert not ({s.case_id for s in train} & {s.case_id for s in dev})  # case-level split
    s = train[0]
    assert s.text["caption"] and s.targets["modality"] in {"CT", "MR"} and "plane" in s.targets
    assert {"history", "findings", "impression"} <= set().union(*(x.text for x in train))
    assert collections.Counter(x.targets["modality"] for x in load_dataset("medpix2", root, "all")) == {
        "CT": 962,
        "MR": 888,
    }
    assert all("report" in c.text and c.case_id == c.id for c in cases["dev"])


def test_medpix2_missing_image_and_absent_split(tmp_path):
    base = tmp_path / "MedPix-2-0"
    (base / "images").mkdir(parents=True)
    (base / "splitted_dataset").mkdir()
    _png(base / "images" / "MPX1_synpic1.png")
    desc = [
        {
            "Type": "CT",
            "U_id": "MPX1",
            "image": "MPX1_synpic1",
            "Description": {"Caption": "a mass", "Plane": "Axial"},
            "Location": "Chest",
        },
        {"Type": "MR", "U_id": "MPX1", "image": "MPX1_synpic2", "Description": {"Caption": "b", "Plane": "Sagittal"}},
    ]
    case = {
        "U_id": "MPX1",
        "TAC": ["MPX1_synpic1"],
        "MRI": ["MPX1_synpic2"],
        "Case": {"History": "pain", "Case Diagnosis": "N/A"},
        "Topic": {"Category": "Trauma"},
    }
    (base / "splitted_dataset" / "descriptions_train.jsonl").write_text("\n".join(json.dumps(d) for d in desc))
    (base / "splitted_dataset" / "data_train.jsonl").write_text(json.dumps(case))
    got = load_dataset("medpix2", tmp_path, "train", skip_bad=True)
    assert [s.id for s in got] == ["MPX1_synpic1"] and "MPX1_synpic2.png" in got.skipped[0].path
    assert got[0].text == {"caption": "a mass", "history": "pain"} and got[0].targets["acr_category"] == "Trauma"
    assert len(load_dataset("medpix2_cases", tmp_path, "train", skip_bad=True).skipped) == 1
    assert len(load_dataset("medpix2", tmp_path, "dev")) == 0


# ---------------------------------------------------------------- MedMNIST


@pytest.mark.shared_data
def test_medmnist_real_counts():
    root = shared_dataset("medmnist")
    train, val = load_dataset("breastmnist", root, "train"), load_dataset("breastmnist", root, "val")
    assert (len(train), len(val), len(load_dataset("breastmnist", root, "test"))) == (546, 78, 0)
    assert collections.Counter(s.targets["label"] for s in train) == {"malignant": 147, "normal, benign": 399}
    assert train[0].images[0].array.shape == (28, 28) and train[0].images[0].path is None
    assert len(load_dataset("pneumoniamnist_trainsubset", root, "test")) == 624
    assert len(load_dataset("pneumoniamnist_balanced", root / "pneumoniamnist_28_balanced_subset.npz", "train")) == 2428
    with pytest.raises(BadInputError, match="pneumoniamnist.npz"):
        load_dataset("pneumoniamnist", root, "train")  # the official file is not in this copy


def test_medmnist_bad_labels_and_bad_file(tmp_path):
    np.savez(
        tmp_path / "breastmnist.npz",
        train_images=np.zeros((3, 28, 28), np.uint8),
        train_labels=np.array([[0], [1], [7]]),
    )
    got = load_dataset("breastmnist", tmp_path, "train", skip_bad=True)
    assert len(got) == 2 and "label 7" in str(got.skipped[0])
    assert len(load_dataset("breastmnist", tmp_path, "val")) == 0
    (tmp_path / "breastmnist.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInputError, match="cannot read npz"):
        load_dataset("breastmnist", tmp_path, "train")


# ---------------------------------------------------------------- manifest


def _manifest_folder(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r2.txt").write_text("Small left effusion.\n")
    return tmp_path


def test_manifest_csv_all_column_kinds(tmp_path):
    root = _manifest_folder(tmp_path)
    (root / "manifest.csv").write_text(
        "id,image,split,report,report_file,target:diagnosis,finding:Effusion,finding:Edema,patient_id,view,site\n"
        "s1,img/a.png;img/b.png,train,No acute disease.,,normal,0,,P1,PA,north\n"
        "s2,img/b.png,test,,reports/r2.txt,effusion,1.0,-1,P2,,\n"
        "s3,,train,Text only.,,,,,P3,,\n",
        encoding="utf-8",
    )
    train = load_dataset("manifest", root, "train")
    assert [s.id for s in train] == ["s1", "s3"]
    s1 = train[0]
    assert [Path(im.path).name for im in s1.images] == ["a.png", "b.png"] and s1.images[0].view == "PA"
    assert s1.text == {"report": "No acute disease."} and s1.targets == {"diagnosis": "normal"}
    assert s1.findings == {"Effusion": LabelState.NEGATIVE} and s1.patient_id == "P1" and s1.meta == {"site": "north"}
    (s2,) = load_dataset("manifest", root / "manifest.csv", "test").samples
    assert s2.text == {"report": "Small left effusion."}
    assert s2.findings == {"Effusion": LabelState.POSITIVE, "Edema": LabelState.UNCERTAIN}
    assert len(load_dataset("manifest", root, "all")) == 3 and len(load_dataset("manifest", root, "val")) == 0


def test_manifest_jsonl(tmp_path):
    root = _manifest_folder(tmp_path)
    rows = [
        {"id": "j1", "image": ["img/a.png"], "split": "val", "caption": "x", "finding:Mass": 1, "case_id": "C1"},
        {"id": "j2", "image": "img/b.png", "split": "val", "finding:Mass": "yes"},
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(
        BadInputError, match=r"manifest.jsonl: line 2 \(id j2\): finding 'Mass' has value 'yes'"
    ) as info:
        load_dataset("manifest", root, "val")
    assert info.value.path == str(root / "manifest.jsonl")
    got = load_dataset("manifest", root, "val", skip_bad=True)
    assert [s.id for s in got] == ["j1"] and got[0].findings == {"Mass": LabelState.POSITIVE} and got[0].case_id == "C1"


def test_manifest_non_utf8_rows_report_their_own_byte_offsets(tmp_path):
    root = _manifest_folder(tmp_path)
    head = "\ufeffid,report\n".encode()
    row1, row2, row3 = b"a,ok\n", "b,\xe9\n".encode("latin-1"), "c,d\xe9j\xe0\n".encode("latin-1")
    (root / "manifest.csv").write_bytes(head + row1 + row2 + row3 + "d,fine \u00e9\n".encode())
    got = load_dataset("manifest", root, "all", skip_bad=True)
    assert [s.id for s in got] == ["a", "d"] and got[1].text["report"] == "fine \u00e9"
    first, second = (str(e) for e in got.skipped)
    assert f"byte offset {len(head + row1) + 2}" in first
    assert f"byte offset {len(head + row1 + row2) + 3}" in second


def test_manifest_row_errors(tmp_path):
    root = _manifest_folder(tmp_path)
    (root / "manifest.csv").write_text(
        "id,image,split\nx,img/a.png,train\nx,img/b.png,train\ny,img/a.png,training\n,img/a.png,train\n"
    )
    got = load_dataset("manifest", root, "all", skip_bad=True)
    assert [s.id for s in got] == ["x"]
    problems = " | ".join(str(e) for e in got.skipped)
    assert "repeats" in problems and "unknown split 'training'" in problems and "empty id" in problems
    (root / "manifest.csv").write_text("image,split\nimg/a.png,train\n")
    with pytest.raises(BadInputError, match="no 'id' column"):
        load_dataset("manifest", root, "all")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no manifest found"):
        load_dataset("manifest", empty, "all")


# ---------------------------------------------------------------- DICOM folder


def test_dicom_folder_headers_and_bad_files(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "study", dirs_exist_ok=True)
    (tmp_path / "study" / "sub").mkdir()
    (tmp_path / "study" / "sub" / "random.DCM").write_bytes(np.random.default_rng(3).bytes(500))
    with pytest.raises(BadInputError):
        load_dataset("dicom_folder", tmp_path, "all")
    got = load_dataset("dicom_folder", tmp_path, "all", skip_bad=True)
    assert [s.id for s in got] == ["study/cr_mono1.dcm", "study/ct_rescale.dcm"]
    cr, ct = got.samples
    assert (cr.patient_id, cr.study_id, cr.images[0].modality, cr.images[0].view) == ("P2", "1.2.3.2", "CR", "PA")
    assert (ct.patient_id, ct.images[0].modality) == ("P1", "CT") and ct.meta["rows"] == 8
    assert sorted(Path(e.path).name for e in got.skipped) == ["no_pixels.dcm", "random.DCM"]
    assert dataset_info("dicom_folder").group_by == "patient"


# ---------------------------------------------------------------- robustness: one error per bad file


def test_bad_inputs_each_one_error_then_skipped_and_counted(tmp_path):
    """Truncated PNG, random .dcm, DICOM without pixels, empty report, missing image, non-UTF-8 row."""
    _png(tmp_path / "good.png")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:200])
    (tmp_path / "random.dcm").write_bytes(np.random.default_rng(1).bytes(400))
    shutil.copy(FIXTURES / "no_pixels.dcm", tmp_path / "nopix.dcm")
    (tmp_path / "empty.txt").write_text("")
    lines = [
        "id,image,report_file,report",
        "good,good.png,,fine",
        "trunc,cut.png,,fine",
        "rand,random.dcm,,fine",
        "nopix,nopix.dcm,,fine",
        "emptyrep,good.png,empty.txt,",
        "missing,gone.png,,fine",
    ]
    data = ("\n".join(lines) + "\n").encode() + "latin,good.png,,caf\xe9 \xe9t\xe9\n".encode("latin-1")
    (tmp_path / "manifest.csv").write_bytes(data)

    # Without skip_bad the first bad row raises one BadInputError naming its file.
    with pytest.raises(BadInputError) as info:
        load_dataset("manifest", tmp_path, "all")
    assert info.value.path == str(tmp_path / "empty.txt")

    loaded = load_dataset("manifest", tmp_path, "all", skip_bad=True)
    assert [s.id for s in loaded] == ["good", "trunc", "rand", "nopix"]
    assert [Path(e.path).name for e in loaded.skipped] == ["empty.txt", "gone.png", "manifest.csv"]
    assert "line 8" in str(loaded.skipped[2])
    assert f"offset {data.index(b'caf') + 3}" in str(loaded.skipped[2])
    with pytest.raises(BadInputError, match="truncated"):
        verify_images(loaded, skip_bad=False)
    checked = verify_images(loaded)
    assert [s.id for s in checked] == ["good"]
    assert [Path(e.path).name for e in checked.skipped[3:]] == ["cut.png", "random.dcm", "nopix.dcm"]
