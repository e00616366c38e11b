"""Modality contributions: exact Shapley values over the input modalities by ablation.

A coalition's value is the model's output with the modalities outside the coalition replaced
by their baseline ("absent"): for images an all-zero tensor in the model's input space (after
normalisation, i.e. the dataset-mean grey image), for text the empty string (the tokenizer's
encoding of "": [CLS] [SEP] for BERT-style tokenizers, no real token for the scratch one).
With two modalities the Shapley value of the image is
    0.5 * [(f(I, T) - f(0, T)) + (f(I, 0) - f(0, 0))]
and the contributions always sum to f(both) - f(neither) (efficiency).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import torch


def shapley_values(value: Callable[[frozenset], torch.Tensor], players: Sequence[Hashable]) -> dict[Hashable, torch.Tensor]:
    """Exact Shapley values of `players` for a value function of coalitions (2^n evaluations).

    value(frozenset of present players) -> tensor (any shape, e.g. (B,)); results have that shape.
    """
    players = list(players)
    n = len(players)
    cache = {frozenset(s): value(frozenset(s)) for r in range(n + 1) for s in itertools.combinations(players, r)}
    out = {}
    for p in players:
        others = [q for q in players if q != p]
        total = torch.zeros_like(cache[frozenset()])
        for r in range(n):
            w = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for s in itertools.combinations(others, r):
                s = frozenset(s)
                total = total + w * (cache[s | {p}] - cache[s])
        out[p] = total
    return out


def modality_shapley(
    scores: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    text: tuple[torch.Tensor, torch.Tensor],
    absent_text: tuple[torch.Tensor, torch.Tensor],
    target: int | torch.Tensor,
    output: str = "prob",
) -> dict[str, Any]:
    """Shapley contributions of image and text to the target class's output, per sample.

    scores(images, input_ids, attention_mask) -> logits (B, C). text / absent_text: (input_ids,
    attention_mask); absent_text is usually the tokenization of "" repeated B times. `output`:
    "prob" (softmax probability) or "logit". Returns {"image", "text", "both", "neither"}
    (tensors (B,)); image + text == both - neither.
    """
    if output not in ("prob", "logit"):
        raise ValueError(f"output must be 'prob' or 'logit', got {output!r}")
    t = torch.as_tensor(target).long().view(-1, 1) if not isinstance(target, int) else None
    zero_img = torch.zeros_like(images)

    @torch.no_grad()
    def value(coalition: frozenset) -> torch.Tensor:
        img = images if "image" in coalition else zero_img
        ids, mask = text if "text" in coalition else absent_text
        logits = scores(img, ids, mask).float()
        out = logits.softmax(-1) if output == "prob" else logits
        return out[:, target] if t is None else out.gather(1, t.to(out.device)).squeeze(1)

    phi = shapley_values(value, ["image", "text"])
    return {"image": phi["image"], "text": phi["text"], "both": value(frozenset({"image", "text"})), "neither": value(frozenset())}


def per_class_mean(image: Sequence[float], text: Sequence[float], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean image/text contribution per class label (e.g. the predicted or true class), with n."""
    image, text = np.asarray(image, float), np.asarray(text, float)
    out = {}
    for lab in sorted(set(labels)):
        idx = [i for i, x in enumerate(labels) if x == lab]
        out[lab] = {"image": float(image[idx].mean()), "text": float(text[idx].mean()), "n": len(idx)}
    return out
