"""F1-RadGraph's exact scorer (torch-free) on hand-computed graphs, and against the radgraph package where installed."""

from __future__ import annotations

import random

import pytest

from medmm.metrics.model_based.radgraph_f1 import (
    LEVELS,
    ReportGraph,
    corpus_f1,
    corpus_f1_with_ci,
    per_report_f1,
    report_f1,
)

# "small left effusion" vs "right effusion, no pneumothorax"
H1 = ReportGraph((("effusion", "OBS-DP"), ("left", "ANAT-DP"), ("small", "OBS-DP")),
                 ((0, 1, "located_at"), (2, 0, "modify")))
R1 = ReportGraph((("effusion", "OBS-DP"), ("right", "ANAT-DP"), ("pneumothorax", "OBS-DA")),
                 ((0, 1, "located_at"),))
# a repeated entity counts once (sets): H {edema} vs R {edema, heart}
H2 = ReportGraph((("edema", "OBS-U"),))
R2 = ReportGraph((("edema", "OBS-U"), ("edema", "OBS-U"), ("heart", "ANAT-DP")))


def test_levels_by_hand():
    # simple:   H {effusion/DP, left/A, small/DP}          R {effusion/DP, right/A, pneumothorax/DA}   1 common of 3 and 3
    # partial:  H {effusion/DP/rel, left/A, small/DP/rel}  R {effusion/DP/rel, right/A, pneumothorax}  1 common
    # complete: H {effusion-located_at-left, left, small-modify-effusion}
    #           R {effusion-located_at-right, right, pneumothorax}                                   0 common
    assert report_f1(H1, R1) == pytest.approx({"simple": 1 / 3, "partial": 1 / 3, "complete": 0.0})
    # P = 1/1, R = 1/2 -> F1 = 2/3 at every level (no relations)
    assert report_f1(H2, R2) == pytest.approx(dict.fromkeys(LEVELS, 2 / 3))
    assert report_f1(R1, R1) == dict.fromkeys(LEVELS, 1.0)
    # the relation's type matters at the complete level only
    h = ReportGraph(R1.entities, ((0, 1, "suggestive_of"),))
    assert report_f1(h, R1) == pytest.approx({"simple": 1.0, "partial": 1.0, "complete": 2 / 3})  # 2 of 3 each side


def test_empty_text_or_graph_scores_zero_and_counts_in_the_mean():
    empty = ReportGraph()
    assert report_f1(empty, R1) == report_f1(R1, empty) == report_f1(empty, empty) == dict.fromkeys(LEVELS, 0.0)
    per = per_report_f1([H1, H2, None, empty], [R1, R2, R1, empty])
    assert per["complete"] == pytest.approx([0.0, 2 / 3, 0.0, 0.0])
    mean = corpus_f1(per)
    assert mean == pytest.approx({"simple": (1 / 3 + 2 / 3) / 4, "partial": (1 / 3 + 2 / 3) / 4, "complete": (2 / 3) / 4})
    assert corpus_f1(per, [1, 1]) == pytest.approx(dict.fromkeys(LEVELS, 2 / 3))  # a resample
    with pytest.raises(ValueError, match="2 generated graphs for 1 references"):
        per_report_f1([H1, H2], [R1])


def test_casing_released_package_versus_lower():
    h = ReportGraph((("Effusion", "OBS-DP"), ("Left", "ANAT-DP")), ((0, 1, "located_at"),))
    r = ReportGraph((("effusion", "OBS-DP"), ("left", "ANAT-DP")), ((0, 1, "located_at"),))
    # radgraph 0.1.18 lower-cases only relation tuples: complete H {effusion-located_at-left, Left}
    # R {effusion-located_at-left, left} -> 1 of 2 each side; simple and partial see no match
    assert report_f1(h, r) == pytest.approx({"simple": 0.0, "partial": 0.0, "complete": 0.5})
    assert report_f1(h, r, casing="lower") == dict.fromkeys(LEVELS, 1.0)
    with pytest.raises(ValueError, match="casing must be one of"):
        report_f1(h, r, casing="upper")


def test_from_package_annotation_and_validation():
    # the radgraph package's documented output for "no evidence of acute cardiopulmonary process moderate hiatal
    # hernia" (its tests/radgraph_test.py), against a hand-made "no acute cardiopulmonary process"
    ann = {"text": "…", "entities": {
        "1": {"tokens": "acute", "label": "OBS-DA", "start_ix": 3, "end_ix": 3, "relations": []},
        "2": {"tokens": "cardiopulmonary", "label": "ANAT-DP", "start_ix": 4, "end_ix": 4, "relations": []},
        "3": {"tokens": "process", "label": "OBS-DA", "start_ix": 5, "end_ix": 5, "relations": [["located_at", "2"]]},
        "4": {"tokens": "moderate", "label": "OBS-DP", "start_ix": 6, "end_ix": 6, "relations": []},
        "5": {"tokens": "hiatal", "label": "ANAT-DP", "start_ix": 7, "end_ix": 7, "relations": []},
        "6": {"tokens": "hernia", "label": "OBS-DP", "start_ix": 8, "end_ix": 8, "relations": []}}}
    g = ReportGraph.from_annotation(ann)
    assert g.relations == ((2, 1, "located_at"),) and g.entities[5] == ("hernia", "OBS-DP")
    ref = ReportGraph((("acute", "OBS-DA"), ("cardiopulmonary", "ANAT-DP"), ("process", "OBS-DA")), ((2, 1, "located_at"),))
    # every level: the reference's 3 elements all in the hypothesis' 6 -> P 1/2, R 1 -> 2/3
    assert report_f1(g, ref) == pytest.approx(dict.fromkeys(LEVELS, 2 / 3))
    xl = ReportGraph((("2 cm above", "Anatomy::measurement::definitely present"), ("tube", "Observation::uncertain")))
    assert report_f1(xl, xl)["simple"] == 1.0
    with pytest.raises(ValueError, match="label one of"):
        ReportGraph((("effusion", "OBS-POS"),))
    with pytest.raises(ValueError, match="type must be one of"):
        ReportGraph((("a", "OBS-DP"), ("b", "ANAT-DP")), ((0, 1, "part_of"),))
    with pytest.raises(ValueError, match="out of range"):
        ReportGraph((("a", "OBS-DP"),), ((0, 1, "modify"),))
    ann["entities"]["6"]["relations"] = [["modify", "9"]]
    with pytest.raises(ValueError, match="unknown entity '9'"):
        ReportGraph.from_annotation(ann)


def test_bootstrap_ci_uses_medmm_stats():
    per = per_report_f1([H1, H2, H1, H2, None], [R1, R2, R2, R2, R1])
    ci = corpus_f1_with_ci(per, n_resamples=200, seed=3)
    for level in LEVELS:
        est, lo, hi = ci["estimate"][level], ci["low"][level], ci["high"][level]
        assert est == pytest.approx(corpus_f1(per)[level]) and lo <= est <= hi and lo < hi
    assert ci == corpus_f1_with_ci(per, n_resamples=200, seed=3)  # seeded
    same = corpus_f1_with_ci(per_report_f1([H2, H2], [R2, R2]), n_resamples=50)
    assert same["low"]["simple"] == same["high"]["simple"] == pytest.approx(2 / 3)


def _random_annotation(rng: random.Random) -> dict:
    words = ["effusion", "Effusion", "left", "Left", "lung", "edema", "EDEMA", "mild", "heart"]
    labels = ["OBS-DP", "OBS-U", "OBS-DA", "ANAT-DP"]
    n = rng.randint(0, 5)
    ents = {str(i + 1): {"tokens": rng.choice(words), "label": rng.choice(labels), "start_ix": i, "end_ix": i,
                         "relations": []} for i in range(n)}
    for e in ents.values():
        for _ in range(rng.randint(0, 2) if n else 0):
            e["relations"].append([rng.choice(["modify", "located_at", "suggestive_of"]), str(rng.randint(1, n))])
    return {"text": "", "entities": ents}


def test_equals_the_released_package_on_random_graphs():
    """Where the radgraph package is installed (not in medmm's CI): the same numbers as its compute_reward."""
    rewards = pytest.importorskip("radgraph.rewards")
    from importlib.metadata import version

    if version("radgraph") != "0.1.18":
        pytest.skip(f"radgraph {version('radgraph')}: casing rules known for 0.1.18 only")
    rng = random.Random(0)
    for _ in range(3000):
        h, r = _random_annotation(rng), _random_annotation(rng)
        want = rewards.compute_reward(h, r, "all")
        got = report_f1(ReportGraph.from_annotation(h), ReportGraph.from_annotation(r))
        assert (got["simple"], got["partial"], got["complete"]) == want


def test_scorer_and_backend_modules_stay_torch_free():
    import subprocess
    import sys

    code = ("import sys, medmm.metrics.model_based.radgraph_f1, medmm.metrics.model_based.radgraph_extract; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
