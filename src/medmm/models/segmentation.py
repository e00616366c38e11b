"""U-Net for 2-D segmentation, optionally conditioned on text (LViT-like text guidance).

`TextGuidedUNet` is a plain 2-D U-Net (two 3x3 conv + instance norm + LeakyReLU per level, max
pooling down, transposed conv up). Text can steer it in two places, both on the encoder
features that the decoder receives (the skip connections and the bottleneck):

* ``film``: the pooled sentence feature predicts a per-channel scale and shift of every skip
  (FiLM, Perez et al. 2018) - cheap, global ("the nuclei are dense in the upper right" can only
  shift channel statistics);
* ``attention``: image tokens of the deepest ``attention_levels`` levels cross-attend to the
  text tokens (multi-head attention, padding masked, residual) - spatially selective, as in
  LViT's text-image interaction at low resolutions.

``conditioning="none"`` is the image-only U-Net baseline with the same backbone, so the two
differ only by the text path. `SegmentationModel` pairs the U-Net with a medmm text encoder.
Like every image encoder, the U-Net declares its input (`input_spec`: size, channels, mean/std);
the segmentation task builds its preprocessing from it (`medmm.data.transforms.build_transform`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from medmm.models.encoders.base import ImageInputSpec, TextEncoder, TextFeatures

Conditioning = Literal["none", "film", "attention", "film+attention"]
CONDITIONINGS = ("none", "film", "attention", "film+attention")


class ConvBlock(nn.Sequential):
    """Two (3x3 conv, instance norm, LeakyReLU) layers: the U-Net level."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.InstanceNorm2d(cout, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.InstanceNorm2d(cout, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class FiLM(nn.Module):
    """x * (1 + gamma(t)) + beta(t), per channel, from a pooled text vector t."""

    def __init__(self, text_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(text_dim, 2 * channels)
        # Small (not zero) weights: starts close to identity, yet the text path has a
        # gradient from step one.
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(pooled).chunk(2, dim=-1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class TextCrossAttention(nn.Module):
    """Image tokens (queries) attend to text tokens (keys/values); residual, pre-norm."""

    def __init__(self, text_dim: int, channels: int, heads: int = 4):
        super().__init__()
        heads = max(1, min(heads, channels))
        while channels % heads:
            heads -= 1
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=text_dim, vdim=text_dim, batch_first=True)
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        out, weights = self.attn(
            self.norm(tokens), text.tokens, text.tokens, key_padding_mask=~text.mask.bool(), need_weights=True
        )
        # Kept (detached) so callers can show which words each region looked at.
        self.last_attention = weights.detach()
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class TextGuidedUNet(nn.Module):
    """2-D U-Net whose skips and bottleneck can be conditioned on text features.

    Args:
        in_channels, out_channels: image channels in, logit channels out.
        channels: feature widths per level, shallow to deep (the last is the bottleneck);
            the input size must be divisible by 2 ** (len(channels) - 1).
        text_dim: width of the text features (required unless conditioning is "none").
        conditioning: "none" | "film" | "attention" | "film+attention".
        attention_levels: how many of the deepest levels (bottleneck first) get cross-attention.
        heads: attention heads.
        image_size, mean, std: the declared input (`input_spec`): side in pixels and the
            normalisation after scaling to [0, 1] (one value, or one per channel).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        text_dim: int | None = None,
        conditioning: Conditioning = "film+attention",
        attention_levels: int = 2,
        heads: int = 4,
        image_size: int = 256,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
    ):
        super().__init__()
        self.input_spec = ImageInputSpec(size=image_size, in_channels=in_channels, mean=tuple(mean), std=tuple(std))
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        if conditioning != "none" and not text_dim:
            raise ValueError(f"conditioning {conditioning!r} needs text_dim")
        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise ValueError("channels needs at least two levels")
        self.channels = channels
        self.conditioning = conditioning
        self.down = nn.ModuleList()
        cin = in_channels
        for c in channels:
            self.down.append(ConvBlock(cin, c))
            cin = c
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for deep, shallow in zip(channels[::-1][:-1], channels[::-1][1:], strict=True):
            self.upconv.append(nn.ConvTranspose2d(deep, shallow, 2, stride=2))
            self.up.append(ConvBlock(2 * shallow, shallow))
        self.head = nn.Conv2d(channels[0], out_channels, 1)
        use_film = "film" in conditioning
        use_attn = "attention" in conditioning
        n = len(channels)
        self.film = nn.ModuleList([FiLM(text_dim, c) for c in channels]) if use_film else None
        levels = max(0, min(attention_levels, n)) if use_attn else 0
        # level i (0 = shallowest) has cross-attention when i >= n - levels
        self.attn = nn.ModuleDict({str(i): TextCrossAttention(text_dim, channels[i], heads)
                                   for i in range(n - levels, n)})

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (len(self.channels) - 1)

    def forward(self, images: torch.Tensor, text: TextFeatures | None = None) -> torch.Tensor:
        """Logits (B, out_channels, H, W) for images (B, C, H, W)."""
        if self.conditioning != "none" and text is None:
            raise ValueError(f"this U-Net is text-guided ({self.conditioning}); pass text features")
        h, w = images.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"input {h}x{w} is not divisible by {self.divisor}")
        skips: list[torch.Tensor] = []
        x = images
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            if self.film is not None:
                x = self.film[i](x, text.pooled)
            if str(i) in self.attn:
                x = self.attn[str(i)](x, text)
            skips.append(x)
        x = skips.pop()
        for upconv, block in zip(self.upconv, self.up, strict=True):
            x = block(torch.cat([upconv(x), skips.pop()], dim=1))
        return self.head(x)


class SegmentationModel(nn.Module):
    """A `TextGuidedUNet` plus (for text-guided variants) a medmm text encoder.

    ``freeze_text`` keeps the text encoder's weights fixed (the usual choice for the offline
    MiniLM on small data; a scratch encoder should be trained).
    """

    def __init__(self, unet: TextGuidedUNet, text_encoder: TextEncoder | None = None, freeze_text: bool = False):
        super().__init__()
        if unet.conditioning != "none" and text_encoder is None:
            raise ValueError("a text-guided U-Net needs a text encoder")
        self.unet = unet
        self.text_encoder = text_encoder
        self.freeze_text = freeze_text
        if text_encoder is not None and freeze_text:
            for p in text_encoder.parameters():
                p.requires_grad_(False)

    def encode_text(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None) -> TextFeatures | None:
        """Text features for the U-Net (None for the image-only baseline)."""
        if self.text_encoder is None:
            return None
        if input_ids is None or attention_mask is None:
            raise ValueError("text-guided model called without input_ids/attention_mask")
        if self.freeze_text:
            self.text_encoder.eval()  # no dropout in a frozen encoder, even in train mode
            with torch.no_grad():
                return self.text_encoder(input_ids, attention_mask)
        return self.text_encoder(input_ids, attention_mask)

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, out_channels, H, W)."""
        return self.unet(images, self.encode_text(input_ids, attention_mask))
