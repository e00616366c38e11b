"""MIMIC-CXR-JPG and CheXpert loaders on small synthetic copies of their exact layouts."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medmm.data.datasets._cxr_csv import CHEXPERT_OBSERVATIONS
from medmm.data.registry import load_dataset
from medmm.data.schema import LabelState
from medmm.errors import BadInputError


def _jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 20), 90, dtype=np.uint8)).save(path)


def _write_csv(path: Path, header: list[str], rows: list[list[str]], gz: bool = False) -> None:
    with (gzip.open(path, "wt", newline="") if gz else open(path, "w", newline="")) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def make_mimic(root: Path, bad_label: bool = False) -> Path:
    """Two patients, three studies, five images; split/metadata/chexpert CSVs (split and metadata gzipped)."""
    P = "mimic-cxr-2.0.0"
    images = [  # dicom, subject, study, view, split
        ("d1", "10000032", "50414267", "LATERAL", "train"),
        ("d2", "10000032", "50414267", "PA", "train"),
        ("d3", "10000032", "53189527", "AP", "train"),
        ("d4", "11000011", "56699142", "PA", "test"),
        ("d5", "11000011", "56699142", "LL", "test"),
    ]
    for d, subj, study, _, _ in images:
        _jpg(root / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}" / f"{d}.jpg")
    _write_csv(root / f"{P}-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], [[d, st, su, sp] for d, su, st, _, sp in images], gz=True)
    _write_csv(root / f"{P}-metadata.csv.gz", ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns"],
               [[d, su, st, "CHEST (PA AND LAT)", v, "24", "20"] for d, su, st, v, _ in images], gz=True)
    obs = list(CHEXPERT_OBSERVATIONS)
    row1 = ["" for _ in obs]
    row1[obs.index("Edema")], row1[obs.index("Cardiomegaly")] = "-1.0", "1.0"
    row2 = ["" for _ in obs]
    row2[obs.index("No Finding")] = "2.0" if bad_label else "1.0"
    _write_csv(root / f"{P}-chexpert.csv", ["subject_id", "study_id", *obs],
               [["10000032", "50414267", *row1], ["10000032", "53189527", *row2], ["11000011", "56699142", *["0.0"] * len(obs)]])
    (root / "files/p10/p10000032/s50414267.txt").write_text(
        "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n FINDINGS: \n Mild cardiomegaly.\n Possible edema.\n\n IMPRESSION: \n Cardiomegaly.\n")
    return root


def test_mimic_cxr_layout(tmp_path):
    root = make_mimic(tmp_path / "mimic-cxr-jpg" / "2.0.0")
    train = load_dataset("mimic_cxr", root, "train").samples
    assert [s.id for s in train] == ["s50414267", "s53189527"]
    s = train[0]
    assert [im.image_id for im in s.images] == ["d2", "d1"]  # frontal (PA) first
    assert [im.view for im in s.images] == ["PA", "LATERAL"] and all(Path(im.path).is_file() for im in s.images)
    assert s.findings == {"Edema": LabelState.UNCERTAIN, "Cardiomegaly": LabelState.POSITIVE}
    assert s.patient_id == "10000032" and s.study_id == "50414267"
    assert s.text["findings"] == "Mild cardiomegaly. Possible edema." and s.text["impression"] == "Cardiomegaly."
    assert train[1].text == {} and train[1].findings == {"No Finding": LabelState.POSITIVE}
    test = load_dataset("mimic_cxr", root, "test").samples
    assert len(test) == 1 and len(test[0].images) == 2 and test[0].findings["Edema"] == LabelState.NEGATIVE
    assert load_dataset("mimic_cxr", root, "validate").samples == []


def test_mimic_cxr_bad_label_is_an_error_or_a_counted_skip(tmp_path):
    root = make_mimic(tmp_path, bad_label=True)
    with pytest.raises(BadInputError, match=r"line 3: No Finding = '2.0'"):
        load_dataset("mimic_cxr", root, "train")
    ss = load_dataset("mimic_cxr", root, "train", skip_bad=True)
    assert len(ss.skipped) == 1 and ss.samples[1].meta["has_labels"] is False
    with pytest.raises(BadInputError, match="not a MIMIC-CXR-JPG root"):
        load_dataset("mimic_cxr", tmp_path / "files", "train")


def make_chexpert(parent: Path) -> Path:
    base = parent / "CheXpert-v1.0-small"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_OBSERVATIONS]
    obs = len(CHEXPERT_OBSERVATIONS)
    rows = {
        "train": [
            ["CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg", "Female", "68", "Frontal", "AP", "1.0", *[""] * (obs - 1)],
            ["CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg", "Female", "87", "Frontal", "AP", "", "", "-1.0", "1.0", *[""] * (obs - 4)],
            ["CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg", "Female", "87", "Lateral", "", "", "", "-1.0", "1.0", *[""] * (obs - 4)],
        ],
        "valid": [["CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", "Male", "73", "Frontal", "AP", *["0.0"] * obs]],
    }
    for split, rs in rows.items():
        base.mkdir(parents=True, exist_ok=True)
        _write_csv(base / f"{split}.csv", header, rs)
        for r in rs:
            _jpg(parent / r[0])
    return base


@pytest.mark.parametrize("use_parent", [True, False])
def test_chexpert_layout_keeps_uncertain(tmp_path, use_parent):
    base = make_chexpert(tmp_path)
    root = tmp_path if use_parent else base
    train = load_dataset("chexpert", root, "train").samples
    assert len(train) == 3 and all(Path(s.images[0].path).is_file() for s in train)
    s = train[1]
    assert s.findings == {"Cardiomegaly": LabelState.UNCERTAIN, "Lung Opacity": LabelState.POSITIVE}
    assert (s.patient_id, s.study_id, s.images[0].view, s.meta["age"]) == ("patient00002", "patient00002/study2", "AP", "87")
    assert train[2].images[0].view == "Lateral" and train[2].patient_id == s.patient_id
    valid = load_dataset("chexpert", root, "valid").samples
    assert len(valid) == 1 and set(valid[0].findings.values()) == {LabelState.NEGATIVE}


def test_chexpert_missing_columns_and_root(tmp_path):
    base = make_chexpert(tmp_path)
    _write_csv(base / "valid.csv", ["Path", "Sex"], [["x", "Male"]])
    with pytest.raises(BadInputError, match="missing columns"):
        load_dataset("chexpert", tmp_path, "valid")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="not a CheXpert root"):
        load_dataset("chexpert", tmp_path / "empty", "train")


def test_mimic_packs_into_shards(tmp_path):
    from medmm.data.shards.pack import PackSettings, pack_dataset

    root = make_mimic(tmp_path / "mimic")
    index = pack_dataset("mimic_cxr", root, tmp_path / "out", PackSettings(size=16, channels=1))
    assert {k: v["samples"] for k, v in index["splits"].items()} == {"train": 2, "validate": 0, "test": 1}
    back = load_dataset("shards", tmp_path / "out", "train").samples
    assert back[0].findings["Edema"] == LabelState.UNCERTAIN and len(back[0].images) == 2
    assert np.asarray(back[0].images[1].array).shape == (16, 16)
