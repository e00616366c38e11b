"""The bundled CC0 VQA-RAD sample: layout, size, balance, loadable by the vqa_rad loader."""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, shared_dataset
from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.io import read_image, verify_images


def test_sample_layout_size_and_balance():
    root = vqa_rad_sample_root()
    assert (root / "VQA_RAD Dataset Public.json").is_file() and (root / "VQA_RAD Image Folder").is_dir()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 4_000_000
    train = load_dataset("vqa_rad", root, "train")
    assert len(train) == 602 and not train.skipped
    images = {s.image_id: s.targets["organ"] for s in train}
    assert len(images) == 102
    assert collections.Counter(images.values()) == {"HEAD": 34, "CHEST": 34, "ABD": 34}
    files = sorted(p.name for p in (root / "VQA_RAD Image Folder").iterdir())
    assert files == sorted(images)  # no unreferenced image is shipped
    assert len(load_dataset("vqa_rad", root, "test")) == 0  # no official test QA in the sample


def test_sample_images_decode_and_are_small():
    root = vqa_rad_sample_root()
    train = load_dataset("vqa_rad", root, "train")
    assert len(verify_images(train).skipped) == 0
    for path in sorted((root / "VQA_RAD Image Folder").iterdir())[:20]:
        arr = read_image(path)
        assert max(arr.shape[:2]) <= 256 and arr.dtype == np.uint8


@pytest.mark.shared_data
def test_sample_holds_all_training_qa_of_its_images():
    full = shared_dataset("vqa_rad")
    chosen = {p.name for p in (vqa_rad_sample_root() / "VQA_RAD Image Folder").iterdir()}
    records = json.loads((full / "VQA_RAD Dataset Public.json").read_text(encoding="utf-8"))
    expected = [r for r in records if r["image_name"] in chosen and r["phrase_type"] in {"freeform", "para"}]
    bundled = json.loads((vqa_rad_sample_root() / "VQA_RAD Dataset Public.json").read_text(encoding="utf-8"))
    assert bundled == expected


@pytest.mark.shared_data
def test_make_script_is_reproducible(tmp_path):
    full = shared_dataset("vqa_rad")
    out = tmp_path / "sample"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_vqa_rad_sample.py"), "--src", str(full), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    shipped = vqa_rad_sample_root()
    shipped_files = sorted(p.relative_to(shipped) for p in shipped.rglob("*") if p.is_file())
    assert shipped_files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for rel in shipped_files:
        if rel.suffix == ".jpg":
            # JPEG bytes may differ between libjpeg builds; the pixels must not.
            diff = np.abs(read_image(out / rel).astype(int) - read_image(shipped / rel).astype(int))
            assert diff.mean() < 1.0, rel
        else:
            assert (out / rel).read_bytes() == (shipped / rel).read_bytes(), rel


def test_notice_names_the_licence():
    text = (REPO / "NOTICE").read_text()
    assert "VQA-RAD" in text and "CC0 1.0" in text and "10.1038/sdata.2018.251" in text
