"""Consensus (minimum-Bayes-risk) decoding for report generation: CIDEr-D parity, selection,
and the task's records (beam output, consensus NN baseline, provenance of a chosen report)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from medmm.data import load_dataset  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402
from medmm.metrics.nlg.cider import cider_d  # noqa: E402
from medmm.tasks.report_generation import ReportGenerationTask  # noqa: E402
from medmm.tasks.report_mbr import CiderConsensus, consensus_words, group_weights, typical_reports  # noqa: E402

from tests.test_report_generation import FIXTURE, SMALL as TINY_REPORT  # noqa: E402

SMALL = {**TINY_REPORT, "max_length": 16}  # the tiny model of test_report_generation


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cider_consensus_matches_metric_cider_d():
    """With the references themselves as the IDF corpus, similarity == medmm.metrics CIDEr-D."""
    refs = ["the heart is enlarged", "small right pleural effusion", "no acute fracture of the rib",
            "the lungs are clear", "left lower lobe opacity with effusion"]
    hyps = ["the heart is mildly enlarged", "right pleural effusion is small", "rib fracture",
            "clear lungs", "opacity in the left lower lobe"]
    want = cider_d([h.split() for h in hyps], [[r.split()] for r in refs])
    cc = CiderConsensus(refs)
    got = [cc.similarity(h, r) for h, r in zip(hyps, refs)]
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


@pytest.fixture(scope="module")
def trained():
    splits = {s: load_dataset("iu_xray", FIXTURE, s).samples for s in ("train", "val", "test")}
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config(dict(SMALL))
    task.setup(splits["train"])
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    task.train()
    batch = task.collate(splits["train"])
    for _ in range(25):
        opt.zero_grad()
        task.training_step(batch)["loss"].backward()
        opt.step()
    task.eval()
    return task, splits


def test_consensus_decoding_records_and_baselines(trained):
    task, splits = trained
    samples = splits["val"] + splits["test"]
    plain = task.evaluation_step(task.collate(samples))
    assert "decoding" not in plain[0] and "beam_prediction" not in plain[0]
    task.set_decoding(mbr_references=5, mbr_candidates=3, mbr_retrieved=2)
    try:
        recs = task.evaluation_step(task.collate(samples))
        train_text = {s.id: s.text["report"] for s in splits["train"]}
        for r in recs:
            d = r["decoding"]
            assert d["method"] == "consensus" and d["n_pseudo_references"] == 5
            assert r["nn_consensus_prediction"] in train_text.values()
            if d["selected_from"] == "retrieved":
                assert r["prediction"] == train_text[d["training_id"]]
                assert d["training_id"] in {h["id"] for h in r["retrieved"]}
                assert any(src["id"] == d["training_id"] for s in r["sentences"] for src in s["sources"])
            else:
                assert d["selected_from"] == "generated" and d["training_id"] is None
            # the choice is the arg-max of the expected CIDEr-D over the candidates offered
            hits = [(h["id"], h["score"]) for h in r["retrieved"]]
            refs_ids = task.store.search(task._query(next(s for s in samples if s.id == r["id"])), 5,
                                         exclude_groups=[r["group"]])[0]
            refs, groups = [h.text for h in refs_ids], [h.group for h in refs_ids]
            w = group_weights(groups)

            def util(text, group=None):
                return task.consensus.utilities([text], refs, w, [group], groups)[0]

            u_pred = util(r["prediction"], task.reports.group_of(d["training_id"]) if d["training_id"] else None)
            u_beam = util(r["beam_prediction"])
            u_nn = [util(train_text[h], task.reports.group_of(h)) for h, _ in hits[:2]]
            assert u_pred >= max([u_beam, *u_nn]) - 1e-9
            assert d["expected_cider_d"] == pytest.approx(u_pred, abs=1e-4)
        m = task.compute_metrics(recs)
        assert {"beam", "nn_consensus_baseline", "nn_baseline"} <= set(m)
        # beam_prediction of the consensus run is the first N-best hypothesis; the plain run's
        # beam is narrower (beam_size 1 = greedy), so only the record keys are compared here
        assert [r["id"] for r in recs] == [r["id"] for r in plain]
        with pytest.raises(MedmmError):
            task.set_decoding(mbr_candidates=0)
    finally:
        task.set_decoding(mbr_references=0, mbr_candidates=8, mbr_retrieved=0)


def test_generated_only_consensus_picks_among_nbest(trained):
    task, splits = trained
    task.set_decoding(mbr_references=4, mbr_candidates=4, mbr_retrieved=0)
    try:
        batch = task.collate(splits["test"])
        nbest, _ = task.generate_candidates(batch)
        recs = task.evaluation_step(batch)
        for cands, r in zip(nbest, recs):
            texts = {task.tokenizer.decode(c) for c in cands}
            assert r["prediction"] in texts and r["decoding"]["selected_from"] == "generated"
            assert r["sentences"][0]["used_by_model"] is False
    finally:
        task.set_decoding(mbr_references=0, mbr_candidates=8)


def test_typical_reports_rank_the_prior_consensus_first():
    texts = ["axial ct shows a mass in the liver", "axial ct shows a mass in the kidney", "axial ct shows a mass",
             "axial ct shows a mass", "sagittal mr of the knee", "the patient was treated"]
    groups = ["a", "b", "c", "c", "d", "e"]
    cc = CiderConsensus(texts)
    top = typical_reports(cc, texts, groups, 3)
    # the "axial ct shows a mass" family outranks the outliers; a duplicate text appears once
    assert sorted(top) == [0, 1, 2]
    assert typical_reports(cc, texts, groups, 0) == []


def test_typical_candidates_in_consensus_decoding(trained):
    task, splits = trained
    task.set_decoding(mbr_references=5, mbr_candidates=2, mbr_typical=3)
    try:
        typical = {task.store_ids[i] for i in task.typical_indices()}
        assert len(typical) == 3
        # scored on training studies: a typical report of the study's own group is never offered
        recs = task.evaluation_step(task.collate(splits["train"]))
        kinds = {r["decoding"]["selected_from"] for r in recs}
        assert kinds <= {"generated", "typical"}
        train_text = {s.text["report"] for s in splits["train"]}
        assert all(r["typical_consensus_prediction"] in train_text for r in recs)
        for r in recs:
            d = r["decoding"]
            assert d["n_candidates"] <= 2 + 3
            if d["selected_from"] == "typical":
                assert d["training_id"] in typical and task.reports.group_of(d["training_id"]) != r["group"]
                assert r["sentences"][0]["used_by_model"] is True
    finally:
        task.set_decoding(mbr_references=0, mbr_candidates=8, mbr_typical=0)


def test_training_reports_pick_and_consensus_nn():
    """TrainingReports on a hand-made store: the consensus candidate wins, the study's own group
    never supplies a typical candidate, and a case retrieved twice weighs as one."""
    import numpy as np

    from medmm.knowledge.report_store import ReportStore
    from medmm.tasks.report_mbr import TrainingReports

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
