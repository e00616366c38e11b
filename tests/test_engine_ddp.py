"""A 2-process DDP run on CPU (gloo) matches the 1-process run with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")

from engine_toy import TOY_CONFIG, make_toy_root

HERE = Path(__file__).resolve().parent


def _train(cfg: Path, run: Path, *overrides: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env.pop("MASTER_PORT", None)
    cmd = [sys.executable, str(HERE / "engine_toy.py"), str(cfg), str(run), *overrides]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = json.loads((run / "metrics" / "test.json").read_text())
    out["log"] = res.stdout + res.stderr
    return out


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    # 48 train samples, global batch 8: every global batch splits evenly over 2 ranks.
    root = make_toy_root(tmp_path / "data", {"train": 48, "val": 15, "test": 16}, bad={"val": 1})
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(TOY_CONFIG.format(root=root))
    common = ["trainer.max_epochs=2", "trainer.num_threads=1"]
    one = _train(cfg, tmp_path / "one", *common, "trainer.batch_size=8")
    two = _train(cfg, tmp_path / "two", *common, "trainer.batch_size=4", "trainer.devices=2", "trainer.strategy=ddp")
    assert "MEMBER: 2/2" in two["log"], two["log"][-2000:]
    print("1 process:", one["metrics"]["nll"], one["metrics"]["accuracy"], "2 processes:", two["metrics"]["nll"], two["metrics"]["accuracy"])
    assert two["metrics"]["n"] == one["metrics"]["n"] == 16
    assert two["metrics"]["accuracy"] == pytest.approx(one["metrics"]["accuracy"], abs=1 / 16)
    assert two["metrics"]["nll"] == pytest.approx(one["metrics"]["nll"], rel=1e-3, abs=1e-4)
    # Validation records of both ranks were gathered (15 val samples, one bad).
    val_two = json.loads((tmp_path / "two" / "metrics" / "val.json").read_text())
    assert val_two["metrics"]["selection_n"] == 14 and val_two["provenance"]["n_skipped"] == 1  # val chose the epoch
    logged = (tmp_path / "two" / "logs" / "metrics.csv").read_text()
    assert "val/nll" in logged
