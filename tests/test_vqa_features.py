"""VQA training options: pretrained + frozen image encoder with a feature cache, masked loss."""

from __future__ import annotations

import json

import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.models import create_image_encoder
from medmm.models.pretrained import save_weights
from medmm.tasks.vqa.task import VQATask, classifier_loss
from tests.conftest import merged
from tests.test_vqa import TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def samples():
    return load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples


@pytest.fixture()
def encoder_file(tmp_path):
    torch.manual_seed(123)
    enc = create_image_encoder("small_cnn", **TINY["image"]["encoder_kwargs"])
    path = tmp_path / "enc.pt"
    save_weights(enc, path, {"architecture": "small_cnn", "config": TINY["image"]["encoder_kwargs"]})
    return path, enc


def make(samples, **kw) -> VQATask:
    torch.manual_seed(0)
    task = VQATask.from_config(merged(TINY, **kw))
    task.setup(samples)
    return task


def test_image_pretrained_loads_at_setup_and_run_needs_no_file(samples, encoder_file, tmp_path):
    path, enc = encoder_file
    task = make(samples[:60], image={"pretrained": str(path), "freeze": True})
    for k, v in enc.state_dict().items():
        assert torch.equal(task.image_encoder.state_dict()[k], v), k
    state = json.loads(json.dumps(task.state()))
    assert state["image_pretrained_sha256"] and len(state["image_pretrained_sha256"]) == 64
    # rebuilding a trained run (load_state + weights) never reads the pretrained file
    path.unlink()
    other = VQATask.from_config(merged(TINY, image={"pretrained": str(path), "freeze": True}))
    other.load_state(state)
    other.load_state_dict(task.state_dict(), strict=True)
    batch = task.eval().collate(samples[:6])
    assert [r["prediction"] for r in task.evaluation_step(batch)] == [r["prediction"] for r in other.eval().evaluation_step(batch)]


def test_frozen_image_features_are_cached_and_match_encoder(samples):
    task = make(samples, image={"freeze": True})
    task.train()
    assert not task.image_encoder.training  # batch-norm statistics stay fixed
    assert not any(p.requires_grad for p in task.image_encoder.parameters())
    batch = task.collate(samples[:8])
    cached = task._frozen_image_features(batch)
    direct = task.image_encoder(batch["images"])
    assert torch.allclose(cached.tokens, direct.tokens, atol=1e-5) and torch.allclose(cached.pooled, direct.pooled, atol=1e-5)
    n = len(task.frozen_image_features.memory)
    assert 0 < n <= 8
    # a second pass reads the cache: changing the encoder now does not change the features
    with torch.no_grad():
        for p in task.image_encoder.parameters():
            p.add_(1.0)
    again = task._frozen_image_features(task.collate(samples[:8]))
    assert torch.equal(again.pooled, cached.pooled) and len(task.frozen_image_features.memory) == n
    out = task.training_step(batch)
    out["loss"].backward()
    assert all(p.grad is None for p in task.image_encoder.parameters())
    assert any(p.grad is not None for p in task.fusion.parameters())



def test_frozen_image_features_use_the_on_disk_cache_when_named(samples, tmp_path, monkeypatch):
    """$MEDMM_FEATURE_CACHE: features go to the bounded on-disk cache (shared by workers and runs)
    instead of the in-memory dict; a second task with the same weights reads them back; other
    weights are another key (never a stale hit)."""
    monkeypatch.setenv("MEDMM_FEATURE_CACHE", str(tmp_path / "fc"))
    task = make(samples, image={"freeze": True})
    task.train()
    batch = task.collate(samples[:8])
    first = task._frozen_image_features(batch)
    direct = task.image_encoder(batch["images"])
    assert torch.allclose(first.tokens, direct.tokens, atol=1e-5) and torch.allclose(first.pooled, direct.pooled, atol=1e-5)
    assert not task.frozen_image_features.memory  # nothing held in memory
    assert task.frozen_image_features.disk.stats.misses > 0 and list((tmp_path / "fc").rglob("*"))
    again = make(samples, image={"freeze": True})  # same seed, same weights: a new process would read the same
    again.train()
    second = again._frozen_image_features(again.collate(samples[:8]))
    assert torch.equal(second.pooled, first.pooled) and again.frozen_image_features.disk.stats.hits > 0
    with torch.no_grad():
        for p in again.image_encoder.parameters():
            p.add_(1.0)
    again.reset_feature_caches()  # the weights changed (load_state, a pretrained encoder loaded)
    changed = again._frozen_image_features(again.collate(samples[:8]))
    assert not torch.allclose(changed.pooled, first.pooled)

def test_masked_loss_only_competes_within_the_question_type(samples):
    task = make(samples, classifier={"masked_loss": True, "hidden": 16}, answer_head="classifier")
    batch = task.collate(samples[:32])
    assert batch["closed"].any() and (~batch["closed"]).any()
    task.eval()  # no dropout: the hand-computed loss must match exactly
    logits = task.classifier(task.forward_features(batch)[0].pooled)
    allowed = torch.where(batch["closed"][:, None], task.closed_mask[None], task.open_mask[None])
    labels = batch["labels"].clone()
    for i, y in enumerate(labels.tolist()):
        if y >= 0 and not allowed[i, y]:
            labels[i] = -100
    keep = labels >= 0
    expected = torch.nn.functional.cross_entropy(logits[keep].masked_fill(~allowed[keep], float("-inf")), labels[keep])
    got = task.training_step(batch)["loss_classifier"]
    assert torch.allclose(got, expected, atol=1e-4)
    unmasked = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert float(got) < float(unmasked.detach())  # fewer competitors, lower loss


def test_classifier_loss_smoothing_over_allowed_answers():
    logits = torch.tensor([[2.0, 0.0, -1e9], [0.0, 1.0, 3.0]])
    labels = torch.tensor([0, -100])
    allowed = torch.tensor([[True, True, False], [True, True, True]])
    logp = torch.log_softmax(torch.tensor([2.0, 0.0]), -1)
    want = 0.9 * -logp[0] + 0.1 * -(logp.mean())
    got = classifier_loss(logits, labels, allowed, 0.1)
    assert torch.isfinite(got) and torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(classifier_loss(logits, labels, None, 0.0), -logp[0], atol=1e-5)
