"""medmm.metrics.floors: the trivial baselines and their paired comparison with a model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medmm.metrics import floors as F


def test_floors_module_is_torch_free():
    code = "import sys, medmm.metrics.floors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_otsu_threshold_separates_two_modes():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(50, 5, 500), rng.normal(200, 5, 300)])
    t = F.otsu_threshold(v)
    assert np.all(v[:500] <= t) and np.all(v[500:] > t)  # any cut in the empty gap is optimal


def test_hematoxylin_is_high_on_purple_nuclei_low_on_pink_stroma():
    nucleus = np.array([[[70, 40, 140]]], np.uint8)  # hematoxylin-rich: dark purple-blue
    stroma = np.array([[[235, 170, 200]]], np.uint8)  # eosin: light pink
    assert F.hematoxylin(nucleus)[0, 0] > F.hematoxylin(stroma)[0, 0] + 0.2


def test_otsu_floor_finds_dark_blobs_and_polarity_comes_from_training():
    def blob(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        mask = np.zeros((32, 32), bool)
        y, x = rng.integers(4, 20, 2)
        mask[y : y + 8, x : x + 8] = True
        img = np.where(mask, 40, 200) + rng.normal(0, 8, mask.shape)
        return img.astype(np.float32), mask

    train = [blob(i) for i in range(4)]
    test = [blob(10 + i) for i in range(6)]
    assert F.fit_otsu_polarity(train) is False  # dark foreground
    res = F.segmentation_floors({"nuclei": train}, [t[0] for t in test], [t[1] for t in test], ["nuclei"] * 6,
                                [0.5] * 6, groups=None, n_resamples=50)
    otsu = res["otsu"]
    assert otsu["metrics"]["dice_mean"] > 0.95
    d = otsu["model_minus_floor"]["dice_mean"]
    assert d["difference"] == pytest.approx(0.5 - otsu["metrics"]["dice_mean"])
    assert d["ci"][1] < 0 and d["p_value"] < 0.05
    assert F.segmentation_floors({}, [], [], ["x"], [], groups=None, n_resamples=5)["otsu"]["skipped"]


def test_classification_floors_logistic_beats_prior_on_separable_features():
    rng = np.random.default_rng(0)
    ytr, yev = rng.integers(0, 3, 120), rng.integers(0, 3, 60)
    centres = rng.normal(0, 3, (3, 10))
    xtr, xev = centres[ytr] + rng.normal(0, 1, (120, 10)), centres[yev] + rng.normal(0, 1, (60, 10))
    model = np.full((60, 3), 1 / 3)  # an uninformative model
    res = F.classification_floors(ytr, yev, model, {"pixels": (xtr, ytr, xev)}, groups=None, n_resamples=100)
    assert res["prior"]["metrics"]["auroc_macro_ovr"] == pytest.approx(0.5)
    lr = res["logistic_pixels"]
    assert lr["metrics"]["auroc_macro_ovr"] > 0.95 and lr["metrics"]["accuracy"] > 0.9
    assert lr["model_minus_floor"]["auroc_macro_ovr"]["ci"][1] < 0
    assert lr["model_minus_floor"]["auroc_macro_ovr"]["p_value"] < 0.05
    json.dumps(res)  # JSON-serialisable as written into the metrics file


def test_classification_floors_multilabel_with_missing_labels():
    rng = np.random.default_rng(1)
    ytr = rng.integers(0, 2, (80, 2)).astype(float)
    ytr[::7, 1] = np.nan
    yev = rng.integers(0, 2, (30, 2)).astype(float)
    x = rng.normal(size=(80, 4))
    res = F.classification_floors(ytr, yev, rng.random((30, 2)), {"pixels": (x, ytr, rng.normal(size=(30, 4)))},
                                  groups=None, n_resamples=20)
    assert set(res) == {"prior", "logistic_pixels"} and "auroc_macro" in res["logistic_pixels"]["metrics"]


def test_vqa_floors_prior_by_routed_type_and_question_nn():
    train_q = ["is there a fracture?", "is the lung clear?", "what organ is shown?", "what organ is this?",
               "what modality is used?"]
    train_a = ["yes", "yes", "brain", "brain", "ct"]
    closed = [True, True, False, False, False]
    qs = ["is there a mass?", "what modality is this?", "what organ is imaged?"]
    refs = ["yes", "ct", "liver"]
    res = F.vqa_floors(train_q, train_a, closed, qs, refs, ["CLOSED", "OPEN", "OPEN"], [True, False, False],
                       ["no", "ct", "liver"], groups=None, n_resamples=20)
    # prior: "yes" for the closed question, "brain" for the open ones -> 1/3
    assert res["answer_prior"]["metrics"]["overall_accuracy"] == pytest.approx(1 / 3)
    assert res["answer_prior"]["metrics"]["closed_accuracy"] == 1.0
    # question NN: "is there a fracture?" -> yes, "what modality is used?" -> ct, "what organ..." -> brain
    assert res["question_nn"]["metrics"]["overall_accuracy"] == pytest.approx(2 / 3)
    assert res["question_nn"]["model_minus_floor"]["overall_accuracy"]["difference"] == pytest.approx(0.0)


def test_report_and_retrieval_floors_use_nearest_training_images():
    rng = np.random.default_rng(0)
    train_px = np.eye(4, 16, dtype=np.float32)
    texts = ["left effusion", "right pneumothorax", "normal heart", "enlarged heart"]
    eval_px = train_px[[2, 0]]
    res = F.report_floors(train_px, texts, eval_px, ["normal heart size", "left effusion"], ["x", "y"],
                          groups=None, n_resamples=20)
    assert res["nn_report_pixels"]["metrics"]["rouge_l"] > 0.8
    pos = np.eye(2, dtype=bool)
    model_sim = rng.random((2, 2))
    r = F.retrieval_floors(train_px, texts, eval_px, ["normal heart", "left effusion"], pos, model_sim, ["a", "b"],
                           ["a", "b"], n_resamples=20, k_neighbours=1)
    assert r["frozen_bridge"]["metrics"]["image_to_text"]["R@1"] == 100.0
    assert set(r["random"]["model_minus_floor"]) == {"image_to_text", "text_to_image"}


def test_thumbnails_are_standardised_and_cached(tmp_path):
    from PIL import Image

    from medmm.data.schema import ImageRef

    p = tmp_path / "a.png"
    Image.fromarray((np.arange(64 * 48).reshape(48, 64) % 255).astype(np.uint8)).save(p)
    px = F.PixelThumbnails(8)
    v = px.vector(ImageRef(path=str(p)))
    assert v.shape == (64,) and abs(float(v.mean())) < 1e-5 and float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-5)
    assert px.vector(str(p)) is v
    rgb = px.vector(ImageRef(array=np.zeros((10, 12, 3), np.uint8)))
    assert not np.isnan(rgb).any()


def test_compare_without_resamples_gives_values_and_differences_only():
    e = F.compare(lambda x: {"m": float(np.mean(x))}, np.ones(5), np.zeros(5), groups=None, n_resamples=0)
    assert e["metrics"] == {"m": 0.0} and e["model_minus_floor"]["m"]["difference"] == 1.0
    assert e["model_minus_floor"]["m"]["ci"] is None
