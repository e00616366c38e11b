"""Ablation runner: tabulation, paired tests, files, headline units of each task, and `medmm
ablate` end to end on the bundled VQA-RAD sample for diagnosis and VQA (and retrieval, varying
another model key)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medmm import ablation as A
from medmm.errors import MedmmError
from medmm.metrics.headline import Units, mean_units
from medmm.tasks.diagnosis.headline import argmax_headline

REPO = Path(__file__).resolve().parents[1]


def _units(p: np.ndarray, y: np.ndarray) -> Units:
    n = len(y)
    return Units([str(i) for i in range(n)], [f"g{i // 2}" for i in range(n)], (p,), (y,), argmax_headline)


def _per(n=40, seed=0):
    """Fake per-variant predictions on one test set: 'late' is perfect, 'text_only' is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    vy = rng.integers(0, 3, 30)
    onehot = np.eye(3)[y]
    noise = rng.dirichlet([1, 1, 1], n)

    def entry(p, vp, seed_vals):
        test = _units(p, y)
        return {"test": test, "val": _units(vp, vy), "seed_metrics": [test.scores()] * seed_vals}

    good_val = np.eye(3)[vy] * 0.8 + 0.2 / 3
    return {
        "image_only": entry(0.25 * onehot + 0.75 * noise, good_val, 2),
        "text_only": entry(noise, rng.dirichlet([1, 1, 1], 30), 2),
        "late": entry(0.9 * onehot + 0.1 * noise, good_val, 2),
    }


def test_tabulate_picks_baseline_on_validation_and_tests_against_it():
    per = _per()
    t = A._tabulate(per, ["image_only", "text_only", "late"], [0, 1], "auroc_macro_ovr", n_resamples=60)
    assert t.baseline == "image_only"  # best unimodal by VALIDATION metric
    assert t.metrics == ["auroc_macro_ovr", "f1_macro", "balanced_accuracy", "accuracy"]
    late, text = t.row("late"), t.row("text_only")
    assert late["difference"] > 0 and late["p_bootstrap"] < 0.05 and late["p_randomisation"] < 0.05
    assert text["difference"] < 0 and text["p_randomisation"] < 0.05
    base = t.row("image_only")
    assert base["p_bootstrap"] is None and base["difference"] == 0.0
    for r in t.rows:
        assert r["auroc_macro_ovr_low"] <= r["auroc_macro_ovr"] <= r["auroc_macro_ovr_high"]
        assert r["auroc_macro_ovr_seed_sd"] == pytest.approx(0.0)
    assert "**image_only** (baseline)" in t.markdown and "p (randomisation)" in t.markdown
    # the validation score that chose the baseline is a selection number, named so (issue 26)
    assert all("selection_val_auroc_macro_ovr" in r and "val_auroc_macro_ovr" not in r for r in t.rows)
    assert "| selection_val_auroc_macro_ovr |" in t.markdown


def test_min_mode_picks_the_lowest_validation_score():
    per = _per()
    t = A._tabulate(per, ["image_only", "text_only", "late"], [0], "auroc_macro_ovr", n_resamples=20, mode="min")
    assert t.baseline == "text_only" and "lower auroc_macro_ovr is better" in t.markdown


def test_paired_tests_swap_whole_predictions_and_match_the_direct_computation():
    from medmm.metrics.stats import paired_test

    per = _per()
    a, b = per["late"]["test"], per["image_only"]["test"]
    got = A._paired(a, b, "auroc_macro_ovr", 50)
    direct = paired_test(lambda p, y: argmax_headline(p, y)["auroc_macro_ovr"], a.predictions[0], b.predictions[0],
                         a.references[0], n_resamples=50, groups=a.groups)
    assert got == {k: direct[k] for k in got}


def test_seed_ensemble_averages_predictions_of_the_same_units():
    y = np.array([0, 1, 2, 1])
    u1, u2 = _units(np.eye(3)[[0, 1, 2, 2]], y), _units(np.eye(3)[[0, 1, 2, 1]] * 0.5 + 0.1, y)
    mean = mean_units([u1, u2])
    assert np.allclose(mean.predictions[0], (u1.predictions[0] + u2.predictions[0]) / 2)
    with pytest.raises(MedmmError, match="different units"):
        mean_units([u1, _units(u2.predictions[0], np.array([0, 1, 2, 0]))])


def test_write_outputs_table_csv_plot(tmp_path):
    per = _per()
    fus = ["image_only", "text_only", "late"]
    t = A._tabulate(per, fus, [0], "f1_macro", n_resamples=50)
    A._write(t, tmp_path, "cfg.yaml", fus, [0], ["trainer.max_epochs=1"], True, per)
    with open(tmp_path / "table.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["fusion"] for r in rows] == fus and list(rows[0])[4] == "f1_macro"  # the primary's estimate
    assert (tmp_path / "ablation.png").stat().st_size > 1000
    assert "medmm ablate cfg.yaml trainer.max_epochs=1 --fusion image_only,text_only,late" in (tmp_path / "command.txt").read_text()


def _dx_records(n=30, seed=0):
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    out = []
    for i in range(n):
        p = rng.dirichlet([1, 1, 1])
        out.append({"id": f"s{i}", "group": f"p{i // 3}", "reference": classes[i % 3],
                    "prediction": {"label": classes[int(p.argmax())], "probs": dict(zip(classes, p.tolist(), strict=True))}})
    return out


def test_each_task_headline_units_give_the_numbers_of_its_compute_metrics():
    """The units resample exactly what the task reports (diagnosis, VQA, retrieval)."""
    from medmm.engine.task import get_task_class
    from medmm.tasks.diagnosis.task import diagnosis_metrics
    from medmm.tasks.retrieval.task import retrieval_metrics
    from medmm.tasks.vqa.answers import vqa_scores

    dx = _dx_records()
    head = get_task_class("diagnosis").headline
    got = head.units(dx, head.key).scores()
    want = diagnosis_metrics(dx, ["a", "b", "c"], False)
    assert got == pytest.approx({k: want[k] for k in got}) and head.key in got

    vqa = [{"id": f"q{i}", "prediction": ["Yes", "no", "liver"][i % 3], "reference": ["yes", "yes", "the liver"][i % 3],
            "answer_type": "OPEN" if i % 3 == 2 else "CLOSED", "group": f"img{i // 4}"} for i in range(24)]
    head = get_task_class("vqa").headline
    got = head.units(vqa, head.key).scores()
    want = vqa_scores(vqa, n_resamples=0)
    assert got == pytest.approx({k: want[k] for k in got}) and got["overall_accuracy"] == pytest.approx(2 / 3)

    rng = np.random.default_rng(0)
    ret = [{"id": f"r{i}", "group": f"case{i // 2}",
            "prediction": {"image_embedding": rng.normal(size=4).tolist(), "text_embedding": rng.normal(size=4).tolist()},
            "reference": {"image_key": f"img{i // 2}", "text_key": f"t{i}", "text": ""}} for i in range(12)]
    head = get_task_class("retrieval").headline
    want = retrieval_metrics(ret, n_resamples=1)
    for key in (head.key, "text_to_image/R@5"):
        units = head.units(ret, key)
        direction = key.split("/")[0]
        assert units.scores() == pytest.approx({f"{direction}/{k}": v for k, v in want[direction].items()})
        assert len(units.ids) == (6 if direction == "image_to_text" else 12)


def test_every_registered_task_declares_its_headline():
    from conftest import shipped_tasks
    from medmm.engine.task import get_task_class
    from medmm.metrics.headline import Headline

    for name in shipped_tasks():
        head = get_task_class(name).headline
        assert isinstance(head, Headline) and head.metric.startswith("val/") and head.mode in ("max", "min"), name


def test_run_ablation_rejects_bad_requests(tmp_path):
    with pytest.raises(MedmmError, match="unimodal baseline"):
        A.run_ablation(REPO / "configs/diagnosis/vqa_rad_organ.yaml", ["late", "gated"], 1, tmp_path)
    with pytest.raises(MedmmError, match="task 'retrieval' has no config key 'model.fusion'"):
        A.run_ablation(REPO / "configs/retrieval/vqa_rad.yaml", ["image_only", "late"], 1, tmp_path)
    with pytest.raises(MedmmError, match="task 'segmentation' declares no headline with per-unit scores"):
        A.run_ablation(REPO / "configs/segmentation/monuseg_unet.yaml", ["none", "film"], 1, tmp_path, vary="model.conditioning")
    with pytest.raises(MedmmError, match="mode must be max or min"):
        A.run_ablation(REPO / "configs/diagnosis/vqa_rad_organ.yaml", ["image_only", "late"], 1, tmp_path, mode="up")


def _ablate(tmp_path: Path, config: str, variants: str, over: list[str], *extra: str) -> dict:
    from typer.testing import CliRunner

    from medmm.cli import app
    from medmm.data.bundled import vqa_rad_sample_root

    args = ["ablate", str(REPO / config), f"data.root={vqa_rad_sample_root()}", "trainer.max_steps=2", "trainer.max_epochs=1",
            "trainer.batch_size=8", "trainer.progress_bar=false", *over,
            "--fusion", variants, "--out", str(tmp_path), "--resamples", "30", *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return json.loads((tmp_path / "ablation.json").read_text())


def test_cli_ablate_diagnosis_on_bundled_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    over = ["data.max_samples=40", "model.image.size=32", "model.dim=32", "model.bootstrap_resamples=10",
            "model.text.encoder_kwargs={dim: 32, num_layers: 1, num_heads: 2, vocab_size: 300}"]
    got = _ablate(tmp_path, "configs/diagnosis/vqa_rad_organ.yaml", "image_only,early", over)
    assert got["task"] == "diagnosis" and got["primary"] == "auroc_macro_ovr" and got["baseline"] == "image_only"
    assert [r["fusion"] for r in got["rows"]] == ["image_only", "early"]
    assert got["metrics"] == ["auroc_macro_ovr", "f1_macro", "balanced_accuracy", "accuracy"]
    assert (tmp_path / "runs" / "early_s0" / "predictions" / "test.jsonl").exists() and (tmp_path / "ablation.png").exists()
    # finished runs are reused (no retraining): the same table, or a clear error for an unknown metric
    again = A.run_ablation("configs/diagnosis/vqa_rad_organ.yaml", ["image_only", "early"], 1, tmp_path,
                           got["overrides"], n_resamples=30)
    assert again.rows == got["rows"]
    with pytest.raises(MedmmError, match="unknown metric 'auroc_macro'; the task's headline scores give auroc_macro_ovr, f1_macro"):
        A.run_ablation("configs/diagnosis/vqa_rad_organ.yaml", ["image_only", "early"], 1, tmp_path, got["overrides"],
                       primary="auroc_macro")


def test_cli_ablate_vqa_on_bundled_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    over = ["data.fractions={train: 0.6, val: 0.2, test: 0.2}", "data.test_split=test", "data.max_samples=60",
            "model.image.encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}",
            "model.text.encoder_kwargs={vocab_size: 300, dim: 32, num_layers: 1, num_heads: 2, max_length: 24}",
            "model.fusion_kwargs={}", "model.dim=32", "model.bootstrap_resamples=0"]
    got = _ablate(tmp_path, "configs/vqa/vqa_rad_sample.yaml", "text_only,early", over)
    assert got["task"] == "vqa" and got["primary"] == "overall_accuracy" and got["baseline"] == "text_only"
    assert got["metrics"][0] == "overall_accuracy" and "closed_accuracy" in got["metrics"]
    val = json.loads((tmp_path / "runs" / "text_only_s0" / "metrics" / "test.json").read_text())["metrics"]
    assert got["rows"][0]["overall_accuracy"] == pytest.approx(val["overall_accuracy"])  # the task's own number
    assert got["rows"][0]["n_test"] > 0 and got["rows"][1]["p_bootstrap"] is not None


def test_cli_ablate_retrieval_varies_another_model_key(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    over = ["data.source_splits=[train]", "data.max_samples=40",
            "model.image_encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}", "model.text_encoder=scratch",
            "model.text_encoder_kwargs={vocab_size: 300, dim: 32, num_layers: 1, num_heads: 2, max_length: 24}",
            "model.text_lora=null", "model.embed_dim=16", "model.bootstrap_resamples=10", "trainer.num_threads=1"]
    got = _ablate(tmp_path, "configs/retrieval/vqa_rad.yaml", "linear,mlp", over, "--vary", "model.projection",
                  "--metric", "text_to_image/mrr")
    assert got["task"] == "retrieval" and got["vary"] == "model.projection" and got["baseline"] == "linear"
    assert [r["projection"] for r in got["rows"]] == ["linear", "mlp"] and "text_to_image/R@10" in got["metrics"]
    assert "--vary model.projection" in (tmp_path / "command.txt").read_text()


def test_cli_ablate_help():
    from typer.testing import CliRunner

    from medmm.cli import app

    res = CliRunner().invoke(app, ["ablate", "--help"])
    assert res.exit_code == 0 and "--fusion" in res.output and "--seeds" in res.output and "--vary" in res.output
