"""The fusion interface and its name registry, one for every task.

A vector fusion: `forward(image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput`
(classifier, VQA). A spatial block (metadata `spatial=True`) conditions image feature maps on
text: `forward(x (B, C, H, W), text: TextFeatures) -> (B, C, H, W)` (segmentation's U-Net).
`create_fusion(name, image_dim, text_dim, dim, **kw)` builds one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageFeatures, TextFeatures
from medmm.registry import Registry


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
    """Base class. `uses_image`/`uses_text` tell callers which encoders must run (declared
    where the class is registered, `register_fusion(name, uses_text=False)`, and copied here);
    `late` = True means the classifier puts one head on each modality and averages logits."""

    uses_image: bool = True
    uses_text: bool = True
    late: bool = False
    out_dim: int

    def forward(self, image: ImageFeatures | None, text: TextFeatures | None) -> FusionOutput:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class FusionEntry:
    """A registered fusion: how to build it and its registry metadata: which modalities it uses
    (read by tasks, which then skip an unused encoder, and by the ablation, whose unimodal
    baselines are the entries using one modality) and whether it is spatial (conditions image
    feature maps (B, C, H, W) on text, as the segmentation U-Net's blocks do) or a vector fusion
    (image and text features -> `FusionOutput`, for the classifier and VQA heads)."""

    name: str
    build: Callable[..., nn.Module]
    uses_image: bool
    uses_text: bool
    spatial: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def unimodal(self) -> bool:
        return self.uses_image != self.uses_text


# Every module of medmm.models.fusion registers its blocks when imported.
_FUSIONS: Registry[Callable[..., nn.Module]] = Registry("fusion", discover=("medmm.models.fusion",))


def register_fusion(name: str, *, uses_image: bool | None = None, uses_text: bool | None = None, spatial: bool = False,
                    **meta: Any):
    """Decorator registering a fusion class/constructor `(image_dim, text_dim, dim, **kw)`.

    The entry's metadata declare what the block uses: `uses_image`/`uses_text` (default: the
    class's attributes, else True; written onto the class so its instances say the same) and
    `spatial` (a block conditioning image feature maps: forward(x (B, C, H, W), text:
    TextFeatures) -> (B, C, H, W), built as (image_dim=C, text_dim, dim=C)); further keyword
    arguments are metadata too (the U-Net reads `placement`).
    """

    def wrap(fn):
        ui = bool(getattr(fn, "uses_image", True)) if uses_image is None else uses_image
        ut = bool(getattr(fn, "uses_text", True)) if uses_text is None else uses_text
        if isinstance(fn, type):
            fn.uses_image, fn.uses_text = ui, ut
        return _FUSIONS.register(name, fn, uses_image=ui, uses_text=ut, spatial=spatial, **meta)

    return wrap


def list_fusions(*, spatial: bool = False) -> list[str]:
    """Registered vector fusion names (`spatial=True`: the spatial conditioning blocks)."""
    return _FUSIONS.names(spatial=spatial)


def fusion_info(name: str, *, spatial: bool | None = None) -> FusionEntry:
    """The registry entry of fusion `name` (unknown name -> error listing the known ones).

    `spatial` True/False also requires that kind of block (a clear error otherwise)."""
    e = _FUSIONS.entry(name)
    m = e.meta
    if spatial is not None and m["spatial"] != spatial:
        want = "a spatial conditioning block (image feature maps)" if spatial else "a vector fusion"
        raise MedmmError(f"fusion {name!r} is not {want}; known: {', '.join(list_fusions(spatial=spatial))}")
    extra = {k: v for k, v in m.items() if k not in ("uses_image", "uses_text", "spatial")}
    return FusionEntry(name, e.obj, m["uses_image"], m["uses_text"], m["spatial"], MappingProxyType(extra))


def create_fusion(name: str, image_dim: int, text_dim: int, dim: int = 256, *, spatial: bool = False, **kw: Any) -> nn.Module:
    """Build the fusion block `name` mapping image_dim/text_dim features to `dim` (a vector
    fusion; `spatial=True`: a spatial conditioning block, image_dim = dim = its channels)."""
    return fusion_info(name, spatial=spatial).build(image_dim=image_dim, text_dim=text_dim, dim=dim, **kw)


def zero_loss(like: torch.Tensor) -> torch.Tensor:
    """A scalar 0 on the same device/dtype as `like` (so `loss + aux_loss` always works)."""
    return like.new_zeros(())


def need(features, modality: str, fusion: str):
    """Raise a clear error when a fusion that needs both modalities gets one missing."""
    if features is None:
        raise MedmmError(f"fusion {fusion!r} needs {modality} features; use late/moe/early fusion to tolerate a missing modality")
    return features
