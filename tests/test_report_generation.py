"""Report generation task on the tiny R2Gen-layout fixture: training, RAG, findings, provenance,
initialisation from another run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medmm.data import load_dataset  # noqa: E402
from medmm.data.schema import ImageRef, Sample  # noqa: E402
from medmm.engine import rundir as rd  # noqa: E402
from medmm.engine.task import get_task_class  # noqa: E402
from medmm.errors import BadInputError, MedmmError  # noqa: E402
from medmm.knowledge.report_store import ReportStore, thumbnail_embedding  # noqa: E402
from medmm.tasks.report.scoring import sentence_provenance  # noqa: E402
from medmm.tasks.report.task import ReportGenerationTask  # noqa: E402
from tests.conftest import merged  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "iu_xray_tiny"
SMALL = {
    "image": {"encoder": "small_cnn", "encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16, 32]},
              "max_images": 2},
    "text_field": "report",
    "group_by": "study",
    "decoder": {"min_word_freq": 1, "layers": 1, "heads": 2},
    "dim": 32,
    "dropout": 0.0,
    "decoding": {"max_length": 24},
    "bootstrap_resamples": 0,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def splits():
    return {s: load_dataset("iu_xray", FIXTURE, s).samples for s in ("train", "val", "test")}


def make_task(train, **kw) -> ReportGenerationTask:
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config(merged(SMALL, **kw))
    task.setup(train)
    return task


def _fit(task, train, steps: int) -> list[float]:
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    task.train()
    batch = task.collate(train)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = task.training_step(batch)["loss"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    task.eval()
    return losses


def test_registered_and_config_checked():
    assert get_task_class("report_generation") is ReportGenerationTask
    with pytest.raises(Exception, match="unknown"):
        ReportGenerationTask.from_config({"not_a_key": 1})
    with pytest.raises(MedmmError):
        ReportGenerationTask.from_config({"retrieval": {"rag_k": -1}})


def test_fixture_is_r2gen_layout_with_two_views(splits):
    assert [len(splits[s]) for s in ("train", "val", "test")] == [9, 2, 2]
    assert all(len(s.images) == 2 for s in splits["train"])


def test_loss_decreases_on_tiny_overfit_set(splits):
    task = make_task(splits["train"])
    losses = _fit(task, splits["train"], 40)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_rag_findings_provenance_and_state_round_trip(splits):
    train = splits["train"]
    task = make_task(train, retrieval={"rag_k": 2}, findings={"enabled": True, "min_positive": 1})
    assert "Pleural Effusion" in task.observations and "Cardiomegaly" in task.observations
    batch = task.collate(train)
    assert batch["rag_tokens"].shape[:2] == (9, 2)
    assert batch["findings"].shape == (9, len(task.observations))
    # a training study never retrieves its own study
    for sid, hits in zip(batch["ids"], batch["hits"], strict=True):
        assert sid not in [h for h, _ in hits]
    losses = _fit(task, train, 30)
    assert losses[-1] < losses[0]
    train_ids = {s.id for s in train}
    evb = task.collate(splits["test"])
    recs = task.evaluation_step(evb)
    assert [r["id"] for r in recs] == [s.id for s in splits["test"]]
    for r in recs:
        assert r["nn_prediction"] in {s.text["report"] for s in train}
        assert set(r["findings"]) == set(task.observations)
        assert r["sentences"], r
        for sent in r["sentences"]:
            assert sent["used_by_model"] is True
            for src in sent["sources"]:
                assert src["id"] in train_ids  # provenance points at real training samples
                assert 0 < src["overlap"] <= 1
        assert {h["id"] for h in r["retrieved"]} <= train_ids
    # self-contained state: a fresh task restored from state() + weights generates the same text
    clone = ReportGenerationTask.from_config(merged(SMALL, retrieval={"rag_k": 2}, findings={"enabled": True, "min_positive": 1}))
    clone.load_state(task.state())
    clone.load_state_dict(task.state_dict(), strict=True)
    clone.eval()
    assert [r["prediction"] for r in clone.evaluation_step(clone.collate(splits["test"]))] == [r["prediction"] for r in recs]
    # decoding can be changed at predict time
    task.set_decoding(beam_size=3, no_repeat_ngram_size=2)
    beam = task.evaluation_step(evb)
    assert len(beam) == 2
    with pytest.raises(MedmmError):
        task.set_decoding(temperature=1.0)


def test_compute_metrics_includes_nn_baseline_and_cis(splits):
    task = make_task(splits["train"], bootstrap_resamples=20)
    _fit(task, splits["train"], 30)
    recs = task.evaluation_step(task.collate(splits["val"] + splits["test"]))
    m = task.compute_metrics(recs)
    for key in ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider_d"):
        assert key in m and key in m["nn_baseline"]
    assert "f1" in m["clinical_efficacy"]["micro"]
    assert set(m["ci"]) >= {"bleu_4", "cider_d", "rouge_l"}
    lo, hi = m["ci"]["cider_d"]
    assert lo <= m["cider_d"] + 1e-9 and hi >= m["cider_d"] - 1e-9
    # the baseline copies a real training report: perfect copy scores its reference exactly
    copy = [{**r, "prediction": r["reference"]} for r in recs]
    assert task.compute_metrics(copy)["bleu_4"] == pytest.approx(1.0, abs=1e-6)


def test_missing_text_in_training_and_missing_image_are_bad_input(splits):
    task = make_task(splits["train"])
    task.train()
    s = splits["train"][0]
    with pytest.raises(BadInputError):
        task.collate([Sample(id="x", dataset="iu_xray", split="train", images=s.images, text={})])
    with pytest.raises(BadInputError):
        task.collate([Sample(id="y", dataset="iu_xray", split="train", text={"report": "clear"})])
    task.eval()  # at inference a study without text is fine (nothing to compare with)
    assert task.collate([Sample(id="z", dataset="iu_xray", split="test", images=s.images)])["references"] == [""]


def test_report_store_excludes_group_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.random((20, 20)) for _ in range(5)]
    emb = np.stack([thumbnail_embedding([im]) for im in imgs])
    store = ReportStore([f"s{i}" for i in range(5)], [f"report {i}" for i in range(5)], ["g0", "g0", "g1", "g2", "g3"], emb)
    hits = store.search(emb[0], k=2, exclude_groups=["g0"])[0]
    assert [h.id for h in hits] and all(h.group != "g0" for h in hits)
    assert store.search(emb[2], k=1)[0][0].id == "s2"  # nearest to itself without exclusion
    store.save(tmp_path / "st")
    again = ReportStore.load(tmp_path / "st")
    assert again.text_of("s3") == "report 3"
    assert [h.id for h in again.search(emb[4], k=3)[0]] == [h.id for h in store.search(emb[4], k=3)[0]]


def test_sentence_provenance_picks_highest_overlap():
    words = ["small", "right", "pleural", "effusion", ".", "heart", "enlarged", "."]
    prov = sentence_provenance(words, [("a", "The heart is enlarged."), ("b", "Small right pleural effusion.")])
    assert [p["sources"][0]["id"] for p in prov] == ["b", "a"]
    assert prov[0]["sources"][0]["overlap"] == 1.0


def test_views_are_pooled_for_single_and_multi_view_batches(splits):
    task = make_task(splits["train"], image={"max_images": 2})
    one = Sample(id="one", dataset="iu_xray", split="test", images=[ImageRef(array=np.zeros((32, 32), np.uint8))],
                 text={"report": "The lungs are clear."})
    batch = task.collate([one, splits["test"][0]])
    assert batch["view_counts"].tolist() == [1, 2]
    _mem, pad, _ = task.encode(batch)
    assert pad[0].sum() > pad[1].sum()  # the one-view study has padded memory slots


def test_init_run_copies_weights_and_checks_the_data(tmp_path, splits):
    train = splits["train"]
    torch.manual_seed(0)
    src = ReportGenerationTask.from_config(dict(SMALL))
    src.setup(train)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(src.state_dict(), run / rd.WEIGHTS)
    rd.write_json(run / rd.TASK_STATE, {"state": src.state(), "weights": rd.WEIGHTS})
    torch.manual_seed(1)
    dst = ReportGenerationTask.from_config(merged(SMALL, init_run=str(run), scst={"samples": 2}))
    dst.setup(train)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # other training reports (here: one sample fewer) -> refused, never a silent partial load
    other = ReportGenerationTask.from_config(merged(SMALL, init_run=str(run)))
    with pytest.raises(MedmmError, match="init_run"):
        other.setup(train[:-1])


@pytest.mark.slow  # Lightning set-up + 2 epochs' worth of steps: about a minute on the loaded CPU
def test_engine_trains_iu_xray_config_on_fixture_and_run_dir_is_self_contained(tmp_path, splits):
    """configs/report/iu_xray.yaml end to end on the fixture: train, then load_run + predict."""
    from medmm.engine import load_config, train
    from medmm.engine.api import load_run, run_inference

    cfg = load_config(
        Path(__file__).parents[1] / "configs" / "report" / "iu_xray.yaml",
        [f"data.root={FIXTURE}", "trainer.max_epochs=1", "trainer.batch_size=4", "model.dim=32",
         "model.decoder.layers=1", "model.decoder.heads=2", "model.image.encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}",
         "model.bootstrap_resamples=10", "model.decoder.min_word_freq=1", "model.findings.min_positive=1", "model.decoding.max_length=12"],
    )
    metrics = train(cfg, tmp_path / "run")
    assert "cider_d" in metrics["test"] and "cider_d" in metrics["test"]["nn_baseline"]
    _, task = load_run(tmp_path / "run")
    assert task.observations  # findings head restored from task_state.json
    records, skipped = run_inference(task, splits["test"], cfg, with_references=False)
    assert not skipped and len(records) == 2
    train_ids = {s.id for s in splits["train"]}
    assert all(h["id"] in train_ids for r in records for h in r["retrieved"])
