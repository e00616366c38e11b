"""Losses and helpers for class imbalance in classification.

* `class_weights(counts, kind)`: inverse-frequency or "effective number" (Cui et al., CVPR 2019)
  weights for weighted cross-entropy, normalised to mean 1 over the classes.
* `focal_loss`: Lin et al., ICCV 2017, multi-class (softmax) and multi-label (sigmoid), with an
  ignore mask for missing/uncertain labels.
* `logit_adjusted_ce`: Menon et al., ICLR 2021, loss-side logit adjustment: train on
  logits + tau * log(prior), predict with the raw logits (which are then balanced).
* `sample_weights_balanced`: per-sample weights for a class-balanced sampler.
* `tune_thresholds`: per-class decision thresholds maximising F1 or Youden's J on validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100  # multi-class target value masked from the loss (F.cross_entropy's ignore_index)


def class_weights(counts: Sequence[int], kind: Literal["inverse", "effective"] = "inverse", beta: float = 0.999) -> list[float]:
    """Per-class loss weights from training counts, normalised to mean 1.

    inverse: 1 / n_c. effective: (1 - beta) / (1 - beta ** n_c) (Cui et al.). A class with no
    training sample gets weight 0 (it cannot be learned and must not blow up the loss).
    """
    n = np.asarray(counts, dtype=float)
    if n.ndim != 1 or len(n) == 0 or (n < 0).any():
        raise ValueError(f"counts must be a non-empty list of non-negative numbers, got {counts!r}")
    w = np.zeros_like(n)
    present = n > 0
    if kind == "inverse":
        w[present] = 1.0 / n[present]
    elif kind == "effective":
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        w[present] = (1.0 - beta) / (1.0 - beta ** n[present])
    else:
        raise ValueError(f"unknown class weight kind {kind!r}; use inverse or effective")
    if present.any():
        w[present] *= present.sum() / w[present].sum()
    return w.tolist()


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    multilabel: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss, mean over the non-ignored terms.

    Multi-class: logits (B, C), targets (B,) long with IGNORE for masked samples; loss
    -w_y (1 - p_y)^gamma log p_y. Multi-label: logits/targets (B, C) float, `mask` (B, C) bool
    (False = missing/uncertain, left out); the loss is the sigmoid form per label.
    gamma = 0 gives (weighted) cross-entropy exactly.
    """
    if multilabel:
        bce = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")
        p = torch.sigmoid(logits)
        p_t = torch.where(targets > 0.5, p, 1 - p)
        loss = (1 - p_t).clamp_min(0).pow(gamma) * bce
        if weight is not None:
            loss = loss * weight.view(1, -1)
        m = mask.float() if mask is not None else torch.ones_like(loss)
        return (loss * m).sum() / m.sum().clamp_min(1.0)
    keep = targets != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    lg, tg = logits[keep], targets[keep]
    logp = F.log_softmax(lg, dim=-1).gather(1, tg[:, None])[:, 0]
    loss = -((1 - logp.exp()).clamp_min(0).pow(gamma)) * logp
    if weight is not None:
        w = weight[tg]
        return (loss * w).sum() / w.sum().clamp_min(1e-12)
    return loss.mean()


def log_prior(counts: Sequence[int], eps: float = 1.0) -> list[float]:
    """log of the training class prior (add-`eps` smoothed so an absent class is finite)."""
    n = np.asarray(counts, dtype=float) + eps
    return np.log(n / n.sum()).tolist()


def logit_adjusted_ce(
    logits: torch.Tensor, targets: torch.Tensor, log_prior_: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Menon et al. logit-adjusted cross-entropy: CE(logits + tau * log prior, y).

    Rare classes need a larger margin, so the raw logits the model learns approximate the
    balanced (prior-free) posterior; predict with the raw logits.
    """
    return F.cross_entropy(logits + tau * log_prior_.to(logits).view(1, -1), targets, ignore_index=IGNORE)


def sample_weights_balanced(labels: Sequence[int | None], power: float = 1.0) -> list[float]:
    """Per-sample sampling weights 1 / n_class^power (class-balanced sampling at power 1).

    Samples without a label (None) get weight 0 (they do not train a classifier).
    """
    known = [y for y in labels if y is not None]
    if not known:
        raise ValueError("no labelled samples to balance")
    counts: dict[int, int] = {}
    for y in known:
        counts[y] = counts.get(y, 0) + 1
    return [0.0 if y is None else float(counts[y]) ** -power for y in labels]


def tune_thresholds(
    y_true: np.ndarray, y_score: np.ndarray, criterion: Literal["f1", "youden"] = "f1"
) -> list[float]:
    """Per-column decision threshold maximising F1 or Youden's J (sensitivity + specificity - 1).

    y_true (N, C) in {0, 1} with NaN = missing (left out); y_score (N, C) probabilities (one
    column per class, one-vs-rest). Candidates are the observed scores (midpoints between
    neighbours, so a threshold does not sit exactly on a sample); a column with one class only
    keeps 0.5.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_score = np.asarray(y_score, dtype=float)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must be equal (N, C) arrays")
    out = []
    for c in range(y_true.shape[1]):
        keep = np.isfinite(y_true[:, c])
        y, s = y_true[keep, c].astype(int), y_score[keep, c]
        if len(np.unique(y)) < 2:
            out.append(0.5)
            continue
        u = np.unique(s)
        cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
        pred = s[None, :] >= cands[:, None]
        tp = (pred & (y == 1)).sum(1)
        fp = (pred & (y == 0)).sum(1)
        fn = (~pred & (y == 1)).sum(1)
        tn = (~pred & (y == 0)).sum(1)
        if criterion == "f1":
            score = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        elif criterion == "youden":
            score = tp / np.maximum(tp + fn, 1) + tn / np.maximum(tn + fp, 1) - 1
        else:
            raise ValueError(f"unknown criterion {criterion!r}; use f1 or youden")
        out.append(float(cands[int(np.argmax(score))]))
    return out


def predict_with_thresholds(probs: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Multi-class decision with per-class thresholds: the class with the largest
    probability / threshold ratio among those over their threshold; arg-max of the ratio when
    none is (so every sample still gets one class)."""
    p = np.asarray(probs, dtype=float)
    t = np.clip(np.asarray(thresholds, dtype=float), 1e-6, None)
    return np.argmax(p / t[None, :], axis=1)
