"""Agreement statistics against textbook values, sklearn and scipy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medmm.humaneval.agreement import (
    agreement_report,
    cohen_kappa,
    correlation,
    field_agreement,
    fleiss_kappa,
    krippendorff_alpha,
    ratings_to_counts,
)

# Fleiss' kappa worked example (10 subjects, 14 raters, 5 categories) as given on Wikipedia's
# "Fleiss' kappa" page: P-bar = 0.378, P-e = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011) "Computing Krippendorff's alpha-reliability", example C: 4 observers,
# 12 units, missing values. Published: nominal 0.743, ordinal 0.815, interval 0.849.
_ = None
KRIPP_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]


def test_fleiss_textbook_example():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_rejects_unequal_rater_counts():
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])


def test_fleiss_from_ratings_matches_counts():
    ratings = [[1, 1, 2], [2, 2, 2], [3, 1, 3], [1, 1, 1]]
    counts = ratings_to_counts(ratings, [1, 2, 3])
    assert counts.tolist() == [[2, 1, 0], [0, 3, 0], [1, 0, 2], [3, 0, 0]]
    # Hand computation: P_i = [1/3, 1, 1/3, 1] -> P-bar 2/3; p_j = [6, 4, 2]/12 -> P-e 56/144.
    expected = (2 / 3 - 56 / 144) / (1 - 56 / 144)
    assert fleiss_kappa(counts) == pytest.approx(expected)


@pytest.mark.parametrize("level,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_worked_example(level, published):
    assert krippendorff_alpha(KRIPP_DATA, level) == pytest.approx(published, abs=5e-4)


def test_krippendorff_nan_missing_and_perfect_agreement():
    data = np.array([[1, 2, 3, np.nan], [1, 2, 3, 4.0]])
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha([[1, None], [None, 2]], "nominal"))  # nothing pairable


def test_krippendorff_nominal_two_raters_equals_scotts_pi_correction():
    # For two raters and no missing data, alpha = 1 - (n-1) Do / De with n = 2 * units.
    a, b = [1, 1, 2, 2, 3, 1], [1, 2, 2, 2, 3, 3]
    pooled = np.array(a + b)
    n = len(pooled)
    p = np.array([np.mean(pooled == c) for c in (1, 2, 3)])
    do = np.mean(np.array(a) != np.array(b))
    de = (1 - (p**2).sum()) * n / (n - 1)
    assert krippendorff_alpha([a, b], "nominal") == pytest.approx(1 - do / de)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=2, max_size=40),
    st.sampled_from([None, "linear", "quadratic"]),
)
def test_cohen_matches_sklearn(pairs, weights):
    from sklearn.metrics import cohen_kappa_score

    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    ours = cohen_kappa(a, b, weights)
    with warnings.catch_warnings():  # sklearn warns (and returns nan) when kappa is undefined
        warnings.simplefilter("ignore")
        theirs = cohen_kappa_score(a, b, weights=weights)
    if math.isnan(theirs):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(theirs, abs=1e-9)


def test_cohen_textbook_2x2():
    # 50 items: both yes 20, both no 15, A yes/B no 5, A no/B yes 10 -> po 0.7, pe 0.5, kappa 0.4.
    a = ["y"] * 20 + ["n"] * 15 + ["y"] * 5 + ["n"] * 10
    b = ["y"] * 20 + ["n"] * 15 + ["n"] * 5 + ["y"] * 10
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_length_mismatch():
    with pytest.raises(ValueError):
        cohen_kappa([1, 2], [1])


def test_correlation_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=0.5, size=30)
    res = correlation(x, y)
    assert res["n"] == 30
    assert res["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert res["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert math.isnan(correlation([1, 1, 1], [1, 2, 3])["spearman"])


def _row(rater, item, system, **kw):
    return {"rater": rater, "item_id": item, "system": system, "design": "single", **kw}


def test_field_agreement_on_exported_rows():
    rows = [_row("r1", str(i), "m", correctness=v) for i, v in enumerate([1, 2, 3, 4, 5])]
    rows += [_row("r2", str(i), "m", correctness=v) for i, v in enumerate([1, 2, 3, 5, 5])]
    out = field_agreement(rows, "correctness")
    pair = out["cohen"][0]
    assert pair["n"] == 5
    assert pair["kappa"] == pytest.approx(cohen_kappa([1, 2, 3, 4, 5], [1, 2, 3, 5, 5], None, [1, 2, 3, 4, 5]))
    assert pair["kappa_quadratic"] > pair["kappa"]  # near-misses count as partial agreement
    assert out["fleiss"]["n_units"] == 5


def test_pairwise_agreement_uses_system_not_side():
    # Two raters saw the pair with opposite sides but both prefer system "good": perfect agreement.
    rows = []
    for i in range(4):
        rows.append({"rater": "r1", "item_id": str(i), "design": "pairwise", "system_left": "good",
                     "system_right": "bad", "preference": "left", "preferred_system": "good"})
        rows.append({"rater": "r2", "item_id": str(i), "design": "pairwise", "system_left": "bad",
                     "system_right": "good", "preference": "right", "preferred_system": "good"})
    rows[-1]["preferred_system"] = "tie"
    rows[-1]["preference"] = "tie"
    rep = agreement_report(rows)
    pref = rep["fields"][0]
    assert pref["field"] == "preference" and pref["n_units"] == 4
    assert pref["krippendorff_nominal"] == pytest.approx(
        krippendorff_alpha([["good"] * 4, ["good"] * 3 + ["tie"]], "nominal")
    )


def test_report_correlations_with_metrics():
    rows = [_row(r, str(i), "m", correctness=c) for r in ("a", "b") for i, c in enumerate([1, 2, 4, 5])]
    metrics = {(str(i), "m"): {"bleu": v} for i, v in enumerate([0.1, 0.2, 0.3, 0.5])}
    rep = agreement_report(rows, metrics)
    corr = next(c for c in rep["correlations"] if c["field"] == "correctness")
    assert corr["n"] == 4 and corr["spearman"] == pytest.approx(1.0) and corr["kendall"] == pytest.approx(1.0)
