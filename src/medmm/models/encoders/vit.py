"""MONAI Vision Transformers (ViT-S/16, ViT-B/16) with per-layer attention probabilities kept.

`ImageFeatures.attentions` holds each block's softmax attention (B, heads, N, N), first layer first,
so attention rollout (interpret/) needs nothing model-specific. MONAI stores them detached.
"""

from __future__ import annotations

import torch

from medmm.models.encoders.base import ImageEncoder, ImageFeatures, ImageInputSpec, match_channels
from medmm.models.encoders.factory import register_image_encoder


class MonaiViT(ImageEncoder):
    """MONAI ViT without class token: tokens are patch tokens, pooled is their mean.

    maps: the patch tokens of 4 evenly spaced blocks reshaped to (B, D, H/p, W/p) (UNETR-style
    skip features for segmentation decoders).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 224,
        patch_size: int = 16,
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_layers: int = 12,
        num_heads: int = 12,
        dropout: float = 0.0,
        keep_attentions: bool = True,
    ):
        super().__init__()
        from monai.networks.nets import ViT

        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        self.vit = ViT(
            in_channels=in_channels,
            img_size=image_size,
            patch_size=patch_size,
            hidden_size=hidden_size,
            mlp_dim=mlp_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            classification=False,
            dropout_rate=dropout,
            spatial_dims=2,
            qkv_bias=True,
            save_attn=keep_attentions,
        )
        self.keep_attentions = keep_attentions
        self.in_channels = in_channels
        self.grid = image_size // patch_size
        self.out_dim = hidden_size
        self.input_spec = ImageInputSpec(size=image_size, in_channels=in_channels, mean=(0.5,) * in_channels, std=(0.5,) * in_channels)
        step = max(1, num_layers // 4)
        self.map_layers = sorted({min(num_layers, step * i) - 1 for i in range(1, 5)})

    def _grid(self, t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], self.grid, self.grid)

    def forward(self, images: torch.Tensor) -> ImageFeatures:
        x = match_channels(images, self.in_channels)
        if tuple(x.shape[-2:]) != (self.input_spec.size, self.input_spec.size):
            raise ValueError(f"this ViT was built for {self.input_spec.size} px images, got {tuple(x.shape[-2:])}")
        tokens, hidden = self.vit(x)
        maps = [self._grid(hidden[i]) for i in self.map_layers]
        maps[-1] = self._grid(tokens)
        atts = [blk.attn.att_mat for blk in self.vit.blocks] if self.keep_attentions else []
        return ImageFeatures(pooled=tokens.mean(dim=1), tokens=tokens, maps=maps, attentions=atts)


@register_image_encoder("vit_small")
def vit_small(in_channels: int = 3, **kw) -> ImageEncoder:
    """ViT-S/16: 384-d, 12 layers, 6 heads (~22 M parameters at 224 px)."""
    cfg = dict(hidden_size=384, mlp_dim=1536, num_layers=12, num_heads=6) | kw
    return MonaiViT(in_channels=in_channels, **cfg)


@register_image_encoder("vit_base")
def vit_base(in_channels: int = 3, **kw) -> ImageEncoder:
    """ViT-B/16: 768-d, 12 layers, 12 heads (~86 M parameters at 224 px)."""
    cfg = dict(hidden_size=768, mlp_dim=3072, num_layers=12, num_heads=12) | kw
    return MonaiViT(in_channels=in_channels, **cfg)


