import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from medmm.metrics.classification import (
    ClassificationMetric,
    auroc_binary,
    auroc_macro_multilabel,
    auroc_macro_ovr,
    classification_metrics,
    plot_reliability,
    reliability,
)


def test_binary_known_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.6, 0.4, 0.9])
    m = classification_metrics(y, s, "binary")
    assert m["auroc"] == pytest.approx(0.75)
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (1, 1, 1, 1)
    assert m["sensitivity"] == 0.5 and m["specificity"] == 0.5 and m["accuracy"] == 0.5
    assert m["provenance"]["n_samples"] == 4


def test_binary_single_class_is_none_with_reason():
    m = classification_metrics([1, 1, 1], [0.2, 0.7, 0.9], "binary")
    assert m["auroc"] is None and m["specificity"] is None
    assert any("one class" in r for r in m["undefined"]["overall"])


def test_multiclass():
    y = np.array([0, 1, 2, 2])
    s = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    m = classification_metrics(y, s, "multiclass", labels=["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["per_class"]["c"]["sensitivity"] == 0.5
    assert m["auroc_macro_ovr"] == pytest.approx(
        np.mean([roc_auc_score(y == c, s[:, c]) for c in range(3)]))
    with pytest.raises(ValueError):
        classification_metrics([0, 3], s[:2], "multiclass")
    with pytest.raises(ValueError, match="label names"):
        classification_metrics(y, s, "multiclass", labels=["a", "b"])


def test_multilabel_with_missing_labels():
    y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.3, 0.9], [0.8, 0.7], [0.1, 0.6]])
    m = classification_metrics(y, s, "multilabel", labels=["x", "y"])
    assert m["per_label"]["x"]["auroc"] == 1.0 and m["per_label"]["y"]["n"] == 3
    assert m["per_label"]["y"]["fp"] == 1
    assert m["auroc_macro"] == pytest.approx((1.0 + 1.0) / 2)
    assert m["subset_accuracy"] == pytest.approx(2 / 3)


def test_ece_perfect_and_bad_calibration(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert reliability(y, p)["ece"] < 0.02
    assert reliability(y, np.clip(p * 0.3, 0, 1))["ece"] > 0.2
    png = plot_reliability(reliability(y, p), tmp_path / "r.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_accumulator_matches_one_shot():
    rng = np.random.default_rng(1)
    y, s = rng.integers(0, 2, 50), rng.random(50)
    acc = ClassificationMetric("binary")
    acc.update(y[:20], s[:20])
    acc.update(y[20:], s[20:])
    assert acc.compute()["auroc"] == pytest.approx(classification_metrics(y, s)["auroc"])
    acc.reset()
    with pytest.raises(ValueError):
        acc.compute()


def test_bad_scores_rejected():
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0.1])


def test_f1_and_balanced_accuracy_equal_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    s = rng.dirichlet(np.ones(4), 200)
    s[np.arange(200), y] += rng.random(200)  # informative scores
    m = classification_metrics(y, s, "multiclass")
    pred = s.argmax(1)
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["f1_micro"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    yb, sb = (y == 0).astype(int), s[:, 0]
    mb = classification_metrics(yb, sb, "binary", threshold=0.3)
    assert mb["f1"] == pytest.approx(f1_score(yb, sb >= 0.3))
    assert mb["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yb, sb >= 0.3))
    yl = rng.integers(0, 2, (100, 3))
    sl = rng.random((100, 3))
    ml = classification_metrics(yl, sl, "multilabel")
    assert ml["f1_micro"] == pytest.approx(f1_score(yl, sl >= 0.5, average="micro"))
    assert ml["f1_macro"] == pytest.approx(f1_score(yl, sl >= 0.5, average="macro"))


def test_fast_auroc_equals_sklearn_with_ties_and_missing_labels():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 50)
    p = np.round(rng.random((50, 3)), 1)  # ties on purpose
    want = np.mean([roc_auc_score((y == c).astype(int), p[:, c]) for c in range(3)])
    assert auroc_macro_ovr(y, p) == pytest.approx(want)
    assert np.isnan(auroc_macro_ovr(np.zeros(3, int), np.ones((3, 2)) / 2))  # one class only
    assert np.isnan(auroc_binary(np.ones(4, bool), np.arange(4.0)))
    ml = rng.integers(0, 2, (40, 2)).astype(float)
    ml[:5, 0] = np.nan  # missing labels are left out of that column only
    scores = rng.random((40, 2))
    want = np.mean([roc_auc_score(ml[5:, 0], scores[5:, 0]), roc_auc_score(ml[:, 1], scores[:, 1])])
    assert auroc_macro_multilabel(ml, scores) == pytest.approx(want)
