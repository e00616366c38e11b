"""check_dataset and `medmm data check/list`: counts, labels, text, skipped samples, leakage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared_dataset
from medmm.cli import app
from medmm.cli.data import parse_fractions
from medmm.data.check import check_dataset, label_distribution, text_lengths
from medmm.data.schema import Sample
from medmm.data.splits import find_leakage, grouped_split
from medmm.errors import MedmmError

JSON_NAME = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"


def _png(path, value: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def _qa(qid, phrase, image, question="Is there a mass?", answer="yes", answer_type="CLOSED", organ="HEAD"):
    return {
        "qid": qid,
        "phrase_type": phrase,
        "image_name": image,
        "image_organ": organ,
        "question": question,
        "answer": answer,
        "answer_type": answer_type,
        "question_type": "PRES",
    }


@pytest.fixture
def vqa_rad_root(tmp_path):
    """A VQA-RAD layout whose test_freeform questions reuse train images (as the real release does)."""
    images = tmp_path / IMAGE_DIR
    images.mkdir()
    for i, name in enumerate(["synpic1.jpg", "synpic2.jpg", "synpic3.jpg"]):
        _png(images / name, 40 * i)  # PNG bytes under .jpg names: format is sniffed, not guessed
    (images / "synpic9.jpg").write_bytes((images / "synpic3.jpg").read_bytes())  # same picture, new name
    records = [
        _qa(1, "freeform", "synpic1.jpg"),
        _qa(2, "para", "synpic1.jpg", question="Is a mass present?"),
        _qa(3, "freeform", "synpic2.jpg", answer="left frontal lobe", answer_type="OPEN", organ="CHEST"),
        _qa(4, "freeform", "synpic3.jpg", organ="CHEST"),
        _qa(5, "test_freeform", "synpic1.jpg", question="Is the mass enhancing?", answer="no"),
        _qa(6, "test_freeform", "synpic9.jpg"),
        _qa(7, "freeform", "synpic2.jpg", answer=""),  # bad record: skipped and counted
    ]
    (tmp_path / JSON_NAME).write_text(json.dumps(records))
    return tmp_path


def test_vqa_rad_official_split_leaks_images(vqa_rad_root):
    pytest.importorskip("medmm.data.datasets.vqa_rad")
    r = check_dataset("vqa_rad", vqa_rad_root)
    assert r["mode"] == "official" and r["group_by"] == "image"
    assert r["counts"] == {"train": 4, "test": 2}
    assert len(r["skipped"]) == 1 and "empty question or answer" in r["skipped"][0]["error"]
    leak = r["leakage"]
    assert leak["has_leakage"]
    assert leak["shared_groups"] == {"synpic1.jpg": {"test": 1, "train": 2}}
    # synpic1 is the same file in both; synpic9 is a byte copy of train's synpic3 under another name
    shared = {tuple(sorted(p.rsplit("/", 1)[-1] for ps in v.values() for p in ps)) for v in leak["shared_images"].values()}
    assert shared == {("synpic1.jpg", "synpic1.jpg"), ("synpic3.jpg", "synpic9.jpg")}
    assert "LEAK: 1 image ids" in r["leakage_summary"] and "2 identical images" in r["leakage_summary"]
    assert r["labels"]["answer_type"]["all"] == {"CLOSED": 5, "OPEN": 1}
    assert r["labels"]["answer_type"]["imbalance_ratio"] == 5.0
    assert r["text"]["answer"]["max_words"] == 3


def test_vqa_rad_regrouped_by_image_is_clean_except_copies(vqa_rad_root):
    pytest.importorskip("medmm.data.datasets.vqa_rad")
    r = check_dataset("vqa_rad", vqa_rad_root, splits={"train": 0.5, "test": 0.5}, seed=1)
    assert r["mode"] == "grouped" and sum(r["counts"].values()) == 6
    assert r["leakage"]["shared_groups"] == {}
    # image-name grouping cannot see that synpic9 is a copy of synpic3; only hashing can
    for v in r["leakage"]["shared_images"].values():
        assert sorted(p.rsplit("/", 1)[-1] for ps in v.values() for p in ps) == ["synpic3.jpg", "synpic9.jpg"]


def test_decode_finds_corrupt_image(vqa_rad_root):
    pytest.importorskip("medmm.data.datasets.vqa_rad")
    (vqa_rad_root / IMAGE_DIR / "synpic2.jpg").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    stages = set()
    r = check_dataset("vqa_rad", vqa_rad_root, decode=True, progress=lambda st, d, t: stages.add(st))
    assert r["decode"]["decoded"] == 3
    assert len(r["decode"]["undecodable"]) == 1 and "synpic2.jpg" in r["decode"]["undecodable"][0]
    assert stages == {"hashing images", "checking file headers", "decoding images and masks"}


@pytest.mark.shared_data
def test_covid_cxr_patient_split_has_no_leakage_but_image_split_does():
    root = shared_dataset("covid_cxr")
    r = check_dataset("covid_cxr", root, "patient", {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    assert sum(r["counts"].values()) == 603 and sum(r["n_groups"].values()) == 310
    assert not r["leakage"]["has_leakage"], r["leakage_summary"]
    assert r["leakage"]["n_images_hashed"] > 400
    assert r["text"]["clinical_notes"]["n"] == 509
    # one picture is published for two patients (78 and 201): no split by patient can separate it
    assert ["201", "78"] in r["leakage"]["cross_group_duplicates"].values()
    # Splitting per image instead puts one patient's images on both sides: caught by patient.
    from medmm.data import load_dataset

    samples = load_dataset("covid_cxr", root, "all").samples
    by_image = grouped_split(samples, "id", {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    rep = find_leakage(by_image, "patient", hash_images=False)
    assert len(rep.shared_groups) > 10


def test_label_distribution_and_text_lengths():
    parts = {
        "a": [Sample(id="1", dataset="t", split="a", targets={"y": "x"}, text={"caption": "one two three"})],
        "b": [
            Sample(id="2", dataset="t", split="b", targets={"y": "x"}, text={"caption": ""}),
            Sample(id="3", dataset="t", split="b", targets={"y": "x"}),
            Sample(id="4", dataset="t", split="b", targets={"y": "z"}),
            Sample(id="5", dataset="t", split="b"),
        ],
    }
    d = label_distribution(parts)["y"]
    assert d["all"] == {"x": 3, "z": 1} and d["imbalance_ratio"] == 3.0 and d["missing"] == 1
    assert d["per_split"]["b"] == {"x": 2, "z": 1}
    t = text_lengths(parts)["caption"]
    assert (t["n"], t["min_words"], t["max_words"], t["empty"]) == (2, 0, 3, 1)


def test_cli_check_writes_json_and_fails_on_leak(vqa_rad_root, tmp_path):
    pytest.importorskip("medmm.data.datasets.vqa_rad")
    out = tmp_path / "report.json"
    res = CliRunner().invoke(app, ["data", "check", "vqa_rad", str(vqa_rad_root), "--json", str(out), "--fail-on-leak"])
    assert res.exit_code == 1, res.output
    assert "LEAK" in res.output and "skipped 1 bad samples" in res.output
    assert json.loads(out.read_text())["leakage"]["has_leakage"] is True
    res = CliRunner().invoke(
        app, ["data", "check", "vqa_rad", str(vqa_rad_root), "--group-by", "image", "--split-fractions", "train=0.5,test=0.5", "--no-hash"],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert "grouped split" in res.output and "no leakage" in res.output


def test_cli_list_and_bad_fractions():
    res = CliRunner().invoke(app, ["data", "list"])
    assert res.exit_code == 0
    for name in ("covid_cxr", "covid_cxr_seg", "monuseg_lvit", "iu_xray", "slake", "roco"):
        assert name in res.output
    assert parse_fractions("train=0.8, test=0.2") == {"train": 0.8, "test": 0.2}
    with pytest.raises(MedmmError, match="name=fraction"):
        parse_fractions("train:0.8")


# ----------------------------------------------------------------- bad files (issues 24, 31)
def test_check_without_decode_names_a_text_file_named_jpg(vqa_rad_root):
    pytest.importorskip("medmm.data.datasets.vqa_rad")
    (vqa_rad_root / IMAGE_DIR / "synpic2.jpg").write_text("I am a text file\n")
    r = check_dataset("vqa_rad", vqa_rad_root)  # no decode: the header check still finds it
    assert [b["path"].rsplit("/", 1)[-1] for b in r["files"]["bad"]] == ["synpic2.jpg"]
    res = CliRunner().invoke(app, ["data", "check", "vqa_rad", str(vqa_rad_root)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "synpic2.jpg: not a recognised image format" in res.output
    assert "skipped 1 bad samples" in res.output and "empty question or answer" in res.output
    strict = CliRunner().invoke(app, ["data", "check", "vqa_rad", str(vqa_rad_root), "--strict"], env={"COLUMNS": "200"})
    assert strict.exit_code == 1 and "--strict: 2 problem(s)" in strict.output


def test_check_decode_names_truncated_masks_and_strict_exit(tmp_path):
    from bad_inputs import covid_root
    from medmm.data.bundled import vqa_rad_sample_root

    records = json.loads((vqa_rad_sample_root() / JSON_NAME).read_text())[:3]
    root = covid_root(tmp_path / "covid", records)
    mask = root / "segmentations_100" / "masks" / "m1.png"
    mask.write_bytes(mask.read_bytes()[:-30])  # truncated: the header is fine, the data is not
    quick = check_dataset("covid_cxr_seg", root)
    assert quick["files"]["bad"] == []  # only decoding finds it
    res = CliRunner().invoke(app, ["data", "check", "covid_cxr_seg", str(root), "--decode", "--strict"], env={"COLUMNS": "250"})
    assert res.exit_code == 1, res.output
    assert "1 undecodable" in res.output and "m1.png: corrupt or truncated image" in res.output
    ok = CliRunner().invoke(app, ["data", "check", "covid_cxr_seg", str(root), "--decode"], env={"COLUMNS": "250"})
    assert ok.exit_code == 0 and "m1.png" in ok.output


def test_check_help_states_exit_codes():
    res = CliRunner().invoke(app, ["data", "check", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--strict" in res.output and "Exit status" in res.output


def test_medpix2_pseudo_split_all_is_not_a_split(tmp_path):
    from bad_inputs import medpix2_root
    from medmm.data.bundled import vqa_rad_sample_root

    records = json.loads((vqa_rad_sample_root() / JSON_NAME).read_text())[:4]
    root = medpix2_root(tmp_path / "mp", records)  # train split + Descriptions.json ("all")
    r = check_dataset("medpix2", root, hash_images=False)
    assert set(r["counts"]) == {"train", "dev", "test"} and r["counts"]["train"] == 4
    assert not r["leakage"]["has_leakage"], r["leakage_summary"]
    # without splitted_dataset/ the union split is all there is, and it is checked
    import shutil

    shutil.rmtree(root / "MedPix-2-0" / "splitted_dataset")
    r = check_dataset("medpix2", root, hash_images=False)
    assert r["counts"] == {"all": 4} and not r["leakage"]["has_leakage"]


def test_medpix2_real_root_has_no_false_leak():
    root = shared_dataset("medpix2")
    r = check_dataset("medpix2", root, hash_images=False)
    assert "all" not in r["counts"] and r["counts"]["train"] == 1653
    assert r["leakage"]["shared_groups"] == {}, r["leakage_summary"]
