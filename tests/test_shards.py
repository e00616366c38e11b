"""`medmm data pack` and the `shards` dataset: packed once, read back exactly, resumable packing,
bad samples counted, shards readable by WebDataset itself, and training over them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from medmm.data.registry import load_dataset
from medmm.data.schema import Box, ImageRef, LabelState, MaskRef, Sample
from medmm.data.shards.pack import PackSettings, pack_dataset, pack_samples, prepare_image
from medmm.data.shards.read import load_split, read_index, verify
from medmm.errors import BadInputError, MedmmError


def _samples(n: int, tmp_path: Path, bad: tuple[int, ...] = ()) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = ImageRef(path=str(tmp_path / f"missing{i}.png")) if i in bad else ImageRef(array=rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), view="PA")
        out.append(
            Sample(
                id=f"s{i}", dataset="synthetic", split="train", images=[img],
                text={"report": f"report {i}"}, targets={"label": "a" if i % 2 else "b"},
                findings={"Edema": LabelState.UNCERTAIN}, patient_id=f"p{i // 3}", study_id=f"st{i}",
                masks=[MaskRef(label="lung", array=np.ones((40, 30), dtype=np.uint8))],
                boxes=[Box("nodule", x=3.0, y=4.0, width=6.0, height=8.0)], meta={"age": i},
            )
        )
    return out


def test_pack_roundtrip_counts_bad_and_checksums(tmp_path):
    samples = _samples(7, tmp_path, bad=(2,))
    settings = PackSettings(size=16, channels=1, shard_size=3)
    index = pack_samples({"train": samples}, tmp_path / "out", settings, source={"dataset": "synthetic"})
    info = index["splits"]["train"]
    assert (info["samples"], info["bad"], info["source_samples"]) == (6, 1, 7)
    assert info["bad_samples"][0]["id"] == "s2" and "missing2.png" in info["bad_samples"][0]["error"]
    assert [s["name"] for s in index["shards"]] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert verify(tmp_path / "out") == []

    back = load_split(tmp_path / "out", "train")
    assert [s.id for s in back] == [s.id for s in samples if s.id != "s2"]
    s0, b0 = samples[0], back[0]
    assert (b0.text, b0.targets, b0.findings, b0.patient_id, b0.study_id, b0.meta) == (
        s0.text, s0.targets, {"Edema": LabelState.UNCERTAIN}, "p0", "st0", {"age": 0})
    assert np.array_equal(np.asarray(b0.images[0].array), prepare_image(s0.images[0].array, settings))
    assert b0.images[0].view == "PA" and np.asarray(b0.masks[0].array).shape == (16, 16)
    # Boxes follow the resize: 30 px wide -> 16, 40 px high -> 16.
    assert b0.boxes[0].x == pytest.approx(3 * 16 / 30) and b0.boxes[0].height == pytest.approx(8 * 16 / 40)

    # A changed shard is found.
    with open(tmp_path / "out" / "train-000001.tar", "r+b") as f:
        f.seek(2000)
        f.write(b"x")
    assert verify(tmp_path / "out") == ["train-000001.tar"]


def test_webdataset_reads_the_shards(tmp_path):
    wds = pytest.importorskip("webdataset")
    samples = _samples(4, tmp_path)
    pack_samples({"train": samples}, tmp_path / "out", PackSettings(size=8, channels=3, shard_size=10), source={})
    rows = list(wds.WebDataset(str(tmp_path / "out" / "train-000000.tar"), shardshuffle=False).decode())
    assert [json.loads(r["json"])["id"] if isinstance(r["json"], bytes) else r["json"]["id"] for r in rows] == ["s0", "s1", "s2", "s3"]
    lazy = load_split(tmp_path / "out", "train")
    assert all(np.array_equal(r["img0.npy"], np.asarray(s.images[0].array)) for r, s in zip(rows, lazy, strict=True))
    assert rows[0]["img0.npy"].shape == (8, 8, 3)


def test_killed_pack_resumes_without_rewriting_finished_shards(tmp_path):
    samples = _samples(9, tmp_path)
    settings = PackSettings(size=8, channels=1, shard_size=3)
    out = tmp_path / "out"
    full = pack_samples({"train": samples}, out, settings, source={"dataset": "synthetic"})
    # What a kill during shard 2 leaves: no index, no summary of shard 2, a partial .NAME.tar.tmp.
    (out / "index.json").unlink()
    (out / "train-000002.json").unlink()
    (out / "train-000002.tar").rename(out / ".train-000002.tar.tmp")
    with pytest.raises(BadInputError, match="not finished"):
        load_dataset("shards", out, "train")
    before = (out / "train-000000.tar").stat().st_mtime_ns
    seen = []
    resumed = pack_samples({"train": samples}, out, settings, source={"dataset": "synthetic"}, progress=seen.append)
    assert resumed == full  # same shards, same sha256 (tar mtimes are fixed)
    assert (out / "train-000000.tar").stat().st_mtime_ns == before and seen == [3, 3, 3]
    assert not list(out.glob("*.tmp"))
    with pytest.raises(MedmmError, match="other data or settings"):
        pack_samples({"train": samples}, out, PackSettings(size=16, channels=1, shard_size=3), source={"dataset": "synthetic"})


@pytest.fixture(scope="module")
def packed_vqa_rad(tmp_path_factory) -> Path:
    """The bundled VQA-RAD sample (real images) packed once for this module, with 2 processes."""
    from medmm.data.bundled import vqa_rad_sample_root

    out = tmp_path_factory.mktemp("vqa_rad_packed")
    pack_dataset("vqa_rad", vqa_rad_sample_root(), out, PackSettings(size=16, channels=3, shard_size=250), workers=2)
    return out


def test_pack_registered_dataset_keeps_every_field(packed_vqa_rad):
    from medmm.data.bundled import vqa_rad_sample_root

    index = read_index(packed_vqa_rad)
    src = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples
    assert index["splits"]["train"]["samples"] == len(src) and index["source"]["dataset"] == "vqa_rad"
    assert len(index["splits"]["train"]["shards"]) == 3 and verify(packed_vqa_rad) == []
    back = load_dataset("shards", packed_vqa_rad, "train").samples
    for a, b in zip(src[:50], back[:50], strict=True):
        assert (a.id, a.text, a.targets, a.question_id, a.image_id, a.meta) == (b.id, b.text, b.targets, b.question_id, b.image_id, b.meta)
    assert len(load_dataset("shards", packed_vqa_rad, "test").samples) == 0  # packed, but empty


def test_cli_pack(tmp_path):
    from typer.testing import CliRunner

    import engine_toy
    from medmm.cli import app

    root = engine_toy.make_toy_root(tmp_path / "toy", {"train": 12, "test": 4}, bad={"train": 2})
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["data", "pack", "toy_engine", str(root), "--out", str(out), "--size", "8", "--channels", "1", "--splits", "train", "--shard-size", "4"])
    assert res.exit_code == 0, res.output
    assert "train: 10 samples in 3 shards; bad: 2 unreadable" in res.output
    assert list(read_index(out)["splits"]) == ["train"]


def test_training_over_shards(tmp_path, monkeypatch):
    pytest.importorskip("lightning")
    import engine_toy
    import shards_toy
    from medmm.engine import load_config
    from medmm.engine.api import train

    root = engine_toy.make_toy_root(tmp_path / "toy", {"train": 32, "val": 8, "test": 8}, bad={"train": 1})
    index = pack_dataset("toy_engine", root, tmp_path / "packed", PackSettings(size=8, channels=1, shard_size=5))
    assert index["splits"]["train"]["bad"] == 1 and index["splits"]["train"]["samples"] == 31
    cfg = tmp_path / "c.yaml"
    cfg.write_text(shards_toy.SHARDS_CONFIG.format(root=tmp_path / "packed"))
    monkeypatch.setenv("MEDMM_SEEN_DIR", str(tmp_path))
    out = train(load_config(cfg, ["trainer.max_epochs=1"]), tmp_path / "run")
    assert out["test"]["n"] == 8
    seen = (tmp_path / "rank0.txt").read_text().split()
    assert sorted(seen) == sorted(s.id for s in load_split(tmp_path / "packed", "train"))


def test_a_shipped_config_reads_shards(packed_vqa_rad):
    from medmm.data.bundled import vqa_rad_sample_root
    from medmm.data.shards.samples import PackedSamples
    from medmm.engine import load_config
    from medmm.engine.data import load_splits

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs/vqa/vqa_rad.yaml", ["data.dataset=shards", f"data.root={packed_vqa_rad}"])
    parts = load_splits(cfg.data, cfg.seed)
    assert sum(len(p.samples) for p in parts.values()) == 602
    assert os.path.basename(parts["train"].samples[0].images[0].array.path).startswith("train-")
    # The grouped split of the packed data is the one of the original layout, and stays lazy.
    direct = load_splits(load_config(repo / "configs/vqa/vqa_rad.yaml", [f"data.root={vqa_rad_sample_root()}"]).data, cfg.seed)
    for role, part in parts.items():
        assert isinstance(part.samples, PackedSamples)
        assert [(s.id, s.split) for s in part.samples] == [(s.id, s.split) for s in direct[role].samples]


def test_pack_a_manifest_counts_rows_the_loader_rejects(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((12, 10), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "manifest.csv").write_text(
        "id,image,split,report,target:label,finding:Edema\n"
        "a,0.png,train,one,x,-1\nb,1.png,train,two,y,\nc,2.png,test,three,x,1\nd,9.png,train,missing,x,\n"
    )
    index = pack_dataset("manifest", tmp_path, tmp_path / "out", PackSettings(size=8, channels=1))
    assert list(index["splits"]) == ["train", "val", "validate", "dev", "test"]  # not "all": no sample twice
    assert (index["splits"]["train"]["samples"], index["splits"]["train"]["bad_at_load"]) == (2, 1)
    assert "9.png" in index["splits"]["train"]["bad_at_load_samples"][0]["error"]
    back = load_split(tmp_path / "out", "train")
    assert back[0].findings == {"Edema": LabelState.UNCERTAIN} and back[1].targets == {"label": "y"}
