"""Frozen image features computed once per image (`medmm.models.frozen_features`) for report
generation and diagnosis: the same run with and without the cache gives the same numbers and
weights, the encoder sees each distinct image once across two epochs, and only deterministic,
eval-mode, frozen inputs are ever served from the cache."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from medmm.data.schema import ImageRef
from medmm.models.encoders.cnn import SmallCNN
from medmm.models.frozen_features import FrozenImageFeatures, array_key

REPO = Path(__file__).resolve().parents[1]
TINY = {"report_generation": REPO / "src/medmm/tasks/report/tiny.yaml", "diagnosis": REPO / "src/medmm/tasks/diagnosis/tiny.yaml"}
FROZEN = ["model.image.freeze=true", "trainer.max_steps=-1", "trainer.max_epochs=2"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest() for x in images]


def _count_encoder_inputs(monkeypatch) -> list[str]:
    """Every image row the (small_cnn) encoder is run on, as a checksum of its pixels."""
    seen: list[str] = []
    forward = SmallCNN.forward

    def counting(self, images, *a, **kw):
        seen.extend(_rows(images))
        return forward(self, images, *a, **kw)

    monkeypatch.setattr(SmallCNN, "forward", counting)
    return seen


def _train(task: str, run: Path, monkeypatch, cache: str) -> tuple[dict, dict, list[str]]:
    """Two epochs of the task's tiny run with a frozen encoder: (metrics by split, weights, encoder inputs)."""
    from medmm.engine import load_config, train

    monkeypatch.chdir(REPO)
    monkeypatch.delenv("MEDMM_FEATURE_CACHE", raising=False)
    if cache == "off":
        monkeypatch.setattr(FrozenImageFeatures, "cacheable", staticmethod(lambda encoder, augmented=False: False))
    elif cache == "disk":
        monkeypatch.setenv("MEDMM_FEATURE_CACHE", str(run.parent / f"{run.name}_features"))
    seen = _count_encoder_inputs(monkeypatch)
    train(load_config(TINY[task], FROZEN, validate_model=True), run)
    metrics = {p.stem: {k: v for k, v in json.loads(p.read_text())["metrics"].items() if k != "provenance"}
               for p in sorted((run / "metrics").glob("*.json"))}
    weights = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    return metrics, weights, seen


@pytest.fixture(scope="module")
def uncached(one_torch_thread, tmp_path_factory):
    """Each task's run with the cache switched off (the encoder runs on every batch)."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for task in TINY:
            out[task] = _train(task, tmp_path_factory.mktemp(task) / "run", mp, "off")
            mp.undo()
    return out


@pytest.mark.parametrize("cache", ["memory", "disk"])
@pytest.mark.parametrize("task", list(TINY))
def test_cached_run_has_the_same_numbers_and_encodes_each_image_once(task, cache, uncached, tmp_path, monkeypatch):
    metrics, weights, seen = _train(task, tmp_path / "run", monkeypatch, cache)
    base_metrics, base_weights, base_seen = uncached[task]
    assert metrics == base_metrics and set(metrics) >= {"train", "val"}
    assert weights.keys() == base_weights.keys()
    for k, v in weights.items():  # tensors bitwise; extra state (a tokenizer's vocabulary) as data
        assert torch.equal(v, base_weights[k]) if torch.is_tensor(v) else v == base_weights[k], k
    # the same distinct images reach the encoder, each once (every view of a two-view study)
    counts = Counter(seen)
    assert set(counts) == set(base_seen) and max(counts.values()) == 1
    assert len(seen) < len(base_seen)  # without the cache, later epochs and evaluations encode again


def _task(name: str, monkeypatch):
    from medmm.data import load_dataset
    from medmm.engine import load_config
    from medmm.engine.task import get_task_class

    monkeypatch.chdir(REPO)
    cfg = load_config(TINY[name], ["model.image.freeze=true"], validate_model=True)
    split = cfg.data.train_split if cfg.data.split == "official" else (cfg.data.source_splits or ["train"])[0]
    samples = load_dataset(cfg.data.dataset, cfg.data.root, split).samples[:8]
    torch.manual_seed(0)
    task = get_task_class(name).from_config(cfg.model)
    task.setup(samples)
    return task, samples


def _encoder(task) -> torch.nn.Module:
    return task.image_encoder if hasattr(task, "image_encoder") else task.model.image_encoder


@pytest.mark.parametrize("name", list(TINY))
def test_training_steps_feed_the_encoder_the_collated_images_unaugmented(name, monkeypatch):
    """The cache is safe only while training does not augment the images: the frozen encoder,
    kept in eval mode (batch norm included) during training, sees exactly the collated pixels."""
    task, samples = _task(name, monkeypatch)
    monkeypatch.setattr(FrozenImageFeatures, "cacheable", staticmethod(lambda encoder, augmented=False: False))
    task.train()
    enc = _encoder(task)
    assert not enc.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
    assert not any(m.training for m in enc.modules()) and not any(p.requires_grad for p in enc.parameters())
    seen = _count_encoder_inputs(monkeypatch)
    batch = task.collate(samples)
    for _ in range(2):
        task.training_step(batch)["loss"].backward()
    assert seen == _rows(batch["images"]) * 2
    assert all(p.grad is None for p in enc.parameters())
    assert torch.equal(task.collate(samples)["images"], batch["images"])


@pytest.mark.parametrize("name", list(TINY))
def test_keys_follow_each_image_and_a_trainable_encoder_is_never_cached(name, monkeypatch):
    task, samples = _task(name, monkeypatch)
    batch = task.collate(samples)
    keys = batch.get("image_paths", batch.get("image_keys"))
    assert len(keys) == len(batch["images"]) and all(k is not None for k in keys)
    task.eval()
    with torch.no_grad():
        task.evaluation_step(batch)
    assert len(task.frozen_image_features.memory) == len(set(keys))  # one entry per view file
    for p in _encoder(task).parameters():  # not frozen any more: computed with gradients, never cached
        p.requires_grad_(True)
    task.frozen_image_features.clear()
    task.train()
    _encoder(task).train()
    task.training_step(batch)["loss"].backward()
    assert not task.frozen_image_features.memory and any(p.grad is not None for p in _encoder(task).parameters())


class Counting(torch.nn.Module):
    """A frozen eval-mode encoder that counts the images it is run on."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner = SmallCNN(in_channels=1, image_size=16, widths=[4, 8]).eval().requires_grad_(False)
        self.input_spec, self.images = self.inner.input_spec, 0

    def forward(self, images):
        self.images += len(images)
        return self.inner(images)


def test_augmented_batches_are_computed_afresh_and_not_kept():
    enc = Counting().eval()
    feats, x, keys = FrozenImageFeatures(), torch.randn(2, 1, 16, 16), ["a.png", "b.png", "a.png"]
    x = torch.cat([x, x[:1]])  # the same file twice in a batch
    prep = {"input_spec": enc.input_spec.to_dict()}
    jittered = x + torch.rand(3, 1, 1, 1)  # as random augmentation: a file's pixels differ per draw
    out = feats(enc, jittered, keys, prep, augmented=True)
    assert enc.images == 3 and not feats.memory and torch.equal(out.pooled, enc(jittered).pooled)
    clean = feats(enc, x, keys, prep)
    assert set(feats.memory) == {"a.png", "b.png"} and torch.allclose(clean.pooled, enc(x).pooled, atol=1e-6)
    enc.images = 0
    again = feats(enc, jittered, keys, prep, augmented=True)  # a cached key is never served to an augmented batch
    assert enc.images == 3 and torch.equal(again.pooled, out.pooled) and not torch.allclose(again.pooled, clean.pooled)
    assert torch.equal(feats(enc, x, keys, prep).pooled, clean.pooled) and enc.images == 3  # a clean batch: all hits
    other = feats(enc, x, keys, {"input_spec": {**prep["input_spec"], "size": 32}})  # other preprocessing: afresh
    assert enc.images == 5 and torch.equal(other.pooled, clean.pooled)  # a.png, twice in the batch, encoded once


def test_in_memory_images_are_keyed_by_their_pixels_and_the_store_is_bounded():
    a = np.zeros((4, 4), dtype=np.uint8)
    assert array_key(ImageRef(array=a)) == array_key(ImageRef(array=a.copy())) != array_key(ImageRef(array=a + 1))
    assert array_key(ImageRef(path=Path("x/y.png"))) == "x/y.png"
    enc = SmallCNN(in_channels=1, image_size=16, widths=[4, 8]).eval().requires_grad_(False)
    one = sum(t.numel() * t.element_size() for t in (enc(torch.zeros(1, 1, 16, 16)).tokens[0], enc(torch.zeros(1, 1, 16, 16)).pooled[0]))
    feats = FrozenImageFeatures(max_bytes=2 * one)
    x = torch.randn(3, 1, 16, 16)
    feats(enc, x, ["a", "b", "c"], {})
    assert list(feats.memory) == ["b", "c"] and feats.nbytes == 2 * one  # least recently used out first
    # each kept row owns its memory: a view of the batch's tensor would hold the whole batch, uncounted
    kept = sum(t.untyped_storage().nbytes() for row in feats.memory.values() for t in row)
    assert kept == feats.nbytes


def test_images_without_keys_go_straight_to_the_encoder():
    enc = Counting().eval()
    feats, x = FrozenImageFeatures(), torch.randn(2, 1, 16, 16)
    out = feats(enc, x, [None, None], {})
    assert enc.images == 2 and not feats.memory and torch.equal(out.pooled, enc.inner(x).pooled)
    assert feats.disk is None and feats._opened_for is None  # nothing opened for a batch it cannot cache


def test_reset_forgets_features_only_when_the_weights_changed():
    enc = Counting().eval()
    feats, x, prep = FrozenImageFeatures(), torch.randn(2, 1, 16, 16), {}
    first = feats(enc, x, ["a", "b"], prep)
    enc.load_state_dict(enc.state_dict())  # e.g. the best checkpoint reloaded: the same frozen weights
    feats.reset()
    assert torch.equal(feats(enc, x, ["a", "b"], prep).pooled, first.pooled) and enc.images == 2
    with torch.no_grad():
        enc.inner.stages[0][0].weight.mul_(2.0)
    assert torch.equal(feats(enc, x, ["a", "b"], prep).pooled, first.pooled) and enc.images == 2  # no reset: the owner's contract
    feats.reset()
    changed = feats(enc, x, ["a", "b"], prep)
    assert enc.images == 4 and not torch.allclose(changed.pooled, first.pooled)


def test_diagnosis_keys_in_memory_images_by_their_pixels_except_when_predicting(monkeypatch):
    """MedMNIST-style samples (arrays, no file): cached by the pixels' checksum in training and
    evaluation batches; `predict_collate` (served requests) keys none, so keeps nothing."""
    import dataclasses

    from medmm.data.io import read_image

    task, samples = _task("diagnosis", monkeypatch)
    arrays = [dataclasses.replace(s, images=[ImageRef(array=read_image(s.images[0].path))]) for s in samples]
    batch = task.collate(arrays)
    assert batch["image_keys"] == [array_key(s.images[0]) for s in arrays] and batch["image_keys"][0].startswith("sha256:")
    hashed = []  # each in-memory image is hashed once, not at every collate (every epoch)
    monkeypatch.setattr("medmm.tasks.diagnosis.task.array_key", lambda ref: hashed.append(ref) or "k")
    assert task.collate(arrays)["image_keys"] == batch["image_keys"] and not hashed
    assert task.predict_collate(arrays)["image_keys"] == [None] * len(arrays)
    task.eval()
    with torch.no_grad():
        cached = task(batch).logits
        assert set(task.frozen_image_features.memory) == set(batch["image_keys"])
        assert torch.allclose(cached, task.model(batch["images"], batch["input_ids"], batch["attention_mask"]).logits, atol=1e-6)
