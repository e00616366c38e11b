"""What `medmm train` prints: Lightning's own messages but not its litlogger advert, no LeafSpec
FutureWarning, and the final metrics as a short table (not a JSON line with 17 digits)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")

from engine_toy import TOY_CONFIG, make_toy_root


def test_train_output_is_quiet_and_tabular(tmp_path):
    root = make_toy_root(tmp_path / "data", {"train": 24, "val": 8, "test": 8})
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(TOY_CONFIG.format(root=root))
    tests = Path(__file__).parent
    env = {**os.environ, "MEDMM_PLUGINS": "engine_toy", "COLUMNS": "120",
           "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    code = "from medmm.cli import app; app()"
    res = subprocess.run([sys.executable, "-c", code, "train", str(cfg), "trainer.max_epochs=1", "--out", str(tmp_path / "run")],
                         check=False, capture_output=True, text=True, env=env, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "GPU available" in out  # Lightning's other messages still arrive: the filter is narrow
    assert "litlogger" not in out and "Tip:" not in out
    assert "LeafSpec" not in out and "FutureWarning" not in out
    # a table with the test split's n, values rounded to 4 significant digits
    assert re.search(r"test: n = 8", out) and "metric" in out and "95% CI" in out
    assert not re.search(r"\d\.\d{8,}", out), out
