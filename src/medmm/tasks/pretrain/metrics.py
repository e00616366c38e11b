"""Held-out metrics of image pretraining and its majority floor (torch-free).

Records (`PretrainImageTask.evaluation_step`): ``{"id", "group", "prediction": {key: label},
"reference": {key: label | None}}``, plus ``image_embedding`` / ``caption_embedding`` for a
captioned image and ``reconstruction_mse`` with the denoising loss.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

METRIC_DEFINITIONS = {
    "acc_<label>": "fraction of the images whose <label> (modality, plane, location) is in the label space "
                   "learnt from training and predicted correctly (arg-max of its head)",
    "caption_r1": "image -> caption recall@1 among the split's captioned images (cosine of the image's caption "
                  "projection and the frozen caption embeddings; chance 1/n_captions)",
    "caption_r5": "the same, recall@5 (chance 5/n_captions)",
    "reconstruction_mse": "mean squared error of the denoising decoder rebuilding the clean centre crop (normalised units)",
    "n": "images scored",
}


def _indices(records: Sequence[dict[str, Any]], spaces: dict[str, list[str]], side: str) -> np.ndarray:
    """(n, heads) label indices of `side` ("prediction" or "reference"); -1 where absent or unknown."""
    out = np.full((len(records), len(spaces)), -1, dtype=int)
    for i, r in enumerate(records):
        for j, (k, sp) in enumerate(spaces.items()):
            v = (r.get(side) or {}).get(k)
            if v in sp:
                out[i, j] = sp.index(v)
    return out


def head_accuracies(pred: np.ndarray, ref: np.ndarray, keys: Sequence[str]) -> dict[str, float]:
    """acc_<key> per head over the rows whose reference is known (ref >= 0)."""
    out = {}
    for j, k in enumerate(keys):
        known = ref[:, j] >= 0
        if known.any():
            out[f"acc_{k}"] = float(np.mean(pred[known, j] == ref[known, j]))
    return out


def caption_recall(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Image -> caption recall@1/@5 among the captioned records (empty with fewer than two)."""
    cap = [r for r in records if "caption_embedding" in r]
    if len(cap) < 2:
        return {}
    img = np.asarray([r["image_embedding"] for r in cap], dtype=float)
    txt = np.asarray([r["caption_embedding"] for r in cap], dtype=float)
    sim = img @ txt.T
    rank = (sim > np.diag(sim)[:, None]).sum(-1)  # captions scored above the image's own
    return {"caption_r1": float(np.mean(rank < 1)), "caption_r5": float(np.mean(rank < 5)), "n_captions": len(cap)}


def pretrain_metrics(records: Sequence[dict[str, Any]], spaces: dict[str, list[str]]) -> dict[str, Any]:
    """Per-head accuracies, caption recall and reconstruction error of one split's records."""
    out: dict[str, Any] = {"n": len(records)}
    out.update(head_accuracies(_indices(records, spaces, "prediction"), _indices(records, spaces, "reference"), list(spaces)))
    out.update(caption_recall(records))
    mses = [r["reconstruction_mse"] for r in records if "reconstruction_mse" in r]
    if mses:
        out["reconstruction_mse"] = float(np.mean(mses))
    return out


def majority_floors(train_samples: Sequence[Any], records: Sequence[dict[str, Any]], spaces: dict[str, list[str]],
                    n_resamples: int) -> dict[str, Any]:
    """The `majority` floor: each head answers its most common training label; compared with the
    model per head, paired, resampling cases (`medmm.metrics.floors.compare`)."""
    from medmm.metrics import floors as F

    if not records or not spaces:
        return {"majority": F.skipped("no records or no label head")}
    keys = list(spaces)
    majority = {}
    for k in keys:
        counts = Counter(v for s in train_samples if (v := s.targets.get(k)) in spaces[k])
        majority[k] = spaces[k].index(counts.most_common(1)[0][0]) if counts else -1
    ref = _indices(records, spaces, "reference")
    model = _indices(records, spaces, "prediction")
    floor = np.tile(np.asarray([majority[k] for k in keys]), (len(records), 1))

    def fn(pred: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        return head_accuracies(pred, reference, keys)

    return {"majority": F.compare(fn, model, floor, ref, groups=[r.get("group", r["id"]) for r in records],
                                  n_resamples=n_resamples,
                                  description="the most common training label of each head")}
