"""`clip_model: hf:<dir>`: a CLIP-family model from transformers as both towers (tiny, random, local)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from medmm.tasks.retrieval.task import RetrievalTask  # noqa: E402


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from medmm.models.families import write_tiny

    return write_tiny("clip", tmp_path_factory.mktemp("tiny") / "clip")  # CLIPModel + processor + tokenizer


def test_clip_model_trains_and_embeds(clip_dir):
    from test_retrieval import synthetic_samples

    task = RetrievalTask.from_config({"clip_model": f"hf:{clip_dir}", "freeze_image": True, "max_text_length": 32, "bootstrap_resamples": 10})
    assert task.image_size == 32 and task.channels == 3
    train = synthetic_samples(8)
    batch = task.collate(train)
    assert batch["images"].shape == (8, 3, 32, 32)
    task.train()
    assert not task.model.model.vision_model.training
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    with torch.no_grad():
        before = float(task.training_step(batch)["loss"])
    for _ in range(10):
        loss = task.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(task.training_step(batch)["loss"])
    assert after < before
    task.eval()
    recs = task.evaluation_step(batch)
    assert len(recs[0]["prediction"]["image_embedding"]) == 16
    m = task.compute_metrics(recs)
    assert set(m["image_to_text"]) >= {"R@1", "R@5", "R@10", "mrr", "median_rank"}


def test_clip_missing_dir_is_bad_input(tmp_path):
    from medmm.errors import BadInputError

    with pytest.raises(BadInputError, match="CLIP"):
        RetrievalTask.from_config({"clip_model": f"hf:{tmp_path / 'nothing'}"})


MEDPIX2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "medpix2"


@pytest.mark.skipif(not MEDPIX2.is_dir(), reason="no shared MedPix 2.0 copy")
def test_shipped_clip_finetune_config_trains_two_lora_steps_and_evaluates(clip_dir, tmp_path, monkeypatch):
    """configs/retrieval/clip_finetune.yaml with its CLIP replaced by a tiny one (dotted CLI overrides)."""
    import json

    from typer.testing import CliRunner

    from medmm.cli import app

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # the config's data.root is relative to the repository root
    run = tmp_path / "run"
    overrides = [f"model.clip_model=hf:{clip_dir}", "trainer.accelerator=cpu", "trainer.precision=32",
                 "trainer.max_steps=2", "trainer.batch_size=4", "trainer.eval_batch_size=8", "trainer.warmup_steps=0",
                 "trainer.num_threads=1", "data.max_samples=16", "model.bootstrap_resamples=10"]
    res = CliRunner().invoke(app, ["train", "configs/retrieval/clip_finetune.yaml", *overrides, "--out", str(run)])
    assert res.exit_code == 0, (res.output, res.exception)
    metrics = json.loads((run / "metrics" / "val.json").read_text())["metrics"]
    assert {"R@1", "mrr"} <= set(metrics["image_to_text"])
    res = CliRunner().invoke(app, ["evaluate", str(run), "--split", "val", "--out", str(tmp_path / "val.json")])
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads((tmp_path / "val.json").read_text())["metrics"]["image_to_text"] == metrics["image_to_text"]
    # LoRA: only the adapters, the projection heads and the temperature were trained
    from medmm.engine.api import load_run

    _, task = load_run(run)
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "projection" in n or "logit_scale" in n for n in trainable)
