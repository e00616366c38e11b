"""`medmm train | evaluate | predict | report` on the toy task (registered via MEDMM_PLUGINS)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("lightning")

from engine_toy import TOY_CONFIG, make_toy_root
from medmm.cli import app


def test_cli_train_evaluate_predict_report(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMM_PLUGINS", "engine_toy")
    root = make_toy_root(tmp_path / "data", {"train": 32, "val": 8, "test": 8})
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(TOY_CONFIG.format(root=root))
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg), "trainer.max_epochs=1", "--out", str(run)])
    assert res.exit_code == 0, res.output
    assert "test:" in res.output and (run / "report.html").exists()

    res = runner.invoke(app, ["evaluate", str(run), "--data", str(root), "--split", "val", "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "m.json").read_text())
    # the run's own validation samples chose its epoch: selection numbers (issue 26)
    assert m["provenance"]["split"] == "val" and m["metrics"]["selection_n"] == 8 and "n" not in m["metrics"]

    res = runner.invoke(app, ["predict", str(run), "--data", str(root), "--out", str(tmp_path / "p.jsonl")])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all("id" in json.loads(x) for x in lines)

    (run / "report.html").unlink()
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0 and (run / "report.html").exists()


def test_cli_bad_override_names_the_override_and_failed_train_leaves_no_folder(tmp_path, monkeypatch):
    import subprocess
    import sys

    cfg = tmp_path / "toy.yaml"
    cfg.write_text(TOY_CONFIG.format(root=tmp_path))
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "MEDMM_PLUGINS": "engine_toy", "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}

    def medmm_train(*args):
        cmd = [sys.executable, "-c", "from medmm.cli import main; main()", "train", str(cfg), *args, "--out", str(tmp_path / "r")]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)

    out = medmm_train("trainer.max_epoch=3")
    assert out.returncode == 2
    assert out.stderr.startswith("error: command-line override 'trainer.max_epoch=3': trainer.max_epoch: unknown key "
                                 "(did you mean 'max_epochs'?)")
    assert "Traceback" not in out.stderr and str(cfg) not in out.stderr  # the file is not to blame
    out = medmm_train(f"data.root={tmp_path / 'absent'}")  # fails inside train, after the config
    assert out.returncode == 2 and "does not exist; pass" in out.stderr and "data.root=PATH" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()  # no empty run folder left behind
