"""The `model:` section of the segmentation task: `SegmentationConfig` (`task.Segmentation.Config`).

Every field is documented below (`medmm config show segmentation` prints them). This module is
torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class SegmentationConfig:
    """The `model:` section of the segmentation task.

    Attributes:
        classes: prompt name -> mask labels whose union is that class's target.
        text_template: the text given to the model; {prompt} = class name, other fields = Sample.text.
        conditioning: "none" (U-Net baseline) | "film" | "attention" | "film+attention".
        text_encoder: medmm text encoder name ("minilm", "scratch", "hf:..."); null with "none".
        text_kw: keyword arguments of the text encoder (e.g. {dim: 64, num_layers: 1} for scratch).
        freeze_text: keep the text encoder fixed (default for the pretrained MiniLM).
        max_text_length: tokens of the text kept.
        channels: U-Net widths, shallow to deep.
        attention_levels: deepest levels with cross-attention.
        heads: attention heads of the cross-attention.
        in_channels: 1 (grey) or 3 (RGB).
        mean, std: per-channel normalisation after scaling to [0, 1].
        image_size: images and masks are resized to this square size for the model.
        crop_size: random training crops of this size (null: whole image); also the window size
            of sliding-window inference.
        inference: "resize" | "sliding_window".
        sw_overlap: window overlap of sliding-window inference.
        flip: random flips in training.
        augmentation: "crop_flip" (crop_size crops + `flip`) or "lvit" (crops, then LViT's
            rotations/flips instead of `flip`; medmm.models.segmentation_ops).
        loss: "dice_ce" | "dice_focal" | "tversky" (+BCE) | "focal" | "lvit_dice_bce" (LViT's
            0.5 Dice + 0.5 class-balanced BCE).
        tversky_alpha, tversky_beta: the Tversky loss's weights of false positives and false negatives.
        threshold: on the sigmoid.
        bootstrap_resamples: for the CIs of compute_metrics (0: none).
    """

    classes: dict[str, list[str]] = field(default_factory=lambda: {"nuclei": ["nuclei"]})
    text_template: str = "{sentence}"
    conditioning: Literal["none", "film", "attention", "film+attention"] = "film+attention"
    text_encoder: str | None = "minilm"
    text_kw: dict[str, Any] = field(default_factory=dict)
    freeze_text: bool = True
    max_text_length: int = 64
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    attention_levels: int = 2
    heads: int = 4
    in_channels: int = 3
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.25])
    image_size: int = 256
    crop_size: int | None = None
    inference: Literal["resize", "sliding_window"] = "resize"
    sw_overlap: float = 0.25
    flip: bool = True
    augmentation: Literal["crop_flip", "lvit"] = "crop_flip"
    loss: Literal["dice_ce", "dice_focal", "tversky", "focal", "lvit_dice_bce"] = "dice_ce"
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    threshold: float = 0.5
    bootstrap_resamples: int = 1000


__all__ = ["SegmentationConfig"]
