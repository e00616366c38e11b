"""`evaluate` on a run's own parts: a grouped run's val/test by name, and a loud warning when the
scored samples are ones the run trained on (toy task, a few seconds)."""

from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

pytest.importorskip("lightning")

from engine_toy import TOY_CONFIG, make_toy_root
from medmm.engine import load_config
from medmm.engine.api import evaluate, train
from medmm.engine.eval_split import TrainingDataWarning
from medmm.errors import MedmmError

GROUPED = ["data.split=grouped", "data.group_by=id", "data.source_splits=[train]",
           "data.fractions={train: 0.6, val: 0.2, test: 0.2}", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grouped")
    root = make_toy_root(tmp / "data", {"train": 40})
    cfg_path = tmp / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    metrics = train(load_config(cfg_path, GROUPED), tmp / "run")
    return tmp / "run", root, metrics


@pytest.mark.parametrize("split", ["val", "test"])
def test_the_runs_own_held_out_parts_by_name(grouped_run, split):
    run, _root, metrics = grouped_run
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingDataWarning)  # held-out parts must not warn
        result = evaluate(run, split=split)
    # exactly the samples train() scored as that part
    # the val part chose the epoch: there every number is selection_* (issue 26), in train's and evaluate's
    p = "selection_" if split == "val" else ""
    assert result["metrics"][p + "n"] == metrics[split][p + "n"] == 8
    assert result["metrics"][p + "nll"] == pytest.approx(metrics[split][p + "nll"], rel=1e-5)
    prov = result["provenance"]
    assert prov["n_trained_on"] == 0 and f"own {split!r} part" in prov["split_source"]
    assert "warning" not in result


def test_scoring_training_samples_warns_in_python_and_in_the_json(grouped_run, tmp_path):
    run, root, _ = grouped_run
    out = tmp_path / "train.json"
    with pytest.warns(TrainingDataWarning, match="24 of 24 scored samples are in this run's TRAINING part"):
        evaluate(run, split="train", out=out)
    saved = json.loads(out.read_text())
    assert "not held-out" in saved["warning"] and saved["provenance"]["n_trained_on"] == 24
    # the same root given explicitly is still the run's own data
    with pytest.warns(TrainingDataWarning):
        evaluate(run, root, split="train")


@pytest.mark.parametrize("given_root", [False, True])
def test_evaluate_rebuilds_the_runs_split_once(grouped_run, monkeypatch, given_root):
    """The run's own parts serve both the choice of samples and the protocol (training overlap,
    floors): `load_splits` runs once per evaluation, for the run's own part or a published split."""
    from medmm.engine import data

    run, root, _ = grouped_run
    calls = []  # the run's grouped split reads its one source split ("train") once per rebuild
    real = data.load_dataset
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    if given_root:  # the published "train" split: all 40 records, 24 of them in the run's training part
        with pytest.warns(TrainingDataWarning):
            result = evaluate(run, root, split="train")
    else:
        result = evaluate(run, split="test")
    assert len(calls) == 1
    assert result["protocol"]["evaluated_samples_in_run_training_split"] == (24 if given_root else 0)


def test_an_unknown_part_names_the_parts(grouped_run):
    run, *_ = grouped_run
    with pytest.raises(MedmmError, match=r"neither a part of this run's grouped split \(test, train, val"):
        evaluate(run, split="holdout")


def test_cli_evaluate_without_data(grouped_run, monkeypatch):
    monkeypatch.setenv("MEDMM_PLUGINS", "engine_toy")
    run, *_ = grouped_run
    runner = CliRunner()
    res = runner.invoke(app_(), ["evaluate", str(run), "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "test: n = 8" in res.stdout and "WARNING" not in res.stderr
    assert json.loads((run / "evaluations" / "test.json").read_text())["provenance"]["n_samples"] == 8
    res = runner.invoke(app_(), ["evaluate", str(run), "--split", "train"])
    assert res.exit_code == 0, res.output
    assert "WARNING: 24 of 24 scored samples are in this run's TRAINING part" in res.stderr
    assert "WARNING" not in res.stdout


def app_():
    from medmm.cli import app

    return app


def test_predict_reads_the_runs_own_parts_like_evaluate(grouped_run, tmp_path):
    """`predict` without a root writes records for exactly the samples of the run's part (a grouped
    run's test has no published counterpart), and warns on training samples as `evaluate` does;
    with a root it reads that split as published, as before."""
    from medmm.engine.api import predict

    run, root, _ = grouped_run
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingDataWarning)
        records = predict(run, split="test", out=tmp_path / "test.jsonl")
    trained = [json.loads(line) for line in (run / "predictions" / "test.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in trained) and len(records) == 8
    with pytest.warns(TrainingDataWarning, match="24 of 24 scored samples"):
        predict(run, split="train")
    assert len(predict(run, root, split="train")) == 40  # a root with a published split: all of it, as before
    with pytest.raises(MedmmError, match="read without --data"):
        predict(run, root, split="test")  # not a published split of the toy dataset


def test_cli_predict_without_data(grouped_run, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDMM_PLUGINS", "engine_toy")
    run, *_ = grouped_run
    out = tmp_path / "val.jsonl"
    res = CliRunner().invoke(app_(), ["predict", str(run), "--split", "val", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 8
    res = CliRunner().invoke(app_(), ["predict", str(run), "--split", "train", "--out", str(tmp_path / "train.jsonl")])
    assert res.exit_code == 0, res.output
    assert "WARNING: " in res.stderr and "24 of 24 scored samples are in this run's TRAINING part" in res.stderr
