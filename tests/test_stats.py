import numpy as np
import pytest

from medmm.metrics.stats import bootstrap_ci, flatten, paired_test, paired_tests


def acc(pred, ref):
    return float(np.mean(np.asarray(pred) == np.asarray(ref)))


def test_bootstrap_ci_brackets_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, ref, 1 - ref)
    r1 = bootstrap_ci(acc, pred, ref, n_resamples=300, seed=3)
    r2 = bootstrap_ci(acc, pred, ref, n_resamples=300, seed=3)
    assert r1["low"] == r2["low"] and r1["seed"] == 3
    est = r1["estimate"]["value"]
    assert r1["low"]["value"] < est < r1["high"]["value"]
    # binomial standard error ~0.02 -> 95% interval width near 0.08
    assert 0.04 < r1["high"]["value"] - r1["low"]["value"] < 0.12
    assert "percentile bootstrap" in r1["method"]


def test_group_bootstrap_is_wider_for_clustered_data():
    # 20 patients x 20 images, all images of a patient equally right/wrong: the effective
    # sample size is 20, so grouped resampling must give a much wider interval.
    rng = np.random.default_rng(0)
    patient_ok = rng.random(20) < 0.6
    groups = np.repeat(np.arange(20), 20)
    ref = np.zeros(400, dtype=int)
    pred = np.where(np.repeat(patient_ok, 20), 0, 1)
    flat = bootstrap_ci(acc, pred, ref, n_resamples=300)
    grouped = bootstrap_ci(acc, pred, ref, n_resamples=300, groups=groups)
    w = lambda r: r["high"]["value"] - r["low"]["value"]  # noqa: E731
    assert grouped["n_units"] == 20 and flat["n_units"] == 400
    assert w(grouped) > 2.5 * w(flat)


def test_bootstrap_dict_metric_and_invalid_resamples_counted():
    def metric(y):
        y = np.asarray(y)
        # undefined when the resample holds one class only
        return {"mean": float(y.mean()), "ratio": float("nan") if y.min() == y.max() else 1.0}

    r = bootstrap_ci(metric, [0] + [1] * 4, n_resamples=200, seed=0)
    assert set(r["estimate"]) == {"mean", "ratio"}
    assert r["n_invalid"]["ratio"] > 0 and r["n_invalid"]["mean"] == 0


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        bootstrap_ci(acc, [1, 2], [1])
    with pytest.raises(ValueError):
        bootstrap_ci(acc, [], [])
    with pytest.raises(ValueError):
        bootstrap_ci(acc, [1], [1], groups=[1, 2])


def test_paired_test_detects_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 2, 300)
    good = np.where(rng.random(300) < 0.9, ref, 1 - ref)
    bad = np.where(rng.random(300) < 0.6, ref, 1 - ref)
    res = paired_test(acc, good, bad, ref, n_resamples=300, seed=0)
    assert res["difference"] > 0.2
    assert res["p_bootstrap"] < 0.01 and res["p_randomisation"] < 0.01
    assert res["difference_low"] > 0
    same = paired_test(acc, good, good.copy(), ref, n_resamples=200, seed=0)
    assert same["difference"] == 0 and same["p_randomisation"] == 1.0


def test_paired_test_with_lists_and_groups():
    ref = ["a", "b"] * 20
    a = list(ref)
    b = ["a"] * 40
    res = paired_test(lambda p, r: float(np.mean([x == y for x, y in zip(p, r, strict=True)])), a, b, ref,
                      n_resamples=100, groups=[i // 4 for i in range(40)])
    assert res["n_units"] == 10 and res["difference"] == pytest.approx(0.5)


def test_flatten_nested():
    assert flatten({"a": {"b": 1, "c": None}, "d": 2.0, "e": "x"}) == {"a.b": 1.0, "d": 2.0}


def test_paired_tests_dict_metric_matches_scalar_and_reports_undefined():
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 2, 100)
    a = np.where(rng.random(100) < 0.8, ref, 1 - ref)
    b = np.where(rng.random(100) < 0.7, ref, 1 - ref)
    both = paired_tests(lambda p, r: {"acc": acc(p, r), "nan": float("nan")}, a, b, ref, n_resamples=100, seed=1)
    single = paired_test(acc, a, b, ref, n_resamples=100, seed=1)
    assert both["acc"]["p_randomisation"] == single["p_randomisation"]
    assert both["acc"]["difference_low"] == single["difference_low"]
    assert "error" in both["nan"]
    with pytest.raises(ValueError):
        paired_test(lambda p, r: float("nan"), a, b, ref, n_resamples=10)
