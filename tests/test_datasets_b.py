"""Loaders covid_cxr*, monuseg_lvit, iu_xray*, slake, roco: real counts + bad-record handling."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import shared_dataset
from medmm.data import LabelState, load_dataset
from medmm.data.datasets.covid_cxr import finding_group
from medmm.data.datasets.monuseg_lvit import patient_of
from medmm.data.datasets.slake import load_kg
from medmm.data.registry import dataset_info
from medmm.errors import BadInputError

# ---------------------------------------------------------------- real data (skip when absent)


@pytest.mark.shared_data
def test_covid_cxr_metadata_counts():
    root = shared_dataset("covid_cxr")
    ds = load_dataset("covid_cxr", root, "all")
    assert len(ds) == 603
    assert len({s.patient_id for s in ds}) == 310
    assert sum("clinical_notes" in s.text for s in ds) == 509
    assert Counter(s.targets["finding"] for s in ds)["COVID-19"] == 426
    assert all(s.meta["license"] for s in ds)  # per-image licence ("not stated" when blank)
    assert all(p.is_file() for s in ds for p in s.image_paths)
    assert dataset_info("covid_cxr").group_by == "patient"
    assert load_dataset("covid_cxr", root, "all").samples[0].id == ds[0].id  # deterministic order


@pytest.mark.shared_data
def test_covid_cxr_lungboxes_counts():
    root = shared_dataset("covid_cxr")
    ds = load_dataset("covid_cxr_lungboxes", root, "all")
    assert len(ds) == 478
    assert sum(len(s.boxes) for s in ds) == 956
    assert all(sorted(b.label for b in s.boxes) == ["Left Lung", "Right Lung"] for s in ds)
    assert all(s.patient_id for s in ds)
    s = next(s for s in ds if s.id.startswith("auntminnie-a-2020_01_28"))
    right = next(b for b in s.boxes if b.label == "Right Lung")
    assert (right.x, right.y, right.width, right.height) == pytest.approx((24.22, 41.51, 141.26, 290.59))
    # covid-severity-scores.csv: 77 rows in this copy, all of them lung-box images
    assert sum("severity" in s.meta for s in ds) == 77
    sev = next(s for s in ds if s.id == "01E392EE-69F9-4E33-BFCE-E5C968654078.jpeg").meta["severity"]
    assert sev == {"geographic_extent_mean": 6.0, "opacity_mean": 4.0}


@pytest.mark.shared_data
def test_covid_cxr_seg_counts():
    root = shared_dataset("covid_cxr")
    ds = load_dataset("covid_cxr_seg", root, "all")
    assert len(ds) == 79
    n_masks = sum(len(s.masks) for s in ds)
    assert n_masks == 467
    assert n_masks + sum(len(s.meta.get("regions_without_mask", [])) for s in ds) == 480
    labels = Counter(m.label for s in ds for m in s.masks)
    assert labels["Right Lung"] == 79 and labels["Left Lung"] == 78
    m = next(m for s in ds if s.id == "X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg" for m in s.masks if m.label == "Airways")
    assert m.box == (336.0, 0.0, 295.0, 410.0)  # (Left, Top, Width, Height) of structure.csv row 1


@pytest.mark.shared_data
def test_monuseg_counts():
    root = shared_dataset("monuseg_lvit") / "MoNuSeg"
    train, val = load_dataset("monuseg_lvit", root, "train"), load_dataset("monuseg_lvit", root, "val")
    assert (len(train), len(val)) == (24, 6)
    assert len(load_dataset("monuseg_lvit", root, "test")) == 0  # Test_Folder not in the shared copy
    assert len(load_dataset("monuseg_lvit", root.parent, "train")) == 24  # parent folder accepted too
    s = next(s for s in train if s.id == "TCGA-21-5786-01Z-00-DX1")
    assert s.text["sentence"] == "The nuclei density in the upper right is high."
    assert s.patient_id == "TCGA-21-5786" and s.masks[0].label == "nuclei"


@pytest.mark.shared_data
def test_iu_xray_counts():
    root = shared_dataset("iu_xray_reports")
    sizes = {sp: len(load_dataset("iu_xray", root, sp)) for sp in ("train", "val", "test")}
    assert sizes == {"train": 2069, "val": 296, "test": 590}  # test list sits under a blank key
    assert sum(sizes.values()) == 2955
    kaggle = load_dataset("iu_xray_kaggle", root, "all")
    assert len(kaggle) == 3851
    assert sum("findings" not in s.text for s in kaggle) == 514
    assert sum(len(s.meta["projections"]) for s in kaggle) == 7466
    labels = load_dataset("iu_xray_openi_labels", root, "all")
    assert len(labels) == 2568
    assert labels[0].id == "CXR1" and labels[0].findings["normal"] is LabelState.POSITIVE
    assert sum(s.findings["Atelectasis"] == LabelState.POSITIVE for s in labels) > 0
    assert all(len(s.findings) == 15 for s in labels)


@pytest.mark.shared_data
def test_slake_counts_and_kg():
    root = shared_dataset("slake")
    with pytest.raises(BadInputError, match="qid 1622"):  # one English QA has an empty answer
        load_dataset("slake", root, "train")
    train = load_dataset("slake", root, "train", skip_bad=True)
    assert (len(train), len(train.skipped)) == (4918, 1)  # official 4,919 minus the empty answer
    assert len(load_dataset("slake", root, "validate")) == 1053
    test = load_dataset("slake", root, "test")
    assert len(test) == 1061
    assert len(load_dataset("slake_zh", root, "test")) == 1033
    assert Counter(s.targets["answer_type"] for s in test).keys() == {"OPEN", "CLOSED"}
    assert all(s.meta.get("image_missing") for s in test)  # no imgs/ in the shared copy
    # Within one language the official splits are image-disjoint; SOURCE.txt's 142 shared train/test
    # images come from mixing languages (English train images carry Chinese test questions).
    assert not {s.image_id for s in train} & {s.image_id for s in test}
    zh_test = load_dataset("slake_zh", root, "test")
    assert len({s.image_id for s in train} & {s.image_id for s in zh_test}) == 70
    kg = load_kg(root)
    # 2,216 + 281 + 103 data lines; SOURCE.txt's 2,215/280/102 is `wc -l` minus the header, one
    # short per file because the files end without a newline.
    assert len(kg) == 2600
    assert ("Alveolar Proteinosis", "location", "Lung") in kg
    assert ("Skeleton", "belong to", "Motor System") in kg


@pytest.mark.shared_data
def test_roco_counts():
    root = shared_dataset("roco_captions_textonly")
    val, test = load_dataset("roco", root, "validation"), load_dataset("roco", root, "test")
    assert (len(val), len(test)) == (8180, 8179)
    assert len(load_dataset("roco", root, "train")) == 0
    s = next(s for s in test if s.id == "ROCO_00006")
    assert s.text["caption"].startswith("Coronal plain computed tomography")
    assert "C0040395" in s.meta["cuis"] and "tumor" in s.meta["keywords"]


# ---------------------------------------------------------------- synthetic layouts (always run)


def test_finding_group():
    assert finding_group("COVID-19") == "COVID-19"
    assert finding_group("COVID-19, ARDS") == "COVID-19"
    assert finding_group("Pneumonia/Viral/COVID-19") == "COVID-19"
    assert finding_group("todo") == "unknown"
    assert finding_group("No Finding") == "no finding"
    assert finding_group("Streptococcus") == "other pneumonia"
    assert finding_group("Lipoid") == "other"


def test_patient_of():
    assert patient_of("TCGA-21-5784-01Z-00-DX1.png") == "TCGA-21-5784"
    assert patient_of("slide7.png") == "slide7"


def _covid_root(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"a")
    header = "patientid,offset,sex,age,finding,view,modality,folder,filename,license,clinical_notes\n"
    (tmp_path / "metadata.csv").write_text(
        header
        + "1,0,M,50,COVID-19,PA,X-ray,images,a.png,CC BY 4.0,fever and cough\n"
        + ",0,F,40,todo,AP,X-ray,images,b.png,,\n"  # bad: no patientid
        + "2,3,F,40,Legionella,AP,X-ray,images,c.png,,\n"
    )
    return tmp_path


def test_covid_cxr_bad_row_raises_or_skips(tmp_path):
    root = _covid_root(tmp_path)
    with pytest.raises(BadInputError, match="metadata.csv: line 3: row for 'b.png' has no patientid"):
        load_dataset("covid_cxr", root, "all")
    ds = load_dataset("covid_cxr", root, "all", skip_bad=True)
    assert [s.id for s in ds] == ["a.png", "c.png"] and len(ds.skipped) == 1
    a, c = ds
    assert a.images[0].modality == "XR" and a.images[0].view == "PA" and a.text["clinical_notes"] == "fever and cough"
    assert not c.images and c.meta["image_missing"] and c.meta["license"] == "not stated"
    assert c.targets == {"finding": "Legionella", "finding_group": "other pneumonia"}
    assert load_dataset("covid_cxr_lungboxes", root, "all").samples == []  # subset absent


def test_covid_cxr_missing_metadata(tmp_path):
    with pytest.raises(BadInputError, match="metadata.csv not found"):
        load_dataset("covid_cxr", tmp_path, "all")


def test_covid_cxr_seg_missing_mask(tmp_path):
    seg = tmp_path / "segmentations_100"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    (seg / "images" / "x.png").write_bytes(b"x")
    (seg / "images" / "y.png").write_bytes(b"y")
    (seg / "masks" / "m1.png").write_bytes(b"m")
    (seg / "structure.csv").write_text(
        "#,Template Name,Filename,Mask,Resolution,Top,Left,Width,Height\n"
        "1,Right Lung,x.png,masks/m1.png,10x10,1,2,3,4\n"
        "2,Monitoring Probes,x.png,,10x10,0,0,1,1\n"
        "3,Left Lung,y.png,masks/gone.png,10x10,0,0,1,1\n"
    )
    ds = load_dataset("covid_cxr_seg", tmp_path, "all", skip_bad=True)
    assert [s.id for s in ds] == ["x.png"]
    assert ds[0].masks[0].box == (2.0, 1.0, 3.0, 4.0) and ds[0].meta["regions_without_mask"] == ["Monitoring Probes"]
    assert "gone.png" in str(ds.skipped[0])


def test_monuseg_missing_mask_and_tif_test(tmp_path):
    import openpyxl

    for split, names in (("Train", ["A-1", "B-2"]), ("Test", ["C-3"])):
        folder = tmp_path / f"{split}_Folder"
        (folder / "img").mkdir(parents=True)
        (folder / "labelcol").mkdir()
        for n in names:
            (folder / "img" / (n + (".tif" if split == "Test" else ".png"))).write_bytes(b"i")
        (folder / "labelcol" / f"{names[0]}.png").write_bytes(b"m")
        wb = openpyxl.Workbook()
        wb.active.append(["Image", "Description"])
        for n in names:
            wb.active.append([n + ".png", "s"])
        wb.save(folder / f"{split}_text.xlsx")
    with pytest.raises(BadInputError, match="B-2.png: mask of this image is missing"):
        load_dataset("monuseg_lvit", tmp_path, "train")
    assert [s.id for s in load_dataset("monuseg_lvit", tmp_path, "train", skip_bad=True)] == ["A-1"]
    test = load_dataset("monuseg_lvit", tmp_path, "test")
    assert test[0].images[0].path.endswith("C-3.tif")  # xlsx says .png, file is .tif
    assert load_dataset("monuseg_lvit", tmp_path, "val").samples == []


def test_iu_xray_r2gen_blank_key_and_images(tmp_path):
    (tmp_path / "images" / "CXR1_IM-1").mkdir(parents=True)
    (tmp_path / "images" / "CXR1_IM-1" / "0.png").write_bytes(b"p")
    ann = {
        "train": [
            {"id": "CXR1_IM-1", "report": "Clear lungs.", "image_path": ["CXR1_IM-1/0.png", "CXR1_IM-1/1.png"], "split": "train"},
            {"id": "CXR2_IM-2", "report": "", "image_path": [], "split": "train"},
        ],
        "    ": [{"id": "CXR3_IM-3", "report": "Normal.", "image_path": [], "split": "test"}],
    }
    (tmp_path / "annotation.json").write_text(json.dumps(ann))
    with pytest.raises(BadInputError, match="CXR2_IM-2: empty report"):
        load_dataset("iu_xray", tmp_path, "train")
    train = load_dataset("iu_xray", tmp_path, "train", skip_bad=True)
    assert [s.id for s in train] == ["CXR1_IM-1"] and train[0].study_id == "1"
    assert len(train[0].images) == 1  # only the image file that exists
    assert [s.id for s in load_dataset("iu_xray", tmp_path, "test", skip_bad=True)] == ["CXR3_IM-3"]


def test_iu_xray_openi_bad_label(tmp_path):
    from medmm.data.datasets.iu_xray import OPENI_LABELS

    cols = ",".join(("filename", *OPENI_LABELS))
    (tmp_path / "openi_gld_std14.csv").write_text(cols + "\nCXR5" + ",0" * 14 + ",1\nCXR6" + ",0" * 13 + ",2,0\n")
    with pytest.raises(BadInputError, match="line 3 \\(CXR6\\): Hernia = '2'"):
        load_dataset("iu_xray_openi_labels", tmp_path, "all")
    ds = load_dataset("iu_xray_openi_labels", tmp_path, "all", skip_bad=True)
    assert ds[0].findings["normal"] is LabelState.POSITIVE and ds[0].text == {}


def test_slake_synthetic_with_image(tmp_path):
    base = tmp_path / "Slake1.0"
    (base / "imgs" / "xmlab1").mkdir(parents=True)
    (base / "imgs" / "xmlab1" / "source.jpg").write_bytes(b"j")
    qa = dict(img_id=1, img_name="xmlab1/source.jpg", question="Is this a CT?", answer="Yes", modality="CT",
              answer_type="CLOSED", content_type="Modality", location="Abdomen")  # fmt: skip
    records = [dict(qa, qid=1, q_lang="en"), dict(qa, qid=2, q_lang="zh"), {"qid": 3, "q_lang": "en"}]
    (base / "train.json").write_text(json.dumps(records))
    with pytest.raises(BadInputError, match="qid 3"):
        load_dataset("slake", tmp_path, "train")
    en = load_dataset("slake", tmp_path, "train", skip_bad=True)
    assert [s.id for s in en] == ["1"] and en[0].images[0].modality == "CT" and en[0].image_id == "1"
    assert [s.id for s in load_dataset("slake_zh", tmp_path, "train", skip_bad=True)] == ["2"]
    assert load_dataset("slake", tmp_path, "test").samples == []


def test_slake_kg_bad_line(tmp_path):
    kg = tmp_path / "KG"
    kg.mkdir()
    (kg / "en_disease.csv").write_text("disease#attribute#value\nFlu#location#Lung\n")
    (kg / "en_organ.csv").write_text("organ#attribute#value\nBroken line without fields\n")
    (kg / "en_organ_rel.csv").write_text("organ#attribute#value\n")
    with pytest.raises(BadInputError, match="en_organ.csv: line 2"):
        load_kg(tmp_path)
    (kg / "en_organ.csv").write_text("organ#attribute#value\nLung#function#breathing")
    assert load_kg(tmp_path) == [("Flu", "location", "Lung"), ("Lung", "function", "breathing")]


def test_roco_bad_lines(tmp_path):
    rad = tmp_path / "data" / "test" / "radiology"
    rad.mkdir(parents=True)
    (rad / "captions.txt").write_text("ROCO_1\t A CT scan.\nROCO_2\t \ngarbage\n")
    (rad / "cuis.txt").write_text("ROCO_1\t\tC001\tC002\n")
    with pytest.raises(BadInputError, match="line 2 \\(ROCO_2\\): empty caption"):
        load_dataset("roco", tmp_path, "test")
    ds = load_dataset("roco", tmp_path, "test", skip_bad=True)
    assert [s.text["caption"] for s in ds] == ["A CT scan."] and len(ds.skipped) == 2
    assert ds[0].meta == {"keywords": [], "cuis": ["C001", "C002"]}
