"""Imbalance losses, sampling weights and threshold tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medmm.tasks import losses as L


def test_class_weights_inverse_and_effective():
    w = L.class_weights([90, 10])
    assert np.mean(w) == pytest.approx(1.0) and w[1] / w[0] == pytest.approx(9.0)
    e = L.class_weights([90, 10], "effective", beta=0.99)
    assert 1.0 < e[1] / e[0] < 9.0  # effective number flattens inverse frequency
    assert L.class_weights([5, 0, 5])[1] == 0.0
    with pytest.raises(ValueError):
        L.class_weights([-1, 3])
    with pytest.raises(ValueError):
        L.class_weights([1, 2], "nope")


def test_focal_gamma0_equals_ce_and_downweights_easy():
    torch.manual_seed(0)
    logits = torch.randn(16, 3)
    y = torch.randint(0, 3, (16,))
    assert L.focal_loss(logits, y, gamma=0.0).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    w = torch.tensor([1.0, 2.0, 3.0])
    assert L.focal_loss(logits, y, gamma=0.0, weight=w).item() == pytest.approx(
        F.cross_entropy(logits, y, weight=w).item(), rel=1e-5)
    easy = torch.tensor([[5.0, 0.0, 0.0]])
    assert L.focal_loss(easy, torch.tensor([0]), gamma=2.0) < 0.01 * F.cross_entropy(easy, torch.tensor([0]))


def test_focal_ignores_masked_targets():
    logits = torch.randn(4, 2, requires_grad=True)
    y = torch.tensor([0, L.IGNORE, 1, L.IGNORE])
    a = L.focal_loss(logits, y, gamma=0.0)
    b = F.cross_entropy(logits[[0, 2]], y[[0, 2]])
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    assert L.focal_loss(logits, torch.full((4,), L.IGNORE)).item() == 0.0


def test_focal_multilabel_mask():
    logits = torch.randn(3, 2)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    mask = torch.tensor([[True, False], [True, True], [False, True]])
    got = L.focal_loss(logits, y, gamma=0.0, multilabel=True, mask=mask)
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    assert got.item() == pytest.approx(bce[mask].mean().item(), rel=1e-5)


def test_logit_adjustment_shifts_toward_rare_class():
    prior = torch.tensor(L.log_prior([900, 100], eps=0.0))
    logits = torch.zeros(1, 2, requires_grad=True)
    # Same raw logits: the adjusted loss is larger for the rare class (it needs a margin).
    rare = L.logit_adjusted_ce(logits, torch.tensor([1]), prior)
    common = L.logit_adjusted_ce(logits, torch.tensor([0]), prior)
    assert rare > common
    assert L.logit_adjusted_ce(logits, torch.tensor([0]), prior, tau=0.0).item() == pytest.approx(np.log(2))


def test_sample_weights_balanced():
    w = L.sample_weights_balanced([0, 0, 0, 1, None])
    assert w[:3] == [pytest.approx(1 / 3)] * 3 and w[3] == 1.0 and w[4] == 0.0
    assert sum(w[:3]) == pytest.approx(w[3])  # each class gets the same total mass
    with pytest.raises(ValueError):
        L.sample_weights_balanced([None])


def test_tune_thresholds_f1_and_youden():
    y = np.array([[0], [0], [0], [1], [1]], float)
    s = np.array([[0.1], [0.2], [0.3], [0.35], [0.9]])
    t = L.tune_thresholds(y, s, "f1")[0]
    assert 0.3 < t <= 0.35  # separates perfectly
    assert 0.3 < L.tune_thresholds(y, s, "youden")[0] <= 0.35
    # a column with one class keeps 0.5; NaN references are left out
    y2 = np.array([[1, np.nan], [1, 0], [1, 1]], float)
    s2 = np.array([[0.2, 0.9], [0.3, 0.1], [0.4, 0.8]])
    t2 = L.tune_thresholds(y2, s2)
    assert t2[0] == 0.5 and 0.1 < t2[1] <= 0.8
    with pytest.raises(ValueError):
        L.tune_thresholds(y, s, "nope")


def test_predict_with_thresholds_prefers_class_over_its_threshold():
    probs = np.array([[0.7, 0.3], [0.9, 0.1]])
    assert L.predict_with_thresholds(probs, [0.5, 0.5]).tolist() == [0, 0]
    assert L.predict_with_thresholds(probs, [0.8, 0.25]).tolist() == [1, 0]
