"""Image-attribute and findings heads of the report generator, and their decoder memory tokens.

Two kinds of image-level predictions condition the report decoder (`task.py`):

* attributes (`AttributeHeads`): one softmax head per categorical `Sample.targets` key (on
  MedPix: modality_detail, plane, location). Each head's predicted distribution becomes one
  memory token, the probability-weighted class embeddings, so the text can name what the image
  shows. Classes are fitted on the training samples (`fit_attribute_classes`); rare values are
  pooled into "<other>".
* findings (`FindingsHeads`): a multi-label head over the CheXpert observations that medmm's
  labeller finds in the training reports; each observation becomes one memory token,
  interpolated between a "present" and an "absent" embedding by its predicted probability.

The heads read the pooled image features; their probabilities enter the memory DETACHED, so the
heads learn from their labels only (not from the report loss).

    heads = AttributeHeads(feat_dim=128, dim=192, attributes={"plane": ["Axial", "Coronal", "<other>"]})
    tokens, logits = heads(pooled)                  # (B, 1, 192), [(B, 3)]
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from medmm.data.schema import Sample
from medmm.errors import MedmmError

OTHER = "<other>"


def module_key(target: str) -> str:
    """A ModuleDict-safe key for a target name (no dots)."""
    return "t_" + re.sub(r"[^0-9A-Za-z_]", "_", target)


def fit_attribute_classes(samples: list[Sample], targets: list[str], min_count: int) -> dict[str, list[str]]:
    """Per target, the classes seen at least `min_count` times in `samples` (most frequent first),
    followed by "<other>" when some values are rarer. Targets no sample has are an error."""
    out: dict[str, list[str]] = {}
    for t in targets:
        counts: dict[str, int] = {}
        for s in samples:
            v = s.targets.get(t)
            if v is not None:
                counts[str(v)] = counts.get(str(v), 0) + 1
        if not counts:
            raise MedmmError(f"model.attributes.targets: no training sample has target {t!r}")
        kept = sorted((v for v, n in counts.items() if n >= min_count), key=lambda v: (-counts[v], v))
        out[t] = kept + ([OTHER] if len(kept) < len(counts) or not kept else [])
    return out


def attribute_index(classes: list[str], value: str | None) -> int:
    """Class index of `value` (-1 when missing: left out of the loss; rare values -> "<other>")."""
    if value is None:
        return -1
    try:
        return classes.index(str(value))
    except ValueError:
        return classes.index(OTHER) if OTHER in classes else -1


def attribute_accuracy(records: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of each predicted image attribute over the records that have a reference value
    (`reference_class`: the reference mapped to the training classes, rare values to "<other>")."""
    hits: dict[str, list[int]] = {}
    for r in records:
        for t, a in (r.get("attributes") or {}).items():
            if a.get("reference_class") is None:
                continue
            h = hits.setdefault(t, [0, 0])
            h[1] += 1
            h[0] += int(a["prediction"] == a["reference_class"])
    return {t: round(h[0] / h[1], 4) for t, h in hits.items() if h[1]}


class AttributeHeads(nn.Module):
    """One softmax head per attribute on the pooled image features, and one memory token each.

    Args:
        feat_dim: pooled image feature width. dim: decoder width.
        attributes: target -> class names (output order). dropout: before each head's linear layer.
    """

    def __init__(self, feat_dim: int, dim: int, attributes: dict[str, list[str]], dropout: float = 0.0):
        super().__init__()
        if not attributes:
            raise MedmmError("AttributeHeads needs at least one attribute")
        self.targets = list(attributes)
        self.heads = nn.ModuleDict({
            module_key(t): nn.Sequential(nn.LayerNorm(feat_dim), nn.Dropout(dropout), nn.Linear(feat_dim, len(cls)))
            for t, cls in attributes.items()})
        self.embed = nn.ParameterDict({module_key(t): nn.Parameter(torch.randn(len(cls), dim) * 0.02)
                                       for t, cls in attributes.items()})
        self.type_embed = nn.Parameter(torch.randn(len(attributes), dim) * 0.02)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(memory tokens (B, T, dim), logits per target [(B, classes_t)])."""
        toks, logits = [], []
        for j, t in enumerate(self.targets):
            lg = self.heads[module_key(t)](pooled)
            logits.append(lg)
            p = torch.softmax(lg.detach().float(), -1).to(pooled.dtype)  # detached: see module docstring
            toks.append(p @ self.embed[module_key(t)] + self.type_embed[j])
        return torch.stack(toks, 1), logits


class FindingsHeads(nn.Module):
    """Multi-label head over `n` observations; one present/absent-interpolated token each."""

    def __init__(self, feat_dim: int, dim: int, n: int):
        super().__init__()
        if n < 1:
            raise MedmmError("FindingsHeads needs at least one observation")
        self.head = nn.Sequential(nn.LayerNorm(feat_dim), nn.Linear(feat_dim, n))
        self.present = nn.Parameter(torch.randn(n, dim) * 0.02)
        self.absent = nn.Parameter(torch.randn(n, dim) * 0.02)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory tokens (B, n, dim), logits (B, n))."""
        logits = self.head(pooled)
        p = torch.sigmoid(logits.detach())[..., None]
        return p * self.present + (1 - p) * self.absent, logits


# Parameter names before the heads had their own modules (runs trained until 2026-11-28):
# renamed on load so those runs (and init_run from them) keep working.
LEGACY_KEYS = (("findings_head.", "findings.head."), ("findings_present", "findings.present"),
               ("findings_absent", "findings.absent"), ("attribute_heads.", "attribute_model.heads."),
               ("attribute_embed.", "attribute_model.embed."), ("attribute_type", "attribute_model.type_embed"))


def rename_legacy_keys(state_dict: dict[str, Any], prefix: str = "") -> None:
    """Rename, in place, the old flat head parameter names (`LEGACY_KEYS`) under `prefix`."""
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        for old, new in LEGACY_KEYS:
            if rest.startswith(old):
                state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)
                break


__all__ = ["OTHER", "AttributeHeads", "FindingsHeads", "attribute_accuracy", "attribute_index", "fit_attribute_classes",
           "module_key", "rename_legacy_keys"]
