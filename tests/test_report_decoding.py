"""Decoding of the report task (`report_decoding`): option checks and `set_decoding`, the repeat
rules in generation and consensus candidates, consensus decoding's records and baselines (beam
output, consensus NN, typical reports, provenance of a chosen report). `generate_reports` is
tested beside the CLI's decoding flags, on the same saved run (test_report_generation_cli)."""

from __future__ import annotations

from itertools import pairwise

import pytest

torch = pytest.importorskip("torch")

from medmm.data import load_dataset  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402
from medmm.models.decoders import GenerationConfig, word_tokenize  # noqa: E402
from medmm.tasks.report import decoding as report_decoding  # noqa: E402
from medmm.tasks.report.config import ConsensusConfig, DecodingConfig, ReportGenerationConfig  # noqa: E402
from medmm.tasks.report.decoding import DECODING_KEYS, check_mbr, generation_config  # noqa: E402
from medmm.tasks.report.mbr import group_weights  # noqa: E402
from medmm.tasks.report.task import ReportGenerationTask  # noqa: E402
from tests.conftest import merged  # noqa: E402
from tests.test_report_generation import FIXTURE  # noqa: E402
from tests.test_report_generation import SMALL as TINY_REPORT  # noqa: E402

SMALL = merged(TINY_REPORT, decoding={"max_length": 16})  # the tiny model of test_report_generation


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_option_checks_and_generation_config():
    # set_decoding's options: the decoding section's fields (all of GenerationConfig's) and mbr_<field>
    gen_keys = {k for k in DECODING_KEYS if not k.startswith("mbr_")}
    assert gen_keys == set(DecodingConfig.__dataclass_fields__) == set(GenerationConfig.__dataclass_fields__)
    assert {k.removeprefix("mbr_") for k in DECODING_KEYS if k.startswith("mbr_")} <= set(ConsensusConfig.__dataclass_fields__)
    gen = generation_config(ReportGenerationConfig(decoding=DecodingConfig(
        beam_size=3, length_penalty=1.2, max_length=20, min_length=2, repetition_penalty=1.5, no_immediate_repeat=True)))
    assert (gen.beam_size, gen.length_penalty, gen.no_repeat_ngram_size, gen.max_length, gen.min_length,
            gen.repetition_penalty, gen.no_immediate_repeat) == (3, 1.2, 3, 20, 2, 1.5, True)
    with pytest.raises(MedmmError, match="repetition_penalty"):
        generation_config(ReportGenerationConfig(decoding=DecodingConfig(repetition_penalty=0.5)))
    with pytest.raises(MedmmError, match="repetition_penalty"):
        ReportGenerationTask.from_config(merged(SMALL, decoding={"repetition_penalty": 0.5}))
    check_mbr(0, 1, 0)
    check_mbr(128, 8, 2, 32, 4, 0.5, 1.0)
    for bad in [(-1, 8, 0), (4, 0, 0), (4, 8, -1), (4, 8, 0, -1), (4, 8, 0, 0, -1)]:
        with pytest.raises(MedmmError, match="consensus decoding needs"):
            check_mbr(*bad)
    with pytest.raises(MedmmError, match="must be >= 0"):
        check_mbr(4, 8, 0, mbr_reference_power=-0.1)


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

            def util(text, group=None, refs=refs, w=w, groups=groups):
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
        for cands, r in zip(nbest, recs, strict=True):
            texts = {task.tokenizer.decode(c) for c in cands}
            assert r["prediction"] in texts and r["decoding"]["selected_from"] == "generated"
            assert r["sentences"][0]["used_by_model"] is False
    finally:
        task.set_decoding(mbr_references=0, mbr_candidates=8)


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


def test_repeat_options_reach_generation_and_consensus_candidates(spy_sample_decode):
    """The inference-only repeat rules shape the beam and the sampled consensus candidates
    (self-critical sampling ignores them: test_report_scst)."""
    splits = {s: load_dataset("iu_xray", FIXTURE, s).samples for s in ("train", "test")}
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config(merged(SMALL, decoding={"no_immediate_repeat": True, "repetition_penalty": 1.3}))
    task.setup(splits["train"])
    assert task.generation.no_immediate_repeat and task.generation.repetition_penalty == 1.3
    task.eval()
    seen = spy_sample_decode(report_decoding)
    task.set_decoding(mbr_references=4, mbr_candidates=3, mbr_samples=2, beam_size=2)
    recs = task.evaluation_step(task.collate(splits["test"]))
    assert seen and seen[-1].no_immediate_repeat and seen[-1].repetition_penalty == 1.3
    for r in recs:
        for text in (r["prediction"], r["beam_prediction"]):
            w = word_tokenize(text)
            assert not any(x == y for x, y in pairwise(w)), text
    task.set_decoding(no_immediate_repeat=False, repetition_penalty=1.0)
    assert task.config.decoding.repetition_penalty == 1.0 and not task.generation.no_immediate_repeat
    assert task.config.mbr.samples == 2  # options not named keep their value
    with pytest.raises(MedmmError, match="repetition_penalty"):
        task.set_decoding(repetition_penalty=0.9)
    with pytest.raises(MedmmError, match="unknown decoding option"):
        task.set_decoding(temperature=1.0)
    with pytest.raises(MedmmError, match="exceeds"):
        task.set_decoding(max_length=task.decoder.max_length)  # positions 0..max_length needed
    assert task.config.decoding.repetition_penalty == 1.0 and task.generation.max_length == SMALL["decoding"]["max_length"]  # refused: unchanged
