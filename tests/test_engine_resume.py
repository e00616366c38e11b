"""SIGKILL a training run mid-epoch, rerun it: it resumes from last.ckpt and ends exactly like
an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from engine_toy import TOY_CONFIG, make_toy_root  # noqa: E402
from medmm.engine import load_config  # noqa: E402
from medmm.engine.api import train  # noqa: E402

HERE = Path(__file__).resolve().parent
OVERRIDES = ["trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=2", "model.step_sleep=0.15", "model.dropout=0.2"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def test_crash_mid_epoch_then_resume_in_process(tmp_path, monkeypatch):
    """Fast variant (default run): an exception at step 5 instead of SIGKILL, same process."""
    root = make_toy_root(tmp_path / "data", {"train": 48, "val": 16, "test": 16})
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    overrides = ["trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=2", "model.dropout=0.2"]
    monkeypatch.setenv("MEDMM_TOY_CRASH_AT_CALL", "5")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(load_config(cfg_path, overrides), tmp_path / "crashed")
    ckpt = torch.load(tmp_path / "crashed/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4  # mid-epoch: 6 steps per epoch
    monkeypatch.delenv("MEDMM_TOY_CRASH_AT_CALL")
    resumed = train(load_config(cfg_path, overrides), tmp_path / "crashed")
    straight = train(load_config(cfg_path, overrides), tmp_path / "straight")
    assert resumed["test"] == straight["test"]
    # The log keeps the rows from before the crash and holds each row once (the epoch mean
    # of the resumed epoch included), as the uninterrupted run's does.
    log = "logs/metrics.csv"
    assert (tmp_path / "crashed" / log).read_text() == (tmp_path / "straight" / log).read_text()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    root = make_toy_root(tmp_path / "data", {"train": 64, "val": 16, "test": 16})
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    run = tmp_path / "killed"
    cmd = [sys.executable, str(HERE / "engine_toy.py"), str(cfg_path), str(run), *OVERRIDES]

    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed:\n" + proc.stdout.read()
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics" / "test.json").exists()
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step < 8 and step % 8 != 0, f"checkpoint at step {step} is not mid-epoch (8 steps per epoch)"

    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr

    straight = train(load_config(cfg_path, OVERRIDES), tmp_path / "straight")
    killed_then_resumed = json.loads((run / "metrics" / "test.json").read_text())["metrics"]
    assert killed_then_resumed == straight["test"]
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == 16


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize(("crash_at", "ckpt_step"), [(9, 8), (7, 6)], ids=["mid-epoch", "epoch-end"])
def test_crash_in_a_later_epoch_then_resume_with_loader_workers(tmp_path, monkeypatch, workers, crash_at, ckpt_step):
    """Resume in epoch 1 (not 0), from a mid-epoch or an epoch-end checkpoint, with and without
    loader workers: a worker prefetches at the moment Lightning creates the loader iterator,
    before it restores its progress counters, so the sampler must get the position (epoch 1,
    batches done) from the checkpoint, not from set_epoch or the trainer. (With a worker, a
    resume from epoch 0's end trained epoch 1 in epoch 0's order.)"""
    root = make_toy_root(tmp_path / "data", {"train": 48, "val": 16, "test": 16})
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    overrides = ["trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=2", "model.dropout=0.2",
                 f"trainer.num_workers={workers}"]
    monkeypatch.setenv("MEDMM_TOY_CRASH_AT_CALL", str(crash_at))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(load_config(cfg_path, overrides), tmp_path / "crashed")
    ckpt = torch.load(tmp_path / "crashed/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == ckpt_step  # six steps per epoch
    monkeypatch.delenv("MEDMM_TOY_CRASH_AT_CALL")
    resumed = train(load_config(cfg_path, overrides), tmp_path / "crashed")
    straight = train(load_config(cfg_path, overrides), tmp_path / "straight")
    assert resumed["test"] == straight["test"]
    log = "logs/metrics.csv"
    assert (tmp_path / "crashed" / log).read_text() == (tmp_path / "straight" / log).read_text()


def _tensorboard_scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a scalar as TensorBoard shows it (orphaned events after a purge hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "logs" / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.mark.parametrize("crash_at", [6, 7])
def test_resumed_run_shows_each_step_once_in_tensorboard(tmp_path, monkeypatch, crash_at):
    """Crash at call 6: step 5 is logged after the mid-epoch step-4 checkpoint and again on resume
    (must be shown once); crash at call 7 (first step of epoch 2): the resume starts from the
    end-of-epoch checkpoint at step 6, and the epoch's validation and means logged before it must
    not be hidden. Either way TensorBoard shows what the uninterrupted run shows."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = make_toy_root(tmp_path / "data", {"train": 48, "val": 16, "test": 16})
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    overrides = ["trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=4", "trainer.log_every_n_steps=1"]
    monkeypatch.setenv("MEDMM_TOY_CRASH_AT_CALL", str(crash_at))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(load_config(cfg_path, overrides), tmp_path / "crashed")
    ckpt = torch.load(tmp_path / "crashed/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == {6: 4, 7: 6}[crash_at]  # mid-epoch / end of epoch 1 (6 steps per epoch)
    monkeypatch.delenv("MEDMM_TOY_CRASH_AT_CALL")
    train(load_config(cfg_path, overrides), tmp_path / "crashed")
    train(load_config(cfg_path, overrides), tmp_path / "straight")
    tags = EventAccumulator(str(tmp_path / "straight" / "logs" / "tensorboard")).Reload().Tags()["scalars"]
    assert {"train/loss_step", "train/loss_epoch", "epoch"} <= set(tags)
    steps = [s for s, _ in _tensorboard_scalars(tmp_path / "crashed", "train/loss_step")]
    assert steps == sorted(set(steps)), "a step is shown twice"
    for tag in tags:  # ("epoch" is logged by the step rows and the epoch-end rows: some steps hold it twice in both runs)
        shown = _tensorboard_scalars(tmp_path / "crashed", tag)
        expected = _tensorboard_scalars(tmp_path / "straight", tag)
        assert [s for s, _ in shown] == [s for s, _ in expected], tag
        assert [v for _, v in shown] == pytest.approx([v for _, v in expected], rel=1e-6), tag
