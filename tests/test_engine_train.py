"""The engine end to end on the toy task, in this process: run dir, skipping, evaluate, predict."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lightning")

from engine_toy import TOY_CONFIG, make_toy_root
from medmm.engine import load_config
from medmm.engine.api import evaluate, load_run, predict, train
from medmm.errors import BadInputError, MedmmError


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    root = make_toy_root(tmp / "data", {"train": 48, "val": 16, "test": 16}, bad={"train": 1, "test": 1})
    cfg_path = tmp / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    cfg = load_config(cfg_path, ["trainer.max_epochs=2"])
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    metrics = train(cfg, tmp / "run")  # the config sets num_threads: 1, deterministic: true ...
    # ... and train() puts the caller's settings back
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, det)
    return tmp, root, cfg, metrics


def test_run_directory_contents(toy_run):
    tmp, _root, cfg, metrics = toy_run
    run = tmp / "run"
    for rel in ["config.yaml", "environment.json", "task_state.json", "model.pt", "checkpoints/last.ckpt",
                "checkpoints/best.ckpt", "metrics/val.json", "metrics/test.json", "metrics/train.json",
                "predictions/test.jsonl", "logs/metrics.csv", "report.html", "plots/loss.png",
                "plots/confusion_test.png"]:
        assert (run / rel).is_file(), rel
    assert not list(run.rglob(".*.tmp-*")), "temporary files left behind"
    env = json.loads((run / "environment.json").read_text())
    assert env["seed"] == cfg.seed and env["torch"] and env["lightning"]
    state = json.loads((run / "task_state.json").read_text())
    assert state["state"]["labels"] == ["bright", "dark"] and len(state["sha256"]) == 64
    assert load_config(run / "config.yaml") == cfg  # resolved config reads back identically
    # The toy classes are separable: a working loop must learn them in 2 epochs.
    assert metrics["test"]["accuracy"] >= 0.85
    assert set(metrics) == {"val", "test"}


def test_bad_samples_are_skipped_and_counted(toy_run):
    tmp, *_ = toy_run
    train_prov = json.loads((tmp / "run/metrics/train.json").read_text())["provenance"]
    assert train_prov["n_skipped"] == 1 and "train-0" in train_prov["skipped"][0]
    test = json.loads((tmp / "run/metrics/test.json").read_text())
    assert test["provenance"]["n_skipped"] == 1 and test["provenance"]["n_samples"] == 15
    ids = [json.loads(line)["id"] for line in (tmp / "run/predictions/test.jsonl").read_text().splitlines()]
    assert len(ids) == 15 and "test-0" not in ids and len(set(ids)) == 15


def test_evaluate_on_a_root_holding_only_test(toy_run, tmp_path):
    tmp, root, _cfg, metrics = toy_run
    only_test = tmp_path / "only_test"
    only_test.mkdir()
    (only_test / "test.npz").write_bytes((root / "test.npz").read_bytes())
    out = tmp_path / "m.json"
    result = evaluate(tmp / "run", only_test, split="test", out=out)
    assert result["metrics"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert result["metrics"]["nll"] == pytest.approx(metrics["test"]["nll"], rel=1e-5)
    assert json.loads(out.read_text())["provenance"]["n_samples"] == 15
    with pytest.raises(MedmmError, match="no samples in split 'val'"):
        evaluate(tmp / "run", only_test, split="val")


def test_predict_and_load_run(toy_run, tmp_path):
    tmp, root, *_ = toy_run
    out = tmp_path / "p.jsonl"
    records = predict(tmp / "run", root, split="val", out=out)
    assert len(records) == 16 and len(out.read_text().splitlines()) == 16
    _cfg, task = load_run(tmp / "run")
    assert task.labels == ["bright", "dark"] and not task.training


def test_corrupt_weights_are_refused(toy_run, tmp_path):
    import shutil

    tmp, *_ = toy_run
    copy = tmp_path / "run"
    shutil.copytree(tmp / "run", copy)
    with open(copy / "model.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(BadInputError, match="sha256"):
        load_run(copy)
    with pytest.raises(BadInputError, match="not a medmm run directory"):
        load_run(tmp_path)


def test_same_seed_same_metrics_and_bf16_channels_last(toy_run, tmp_path):
    tmp, _root, _cfg, metrics = toy_run
    cfg_path = tmp / "toy.yaml"
    again = train(load_config(cfg_path, ["trainer.max_epochs=2"]), tmp_path / "again")
    assert again["test"] == metrics["test"]
    other = train(load_config(cfg_path, ["trainer.max_epochs=2", "seed=1"]), tmp_path / "seed1")
    assert other["test"]["nll"] != metrics["test"]["nll"]
    fast = train(
        load_config(cfg_path, ["trainer.max_epochs=1", "trainer.precision=bf16-mixed", "trainer.channels_last=true",
                               "trainer.accumulate_grad_batches=2", "trainer.early_stopping_patience=1"]),
        tmp_path / "bf16",
    )
    assert 0.0 <= fast["test"]["accuracy"] <= 1.0 and fast["test"]["n"] == 15


def test_resume_with_another_config_is_refused(toy_run):
    tmp, *_ = toy_run
    with pytest.raises(MedmmError, match=r"different config \(model.hidden, trainer.lr\)"):
        train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2", "trainer.lr=0.1", "model.hidden=4"]), tmp / "run")


def test_unlogged_monitor_fails_before_training(toy_run, tmp_path):
    from medmm.engine.config import ConfigError

    tmp, *_ = toy_run
    with pytest.raises(ConfigError, match=r"trainer.monitor: 'val/auroc' is never logged; logged values: .*val/accuracy"):
        train(load_config(tmp / "toy.yaml", ["trainer.monitor=val/auroc"]), tmp_path / "r")
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_calibrate_hook_updates_saved_state(toy_run, tmp_path):
    """A task overriding calibrate() is calibrated on val with the best weights; state is saved."""
    from engine_toy import ToyTask
    from medmm.engine.task import _TASKS, register_task

    if "toy_engine_calibrated" not in _TASKS:

        class Calibrated(ToyTask):
            def calibrate(self, val_records):
                self.threshold = sum(r["prob"][0] for r in val_records) / len(val_records)
                return True

            def state(self):
                return {**super().state(), "threshold": getattr(self, "threshold", None)}

        register_task("toy_engine_calibrated")(Calibrated)
    tmp, *_ = toy_run
    run = tmp_path / "cal"
    train(load_config(tmp / "toy.yaml", ["task=toy_engine_calibrated", "trainer.max_epochs=1"]), run)
    state = json.loads((run / "task_state.json").read_text())["state"]
    assert 0.0 < state["threshold"] < 1.0


def test_early_stopping_stops_when_monitor_does_not_improve(toy_run, tmp_path):
    import torch

    tmp, *_ = toy_run
    run = tmp_path / "es"
    # lr 0: the monitored val/nll never improves, so patience 1 stops after epoch 2 of 6.
    train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=6", "trainer.lr=0.0", "trainer.early_stopping_patience=1"]), run)
    last = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1  # epochs 0 and 1 ran


def test_resume_may_extend_training(toy_run, tmp_path):
    import shutil

    import torch

    tmp, *_ = toy_run
    run = tmp_path / "run"
    shutil.copytree(tmp / "run", run)
    train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=3"]), run)
    last = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 3 * 6  # one more epoch of 6 steps
    assert load_config(run / "config.yaml").trainer.max_epochs == 3


def test_run_without_validation_keeps_last_weights(toy_run, tmp_path):
    tmp, *_ = toy_run
    run = tmp_path / "noval"
    metrics = train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=1", "data.val_split=null"]), run)
    assert set(metrics) == {"test"} and metrics["test"]["n"] == 15
    assert (run / "model.pt").exists() and not (run / "checkpoints/best.ckpt").exists()
