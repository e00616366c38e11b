"""Every registered task, trained for 2 steps through the engine, then evaluated, predicted and
explained: one test per task, built from the `tiny.yaml` beside the task's module (a new task
gets this test by shipping one), on the bundled CC0 VQA-RAD sample or tiny real fixtures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import shipped_tasks
from medmm.engine.task import Task, get_task_class
from test_selection_names import check_selection_names

REPO = Path(__file__).resolve().parents[1]
TASKS = shipped_tasks()  # toy tasks that other test modules register are left out


def tiny_config(name: str) -> Path:
    """The task's tiny run config: `tiny_<name>.yaml` or `tiny.yaml` in the folder of the module
    defining its class (a package holding several tasks names one file per task)."""
    folder = Path(sys.modules[get_task_class(name).__module__].__file__).parent
    for path in (folder / f"tiny_{name}.yaml", folder / "tiny.yaml"):
        if path.is_file():
            return path
    raise AssertionError(f"task {name!r} ships no tiny.yaml beside its module (what tests/test_every_task.py trains)")


def load_tiny(name: str, tmp_path: Path):
    """The tiny config, with `model.pretrained: tiny:FAMILY` made real: a tiny random model of
    that family written by `medmm models tiny` into tmp_path (weights cannot be downloaded here)."""
    import yaml

    from medmm.engine import load_config
    from medmm.models.families import write_tiny

    path = tiny_config(name)
    pretrained = str((yaml.safe_load(path.read_text()).get("model") or {}).get("pretrained") or "")
    overrides = []
    if pretrained.startswith("tiny:"):
        family = pretrained.removeprefix("tiny:")
        overrides.append(f"model.pretrained={write_tiny(family, tmp_path / f'tiny_{family}')}")
    return load_config(path, overrides, validate_model=True)


def _dataset_split(cfg, split: str) -> str:
    """The dataset split (as its loader names it) that holds the run's `split` samples."""
    if cfg.data.split == "official":
        return {"val": cfg.data.val_split, "test": cfg.data.test_split}[split]
    return (cfg.data.source_splits or ["train"])[0]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared, loaded CPU more threads make tiny models slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", TASKS)
def test_task_trains_evaluates_predicts_and_explains(name: str, tmp_path: Path, monkeypatch) -> None:
    from medmm.engine import evaluate, predict, train
    from medmm.errors import MedmmError
    from medmm.explain_run import explain_run

    monkeypatch.chdir(REPO)  # tiny.yaml roots are relative to the repository root, as shipped configs
    cfg = load_tiny(name, tmp_path)
    assert cfg.task == name and cfg.trainer.max_steps == 2
    if not Path(cfg.data.root).exists():
        pytest.skip(f"{name}: its tiny data {cfg.data.root} is not here")
    run = tmp_path / "run"
    metrics = train(cfg, run)
    split = "test" if cfg.data.test_split else "val"
    assert metrics.get(split), f"{name}: training reported no {split} metrics"
    assert (run / "predictions" / f"{split}.jsonl").exists() and (run / "report.html").exists()

    def numbers(metrics: dict) -> dict:  # provenance records when and where: not compared
        return {k: v for k, v in metrics.items() if k != "provenance"}

    scored = evaluate(run, split=split)
    assert numbers(scored["metrics"]) == numbers(json.loads((run / "metrics" / f"{split}.json").read_text())["metrics"]), \
        f"{name}: evaluate does not reproduce the split's metrics of training"
    _check_selection_names(name, run, scored)

    records = [json.loads(line) for line in (run / "predictions" / f"{split}.jsonl").read_text().splitlines()]
    ids = sorted({str(r.get("sample_id", r["id"])) for r in records})[:2]
    preds = predict(run, cfg.data.root, split=_dataset_split(cfg, split))
    assert preds and all("id" in p and "prediction" in p for p in preds)

    out = tmp_path / "explain"
    if get_task_class(name).explainable is Task.explainable:  # no explainer: a clear error
        with pytest.raises(MedmmError, match="no explainer"):
            explain_run(run, cfg.data.root, ids, out, ig_steps=2, faithfulness_steps=2, n_random=1)
    else:
        summary = explain_run(run, cfg.data.root, ids, out, methods=("gradcam", "tokens", "modality"),
                              ig_steps=2, faithfulness_steps=2, n_random=1)
        assert [s["id"] for s in summary["samples"]] == ids and (out / "index.html").exists()


def _check_selection_names(name: str, run: Path, scored: dict) -> None:
    """Issue 26: no number computed on the split that chose the model is reported without a
    `selection_` name, in any metrics JSON of the run or in `evaluate` of its validation part, and
    each file's protocol (selection_split, reported_split) agrees with its names; report.html
    heads that split selection_val."""
    docs = {path.stem: json.loads(path.read_text()) for path in sorted((run / "metrics").glob("*.json"))}
    train = docs.pop("train", {})
    assert all(k.startswith("train/") for k in train.get("metrics", {})), f"{name}: train.json holds {train['metrics']}"
    for role, doc in docs.items():
        assert not check_selection_names(doc, role), f"{name} {role}.json: {check_selection_names(doc, role)}"
    assert not check_selection_names(scored), f"{name} evaluate: {check_selection_names(scored)}"
    if (run / "checkpoints" / "best.ckpt").exists():  # validation chose the epoch: val.json is a selection file
        assert docs["val"]["protocol"]["selection_split"] == "val", name
        assert docs["val"]["protocol"]["reported_is_selection_split"] is True, name
        assert "<h2>selection_val" in (run / "report.html").read_text(encoding="utf-8"), name


@pytest.mark.parametrize("name", TASKS)
def test_task_instruction_records_have_the_chat_shape(name: str, tmp_path: Path, monkeypatch) -> None:
    """`Task.instruction_records`: {"id", "image": path, "messages": system/user/assistant} per
    sample of the task's tiny data, or a clear error where the task has no instruction form."""
    from medmm.data import load_dataset
    from medmm.errors import MedmmError

    monkeypatch.chdir(REPO)
    cfg = load_tiny(name, tmp_path)
    if not Path(cfg.data.root).exists():
        pytest.skip(f"{name}: its tiny data {cfg.data.root} is not here")
    split = cfg.data.train_split if cfg.data.split == "official" else (cfg.data.source_splits or ["train"])[0]
    samples = load_dataset(cfg.data.dataset, cfg.data.root, split).samples[:4]
    cls = get_task_class(name)
    task = cls.from_config(cfg.model)
    if cls.instruction_records is Task.instruction_records:
        with pytest.raises(MedmmError, match="instruction data"):
            task.instruction_records(samples)
        return
    records = task.instruction_records(samples)
    assert records and len(records) <= len(samples)
    by_id = {str(s.id): s for s in samples}
    for rec in records:
        assert set(rec) == {"id", "image", "messages"} and rec["id"] in by_id
        assert rec["image"] == by_id[rec["id"]].images[0].path and Path(rec["image"]).is_file()
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in rec["messages"])
    json.dumps(records)  # plain JSON, as the generative-model task reads it
