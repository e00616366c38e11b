import numpy as np
import pytest

from medmm.metrics.segmentation import SegmentationMetric, binary_scores, hd95, segmentation_metrics


def _random_pair(rng, shape=(48, 40)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    def blob():
        cy, cx, r = rng.integers(8, 32), rng.integers(8, 30), rng.integers(3, 12)
        return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
    return blob() | (rng.random(shape) < 0.01), blob()


def test_known_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b[2:6, 4:8] = True
    s = binary_scores(a, b)
    assert s["dice"] == pytest.approx(2 * 8 / 32)
    assert s["iou"] == pytest.approx(8 / 24)
    assert hd95(a, a) == 0.0


def test_empty_masks_defined():
    z = np.zeros((5, 5), bool)
    one = z.copy()
    one[2, 2] = True
    assert binary_scores(z, z) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0}
    assert binary_scores(one, z) == {"dice": 0.0, "iou": 0.0, "hd95": None}
    m = segmentation_metrics([one, one], [z, one])
    assert m["per_class"]["1"]["hd95_undefined"] == 1 and m["per_class"]["1"]["hd95"] == 0.0


def test_agrees_with_monai():
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(0)
    pairs = [_random_pair(rng) for _ in range(6)]
    pred = torch.tensor(np.stack([p for p, _ in pairs])[:, None].astype(np.float32))
    ref = torch.tensor(np.stack([r for _, r in pairs])[:, None].astype(np.float32))
    dice = metrics.DiceMetric(include_background=True, reduction="none")(pred, ref).numpy().ravel()
    iou = metrics.MeanIoU(include_background=True, reduction="none")(pred, ref).numpy().ravel()
    hd = metrics.HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
        pred, ref).numpy().ravel()
    for i, (p, r) in enumerate(pairs):
        s = binary_scores(p, r)
        assert s["dice"] == pytest.approx(dice[i], abs=1e-5)
        assert s["iou"] == pytest.approx(iou[i], abs=1e-5)
        assert s["hd95"] == pytest.approx(hd[i], abs=1e-4)


def test_multiclass_label_maps_and_spacing():
    ref = np.zeros((20, 20), int)
    ref[2:8, 2:8] = 1
    ref[10:18, 10:18] = 2
    pred = ref.copy()
    pred[10:18, 10:12] = 0
    acc = SegmentationMetric(classes=[1, 2], names=["lung", "heart"], spacing=(2.0, 2.0))
    acc.update(pred, ref)
    m = acc.compute()
    assert m["per_class"]["lung"]["dice"] == 1.0
    assert m["per_class"]["heart"]["dice"] == pytest.approx(2 * 48 / (48 + 64))
    assert m["per_class"]["heart"]["hd95"] == pytest.approx(4.0)  # 2 pixels x spacing 2
    with pytest.raises(ValueError):
        acc.update(pred, ref[:5])
