"""Training over packed shards across processes: 2-rank DDP (gloo) sees every sample exactly once
per epoch, and a run SIGKILLed mid-epoch resumes to the same final weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

import engine_toy  # noqa: E402
import shards_toy  # noqa: E402
from medmm.data.shards.pack import PackSettings, pack_dataset  # noqa: E402
from medmm.data.shards.read import load_split  # noqa: E402

HERE = Path(__file__).resolve().parent


def _packed(tmp_path: Path, n_train: int) -> Path:
    root = engine_toy.make_toy_root(tmp_path / "toy", {"train": n_train, "val": 8, "test": 8})
    pack_dataset("toy_engine", root, tmp_path / "packed", PackSettings(size=8, channels=1, shard_size=7))
    return tmp_path / "packed"


def _cmd(cfg: Path, run: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(HERE / "shards_toy.py"), str(cfg), str(run), *overrides]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env.pop("MASTER_PORT", None)
    env.update(extra)
    return env


@pytest.mark.slow
def test_ddp_two_ranks_read_every_shard_sample_once_per_epoch(tmp_path):
    packed = _packed(tmp_path, 48)  # 48 = 6 global batches of 2 x 4: no padding
    cfg = tmp_path / "c.yaml"
    cfg.write_text(shards_toy.SHARDS_CONFIG.format(root=packed))
    seen = tmp_path / "seen"
    seen.mkdir()
    res = subprocess.run(
        _cmd(cfg, tmp_path / "run", "trainer.max_epochs=2", "trainer.batch_size=4", "trainer.devices=2", "trainer.strategy=ddp", "trainer.num_workers=1"),
        env=_env(MEDMM_SEEN_DIR=str(seen)), capture_output=True, text=True, timeout=600, check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ids = sorted(s.id for s in load_split(packed, "train"))
    ranks = [(seen / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 48  # 24 per rank per epoch, 2 epochs
    for epoch in (0, 1):
        parts = [r[epoch * 24 : (epoch + 1) * 24] for r in ranks]
        assert not set(parts[0]) & set(parts[1])  # disjoint across ranks
        assert sorted(parts[0] + parts[1]) == ids  # together: every sample exactly once
    assert ranks[0][:24] != ranks[0][24:]  # the order changes with the epoch


@pytest.mark.slow
def test_sigkill_mid_epoch_over_shards_resumes_to_the_same_weights(tmp_path):
    packed = _packed(tmp_path, 64)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(shards_toy.SHARDS_CONFIG.format(root=packed))
    overrides = ["trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=2", "model.step_sleep=0.15", "model.dropout=0.2", f"trainer.num_workers={os.environ.get('MEDMM_TEST_WORKERS', '0')}"]
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(cfg, run, *overrides), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed:\n" + proc.stdout.read()
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step < 8, f"checkpoint at step {step} is not mid-epoch 1 (8 steps per epoch)"

    resumed = subprocess.run(_cmd(cfg, run, *overrides), env=_env(), capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr
    straight = subprocess.run(_cmd(cfg, tmp_path / "straight", *overrides), env=_env(), capture_output=True, text=True, timeout=600, check=False)
    assert straight.returncode == 0, straight.stderr[-3000:]

    a = torch.load(last, map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert a["global_step"] == b["global_step"] == 16
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
