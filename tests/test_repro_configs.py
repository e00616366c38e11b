"""A 2-step run of each reproduction config (configs/diagnosis/{breastmnist,pneumoniamnist}.yaml,
configs/segmentation/monuseg_{unet,text}.yaml) on tiny overrides of its real data, and scoring a
run on another root in the official layout (where the held-out test splits are scored)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

from medmm.engine import api
from medmm.engine.config import load_config
from tests.conftest import REPO, shared_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ["trainer.max_steps=2", "trainer.max_epochs=2", "trainer.num_threads=1", "trainer.early_stopping_patience=null"]


def _train(config: str, root, out, extra: list[str]):
    cfg = load_config(REPO / "configs" / config, [f"data.root={root}", *TINY, *extra])
    api.train(cfg, out)
    return cfg


def _official_layout_copy(src, dst, name: str) -> None:
    """`name`.npz as the official MedMNIST release stores it: labels (N, 1), a test split
    (here the val arrays stand in for it: only the layout is under test)."""
    with np.load(src) as d:
        arrays = {k: d[k] for k in d.files}
    for split in ("train", "val"):
        arrays[f"{split}_labels"] = arrays[f"{split}_labels"].reshape(-1, 1)
    arrays["test_images"], arrays["test_labels"] = arrays["val_images"], arrays["val_labels"]
    dst.mkdir()
    np.savez(dst / f"{name}.npz", **arrays)


def test_breastmnist_protocol_runs_and_scores_test_on_an_official_root(tmp_path):
    root = shared_dataset("medmnist")
    cfg = _train("diagnosis/breastmnist.yaml", root, tmp_path / "run",
                 ["data.max_samples=32", "trainer.batch_size=16", "trainer.lr_milestones=[1]", "model.bootstrap_resamples=0"])
    assert cfg.trainer.scheduler == "multistep"
    official = tmp_path / "official"
    _official_layout_copy(root / "breastmnist.npz", official, "breastmnist")
    for data in (official, official / "breastmnist.npz"):  # the folder, or the file itself
        result = api.evaluate(tmp_path / "run", data, split="test", out=tmp_path / "test.json")
        assert result["provenance"]["n_samples"] == 78 and result["provenance"]["split"] == "test"
        assert 0.0 <= result["metrics"]["auroc_macro_ovr"] <= 1.0


@pytest.mark.slow
def test_pneumoniamnist_protocol_runs_and_scores_the_official_file(tmp_path):
    root = shared_dataset("medmnist")
    _train("diagnosis/pneumoniamnist.yaml", root, tmp_path / "run",  # whole splits: train is sorted by class
           ["trainer.batch_size=16", "trainer.lr_milestones=[1]", "model.bootstrap_resamples=0"])
    official = tmp_path / "official"
    _official_layout_copy(root / "pneumoniamnist_28_trainsubset_fullvaltest.npz", official, "pneumoniamnist")
    # The official file under its own name: pass the file as the root (the run's dataset name
    # reads the file it is given; --dataset pneumoniamnist would mean external validation).
    result = api.evaluate(tmp_path / "run", official / "pneumoniamnist.npz", split="test", out=tmp_path / "t.json")
    assert result["provenance"]["n_samples"] == 524 and result["provenance"]["split"] == "test"


@pytest.mark.slow  # ~50 s (U-Net) and ~90 s (MiniLM) on the shared machine
@pytest.mark.parametrize("variant", ["unet", "text"])
def test_monuseg_protocol_runs(tmp_path, variant):
    root = shared_dataset("monuseg_lvit")
    cfg = _train(f"segmentation/monuseg_{variant}.yaml", root, tmp_path / "run",
                 ["data.max_samples=2", "model.unet.channels=[8,16,32,64]"])
    assert (cfg.model["augment"]["policy"], cfg.model["loss"]["name"], cfg.model["image"]["size"]) == ("lvit", "lvit_dice_bce", 224)
    val = api.evaluate(tmp_path / "run", root, split="val", out=tmp_path / "val.json")
    assert val["provenance"]["n_samples"] == 6 and 0.0 <= val["metrics"]["selection_dice_mean"] <= 1.0  # val chose the epoch
