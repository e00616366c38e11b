"""The `model:` section of the segmentation task: `SegmentationConfig` (`task.Segmentation.Config`).

Grouped by concern: what is segmented and how the text conditions the U-Net (`classes`,
`conditioning`, at the top), the text and its encoder (`text:`), the image input (`image:`), the
U-Net's size (`unet:`), training-time augmentation (`augment:`), the loss (`loss:`) and
inference (`inference:`). `medmm config show segmentation` prints every field with its help.
The flat keys of earlier versions (``text_encoder``, ``crop_size``, ``tversky_alpha``, ...) are
listed in `SegmentationConfig.moved_keys` and fail with their new place. This module is torch-free.

    cfg = SegmentationConfig(conditioning="none", text=SegmentationTextConfig(encoder=None),
                             image=SegmentationImageConfig(size=128), loss=SegmentationLossConfig(name="tversky"))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


@dataclass
class SegmentationTextConfig:
    """The text given to the model and its encoder (`model.text`).

    Attributes:
        template: the text given to the model; {prompt} = class name, other fields = Sample.text.
        encoder: medmm text encoder name ("minilm", "scratch", "hf:..."); null with conditioning "none".
        encoder_kwargs: keyword arguments of the text encoder (e.g. {dim: 64, num_layers: 1} for scratch).
        freeze: keep the text encoder fixed (default for the pretrained MiniLM).
        max_length: tokens of the text kept.
    """

    template: str = "{sentence}"
    encoder: str | None = "minilm"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    freeze: bool = True
    max_length: int = 64


@dataclass
class SegmentationImageConfig:
    """The image input, as the U-Net declares it (`model.image`).

    Attributes:
        size: images and masks are resized to this square size for the model.
        in_channels: 1 (grey) or 3 (RGB).
        mean, std: per-channel normalisation after scaling to [0, 1].
    """

    size: int = 256
    in_channels: int = 3
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.25])


@dataclass
class UNetConfig:
    """The U-Net's size and its cross-attention (`model.unet`).

    Attributes:
        channels: U-Net widths, shallow to deep.
        attention_levels: deepest levels with cross-attention.
        heads: attention heads of the cross-attention.
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    attention_levels: int = 2
    heads: int = 4


@dataclass
class SegmentationAugmentConfig:
    """Training-time augmentation (`model.augment`), drawn from the task's own seeded generator;
    validation and test images are never changed.

    Attributes:
        crop_size: random training crops of this size (null: whole image); also the window size
            of sliding-window inference.
        flip: random flips in training (left-right only when no prompt names a side).
        policy: "crop_flip" (crop_size crops + `flip`) or "lvit" (crops, then LViT's
            rotations/flips instead of `flip`; medmm.models.segmentation_ops).
    """

    crop_size: int | None = None
    flip: bool = True
    policy: Literal["crop_flip", "lvit"] = "crop_flip"


@dataclass
class SegmentationLossConfig:
    """The training loss (`model.loss`).

    Attributes:
        name: "dice_ce" | "dice_focal" | "tversky" (+BCE) | "focal" | "lvit_dice_bce" (LViT's
            0.5 Dice + 0.5 class-balanced BCE).
        tversky_alpha, tversky_beta: the Tversky loss's weights of false positives and false negatives.
    """

    name: Literal["dice_ce", "dice_focal", "tversky", "focal", "lvit_dice_bce"] = "dice_ce"
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7


@dataclass
class SegmentationInferenceConfig:
    """How masks are predicted (`model.inference`).

    Attributes:
        mode: "resize" (predict at image.size, upsample to the original size) | "sliding_window"
            (windows of augment.crop_size over the image.size image).
        overlap: window overlap of sliding-window inference.
        threshold: on the sigmoid (also the training Dice's).
    """

    mode: Literal["resize", "sliding_window"] = "resize"
    overlap: float = 0.25
    threshold: float = 0.5


@dataclass
class SegmentationConfig:
    """The `model:` section of the segmentation task.

    Attributes:
        classes: prompt name -> mask labels whose union is that class's target.
        conditioning: "none" (U-Net baseline) | "film" | "attention" | "film+attention".
        text: the text and its encoder (`SegmentationTextConfig`).
        image: the image input (`SegmentationImageConfig`).
        unet: the U-Net's widths and cross-attention (`UNetConfig`).
        augment: training-time augmentation (`SegmentationAugmentConfig`).
        loss: the training loss (`SegmentationLossConfig`).
        inference: resize or sliding-window prediction, and the threshold (`SegmentationInferenceConfig`).
        bootstrap_resamples: for the CIs of compute_metrics (0: none).
    """

    classes: dict[str, list[str]] = field(default_factory=lambda: {"nuclei": ["nuclei"]})
    conditioning: Literal["none", "film", "attention", "film+attention"] = "film+attention"
    text: SegmentationTextConfig = field(default_factory=SegmentationTextConfig)
    image: SegmentationImageConfig = field(default_factory=SegmentationImageConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    augment: SegmentationAugmentConfig = field(default_factory=SegmentationAugmentConfig)
    loss: SegmentationLossConfig = field(default_factory=SegmentationLossConfig)
    inference: SegmentationInferenceConfig = field(default_factory=SegmentationInferenceConfig)
    bootstrap_resamples: int = 1000

    # The flat keys of earlier versions -> their place now (`medmm config migrate` applies it).
    # `loss` and `inference` were strings and are sections now: an old string value moves to
    # loss.name / inference.mode, a mapping is the new section.
    moved_keys: ClassVar[dict[str, str]] = {
        "text_template": "text.template", "text_encoder": "text.encoder", "text_kw": "text.encoder_kwargs",
        "freeze_text": "text.freeze", "max_text_length": "text.max_length",
        "image_size": "image.size", "in_channels": "image.in_channels", "mean": "image.mean", "std": "image.std",
        "channels": "unet.channels", "attention_levels": "unet.attention_levels", "heads": "unet.heads",
        "crop_size": "augment.crop_size", "flip": "augment.flip", "augmentation": "augment.policy",
        "loss": "loss.name", "tversky_alpha": "loss.tversky_alpha", "tversky_beta": "loss.tversky_beta",
        "inference": "inference.mode", "sw_overlap": "inference.overlap", "threshold": "inference.threshold",
    }


__all__ = ["SegmentationAugmentConfig", "SegmentationConfig", "SegmentationImageConfig", "SegmentationInferenceConfig",
           "SegmentationLossConfig", "SegmentationTextConfig", "UNetConfig"]
