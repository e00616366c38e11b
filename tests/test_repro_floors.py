"""benchmarks/reproduce/medmnist_floors.py: majority and pixel logistic-regression floors fitted on
train, scored with CIs on another split, and a model's predictions tested against them (paired)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from tests.conftest import REPO, shared_dataset


def _script():
    spec = importlib.util.spec_from_file_location("medmnist_floors", REPO / "benchmarks" / "reproduce" / "medmnist_floors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
