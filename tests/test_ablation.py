"""Fusion ablation runner: tabulation, paired tests, files, and a tiny end-to-end run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medmm import ablation as A
from medmm.errors import MedmmError

REPO = Path(__file__).resolve().parents[1]


def _per(n=40, seed=0):
    """Fake per-variant predictions on one test set: 'late' is perfect, 'text_only' is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    vy = rng.integers(0, 3, 30)
    onehot = np.eye(3)[y]
    noise = rng.dirichlet([1, 1, 1], n)

    def entry(p, vp, seed_vals):
        return {"ids": [str(i) for i in range(n)], "groups": [f"g{i // 2}" for i in range(n)], "y": y,
                "classes": ["a", "b", "c"], "vy": vy, "probs": p, "val_probs": vp,
                "seed_metrics": [A.all_metrics(y, p)] * seed_vals}

    good_val = np.eye(3)[vy] * 0.8 + 0.2 / 3
    return {
        "image_only": entry(0.25 * onehot + 0.75 * noise, good_val, 2),
        "text_only": entry(noise, rng.dirichlet([1, 1, 1], 30), 2),
        "late": entry(0.9 * onehot + 0.1 * noise, good_val, 2),
    }


def test_tabulate_picks_baseline_on_validation_and_tests_against_it():
    per = _per()
    t = A._tabulate(per, ["image_only", "text_only", "late"], [0, 1], "auroc_macro", n_resamples=60)
    assert t.baseline == "image_only"  # best unimodal by VALIDATION metric
    late, text = t.row("late"), t.row("text_only")
    assert late["difference"] > 0 and late["p_bootstrap"] < 0.05 and late["p_randomisation"] < 0.05
    assert text["difference"] < 0 and text["p_randomisation"] < 0.05
    base = t.row("image_only")
    assert base["p_bootstrap"] is None and base["difference"] == 0.0
    for r in t.rows:
        assert r["auroc_macro_low"] <= r["auroc_macro"] <= r["auroc_macro_high"]
        assert r["auroc_macro_seed_sd"] == pytest.approx(0.0)
    assert "**image_only** (baseline)" in t.markdown and "p (randomisation)" in t.markdown


def test_write_outputs_table_csv_plot(tmp_path):
    per = _per()
    fus = ["image_only", "text_only", "late"]
    t = A._tabulate(per, fus, [0], "f1_macro", n_resamples=50)
    A._write(t, tmp_path, "cfg.yaml", fus, [0], ["trainer.max_epochs=1"], True, per)
    with open(tmp_path / "table.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["fusion"] for r in rows] == fus
    assert (tmp_path / "ablation.png").stat().st_size > 1000
    assert "medmm ablate cfg.yaml trainer.max_epochs=1 --fusion image_only,text_only,late" in (tmp_path / "command.txt").read_text()


def test_metric_helpers():
    y = np.array([0, 1, 2, 2])
    p = np.eye(3)[[0, 1, 2, 1]].astype(float)
    m = A.all_metrics(y, p)
    assert m["accuracy"] == 0.75 and m["auroc_macro"] < 1.0
    assert np.isnan(A.all_metrics(np.zeros(3, int), np.ones((3, 2)) / 2)["auroc_macro"])
    with pytest.raises(MedmmError):
        A.metric_value("nope", y, p)


def test_run_ablation_rejects_bad_requests(tmp_path):
    with pytest.raises(MedmmError, match="unimodal baseline"):
        A.run_ablation(REPO / "configs/diagnosis/vqa_rad_organ.yaml", ["late", "gated"], 1, tmp_path)
    with pytest.raises(MedmmError, match="primary"):
        A.run_ablation(REPO / "configs/diagnosis/vqa_rad_organ.yaml", ["image_only"], 1, tmp_path, primary="x")


def test_run_ablation_end_to_end_on_bundled_sample(tmp_path, monkeypatch):
    from medmm.data.bundled import vqa_rad_sample_root

    monkeypatch.chdir(REPO)
    over = [f"data.root={vqa_rad_sample_root()}", "trainer.max_steps=2", "trainer.max_epochs=1", "trainer.batch_size=8",
            "data.max_samples=24", "model.image.size=32", "model.dim=32", "trainer.progress_bar=false",
            "model.text.encoder_kwargs={dim: 32, num_layers: 1, num_heads: 2, vocab_size: 300}"]
    t = A.run_ablation(REPO / "configs/diagnosis/vqa_rad_organ.yaml", ["image_only", "text_only", "late"], 1,
                       tmp_path, over, n_resamples=30)
    assert t.baseline in ("image_only", "text_only")
    assert [r["fusion"] for r in t.rows] == ["image_only", "text_only", "late"]
    assert all(Path(p).exists() for p in t.files.values())
    assert (tmp_path / "runs" / "late_s0" / "predictions" / "test.jsonl").exists()
    # rerunning reuses finished runs (no retraining) and gives the same table
    t2 = A.run_ablation(REPO / "configs/diagnosis/vqa_rad_organ.yaml", ["image_only", "text_only", "late"], 1,
                        tmp_path, over, n_resamples=30)
    assert t2.rows == t.rows


def test_cli_ablate_help():
    from typer.testing import CliRunner

    from medmm.cli import app

    res = CliRunner().invoke(app, ["ablate", "--help"])
    assert res.exit_code == 0 and "--fusion" in res.output and "--seeds" in res.output
