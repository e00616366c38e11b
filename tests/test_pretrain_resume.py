"""A pretrain_image run resumes like every engine run: interrupted after its first epoch (an
exception, no kill), rerun in the same directory, it ends exactly like the uninterrupted run;
and a finished 1-epoch run can be extended to 2 epochs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medmm.engine import load_config, train
from pretrain_fixtures import make_root, write_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path: Path, overrides: list[str]):
    root = tmp_path / "data"
    if not root.exists():
        make_root(root)
    return load_config(write_config(root, tmp_path / "pretrain.yaml"), overrides, validate_model=True)


def test_interrupted_after_one_epoch_then_resumed_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    from medmm.tasks.pretrain.task import PretrainImageTask

    overrides = ["model.reconstruction.weight=1"]  # the noise draws must continue too
    straight = train(_config(tmp_path, overrides), tmp_path / "straight")
    steps_per_epoch = torch.load(tmp_path / "straight/checkpoints/last.ckpt", map_location="cpu",
                                 weights_only=True)["global_step"] // 2
    real = PretrainImageTask.training_step
    calls = {"n": 0}

    def crash_in_epoch_two(self, batch):
        if self.training:
            calls["n"] += 1
            if calls["n"] == steps_per_epoch + 1:
                raise RuntimeError("simulated crash")
        return real(self, batch)

    monkeypatch.setattr(PretrainImageTask, "training_step", crash_in_epoch_two)
    run = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_config(tmp_path, overrides), run)
    assert torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 0
    monkeypatch.setattr(PretrainImageTask, "training_step", real)
    resumed = train(_config(tmp_path, overrides), run)
    assert resumed == straight
    a = torch.load(tmp_path / "straight/model.pt", map_location="cpu", weights_only=True)
    b = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = "logs/metrics.csv"
    assert (run / log).read_text() == (tmp_path / "straight" / log).read_text()


def test_a_finished_one_epoch_run_extends_to_two(tmp_path):
    run = tmp_path / "run"
    train(_config(tmp_path, ["trainer.max_epochs=1"]), run)
    one = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    metrics = train(_config(tmp_path, ["trainer.max_epochs=2"]), run)
    two = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert (one["epoch"], two["epoch"]) == (0, 1) and two["global_step"] == 2 * one["global_step"]
    from medmm.engine.selection import plain_names

    assert "acc_modality" in plain_names(metrics["val"]) and load_config(run / "config.yaml").trainer.max_epochs == 2
