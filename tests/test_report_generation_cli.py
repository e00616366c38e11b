"""Decoding flags of `medmm predict` / `medmm evaluate` (model.* overrides of a trained run), and
their library form `report_decoding.generate_reports`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from medmm.cli import app  # noqa: E402
from medmm.data import load_dataset  # noqa: E402
from medmm.engine import rundir as rd  # noqa: E402
from medmm.engine.api import build_task, load_run  # noqa: E402
from medmm.engine.config import ConfigError, dump_config, load_config  # noqa: E402
from medmm.engine.data import load_splits  # noqa: E402
from medmm.engine.provenance import task_state_record  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402
from medmm.tasks.report.decoding import generate_reports  # noqa: E402

ROOT = Path(__file__).parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "iu_xray_tiny"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory in the engine's format, with briefly trained weights (no Lightning)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "report" / "iu_xray.yaml", [
        f"data.root={FIXTURE}", "model.dim=32", "model.decoder.layers=1", "model.decoder.heads=2",
        "model.image.encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}", "model.bootstrap_resamples=0",
        "model.decoder.min_word_freq=1", "model.findings.min_positive=1", "model.decoding.max_length=12",
        "model.retrieval.rag_k=2", "model.decoding.beam_size=1"])
    train = load_splits(cfg.data, cfg.seed)["train"].samples
    torch.manual_seed(0)
    task = build_task(cfg)
    task.setup(train)
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    task.train()
    batch = task.collate(train)
    for _ in range(15):
        opt.zero_grad()
        task.training_step(batch)["loss"].backward()
        opt.step()
    d = tmp_path_factory.mktemp("run")
    dump_config(cfg, d / rd.CONFIG)
    torch.save(task.state_dict(), d / rd.WEIGHTS)
    rd.write_json(d / rd.TASK_STATE, task_state_record(task, cfg, train, weights_sha256=rd.sha256_file(d / rd.WEIGHTS)))
    yield d
    torch.set_num_threads(n)


def test_load_run_applies_model_overrides_only(run_dir):
    _cfg, task = load_run(run_dir, ["model.decoding.beam_size=3", "model.mbr.references=4"])
    assert task.generation.beam_size == 3 and task.config.mbr.references == 4
    assert load_run(run_dir)[1].generation.beam_size == 1  # the saved run is unchanged
    with pytest.raises(ConfigError):
        load_run(run_dir, ["trainer.max_epochs=3"])
    with pytest.raises(ConfigError, match=r"model\.beam_size: moved to model\.decoding\.beam_size"):
        load_run(run_dir, ["model.beam_size=3"])  # the flat key of earlier versions
    with pytest.raises(RuntimeError):  # an architecture change fails the strict weight load
        load_run(run_dir, ["model.dim=64"])


def test_predict_and_evaluate_decoding_flags(run_dir, tmp_path):
    runner = CliRunner()
    base = ["--data", str(FIXTURE), "--split", "test"]
    res = runner.invoke(app, ["predict", str(run_dir), *base, "--out", str(tmp_path / "c.jsonl"), "--beam-size", "3",
                              "--no-repeat-ngram", "2", "--max-length", "8", "--mbr-references", "3",
                              "--set", "mbr.candidates=3", "--set", "model.mbr.retrieved=1"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    for r in recs:
        assert r["decoding"]["method"] == "consensus" and r["decoding"]["n_pseudo_references"] == 3
        assert r["decoding"]["n_candidates"] <= 3 + 1
        assert len(r["beam_prediction"].split()) <= 8 + 2  # max_length 8 tokens (punctuation attached)
        assert r["sentences"] and "retrieved" in r  # provenance kept
    ev = runner.invoke(app, ["evaluate", str(run_dir), *base, "--out", str(tmp_path / "m.json"), "--beam-size", "2"])
    assert ev.exit_code == 0, ev.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["provenance"]["model_overrides"] == ["model.decoding.beam_size=2"]
    bad = runner.invoke(app, ["predict", str(run_dir), *base, "--out", str(tmp_path / "x.jsonl"), "--set", "no_such_option=1"])
    assert bad.exit_code != 0


def test_generate_reports_decodes_a_saved_run_with_overrides(run_dir, monkeypatch):
    from medmm.engine import api

    samples = load_dataset("iu_xray", FIXTURE, "test").samples
    recs = generate_reports(run_dir, samples, beam_size=2, mbr_references=3)
    cfg, task = api.load_run(run_dir)
    task.set_decoding(beam_size=2, mbr_references=3)
    want, _ = api.run_inference(task, samples, cfg, with_references=False)
    assert recs == want and [r["id"] for r in recs] == [s.id for s in samples]
    assert all(r["decoding"]["n_pseudo_references"] == 3 for r in recs)
    assert "decoding" not in generate_reports(run_dir, samples)[0]  # the run's own decoding
    monkeypatch.setattr(api, "load_run", lambda d: (SimpleNamespace(task="vqa"), object()))
    with pytest.raises(MedmmError, match="not a report_generation run"):
        generate_reports(run_dir, samples)
