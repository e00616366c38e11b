"""U-Net for 2-D segmentation, optionally conditioned on text (LViT-like text guidance).

`TextGuidedUNet` is a plain 2-D U-Net (two 3x3 conv + instance norm + LeakyReLU per level, max
pooling down, transposed conv up). Text can steer it on the encoder features that the decoder
receives (the skip connections and the bottleneck) through spatial blocks of the one fusion
registry (`medmm.models.fusion.spatial`, metadata ``spatial=True``); ``conditioning`` names them
without their ``spatial_`` prefix, joined by "+" and applied in that order at each level:

* ``film``: the pooled sentence feature predicts a per-channel scale and shift of every skip;
* ``attention``: image tokens of the deepest ``attention_levels`` levels cross-attend to the
  text tokens.

``conditioning="none"`` is the image-only U-Net baseline with the same backbone, so the two
differ only by the text path. `SegmentationModel` pairs the U-Net with a medmm text encoder.
Like every image encoder, the U-Net declares its input (`input_spec`: size, channels, mean/std);
the segmentation task builds its preprocessing from it (`medmm.data.transforms.build_transform`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medmm.models.encoders.base import ImageInputSpec, TextEncoder, TextFeatures

PREFIX = "spatial_"  # conditioning "film" is the spatial fusion "spatial_film"
# Module attributes of the built-in blocks, kept from before they moved to the fusion registry so
# saved weights (unet.film.<level>..., unet.attn.<level>...) load unchanged.
_ATTRIBUTES = {"film": "film", "attention": "attn"}


def conditionings() -> list[str]:
    """The single conditionings the U-Net accepts: the registered spatial fusions, unprefixed
    (join several with "+"; "none" = no text)."""
    from medmm.models.fusion import list_fusions

    return [n.removeprefix(PREFIX) for n in list_fusions(spatial=True) if n.startswith(PREFIX)]


def _conditioning_parts(conditioning: str) -> list[str]:
    if conditioning == "none":
        return []
    parts = conditioning.split("+")
    known = conditionings()
    if not all(parts) or len(set(parts)) != len(parts) or any(p not in known for p in parts):
        raise ValueError(f"conditioning must be 'none' or spatial fusions joined by '+' ({', '.join(known)}), got {conditioning!r}")
    return parts


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


class TextGuidedUNet(nn.Module):
    """2-D U-Net whose skips and bottleneck can be conditioned on text features.

    Args:
        in_channels, out_channels: image channels in, logit channels out.
        channels: feature widths per level, shallow to deep (the last is the bottleneck);
            the input size must be divisible by 2 ** (len(channels) - 1).
        text_dim: width of the text features (required unless conditioning is "none").
        conditioning: "none", or spatial fusion names without "spatial_" joined by "+"
            ("film", "attention", "film+attention"), applied in that order.
        attention_levels: how many of the deepest levels (bottleneck first) get the blocks
            placed on the deepest levels (cross-attention).
        heads: attention heads (blocks whose registry entry lists the "heads" option).
        image_size, mean, std: the declared input (`input_spec`): side in pixels and the
            normalisation after scaling to [0, 1] (one value, or one per channel).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        text_dim: int | None = None,
        conditioning: str = "film+attention",
        attention_levels: int = 2,
        heads: int = 4,
        image_size: int = 256,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
    ):
        super().__init__()
        self.input_spec = ImageInputSpec(size=image_size, in_channels=in_channels, mean=tuple(mean), std=tuple(std))
        parts = _conditioning_parts(conditioning)
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
        self._blocks = [self._add_blocks(part, text_dim, attention_levels, heads) for part in parts]

    def _add_blocks(self, part: str, text_dim: int, attention_levels: int, heads: int) -> str:
        """Build the spatial fusion `part` for the levels its registry entry places it on; returns
        the attribute holding them (level -> block)."""
        from medmm.models.fusion import create_fusion, fusion_info

        info = fusion_info(PREFIX + part, spatial=True)
        n = len(self.channels)
        placement = info.meta.get("placement")
        if placement == "every_level":
            levels = range(n)
        elif placement == "deepest_levels":
            levels = range(n - max(0, min(attention_levels, n)), n)  # level i (0 = shallowest)
        else:
            raise ValueError(f"spatial fusion {info.name!r}: unknown placement {placement!r} (every_level | deepest_levels)")
        kw = {"heads": heads} if "heads" in info.meta.get("options", ()) else {}
        attr = _ATTRIBUTES.get(part, part)
        if hasattr(self, attr):
            raise ValueError(f"spatial fusion {info.name!r}: the U-Net already has a module {attr!r}")
        self.add_module(attr, nn.ModuleDict({str(i): create_fusion(info.name, self.channels[i], text_dim, self.channels[i],
                                                                   spatial=True, **kw) for i in levels}))
        return attr

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
            for attr in self._blocks:
                blocks = getattr(self, attr)
                if str(i) in blocks:
                    x = blocks[str(i)](x, text)
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
