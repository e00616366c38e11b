"""Skipped data is counted per split and per record, and data.skip_bad: false stops (issue 24 item 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("lightning")

from bad_inputs import build_corpus
from engine_toy import TOY_CONFIG, make_toy_root
from medmm.data.io import read_image
from medmm.engine import load_config
from medmm.engine.api import train
from medmm.engine.config import DataConfig
from medmm.engine.data import SafeCollate, load_splits
from medmm.engine.provenance import provenance_record, skip_list
from medmm.errors import BadInputError


def _toy(tmp_path, bad):
    """A toy root whose bad samples point to real PNG files the toy task refuses at collate time
    (so they pass the load-time header check and are skipped while training/validating)."""
    from PIL import Image

    root = make_toy_root(tmp_path / "data", {"train": 24, "val": 8, "test": 8}, bad=bad)
    (root / "missing").mkdir()
    for split, n in bad.items():
        for i in range(n):
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "missing" / f"{split}-{i}.png")
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    return root, cfg_path


def test_train_provenance_counts_only_train_skips(tmp_path):
    _root, cfg_path = _toy(tmp_path, {"train": 3, "val": 2})
    cfg = load_config(cfg_path, ["trainer.max_epochs=2"])
    train(cfg, tmp_path / "run")
    prov = {r: json.loads((tmp_path / "run" / "metrics" / f"{r}.json").read_text())["provenance"] for r in ("train", "val", "test")}
    assert prov["train"]["n_skipped"] == 3 and all("train-" in s for s in prov["train"]["skipped"])
    assert prov["val"]["n_skipped"] == 2 and all("val-" in s for s in prov["val"]["skipped"])
    assert prov["test"]["n_skipped"] == 0


def test_skip_bad_false_stops_at_the_first_bad_sample(tmp_path):
    _root, cfg_path = _toy(tmp_path, {"train": 1})
    cfg = load_config(cfg_path, ["trainer.max_epochs=1", "data.skip_bad=false"])
    with pytest.raises(BadInputError, match="train-0.png: image file not found"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "model.pt").exists()


def test_safe_collate_raises_without_skip_bad():
    from medmm.data.schema import Sample

    def collate(samples):
        raise BadInputError("/x/a.png", "truncated")

    sample = Sample(id="s1", dataset="t", split="train")
    skipped = SafeCollate(collate)([sample])
    assert skipped.batch is None and skipped.skipped == [("s1", "/x/a.png: truncated")]
    with pytest.raises(BadInputError, match="a.png: truncated"):
        SafeCollate(collate, skip_bad=False)([sample])


def test_skip_bad_false_error_survives_a_dataloader_worker():
    from medmm.data.schema import ImageRef, Sample
    from medmm.engine.data import make_loader

    def collate(samples):
        raise BadInputError(samples[0].images[0].path, "corrupt or truncated image")

    samples = [Sample(id="s", dataset="t", split="train", images=[ImageRef(path="/d/cut.png")])]
    loader = make_loader(samples, collate, batch_size=1, num_workers=1, seed=0, shuffle=False, skip_bad=False)
    with pytest.raises(BadInputError) as info:
        next(iter(loader))
    assert str(info.value) == "/d/cut.png: corrupt or truncated image (data.skip_bad is false)"


def test_three_bad_records_of_one_file_count_three(tmp_path):
    case = next(c for c in build_corpus(tmp_path, seed=0) if c.kind == "three-bad-records")
    splits = load_splits(DataConfig(dataset="vqa_rad", root=str(case.root), val_split=None, test_split=None), seed=0)
    skipped = splits["train"].skipped
    assert len(skipped) == 3 and len({e.path for e in skipped}) == 1  # one file, three records
    prov = provenance_record(load_config_stub(), "vqa_rad", str(case.root), "train", 3, skip_list(skipped, {}), None)
    assert prov["n_skipped"] == 3


def test_text_file_named_jpg_stops_a_strict_load(tmp_path):
    case = next(c for c in build_corpus(tmp_path, seed=0) if c.id == "vqa_rad-text-as-image")
    strict = DataConfig(dataset="vqa_rad", root=str(case.root), val_split=None, test_split=None, skip_bad=False)
    with pytest.raises(BadInputError, match=f"{case.file}: not a recognised image format"):
        load_splits(strict, seed=0)
    lenient = load_splits(DataConfig(dataset="vqa_rad", root=str(case.root), val_split=None, test_split=None), seed=0)
    assert len(lenient["train"].skipped) == 1 and len(lenient["train"].samples) == 5
    with pytest.raises(BadInputError):
        read_image(case.root / "VQA_RAD Image Folder" / case.file)


def test_grouped_split_reports_pooled_skips_apart(tmp_path):
    root = make_toy_root(tmp_path / "d", {"train": 20, "val": 6, "test": 6}, bad={"train": 2, "val": 1})
    cfg = DataConfig(dataset="toy_engine", root=str(root), split="grouped", group_by="patient",
                     fractions={"train": 0.5, "val": 0.25, "test": 0.25})  # fmt: skip
    parts = load_splits(cfg, seed=0)
    # the missing files are found by the header check of the role they were split into ...
    assert sum(len(p.skipped) for p in parts.values()) == 3
    assert all(not p.skipped_before_split for p in parts.values())


def load_config_stub():
    from medmm.engine.config import RunConfig

    return RunConfig(task="toy_engine", data=DataConfig(dataset="vqa_rad", root="."))


def test_grouped_split_keeps_loader_skips_out_of_every_role(tmp_path):
    case = next(c for c in build_corpus(tmp_path, seed=0) if c.kind == "three-bad-records")
    cfg = DataConfig(dataset="vqa_rad", root=str(case.root), split="grouped", group_by="image",
                     fractions={"train": 0.5, "test": 0.5}, val_split=None)  # fmt: skip
    parts = load_splits(cfg, seed=0)
    assert all(not p.skipped for p in parts.values())  # they belong to no role ...
    assert all(len(p.skipped_before_split) == 3 for p in parts.values())  # ... and are reported apart
    prov = provenance_record(load_config_stub(), "vqa_rad", ".", "train", 1, skip_list(parts["train"].skipped, {}), None,
                       parts["train"].skipped_before_split)  # fmt: skip
    assert (prov["n_skipped"], prov["n_skipped_before_split"]) == (0, 3)
