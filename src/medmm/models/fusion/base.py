"""The fusion interface and its name registry.

Every fusion block: `forward(image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput`.
`create_fusion(name, image_dim, text_dim, dim, **kw)` builds one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageFeatures, TextFeatures


@dataclass
class FusionOutput:
    """pooled: (B, dim). tokens: (B, N, dim) fused tokens or None. aux_loss: scalar added to the
    task loss (MoE load balancing; zero otherwise). extras: attention maps, gates, router weights.
    modality_features: for late fusion, (B, M, dim) per-modality features (heads score each)."""

    pooled: torch.Tensor
    tokens: torch.Tensor | None
    aux_loss: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    modality_features: torch.Tensor | None = None
    tokens_mask: torch.Tensor | None = None


class Fusion(nn.Module):
    """Base class. `uses_image`/`uses_text` tell callers which encoders must run;
    `late` = True means the classifier puts one head on each modality and averages logits."""

    uses_image: bool = True
    uses_text: bool = True
    late: bool = False
    out_dim: int

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class FusionEntry:
    """A registered fusion: how to build it and which modalities it uses (read by tasks, which
    then skip an unused encoder, and by the ablation, whose unimodal baselines are the entries
    using one modality)."""

    name: str
    build: Callable[..., Fusion]
    uses_image: bool
    uses_text: bool

    @property
    def unimodal(self) -> bool:
        return self.uses_image != self.uses_text


_FUSIONS: dict[str, FusionEntry] = {}


def register_fusion(name: str):
    """Decorator registering a Fusion class/constructor `(image_dim, text_dim, dim, **kw)`.

    The entry's `uses_image`/`uses_text` are the class's attributes (default True).
    """

    def wrap(fn):
        if name in _FUSIONS:
            raise MedmmError(f"fusion {name!r} registered twice")
        _FUSIONS[name] = FusionEntry(name, fn, bool(getattr(fn, "uses_image", True)), bool(getattr(fn, "uses_text", True)))
        return fn

    return wrap


def list_fusions() -> list[str]:
    """Registered fusion names."""
    return sorted(_FUSIONS)


def fusion_info(name: str) -> FusionEntry:
    """The registry entry of fusion `name` (unknown name -> error listing the known ones)."""
    if name not in _FUSIONS:
        raise MedmmError(f"unknown fusion {name!r}; known: {', '.join(list_fusions())}")
    return _FUSIONS[name]


def create_fusion(name: str, image_dim: int, text_dim: int, dim: int = 256, **kw: Any) -> Fusion:
    """Build the fusion block `name` mapping image_dim/text_dim features to `dim`."""
    return fusion_info(name).build(image_dim=image_dim, text_dim=text_dim, dim=dim, **kw)


def zero_loss(like: torch.Tensor) -> torch.Tensor:
    """A scalar 0 on the same device/dtype as `like` (so `loss + aux_loss` always works)."""
    return like.new_zeros(())


def need(features, modality: str, fusion: str):
    """Raise a clear error when a fusion that needs both modalities gets one missing."""
    if features is None:
        raise MedmmError(f"fusion {fusion!r} needs {modality} features; use late/moe/early fusion to tolerate a missing modality")
    return features
