"""The `model:` section of the diagnosis task: `DiagnosisConfig` (`task.DiagnosisTask.Config`).

Grouped by concern: what is predicted (target or findings, at the top), the image and text
inputs with their encoders (`image:`, `text:`, the label-leakage guard included), the fusion and
classifier head (top), and how training handles class imbalance (`imbalance:`). `medmm config
show diagnosis` prints every field with its help. The flat keys of earlier versions
(``image_encoder``, ``loss``, ``text_field``, ...) are listed in `DiagnosisConfig.moved_keys` and
fail with their new place. This module is torch-free.

    cfg = DiagnosisConfig(target="label", image=DiagnosisImageConfig(encoder="resnet18", size=28),
                          text=DiagnosisTextConfig(encoder=None), fusion="image_only")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


@dataclass
class DiagnosisImageConfig:
    """The image input and its encoder (`model.image`).

    Attributes:
        encoder: a `medmm.models` image encoder name (create_image_encoder); null: no image.
        encoder_kwargs: extra keyword arguments of the image encoder.
        in_channels: image channels fed to the encoder (1 = grey).
        size: input side in px (passed to the encoder; preprocessing follows its input_spec).
        stem: "default" or "small" (3x3 stride-1 stem, no max-pool: ResNets on 28 px, as MedMNIST v2).
        freeze: keep the image encoder's weights fixed (eval mode).
        required: a sample without an image is skipped (and counted), so every fusion variant of an
            ablation sees the same samples.
    """

    encoder: str | None = "small_cnn"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    in_channels: int = 1
    size: int | None = 64
    stem: Literal["default", "small"] = "default"
    freeze: bool = False
    required: bool = True


@dataclass
class DiagnosisTextConfig:
    """The clinical-text input, its encoder and the label-leakage guard (`model.text`).

    Attributes:
        encoder: a `medmm.models` text encoder name (create_text_encoder); null: no text.
        encoder_kwargs: extra keyword arguments of the text encoder.
        field: Sample.text key (clinical_notes, history, question, ...).
        max_length: token limit.
        freeze: keep the text encoder's weights fixed (eval mode).
        required: a sample without this text is skipped (and counted), as image.required.
        mask_label_words: the label-leakage guard: words that name a class (class names, their
            content words and synonyms) are replaced by [MASK] in the text.
        extra_mask_words: more words to mask.
    """

    # `dataclasses.field` spelt out: the `field` key below shadows the bare name in this class
    encoder: str | None = "scratch"
    encoder_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    field: str = "clinical_notes"
    max_length: int = 128
    freeze: bool = False
    required: bool = False
    mask_label_words: bool = True
    extra_mask_words: list[str] = dataclasses.field(default_factory=list)


@dataclass
class ImbalanceConfig:
    """How training and decisions handle class imbalance (`model.imbalance`).

    Attributes:
        loss: ce | weighted_ce | focal | logit_adjusted (Menon et al.).
        class_weight_kind: inverse | effective (for weighted_ce and focal's alpha).
        focal_gamma: focusing parameter of the focal loss.
        focal_weighted: use class weights in the focal loss.
        logit_adjust_tau: Menon et al.'s tau.
        balanced_sampling: class-balanced sampling with replacement.
        threshold_tuning: none | f1 | youden: per-class thresholds fitted on validation.
    """

    loss: Literal["ce", "weighted_ce", "focal", "logit_adjusted"] = "ce"
    class_weight_kind: Literal["inverse", "effective"] = "inverse"
    focal_gamma: float = 2.0
    focal_weighted: bool = False
    logit_adjust_tau: float = 1.0
    balanced_sampling: bool = False
    threshold_tuning: Literal["none", "f1", "youden"] = "none"


@dataclass
class DiagnosisZeroShotConfig:
    """Zero-shot classification by a pretrained CLIP-style dual encoder, never trained (`model.zero_shot`).

    Attributes:
        pretrained: Hugging Face hub name or folder of a CLIPModel or SiglipModel checkpoint; null:
            off (the task trains its own classifier). When set, the image/text/fusion keys are unused.
        prompts: a prompt-set YAML file (classes -> descriptions, optional templates; docs/models.md);
            null: medmm's default prompt set for `dataset`.
        dataset: the dataset whose label space orders the classes and whose default prompt set is
            used (`medmm evaluate --model` sets it).
    """

    pretrained: str | None = None
    prompts: str | None = None
    dataset: str | None = None


@dataclass
class DiagnosisConfig:
    """The `model:` section of a diagnosis config.

    Attributes:
        target: Sample.targets key of a multi-class target (ignored when `findings` is set).
        findings: multi-label: Sample.findings names ([] = all seen in training); null = multi-class.
        classes: fixed class order (default: sorted values seen in training).
        ignore_values: target values treated as missing (masked from loss and metrics).
        uncertain: multi-label UNCERTAIN handling: ignore (masked) | positive | negative.
        image: the image input (`DiagnosisImageConfig`).
        text: the text input (`DiagnosisTextConfig`).
        fusion: image_only | text_only | early | late | cross_attention | gated | moe | film.
        fusion_kw: extra keyword arguments of the fusion.
        dim: fusion width.
        dropout: classifier-head dropout.
        label_smoothing: for ce/weighted_ce.
        imbalance: losses, sampling and thresholds for imbalanced classes (`ImbalanceConfig`).
        bootstrap_resamples: resamples (by patient group) for the metrics' 95% CIs (0: none).
        zero_shot: zero-shot classification by a pretrained CLIP-style model (`DiagnosisZeroShotConfig`).
    """

    target: str = "label"
    findings: list[str] | None = None
    classes: list[str] | None = None
    ignore_values: list[str] = field(default_factory=lambda: ["unknown"])
    uncertain: Literal["ignore", "positive", "negative"] = "ignore"
    image: DiagnosisImageConfig = field(default_factory=DiagnosisImageConfig)
    text: DiagnosisTextConfig = field(default_factory=DiagnosisTextConfig)
    fusion: str = "late"
    fusion_kw: dict[str, Any] = field(default_factory=dict)
    dim: int = 128
    dropout: float = 0.1
    label_smoothing: float = 0.0
    imbalance: ImbalanceConfig = field(default_factory=ImbalanceConfig)
    bootstrap_resamples: int = 1000
    zero_shot: DiagnosisZeroShotConfig = field(default_factory=DiagnosisZeroShotConfig)

    # The flat keys of earlier versions -> their place now (`medmm config migrate` applies it).
    moved_keys: ClassVar[dict[str, str]] = {
        "image_encoder": "image.encoder", "image_kw": "image.encoder_kwargs", "in_channels": "image.in_channels",
        "image_size": "image.size", "image_stem": "image.stem", "freeze_image_encoder": "image.freeze",
        "require_image": "image.required",
        "text_encoder": "text.encoder", "text_kw": "text.encoder_kwargs", "text_field": "text.field",
        "max_text_length": "text.max_length", "freeze_text_encoder": "text.freeze", "require_text": "text.required",
        "mask_label_words": "text.mask_label_words", "extra_mask_words": "text.extra_mask_words",
        **{k: f"imbalance.{k}" for k in ("loss", "class_weight_kind", "focal_gamma", "focal_weighted", "logit_adjust_tau",
                                           "balanced_sampling", "threshold_tuning")},
    }


__all__ = ["DiagnosisConfig", "DiagnosisImageConfig", "DiagnosisTextConfig", "DiagnosisZeroShotConfig", "ImbalanceConfig"]
