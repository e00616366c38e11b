"""Text-guided segmentation: model, task, mask placement, metrics, report overlays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medmm.data.schema import ImageRef, MaskRef, Sample
from medmm.models.encoders.base import TextFeatures
from medmm.models.segmentation import TextGuidedUNet
from medmm.tasks.segmentation.config import (
    SegmentationConfig,
    SegmentationImageConfig,
    SegmentationTextConfig,
    UNetConfig,
)
from medmm.tasks.segmentation.masks import class_target, export_masks, rle_decode, rle_encode
from medmm.tasks.segmentation.metrics import segmentation_summary
from medmm.tasks.segmentation.task import Segmentation
from tests.conftest import shared_dataset


def _text(b: int = 2, length: int = 5, dim: int = 12, seed: int = 0) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(b, length, dim, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[:, -1] = False  # one padding position must be ignored, not crash
    return TextFeatures(pooled=tokens.mean(1), tokens=tokens, mask=mask)


@pytest.mark.parametrize("conditioning", ["film", "attention", "film+attention"])
def test_text_changes_output_and_has_gradient(conditioning):
    torch.manual_seed(0)
    net = TextGuidedUNet(1, 1, (4, 8, 16), text_dim=12, conditioning=conditioning).eval()
    x = torch.randn(2, 1, 16, 16)
    a, b = _text(seed=0), _text(seed=1)
    assert not torch.allclose(net(x, a), net(x, b))
    tokens = a.tokens.clone().requires_grad_(True)
    pooled = a.pooled.clone().requires_grad_(True)
    net(x, TextFeatures(pooled, tokens, a.mask)).sum().backward()
    grads = [g for g in (tokens.grad, pooled.grad) if g is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    if "attention" in conditioning:
        assert tokens.grad is not None and float(tokens.grad.abs().sum()) > 0
        # padded text positions get no attention, hence no gradient
        assert float(tokens.grad[:, -1].abs().sum()) == 0.0


def test_baseline_ignores_text_and_checks_sizes():
    net = TextGuidedUNet(3, 1, (4, 8, 16), conditioning="none")
    assert net(torch.randn(1, 3, 16, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 3, 18, 16))
    with pytest.raises(ValueError, match="text_dim"):
        TextGuidedUNet(3, 1, (4, 8), conditioning="film")
    guided = TextGuidedUNet(3, 1, (4, 8), text_dim=12, conditioning="film")
    with pytest.raises(ValueError, match="text-guided"):
        guided(torch.randn(1, 3, 16, 16))


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for m in (rng.random((7, 9)) > 0.5, np.ones((3, 4), bool), np.zeros((2, 2), bool)):
        assert np.array_equal(rle_decode(rle_encode(m)), m.astype(np.uint8))
    with pytest.raises(ValueError):
        rle_decode({"shape": [2, 2], "counts": [1, 1]})


def test_cropped_mask_is_placed_at_its_box():
    crop = np.zeros((4, 6, 3), np.uint8)  # RGB crop (read_image drops the files' alpha)
    crop[1:3, 2:5, 0] = 255
    s = Sample("img", "covid_cxr_seg", "all", masks=[
        MaskRef("Left Lung", array=crop, box=(10, 5, 6, 4)),
        MaskRef("Right Lung", array=np.ones((2, 2), np.uint8), box=(0, 0, 2, 2)),
    ], meta={"regions_without_mask": ["Monitoring Probes"]})
    full = class_target(s, ["Left Lung"], (20, 30))
    assert full.shape == (20, 30)
    expect = np.zeros((20, 30), np.uint8)
    expect[6:8, 12:15] = 1
    assert np.array_equal(full, expect)
    both = class_target(s, ["Left Lung", "Right Lung"], (20, 30))
    assert both.sum() == expect.sum() + 4 and both[:2, :2].all()
    assert class_target(s, ["Heart"], (20, 30)).sum() == 0  # not annotated -> absent
    assert class_target(s, ["Monitoring Probes"], (20, 30)) is None  # annotated, no file -> unknown


def _squares(n: int, size: int = 24, seed: int = 0) -> list[Sample]:
    """Two squares per image, one bright, one dim, at random places; the prompt names one."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = np.zeros((size, size), np.float32)
        masks = []
        spots = rng.permutation(4)[:2]  # two distinct quadrants
        for label, value, q in (("bright", 1.0, spots[0]), ("dim", 0.45, spots[1])):
            y, x = (q // 2) * size // 2 + rng.integers(1, 4), (q % 2) * size // 2 + rng.integers(1, 4)
            m = np.zeros((size, size), np.uint8)
            m[y : y + 7, x : x + 7] = 1
            img[m == 1] = value
            masks.append(MaskRef(label, array=m))
        out.append(Sample(f"s{i}", "toy", "train", images=[ImageRef(array=img)], masks=masks, patient_id=f"p{i}"))
    return out


def _toy_task(conditioning: str = "film+attention", loss: str = "dice_ce") -> Segmentation:
    return Segmentation.from_config({
        "classes": {"bright square": ["bright"], "dim square": ["dim"]},
        "conditioning": conditioning,
        "text": {"template": "{prompt}", "encoder": "scratch", "freeze": False,
                 "encoder_kwargs": {"dim": 16, "num_layers": 1, "num_heads": 2, "vocab_size": 64, "dropout": 0.0}},
        "unet": {"channels": [8, 16], "attention_levels": 1},
        "image": {"in_channels": 1, "size": 24},
        "loss": {"name": loss},
        "bootstrap_resamples": 50,
    })


def _mean_dice(task: Segmentation, samples: list[Sample]) -> dict:
    task.eval()
    with torch.no_grad():
        records = task.evaluation_step(task.collate(samples))
    task.train()
    return task.compute_metrics(records)


def test_training_on_named_squares_improves_dice():
    torch.manual_seed(0)
    train, test = _squares(24, seed=0), _squares(8, seed=1)
    task = _toy_task()
    task.setup(train)
    before = _mean_dice(task, test)
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threading only adds overhead on a shared CPU
    try:
        for step in range(40):
            batch = task.collate(train[(step * 6) % 24 : (step * 6) % 24 + 6])
            loss = task.training_step(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    after = _mean_dice(task, test)
    assert after["dice_mean"] > before["dice_mean"] + 0.2, (before["dice_mean"], after["dice_mean"])
    # it segments the class the prompt names, not both squares
    assert after["per_class"]["bright square"]["dice"] > 0.5
    assert after["per_class"]["dim square"]["dice"] > 0.5
    low, high = after["ci"]["dice_mean"]["low"], after["ci"]["dice_mean"]["high"]
    assert low <= after["dice_mean"] <= high


@pytest.mark.parametrize("loss", ["dice_ce", "dice_focal", "tversky", "focal"])
def test_losses_are_finite_and_backprop(loss):
    task = _toy_task("none", loss)
    out = task.training_step(task.collate(_squares(2)))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()


def test_sliding_window_matches_shapes_and_config_checks():
    samples = _squares(2, size=64)
    text = {"template": "{prompt}", "encoder": "scratch",
            "encoder_kwargs": {"dim": 16, "num_layers": 1, "num_heads": 2, "vocab_size": 64}}
    cfg = {"classes": {"bright square": ["bright"]}, "conditioning": "film", "text": text, "unet": {"channels": [4, 8]},
           "image": {"in_channels": 1, "size": 64}, "augment": {"crop_size": 32}, "bootstrap_resamples": 0}
    task = Segmentation.from_config({**cfg, "inference": {"mode": "sliding_window"}})
    task.setup(samples)
    task.eval()
    batch = task.collate(samples)
    with torch.no_grad():
        probs = task.predict_probs(batch)
        recs = task.evaluation_step(batch)
        preds = task.predict_step(batch)
    assert probs.shape == (2, 1, 64, 64) and float(probs.min()) >= 0 and float(probs.max()) <= 1
    assert rle_decode(recs[0]["prediction"]).shape == (64, 64) and "reference" not in preds[0]
    task.train()
    crop = task.training_step(batch)  # random 32-px crops in training
    assert torch.isfinite(crop["loss"])
    with pytest.raises(Exception, match="augment.crop_size"):
        Segmentation.from_config({**cfg, "augment": {"crop_size": None}, "inference": {"mode": "sliding_window"}})
    with pytest.raises(Exception, match="multiple"):
        Segmentation.from_config({**cfg, "image": {"in_channels": 1, "size": 65}, "augment": {}})


def test_summary_groups_and_empty_masks():
    def rec(i, label, d, g):
        return {"id": f"{i}#{label}", "label": label, "dice": d, "iou": d / 2, "hd95": None, "group": g}

    records = [rec(0, "a", 1.0, "p0"), rec(0, "b", 0.0, "p0"), rec(1, "a", 0.5, "p1"), rec(1, "b", 0.5, "p1")]
    out = segmentation_summary(records, ["a", "b"], n_resamples=100)
    assert out["per_class"]["a"]["dice"] == pytest.approx(0.75)
    assert out["dice_mean"] == pytest.approx(0.5)
    assert out["per_class"]["a"]["hd95"] is None and out["per_class"]["a"]["hd95_undefined"] == 2
    assert "2 resamples" not in out["ci_method"] and "groups" in out["ci_method"]


def test_report_includes_overlays(tmp_path):
    from medmm.engine.report import write_report

    img = np.zeros((8, 8), np.uint8)
    path = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(img).save(path)
    m = np.zeros((8, 8), bool)
    m[2:5, 2:5] = True
    (tmp_path / "predictions").mkdir()
    (tmp_path / "metrics").mkdir()
    rec = {"id": "x", "label": "nuclei", "image": str(path), "dice": 1.0,
           "prediction": rle_encode(m), "reference": rle_encode(m)}
    (tmp_path / "predictions" / "val.jsonl").write_text(json.dumps(rec) + "\n")
    (tmp_path / "metrics" / "val.json").write_text(json.dumps({"metrics": {"dice_mean": 1.0}, "provenance": {}}))
    (tmp_path / "task_state.json").write_text(json.dumps({"task": "segmentation", "state": {}}))
    html = write_report(tmp_path).read_text()
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("overlay_val_*.png"))
    assert len(pngs) == 1 and f'src="plots/{pngs[0]}"' in html


def test_real_monuseg_and_covid_batches():
    from medmm.data import load_dataset

    mon = load_dataset("monuseg_lvit", shared_dataset("monuseg_lvit"), "val").samples[:1]
    task = Segmentation(SegmentationConfig(conditioning="none", text=SegmentationTextConfig(encoder=None),
                                           unet=UNetConfig(channels=[4, 8]), image=SegmentationImageConfig(size=64),
                                           bootstrap_resamples=0))
    batch = task.collate(mon)
    assert batch["images"].shape == (1, 3, 64, 64) and batch["meta"][0]["shape"] == [512, 512]
    assert 0 < float(batch["masks"].mean()) < 0.6  # nuclei are a minority of pixels
    cov = load_dataset("covid_cxr_seg", shared_dataset("covid_cxr"), "all").samples[:1]
    ctask = Segmentation(SegmentationConfig(
        classes={"heart": ["Cardiomediastinum"], "lungs": ["Left Lung", "Right Lung"]}, conditioning="none",
        text=SegmentationTextConfig(template="{prompt}", encoder=None), unet=UNetConfig(channels=[4, 8]),
        image=SegmentationImageConfig(in_channels=1, size=64), bootstrap_resamples=0))
    cb = ctask.collate(cov)
    assert cb["images"].shape == (2, 1, 64, 64) and [m["label"] for m in cb["meta"]] == ["heart", "lungs"]
    ctask.eval()
    with torch.no_grad():
        recs = ctask.evaluation_step(cb)
    h, w = cb["meta"][0]["shape"]
    ref = rle_decode(recs[1]["reference"])
    assert ref.shape == (h, w) and ref.any()


def test_exported_masks_score_like_the_records(tmp_path):
    from medmm.tasks.segmentation.file_scorer import prepare_segmentation

    rng = np.random.default_rng(1)
    ref = rng.random((12, 10)) > 0.6
    pred = ref.copy()
    pred[:4] = ~pred[:4]
    from medmm.metrics.segmentation import binary_scores

    rec = {"id": "a#heart", "label": "heart", "group": "p1", **binary_scores(pred, ref),
           "prediction": rle_encode(pred), "reference": rle_encode(ref)}
    pred_path, ref_path = export_masks([rec], tmp_path)
    scored = prepare_segmentation(pred_path, ref_path).result
    assert scored["dice_mean"] == pytest.approx(rec["dice"]) and scored["iou_mean"] == pytest.approx(rec["iou"])
