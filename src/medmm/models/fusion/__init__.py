"""Fusion blocks, registered by name in one registry: the vector fusions image_only, text_only,
early, late, cross_attention, film, gated, moe, ban (bilinear attention) and the spatial blocks spatial_film,
spatial_attention (text conditioning of feature maps). `create_fusion(name, image_dim, text_dim, dim, **kw)`."""

from medmm.models.fusion import attention, bilinear, moe, simple, spatial  # noqa: F401  (register fusions)
from medmm.models.fusion.base import (
    Fusion,
    FusionEntry,
    FusionOutput,
    create_fusion,
    fusion_info,
    list_fusions,
    register_fusion,
)
from medmm.models.fusion.moe import switch_load_balancing_loss

__all__ = ["Fusion", "FusionEntry", "FusionOutput", "create_fusion", "fusion_info", "list_fusions", "register_fusion",
           "switch_load_balancing_loss"]
