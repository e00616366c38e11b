"""VQA image attributes as words: label heads -> description, loading beside the encoder, the
question text, rationale and the state round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.errors import MedmmError
from medmm.models import create_image_encoder
from medmm.models.pretrained import save_weights
from medmm.tasks.pretrain.export import heads_path
from medmm.tasks.vqa.image_words import ImageWords, spoken
from medmm.tasks.vqa.task import VQATask
from tests.conftest import merged

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACES = {"modality": ["CT", "MR", "XR"], "plane": ["Axial", "Coronal"]}
ENC = {"in_channels": 1, "image_size": 32, "widths": [8, 16]}


def write_encoder_and_heads(root: Path, heads: ImageWords | None = None, encoder_sha: str | None = None) -> Path:
    """A pretrained-encoder file as `medmm pretrain-image` writes it, with its heads beside it."""
    torch.manual_seed(0)
    enc = create_image_encoder("small_cnn", **ENC)
    path = root / "enc.pt"
    sha = save_weights(enc, path, {"architecture": "small_cnn", "config": ENC})
    heads = heads or ImageWords(SPACES, enc.out_dim)
    save_weights(heads.heads, heads_path(path), {"label_spaces": SPACES, "config": {"in_dim": enc.out_dim, "label_spaces": SPACES},
                                                 "encoder_sha256": encoder_sha or sha})
    return path


def test_describe_picks_the_top_label_of_each_head_as_spoken():
    words = ImageWords(SPACES, 4)
    with torch.no_grad():
        for h in words.heads.values():
            h.weight.zero_()
            h.bias.zero_()
        words.heads["modality"].bias[1] = 5.0  # MR
        words.heads["plane"].weight[1, 0] = 1.0  # Coronal when feature 0 is positive
    pooled = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    assert words.describe(pooled) == ["mri, coronal", "mri, axial"]
    assert spoken("XR") == "x-ray" and spoken("Axial") == "axial"
    assert not any(p.requires_grad for p in words.parameters())


def test_from_pretrained_checks_the_heads_belong_to_the_encoder(tmp_path):
    path = write_encoder_and_heads(tmp_path)
    words = ImageWords.from_pretrained(path)
    assert words.label_spaces == SPACES
    bad = write_encoder_and_heads(tmp_path / "other", encoder_sha="0" * 64)
    with pytest.raises(MedmmError, match="belong to encoder"):
        ImageWords.from_pretrained(bad)
    heads_path(bad).unlink()
    with pytest.raises(MedmmError, match="no label heads"):
        ImageWords.from_pretrained(bad)


def _task(pretrained: Path, **kw) -> VQATask:
    torch.manual_seed(0)
    return VQATask.from_config(merged({
        "image": {"encoder": "small_cnn", "encoder_kwargs": ENC, "pretrained": str(pretrained), "freeze": True,
                  "attributes": True},
        "text": {"encoder": "scratch", "max_length": 64,
                 "encoder_kwargs": {"vocab_size": 600, "dim": 32, "num_layers": 1, "num_heads": 2, "max_length": 64}},
        "fusion": "gated", "dim": 32, "decoder": {"layers": 1, "heads": 2},
        "bootstrap_resamples": 0, "rationale": True}, **kw))


def test_vqa_appends_the_image_words_and_keeps_them_in_its_state(tmp_path):
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:24]
    task = _task(write_encoder_and_heads(tmp_path))
    task.setup(samples)
    task.eval()
    batch = task.collate(samples)
    described = task.image_description(samples[0])
    assert described and all(part in {"ct", "mri", "x-ray", "axial", "coronal"} for part in described.split(", "))
    assert batch["texts"][0] == f"{samples[0].text['question']} [SEP] image: {described}"
    recs = task.evaluation_step(batch)
    assert recs[0]["rationale"]["image_words"] == described
    # a trained run needs neither the encoder nor the heads file again
    for f in tmp_path.iterdir():
        f.unlink()
    other = VQATask.from_config(dataclasses.asdict(task.config))
    other.load_state(json.loads(json.dumps(task.state())))
    other.load_state_dict(task.state_dict(), strict=True)
    other.eval()
    assert [r["prediction"] for r in other.evaluation_step(other.collate(samples))] == [r["prediction"] for r in recs]
    assert other.image_description(samples[0]) == described


def test_image_attributes_need_a_frozen_pretrained_encoder(tmp_path):
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:8]
    task = _task(write_encoder_and_heads(tmp_path), image={"freeze": False})
    with pytest.raises(MedmmError, match=r"model\.image\.attributes needs"):
        task.setup(samples)
