"""benchmarks/reproduce/medmnist_floors.py: majority and pixel logistic-regression floors fitted on
train, scored with CIs on another split, and a model's predictions tested against them (paired)."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from tests.conftest import REPO, shared_dataset


def _load(name: str):
    """A script of benchmarks/reproduce/ as a module (its folder on sys.path, as when it is run)."""
    folder = REPO / "benchmarks" / "reproduce"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _script():
    return _load("medmnist_floors")


@pytest.mark.slow  # ~10 s CPU (25 logistic-regression fits), minutes on the shared machine
def test_floors_on_breastmnist_val_and_a_perfect_model(tmp_path):
    root = shared_dataset("medmnist")
    with np.load(root / "breastmnist.npz") as d:
        labels = d["val_labels"].reshape(-1)
    classes = ("malignant", "normal, benign")
    preds = tmp_path / "val.jsonl"  # a model that scores the truth: AUROC 1, above both floors
    preds.write_text("".join(
        json.dumps({"id": f"val/{i}", "prediction": {"probs": {classes[1]: float(y), classes[0]: 1 - float(y)}}}) + "\n"
        for i, y in enumerate(labels)
    ))
    out = _script().main(["--data", str(root), "--dataset", "breastmnist", "--split", "val",
                          "--predictions", str(preds), "--resamples", "50", "--out", str(tmp_path / "f.json")])
    assert out["n"] == 78 and out["train_n"] == 546 and out["train_majority"] == "normal, benign"
    assert out["floors"]["majority"]["auroc"]["value"] == 0.5
    assert out["floors"]["majority"]["accuracy"]["value"] == pytest.approx(57 / 78)
    assert 0.6 < out["floors"]["logreg_pixels"]["auroc"]["value"] < 1.0
    assert str(out["logreg_C_by_train_cv"]) in out["logreg_cv_auroc_by_C"]
    diff = out["model_minus_floor"]["logreg_pixels"]["auroc"]
    assert diff["difference"] > 0 and diff["ci95"][0] > 0
    assert "auroc" not in out["model_minus_floor"]["majority"]  # constant score: nothing to test
    assert json.loads((tmp_path / "f.json").read_text())["n"] == 78


def _monuseg_script():
    return _load("monuseg_floors")


def test_otsu_threshold_and_hematoxylin_unmixing():
    mod = _monuseg_script()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.2, 0.02, 500), rng.normal(0.8, 0.02, 300)])
    t = mod.otsu_threshold(x)
    assert (x[:500] > t).mean() < 0.01 and (x[500:] > t).all()  # splits the two modes
    od_h = np.array([0.65, 0.70, 0.29])  # a pixel stained by hematoxylin only (optical density)
    od_e = np.array([0.07, 0.99, 0.11])  # eosin only
    pixels = (255 * np.exp(-np.stack([od_h, od_e]))).round().astype(np.uint8)[None]
    h = mod.hematoxylin(pixels)[0]
    assert h[0] == pytest.approx(1.0, abs=0.02) and abs(h[1]) < 0.02


def test_otsu_floor_on_monuseg_val_and_a_paired_model(tmp_path):
    root = shared_dataset("monuseg_lvit")
    mod = _monuseg_script()
    first = mod.main(["--data", str(root), "--split", "val", "--resamples", "50"])
    per_image = first["floors"]["otsu_hematoxylin"]["per_image"]
    assert first["n"] == 6 and 0.3 < first["floors"]["otsu_hematoxylin"]["dice_mean"] < 0.95
    preds = tmp_path / "val.jsonl"  # a "model" 0.05 Dice better than Otsu on every image
    preds.write_text("".join(json.dumps({"id": i, "dice": d + 0.05}) + "\n" for i, d in per_image.items()))
    out = mod.main(["--data", str(root), "--split", "val", "--resamples", "50", "--predictions", f"m={preds}"])
    assert out["models"]["m"]["minus_otsu"]["difference"] == pytest.approx(0.05, abs=1e-3)


def test_val_curve_reads_a_real_run_and_marks_the_epoch_it_chose(tmp_path, monkeypatch):
    """benchmarks/reproduce/val_curve.py on a 3-epoch tiny diagnosis run with an LR decay after
    epoch 2: one row per epoch, the decay seen, and its best epoch is the one the run reported."""
    from medmm.engine import load_config, train
    from tests.test_every_task import tiny_config

    monkeypatch.chdir(REPO)
    cfg = load_config(tiny_config("diagnosis"), ["trainer.max_steps=-1", "trainer.max_epochs=3", "trainer.scheduler=multistep",
                                                 "trainer.lr_milestones=[2]", "trainer.log_every_n_steps=1", "trainer.monitor=val/auroc_macro_ovr",
                                                 "trainer.monitor_mode=max"])
    run = tmp_path / "run"
    train(cfg, run)
    out = tmp_path / "curve.csv"
    curve = _load("val_curve").main([str(run), "--out", str(out), "--plot", str(tmp_path / "curve.png")])
    assert [p["epoch"] for p in curve] == [1, 2, 3] and out.read_text().startswith("epoch,step,selection_val_auroc_macro_ovr,")
    assert curve[2]["lr"] == pytest.approx(curve[1]["lr"] * 0.1)
    chosen = json.loads((run / "metrics" / "val.json").read_text())["metrics"]["selection_auroc_macro_ovr"]
    epoch = _load("val_curve").chosen_epoch(run)
    assert curve[epoch - 1]["selection_val_auroc_macro_ovr"] == pytest.approx(chosen, abs=1e-4)
    assert (tmp_path / "curve.png").stat().st_size > 10_000
