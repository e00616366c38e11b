"""The `model:` section of the image-pretraining task (`task.PretrainImageTask.Config`).

Defaults are the VQA image encoder's recipe (docs/pretraining.md); the optimizer and schedule
(AdamW, one-cycle, lr 2e-3, weight decay 0.05, batch 64, 10 epochs) are the run config's
`trainer:` section (configs/pretrain/image_encoder.yaml). This module is torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PretrainEncoderConfig:
    """The image encoder being pretrained (`model.encoder`).

    Attributes:
        name: a `medmm.models` image encoder name (the consumers load `small_cnn`).
        size: input side in pixels (grayscale crops of this size).
        in_channels: image channels (1 = grey).
        widths: channel widths per stage (`small_cnn`).
    """

    name: str = "small_cnn"
    size: int = 96
    in_channels: int = 1
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])


@dataclass
class PretrainLabelsConfig:
    """The label heads (`model.labels`).

    Attributes:
        keys: Sample.targets keys, one linear head each (medpix2_covid_cxr: modality, plane, location).
        min_count: labels seen fewer times in the training images are ignored in the loss.
    """

    keys: list[str] = field(default_factory=lambda: ["modality", "plane", "location"])
    min_count: int = 10


@dataclass
class PretrainCaptionConfig:
    """Caption matching: symmetric InfoNCE between a projection of the pooled image feature and
    the frozen, L2-normalised embedding of the image's caption (`model.caption`).

    Attributes:
        weight: weight of the caption loss (0: off, the text encoder is not loaded).
        field: Sample.text key of the caption.
        encoder: frozen `medmm.models` text encoder of the captions (`minilm`: offline all-MiniLM-L6-v2).
        max_length: caption token limit.
        temperature: InfoNCE temperature.
    """

    weight: float = 1.0
    field: str = "caption"
    encoder: str = "minilm"
    max_length: int = 64
    temperature: float = 0.07


@dataclass
class PretrainReconstructionConfig:
    """The denoising reconstruction loss of MEVF (Nguyen et al., MICCAI 2019) (`model.reconstruction`):
    the encoder sees a noisy copy of each crop and a small transposed-convolution decoder (not
    exported with the encoder) rebuilds the clean crop from the last feature map (mean squared error).

    Attributes:
        weight: weight of the loss (0: off, no decoder).
        noise_std: standard deviation of the Gaussian input noise (normalised units).
    """

    weight: float = 0.0
    noise_std: float = 0.4


@dataclass
class PretrainAugmentConfig:
    """Training augmentation (`model.augment`): images are resized once to size + pad; training
    takes random crops of `size` with gamma and contrast jitter, evaluation the centre crop.

    Attributes:
        pad: pixels added to the side before cropping (null: max(4, size // 12)).
        gamma: range of the random gamma exponent.
        contrast: range of the random contrast factor.
    """

    pad: int | None = None
    gamma: list[float] = field(default_factory=lambda: [0.7, 1.4])
    contrast: list[float] = field(default_factory=lambda: [0.85, 1.15])


@dataclass
class PretrainImageConfig:
    """The `model:` section of a pretrain_image config.

    Attributes:
        encoder: the image encoder (`PretrainEncoderConfig`).
        labels: the label heads (`PretrainLabelsConfig`).
        caption: caption matching (`PretrainCaptionConfig`).
        reconstruction: the denoising loss (`PretrainReconstructionConfig`).
        augment: training augmentation (`PretrainAugmentConfig`).
        exclude_vqa_rad: a VQA-RAD root; training images whose synpic id is in its image folder
            are left out (VQA-RAD images come from MedPix). Null: keep all.
        bootstrap_resamples: resamples (by case) for the majority floor's paired test (0: none).
    """

    encoder: PretrainEncoderConfig = field(default_factory=PretrainEncoderConfig)
    labels: PretrainLabelsConfig = field(default_factory=PretrainLabelsConfig)
    caption: PretrainCaptionConfig = field(default_factory=PretrainCaptionConfig)
    reconstruction: PretrainReconstructionConfig = field(default_factory=PretrainReconstructionConfig)
    augment: PretrainAugmentConfig = field(default_factory=PretrainAugmentConfig)
    exclude_vqa_rad: str | None = None
    bootstrap_resamples: int = 1000


__all__ = ["PretrainImageConfig", "PretrainEncoderConfig", "PretrainLabelsConfig", "PretrainCaptionConfig",
           "PretrainReconstructionConfig", "PretrainAugmentConfig"]
