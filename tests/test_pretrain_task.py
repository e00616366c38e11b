"""Image pretraining as an engine task (`pretrain_image`, `medmm pretrain-image`): its dataset
(`medpix2_covid_cxr`), VQA-RAD exclusion, loss pieces, and a run whose exported encoder the VQA
task loads, on tiny synthetic MedPix-2.0-like / covid_cxr-like folders (tests/pretrain_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medmm.cli import app
from medmm.data import load_dataset
from medmm.engine.selection import is_selection_file, plain_names
from medmm.errors import BadInputError, MedmmError
from pretrain_fixtures import make_root, make_vqa_rad, write_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]
DATASET = "medpix2_covid_cxr"


def test_a_medpix_split_never_reads_another_splits_image(tmp_path):
    root, ids = make_root(tmp_path / "data", corrupt_dev=True)
    train = load_dataset(DATASET, root, "medpix2_train").samples
    assert sorted(s.id for s in train) == sorted(f"medpix2/{i}" for i in ids["train"])
    assert {s.case_id for s in train} == {f"medpix2:MPX{c}" for c in range(8)}
    first = next(s for s in train if s.id == "medpix2/MPX0_synpic1000")
    assert first.targets == {"modality": "CT", "plane": "Axial", "location": "Thorax"} and "caption" in first.text
    with pytest.raises(BadInputError, match="medpix2"):
        load_dataset(DATASET, tmp_path / "nowhere", "medpix2_all")


def test_covid_split_is_the_diagnosis_configs_patient_split(tmp_path):
    from medmm.data.datasets.medpix2_covid_cxr import COVID_SPLIT
    from medmm.data.splits import grouped_split
    from medmm.engine.config import read_yaml

    cfg = read_yaml(REPO / "configs" / "diagnosis" / "covid_cxr.yaml")
    data = cfg["data"]
    want = {"group_by": data["group_by"], "fractions": data["fractions"], "seed": cfg["seed"], "stratify": data["stratify"]}
    assert want == COVID_SPLIT
    root, _ = make_root(tmp_path / "data")
    got = load_dataset(DATASET, root, "covid_cxr_train").samples
    parts = grouped_split(load_dataset("covid_cxr", root / "covid_cxr", "all").samples, "patient", want["fractions"], 0,
                          stratify="finding_group")
    assert {s.id for s in got} == {f"covid_cxr/{s.id}" for s in parts["train"]}
    assert all(s.targets == {"modality": "XR", "location": "Thorax"} and not s.text for s in got)
    assert len(load_dataset(DATASET, root, "covid_cxr_all").samples) == 15  # the row without an image file is left out


def test_vqa_rad_images_are_excluded_by_synpic_id(tmp_path):
    from medmm.tasks.pretrain.vqa_rad import drop_vqa_rad_images

    root, ids = make_root(tmp_path / "data")
    samples = load_dataset(DATASET, root, "medpix2_all").samples
    vqa = make_vqa_rad(tmp_path / "vqa", ["synpic1000", "synpic1031", "synpic77777"])
    kept = {s.id.removeprefix("medpix2/") for s in drop_vqa_rad_images(samples, vqa)}
    assert kept == set(ids["train"] + ids["dev"]) - {"MPX0_synpic1000", "MPX3_synpic1031"}
    with pytest.raises(BadInputError, match="VQA_RAD Image Folder"):
        drop_vqa_rad_images(samples, tmp_path / "nowhere")
    every = make_vqa_rad(tmp_path / "every", [f"synpic{1000 + 10 * c + j}" for c in range(11) for j in range(2)])
    with pytest.raises(MedmmError, match="nothing to pretrain on"):
        drop_vqa_rad_images(samples, every)


def test_label_space_crops_and_loss_pieces(tmp_path):
    from medmm.tasks.pretrain.images import crop_batch
    from medmm.tasks.pretrain.model import pretrain_loss
    from medmm.tasks.pretrain.task import label_space

    root, _ = make_root(tmp_path / "data")
    samples = load_dataset(DATASET, root, "medpix2_train").samples
    assert label_space(samples, "modality", 1) == ["CT", "MR"] and label_space(samples, "modality", 100) == []
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 40, 40), dtype=np.uint8))
    centre = crop_batch(pixels, 32, 0.5, 0.25, None)
    assert centre.shape == (3, 1, 32, 32)
    assert torch.allclose(centre[0, 0], (pixels[0, 4:36, 4:36].float() / 255.0 - 0.5) / 0.25, atol=1e-6)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(crop_batch(pixels, 32, 0.5, 0.25, g1), crop_batch(pixels, 32, 0.5, 0.25, g2))
    assert not torch.equal(crop_batch(pixels, 32, 0.5, 0.25, g1), centre)
    logits = {"modality": torch.zeros(3, 2, requires_grad=True)}
    caps = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    assert pretrain_loss(logits, caps, {"modality": torch.tensor([-100] * 3)}, caps, torch.zeros(3, dtype=torch.bool), 1.0) is None
    loss = pretrain_loss(logits, caps, {"modality": torch.tensor([0, 1, -100])}, caps, torch.ones(3, dtype=torch.bool), 1.0)
    assert torch.isfinite(loss) and loss.item() > float(np.log(2)) - 1e-5  # CE ln 2 + a positive InfoNCE


def test_onecycle_schedule_is_torchs_onecycle_lr():
    from medmm.engine.config import ConfigError, TrainerConfig
    from medmm.engine.optim import onecycle_schedule

    cfg = TrainerConfig(scheduler="onecycle", onecycle_pct_start=0.1, lr=2e-3)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=2e-3)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=57, pct_start=0.1)
    f = onecycle_schedule(cfg, 57)
    for step in range(57):
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-3 * f(step), rel=1e-9, abs=1e-15)
        opt.step()
        ref.step()
    with pytest.raises(ConfigError, match="warmup_steps"):
        onecycle_schedule(TrainerConfig(scheduler="onecycle", warmup_steps=3), 10)
    with pytest.raises(ConfigError, match="onecycle_pct_start"):
        onecycle_schedule(TrainerConfig(scheduler="onecycle", onecycle_pct_start=1.0), 10)


def _run(tmp_path: Path, overrides: list[str], name: str = "run") -> tuple[Path, dict]:
    from medmm.engine import load_config, train

    root, _ = make_root(tmp_path / "data")
    cfg = load_config(write_config(root, tmp_path / "pretrain.yaml"), overrides, validate_model=True)
    return tmp_path / name, train(cfg, tmp_path / name)


def test_run_exports_an_encoder_the_vqa_task_loads(tmp_path):
    """The consumer contract: `model.image.pretrained` loads the exported encoder strictly (same
    weights as the run's), and VQA's image attributes read the heads beside it."""
    from medmm.data.bundled import vqa_rad_sample_root
    from medmm.models import create_image_encoder
    from medmm.models.pretrained import load_into, load_weights
    from medmm.tasks.pretrain.export import export_encoder, heads_path
    from medmm.tasks.vqa.task import VQATask

    vqa = make_vqa_rad(tmp_path / "vqa", ["synpic1000"])
    run, metrics = _run(tmp_path, [f"model.exclude_vqa_rad={vqa}", "model.reconstruction.weight=1"])
    # val chose the epoch, so its numbers are named selection_* (issue 26); read them by plain names
    val = json.loads((run / "metrics" / "val.json").read_text())
    assert is_selection_file(val) and all(k.startswith("selection_") for k in metrics["val"])
    assert {"acc_modality", "acc_location", "reconstruction_mse"} <= set(plain_names(metrics["val"]))
    assert set(plain_names(val["floors"]["majority"]["metrics"])) <= {"acc_modality", "acc_plane", "acc_location"}
    assert (run / "logs" / "metrics.csv").exists() and (run / "report.html").exists()
    summary = export_encoder(run)
    out = run / "export" / "image_encoder.pt"
    assert summary["weights"] == str(out) and summary["val"] == val["metrics"]
    state, meta = load_weights(out, summary["sha256"])
    assert meta["architecture"] == "small_cnn" and meta["input_spec"]["size"] == 32
    assert "medpix2_train" in meta["source"] and "VQA-RAD images excluded" in meta["source"]
    assert not any(k.startswith("decoder") for k in state)  # the denoising decoder stays in the run
    enc = create_image_encoder("small_cnn", **meta["config"])
    load_into(enc, out)
    trained = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(v, trained[f"model.encoder.{k}"]) for k, v in enc.state_dict().items())
    heads, hmeta = load_weights(heads_path(out), summary["heads_sha256"])
    assert hmeta["encoder_sha256"] == summary["sha256"] and hmeta["label_spaces"]["modality"] == ["CT", "MR", "XR"]
    assert heads["modality.weight"].shape == (3, enc.out_dim)

    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:16]
    task = VQATask.from_config({
        "image": {"encoder": "small_cnn", "encoder_kwargs": meta["config"], "pretrained": str(out), "freeze": True,
                  "attributes": True},
        "text": {"encoder": "scratch", "max_length": 32,
                 "encoder_kwargs": {"vocab_size": 300, "dim": 16, "num_layers": 1, "num_heads": 2, "max_length": 32}},
        "fusion": "early", "dim": 16, "bootstrap_resamples": 0})
    task.setup(samples)
    assert task.state()["image_pretrained_sha256"] == summary["sha256"]
    assert all(torch.equal(v, state[k]) for k, v in task.image_encoder.state_dict().items())
    assert task.image_description(samples[0])


def test_cli_trains_through_the_engine_and_exports(tmp_path):
    root, _ = make_root(tmp_path / "data")
    config = write_config(root, tmp_path / "pretrain.yaml")
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["pretrain-image", str(config), "trainer.max_epochs=1", "--out", str(run),
                                   "--encoder", str(tmp_path / "enc" / "w.pt")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "wrote" in res.output and (tmp_path / "enc" / "w.heads.pt").is_file()
    assert json.loads((tmp_path / "enc" / "w.json").read_text())["run_dir"] == str(run.resolve())
    assert (run / "config.yaml").is_file() and (run / "environment.json").is_file()
    again = CliRunner().invoke(app, ["export-image-encoder", str(run)])
    assert again.exit_code == 0 and (run / "export" / "image_encoder.pt").is_file()
    bad = CliRunner().invoke(app, ["pretrain-image", str(REPO / "configs/diagnosis/covid_cxr.yaml"), "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, MedmmError) and "runs pretrain_image configs" in str(bad.exception)


def test_caption_matching_reports_held_out_recall(tmp_path):
    _, metrics = _run(tmp_path, ["model.caption.weight=1", "trainer.max_epochs=1"])
    val = plain_names(metrics["val"])
    assert val["n_captions"] >= 2 and 0.0 <= val["caption_r1"] <= val["caption_r5"] <= 1.0
