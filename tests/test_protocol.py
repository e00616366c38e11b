"""Every task's metrics carry `protocol` and `floors` (engine/protocol.py, Task hooks); VQA routing
is predicted from the question; numbers of the selection split are labelled selection_*."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.schema import ImageRef, MaskRef, Sample
from medmm.engine.task import Task, get_task_class, list_tasks

REPO = Path(__file__).resolve().parents[1]
IU_XRAY = REPO / "tests" / "fixtures" / "iu_xray_tiny"
TINY_TEXT = {"vocab_size": 300, "dim": 16, "num_layers": 1, "num_heads": 2, "max_length": 32, "dropout": 0.0}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _builtin_tasks() -> set[str]:
    """medmm's own tasks (other test modules register toy tasks into the same registry)."""
    return {n for n in list_tasks() if get_task_class(n).__module__.startswith("medmm.tasks.")}


def test_every_registered_task_declares_floors_and_protocol():
    assert len(_builtin_tasks()) >= 5
    for name in _builtin_tasks():
        cls = get_task_class(name)
        assert cls.floors is not Task.floors, f"task {name!r} declares no floors"
        assert cls.protocol is not Task.protocol, f"task {name!r} declares no metric definitions"


def _vqa_samples() -> tuple[list[Sample], list[Sample]]:
    ss = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples
    images = sorted({s.images[0].path for s in ss})
    held = set(images[::5])  # every 5th image held out: no image in both parts
    return [s for s in ss if s.images[0].path not in held], [s for s in ss if s.images[0].path in held]


def _diagnosis():
    train, test = _vqa_samples()
    cls = get_task_class("diagnosis")
    task = cls.from_config({"target": "organ", "fusion": "image_only", "dim": 16,
                            "image": {"size": 24, "encoder_kwargs": {"widths": [8, 16]}}, "bootstrap_resamples": 30})
    return task, train[:80], test[:40], {"prior", "logistic_pixels"}


def _vqa(**kw):
    train, test = _vqa_samples()
    cls = get_task_class("vqa")
    task = cls.from_config({"image": {"encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]}},
                            "text": {"encoder": "scratch", "encoder_kwargs": TINY_TEXT}, "dim": 16,
                            "fusion": "early", "bootstrap_resamples": 30, **kw})
    return task, train, test[:48], {"answer_prior", "question_nn"}


def _report():
    cls = get_task_class("report_generation")
    task = cls.from_config({"image": {"encoder": "small_cnn", "max_images": 2,
                                      "encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]}},
                            "text_field": "report", "group_by": "study", "dim": 16,
                            "decoder": {"min_word_freq": 1, "layers": 1, "heads": 2}, "decoding": {"max_length": 12},
                            "bootstrap_resamples": 20})
    split = {s: load_dataset("iu_xray", IU_XRAY, s).samples for s in ("train", "test")}
    return task, split["train"], split["test"], {"nn_report_pixels"}


def _retrieval():
    train, test = _vqa_samples()
    cls = get_task_class("retrieval")
    task = cls.from_config({"image_encoder": "small_cnn", "image_encoder_kwargs": {"widths": [8, 16], "image_size": 32},
                            "text_encoder": "scratch", "text_encoder_kwargs": TINY_TEXT, "embed_dim": 16,
                            "text_field": "question", "bootstrap_resamples": 20})
    return task, train, test[:40], {"random", "frozen_bridge"}


def _squares(n: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = np.zeros((24, 24), np.uint8)
        y, x = rng.integers(2, 14, 2)
        m[y : y + 8, x : x + 8] = 1
        img = (np.where(m, 0.9, 0.2) + rng.normal(0, 0.05, m.shape)).astype(np.float32)
        out.append(Sample(f"s{seed}-{i}", "toy", "train", images=[ImageRef(array=img)], masks=[MaskRef("sq", array=m)],
                          patient_id=f"p{seed}-{i}"))
    return out


def _segmentation():
    cls = get_task_class("segmentation")
    task = cls.from_config({"classes": {"square": ["sq"]}, "conditioning": "none", "text": {"encoder": None},
                            "unet": {"channels": [8, 16]}, "image": {"in_channels": 1, "size": 24}, "bootstrap_resamples": 30})
    return task, _squares(12, 0), _squares(8, 1), {"otsu"}


@functools.cache
def _tiny_vlm() -> str:
    """A tiny random Gemma 3 (MedGemma's architecture) folder, written once per session."""
    import tempfile

    from medmm.models.families import write_tiny

    return str(write_tiny("gemma3", Path(tempfile.mkdtemp(prefix="medmm_tiny_gemma3_")) / "gemma3"))


def _vqa_vlm():
    train, test = _vqa_samples()
    task = get_task_class("vqa_vlm").from_config({"pretrained": _tiny_vlm(), "max_new_tokens": 3, "bootstrap_resamples": 30})
    return task, train, test[:24], {"answer_prior", "question_nn"}


def _report_vlm():
    task = get_task_class("report_vlm").from_config({"pretrained": _tiny_vlm(), "max_new_tokens": 6, "max_images": 2,
                                                     "bootstrap_resamples": 20})
    split = {s: load_dataset("iu_xray", IU_XRAY, s).samples for s in ("train", "test")}
    return task, split["train"], split["test"], {"nn_report_pixels"}


def _pretrain_image():
    def images(n: int, seed: int) -> list[Sample]:
        rng = np.random.default_rng(seed)
        out = []
        for i in range(n):
            ct = i % 3 != 0
            img = rng.uniform(0.5 if ct else 0.0, 1.0 if ct else 0.5, (40, 40)).astype(np.float32)
            out.append(Sample(f"p{seed}-{i}", "toy", "train", images=[ImageRef(array=img)], case_id=f"c{seed}-{i // 2}",
                              targets={"modality": "CT" if ct else "MR", "location": "Head" if i % 4 else "Thorax"}))
        return out

    task = get_task_class("pretrain_image").from_config({"encoder": {"size": 32, "widths": [8, 16]},
                                                         "labels": {"min_count": 1}, "caption": {"weight": 0.0},
                                                         "bootstrap_resamples": 30})
    return task, images(24, 0), images(16, 1), {"majority"}


BUILDERS = {"diagnosis": _diagnosis, "pretrain_image": _pretrain_image, "vqa": _vqa, "report_generation": _report, "retrieval": _retrieval,
            "segmentation": _segmentation, "vqa_vlm": _vqa_vlm, "report_vlm": _report_vlm}


def test_builders_cover_every_registered_task():
    assert set(BUILDERS) == _builtin_tasks()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_floors_and_protocol_of_every_task(name):
    """What the engine writes beside a split's metrics, for an untrained tiny model of each task."""
    from medmm.engine.config import DataConfig, RunConfig
    from medmm.engine.protocol import floors_record, protocol_record

    torch.manual_seed(0)
    task, train, test, expected = BUILDERS[name]()
    task.setup(train)
    task.eval()
    with torch.no_grad():
        records = task.evaluation_step(task.collate(test))
    floors = floors_record(task, train, test, records)
    assert set(floors) == expected, floors
    for floor, entry in floors.items():
        assert "skipped" not in entry and "error" not in entry, (floor, entry)
        diffs = entry["model_minus_floor"]
        leaves = [d for v in diffs.values() for d in ([v] if "difference" in v else v.values())]
        assert leaves and all(set(d) >= {"difference", "ci", "p_value"} for d in leaves), diffs
    protocol = protocol_record(task, RunConfig(task=name, data=DataConfig(dataset="x", root=".")), reported_split="test", selection_split="val",
                               checkpoint_chosen=True, reported_is_selection=False)
    assert protocol["oracle_inputs"] == [] and protocol["training"] == "trained"
    assert protocol["metric_definitions"] and protocol["reported_split"] == "test"
    json.dumps({"floors": floors, "protocol": protocol})


def test_vqa_routing_is_predicted_from_the_question_and_annotation_routing_is_an_oracle_input():
    from medmm.engine.config import DataConfig, RunConfig
    from medmm.engine.protocol import protocol_record
    from medmm.tasks.vqa.answers import answer_type
    from medmm.tasks.vqa.routing import ClosedOpenRouter

    train, test = _vqa_samples()
    router = ClosedOpenRouter.fit([s.text["question"] for s in train], [answer_type(s) == "CLOSED" for s in train])
    assert router.vocabulary  # a fitted model, not the fallback rule
    pred = router.predict([s.text["question"] for s in test])
    acc = np.mean([p == (answer_type(s) == "CLOSED") for p, s in zip(pred, test, strict=True)])
    assert acc > 0.85, acc  # measured 0.9+ on the bundled sample's held-out images
    restored = ClosedOpenRouter.from_state(json.loads(json.dumps(router.state())))
    assert restored.predict([s.text["question"] for s in test]) == pred

    for routing, oracle in (("predicted", False), ("annotation", True)):
        task, tr, te, _ = _vqa(routing=routing)
        task.setup(tr)
        task.eval()
        with torch.no_grad():
            batch = task.collate(te)
            records = task.evaluation_step(batch)
        annotated = batch["closed_annotated"].tolist()
        if routing == "annotation":
            assert batch["closed"].tolist() == annotated
        else:
            assert batch["closed"].tolist() == task.router.predict([s.text["question"] for s in te])
        assert all(r["routed_type"] in ("CLOSED", "OPEN") for r in records)
        protocol = protocol_record(task, RunConfig(task="vqa", data=DataConfig(dataset="x", root=".")), reported_split="test", selection_split=None,
                                   checkpoint_chosen=False, reported_is_selection=False)
        assert bool(protocol["oracle_inputs"]) is oracle
        assert "answer_type_routing_accuracy" in task.compute_metrics(records)


def test_a_vqa_run_without_a_router_is_refused_with_a_clear_message():
    from medmm.errors import MedmmError

    task, train, _, _ = _vqa()
    task.setup(train)
    state = json.loads(json.dumps(task.state()))
    state.pop("router")
    other, *_ = _vqa()
    with pytest.raises(MedmmError, match="routing=annotation"):
        other.load_state(state)


@pytest.mark.slow  # Lightning set-up and a few steps plus an evaluation: ~30 s on the shared CPU
def test_engine_writes_protocol_floors_and_selection_names(tmp_path, monkeypatch):
    """Train (thresholds tuned on validation) -> val.json names its threshold-dependent metrics
    selection_*, test.json does not; evaluate() on the run's validation samples does the same;
    report.html shows the floors."""
    from medmm.engine import evaluate, load_config, train

    monkeypatch.chdir(REPO)
    cfg = load_config("configs/diagnosis/vqa_rad_organ.yaml", [
        "trainer.max_epochs=2", "trainer.batch_size=8", "data.max_samples=60", "model.image.size=24", "model.dim=16",
        "model.text.encoder_kwargs={dim: 16, num_layers: 1, num_heads: 2, vocab_size: 300}", "trainer.progress_bar=false",
        f"data.root={vqa_rad_sample_root()}", "model.bootstrap_resamples=30", "model.imbalance.threshold_tuning=f1"],
        validate_model=True)
    run = tmp_path / "run"
    train(cfg, run)
    val = json.loads((run / "metrics" / "val.json").read_text())
    test = json.loads((run / "metrics" / "test.json").read_text())
    assert val["protocol"]["reported_is_selection_split"] is True and test["protocol"]["reported_is_selection_split"] is False
    assert "selection_accuracy" in val["metrics"] and "accuracy" not in val["metrics"]
    assert "accuracy" in test["metrics"] and "selection_accuracy" not in test["metrics"]
    assert any("thresholds" in x for x in test["protocol"]["selected_on_selection_split"])
    assert set(test["floors"]) == {"prior", "logistic_pixels", "logistic_text_tfidf"}
    assert "floors (trivial baselines" in (run / "report.html").read_text()

    res = evaluate(run, vqa_rad_sample_root(), split="train")  # the whole root: holds the run's val samples
    assert res["protocol"]["evaluated_samples_in_run_selection_split"] > 0
    assert res["protocol"]["reported_is_selection_split"] is True and "selection_accuracy" in res["metrics"]
    assert set(res["floors"]) == {"prior", "logistic_pixels", "logistic_text_tfidf"}
