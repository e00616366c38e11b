"""20 SIGKILLs at random (seeded) moments of a real training run, some of them while a
checkpoint is being written, each followed by the same command again: the run ends with the
same model.pt, metrics and metrics.csv as an uninterrupted run, and no temporary files.

Real data: the bundled CC0 VQA-RAD sample (configs/vqa/vqa_rad_sample.yaml, shortened).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "vqa" / "vqa_rad_sample.yaml"
KILLS = 20


def _command(run: Path) -> list[str]:
    from medmm.data.bundled import vqa_rad_sample_root

    overrides = [
        f"data.root={vqa_rad_sample_root()}", "data.max_samples=48", "trainer.max_epochs=20", "trainer.batch_size=8",
        "trainer.checkpoint_every_n_steps=1", "trainer.eval_batch_size=48", "trainer.log_every_n_steps=1",
        "model.image.size=32", "model.image.encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}",
        "model.bootstrap_resamples=0",
    ]
    return [sys.executable, "-c", "from medmm.cli import main; main()", "train", str(CONFIG), *overrides, "--out", str(run)]


def _finish(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def _without_clock(obj):
    """Metrics without the wall-clock stamps of their provenance (`created_utc`, `time_utc`)."""
    if isinstance(obj, dict):
        return {k: _without_clock(v) for k, v in obj.items() if not k.endswith("_utc")}
    return obj


def _state(run: Path) -> tuple[dict, dict, str]:
    weights = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    metrics = _without_clock(json.loads((run / "metrics" / "val.json").read_text())["metrics"])
    return weights, metrics, (run / "logs" / "metrics.csv").read_text()


@pytest.mark.slow
def test_twenty_random_kills_then_resume_equal_the_uninterrupted_run(tmp_path):
    rng = random.Random(24)
    killed = tmp_path / "killed"
    cmd = _command(killed)
    last, tmp_ckpt = killed / "checkpoints" / "last.ckpt", killed / "checkpoints" / ".last.ckpt.tmp"
    kills, during_write = 0, 0
    while kills < KILLS:
        before = last.stat().st_mtime_ns if last.exists() else 0
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        # Wait for progress (a new last.ckpt), so every segment trains at least one step ...
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline and (not last.exists() or last.stat().st_mtime_ns == before):
            time.sleep(0.01)
        if proc.poll() is not None:
            break  # finished before this kill: fewer kills than asked (checked below)
        if kills % 4 == 0:  # ... then kill while the next checkpoint is being written ...
            deadline = time.time() + 10
            while proc.poll() is None and not tmp_ckpt.exists() and time.time() < deadline:
                time.sleep(0.0005)
            during_write += tmp_ckpt.exists()
        else:  # ... or at a random moment of the next steps.
            time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            kills += 1
    assert kills == KILLS, f"the run finished after {kills} kills; make it longer"
    assert during_write >= 2, "no kill landed during a checkpoint write"
    _finish(cmd)

    straight = tmp_path / "straight"
    _finish(_command(straight))
    w_killed, m_killed, log_killed = _state(killed)
    w_straight, m_straight, log_straight = _state(straight)
    assert w_killed.keys() == w_straight.keys()
    assert all(torch.equal(w_killed[k], w_straight[k]) for k in w_straight if isinstance(w_straight[k], torch.Tensor))
    assert m_killed == m_straight
    assert not [p for p in killed.rglob("*") if ".tmp" in p.name]
    lost = [r for r in log_straight.splitlines() if r not in log_killed.splitlines()]
    extra = [r for r in log_killed.splitlines() if r not in log_straight.splitlines()]
    assert log_killed == log_straight, (
        f"metrics.csv after kills differs ({len(log_killed.splitlines())} lines, uninterrupted "
        f"{len(log_straight.splitlines())}): lost {lost[:3]}, extra {extra[:3]}"
    )
