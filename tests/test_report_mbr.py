"""Consensus (minimum-Bayes-risk) re-ranking, `report_mbr`: CIDEr-D parity with the metric,
selection, typical reports, and `TrainingReports` (pick, pseudo-references, consensus NN).
The task's consensus decoding (records, candidates) is tested in test_report_decoding."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # importing medmm.tasks registers every task, which needs torch

from medmm.errors import MedmmError
from medmm.metrics.nlg.cider import cider_d
from medmm.tasks.report.mbr import CiderConsensus, consensus_words, group_weights, typical_reports


def test_cider_consensus_matches_metric_cider_d():
    """With the references themselves as the IDF corpus, similarity == medmm.metrics CIDEr-D."""
    refs = ["the heart is enlarged", "small right pleural effusion", "no acute fracture of the rib",
            "the lungs are clear", "left lower lobe opacity with effusion"]
    hyps = ["the heart is mildly enlarged", "right pleural effusion is small", "rib fracture",
            "clear lungs", "opacity in the left lower lobe"]
    want = cider_d([h.split() for h in hyps], [[r.split()] for r in refs])
    cc = CiderConsensus(refs)
    got = [cc.similarity(h, r) for h, r in zip(hyps, refs, strict=True)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert cc.similarity(refs[1], refs[1]) == pytest.approx(10.0)  # identical text: the maximum
    assert consensus_words("Axial CT, 3.5 cm mass.") == ["axial", "ct", "3", "5", "cm", "mass"]


def test_select_prefers_the_candidate_most_references_agree_with():
    corpus = ["small right pleural effusion", "moderate left pleural effusion", "pleural effusion on the right",
              "rib fracture", "normal heart size", "clear lungs"]
    cc = CiderConsensus(corpus)
    refs = ["small right pleural effusion", "right pleural effusion", "large right pleural effusion", "rib fracture"]
    best, util = cc.select(["rib fracture", "right pleural effusion is small", "normal heart size"], refs)
    assert best == 1 and util[1] > 0.5
    # a candidate never votes for itself: its only agreeing reference is identical, so left out
    assert util[0] == 0.0 and util[2] == 0.0
    assert cc.utilities(["rib fractures"], ["rib fracture", "clear lungs"])[0] > 0.0
    # with groups, a reference of the candidate's own group (another image of its case) is left
    # out too, and group_weights makes each group count once
    u = cc.utilities(["rib fracture"], ["rib fractures", "rib fracture seen", "clear lungs"],
                     candidate_groups=["case1"], reference_groups=["case1", "case2", "case3"])
    assert u[0] > 0 and u == pytest.approx(cc.utilities(["rib fracture"], ["rib fracture seen", "clear lungs"]))
    assert u != pytest.approx(cc.utilities(["rib fracture"], ["rib fractures", "rib fracture seen", "clear lungs"]))
    assert group_weights(["a", "a", "b", None]) == [0.5, 0.5, 1.0, 1.0]
    with pytest.raises(MedmmError):
        cc.utilities(["a"], ["b"], candidate_groups=["x", "y"])
    with pytest.raises(MedmmError):
        cc.select([], refs)
    with pytest.raises(MedmmError):
        cc.utilities(["a"], ["b"], weights=[1.0, 2.0])


def test_typical_reports_rank_the_prior_consensus_first():
    texts = ["axial ct shows a mass in the liver", "axial ct shows a mass in the kidney", "axial ct shows a mass",
             "axial ct shows a mass", "sagittal mr of the knee", "the patient was treated"]
    groups = ["a", "b", "c", "c", "d", "e"]
    cc = CiderConsensus(texts)
    top = typical_reports(cc, texts, groups, 3)
    # the "axial ct shows a mass" family outranks the outliers; a duplicate text appears once
    assert sorted(top) == [0, 1, 2]
    assert typical_reports(cc, texts, groups, 0) == []


def test_training_reports_pick_and_consensus_nn():
    """TrainingReports on a hand-made store: the consensus candidate wins, the study's own group
    never supplies a typical candidate, and a case retrieved twice weighs as one."""
    import numpy as np

    from medmm.knowledge.report_store import ReportStore
    from medmm.tasks.report.mbr import TrainingReports

    ids = ["a1", "a2", "b1", "c1", "d1"]
    texts = ["small right pleural effusion", "small right pleural effusion", "the heart is enlarged",
             "small left pleural effusion", "no acute fracture"]
    groups = ["A", "A", "B", "C", "D"]
    store = ReportStore(ids, texts, groups, np.eye(5, dtype=np.float32))
    reports = TrainingReports(store, ids, texts, groups, CiderConsensus(texts))
    hits = [("a1", 0.9), ("a2", 0.8), ("c1", 0.7), ("b1", 0.1)]
    assert reports.pseudo_references(hits, 3)[2] == [0.5, 0.5, 1.0]  # case A retrieved twice
    pick = reports.pick(["the heart is enlarged", "right pleural effusion"], hits, None, n_references=3)
    assert pick["text"] == "right pleural effusion" and pick["source"] is None and pick["n_candidates"] == 2
    # typical candidates come from other groups only, and carry their provenance
    typical = reports.typical_indices(5)
    assert typical and reports.typical_indices(2) == typical[:2]
    own = reports.pick([], hits, "A", n_references=3, n_typical=5)
    assert own["source"][0] == "typical" and reports.group_of(own["source"][1]) != "A"
    # grounding hooks: a bonus can overturn the consensus
    bonus = reports.pick(["the heart is enlarged", "right pleural effusion"], hits, None, n_references=3,
                         candidate_bonus=lambda t: 10.0 if "heart" in t else 0.0)
    assert bonus["text"] == "the heart is enlarged"
    assert reports.consensus_nn(hits, n_candidates=4, n_references=3) in {"small right pleural effusion", "small left pleural effusion"}
    assert reports.pick([], [], None, n_references=3)["n_candidates"] == 0
