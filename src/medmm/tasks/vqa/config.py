"""The `model:` section of the vqa task: `VQAConfig` (`task.VQATask.Config` is this class).

Grouped by concern: the image and text encoders (`image:`, `text:`), training-time
augmentation (`augment:`), the answer classifier (`classifier:`), the generative decoder
(`decoder:`), the answer memory (`memory:`) and the knowledge graph (`kg:`); routing, fusion and
the rationale stay at the top. `medmm config show vqa` prints every field with its help. The flat
keys of earlier versions (``freeze_image``, ``memory_weight``, ...) are listed in
`VQAConfig.moved_keys` and fail with their new place. This module is torch-free.

    cfg = VQAConfig(fusion="gated", memory=MemoryConfig(weight=1.0), text=VQATextConfig(freeze=True))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


@dataclass
class VQAImageConfig:
    """The image encoder (`model.image`).

    Attributes:
        encoder: a `medmm.models` image encoder name (small_cnn, resnet18, ...).
        encoder_kwargs: extra constructor arguments of the image encoder.
        size: input side in pixels (null: the encoder's input_spec size).
        pretrained: a medmm weights file (e.g. from `medmm pretrain-image`) loaded strictly into
            the image encoder at setup (training only: a trained run carries the encoder weights
            in its own checkpoint, so it never needs this file).
        freeze: keep the image encoder fixed, in eval mode, and cache its features per image, so
            an epoch costs only the fusion and the heads.
        attributes: append the image read as words ("image: ct, axial, abdomen") to the question,
            from the label heads saved beside `pretrained` by `medmm pretrain-image`
            (`medmm.tasks.vqa.image_words`; needs freeze).
    """

    encoder: str = "small_cnn"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    size: int | None = None
    pretrained: str | None = None
    freeze: bool = False
    attributes: bool = False


@dataclass
class VQATextConfig:
    """The question encoder (`model.text`).

    Attributes:
        encoder: a `medmm.models` text encoder name (minilm, scratch, hf:...).
        encoder_kwargs: extra constructor arguments of the text encoder.
        max_length: tokens of question (+ knowledge) kept.
        freeze: keep the text encoder fixed (its features still feed the fusion).
        lora: LoRA {r, alpha, dropout, target_modules} on the text encoder (peft).
    """

    encoder: str = "minilm"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    max_length: int = 48
    freeze: bool = False
    lora: dict[str, Any] | None = None


@dataclass
class VQAAugmentConfig:
    """Training-time augmentation (`model.augment`); validation and test are never changed.

    Attributes:
        image: when the image encoder is trained (image.freeze false), each training batch is
            randomly rotated, scaled, shifted and intensity-jittered (`medmm.models.augment`; no
            flips, left and right matter).
        framed_questions: train also on the templated wording of each training question
            (VQA-RAD's ``question_frame``; `medmm.tasks.vqa.framed`), as one more example with the
            same image and answer.
    """

    image: bool = False
    framed_questions: bool = False


@dataclass
class VQAClassifierConfig:
    """The answer classifier (`model.classifier`).

    Attributes:
        hidden: width of a hidden layer in the answer classifier (0: linear head).
        min_open_answer_count: open answers seen at least this often join the classifier vocabulary.
        masked_loss: the classifier loss of a closed (open) question only competes among the
            closed (open) answers, as at inference (the routing masks).
        label_smoothing: label smoothing of the classifier loss.
        question_type_mask: predict each question's type (VQA-RAD question_type, SLAKE
            content_type; a head trained on the TRAINING annotations) and weight every answer by
            the probability that the question is of a type it was seen with in training
            (`medmm.tasks.vqa.question_types`); needs type annotations in the training split.
        choice_options: a question that offers alternatives ("left or right?", "T1, T2 or
            FLAIR?") is answered only with the vocabulary answers it names next to the connector,
            by the classifier's probabilities over them (`medmm.tasks.vqa.choices`; with
            masked_loss, their training loss competes among those options); other questions
            unchanged.
    """

    hidden: int = 0
    min_open_answer_count: int = 2
    masked_loss: bool = False
    label_smoothing: float = 0.0
    question_type_mask: bool = False
    choice_options: bool = False


@dataclass
class VQADecoderConfig:
    """The generative answer decoder (`model.decoder`).

    Attributes:
        layers: Transformer decoder layers.
        heads: attention heads.
        max_answer_length: most answer tokens generated.
        loss_weight: weight of the decoder's token cross-entropy in the loss.
    """

    layers: int = 2
    heads: int = 4
    max_answer_length: int = 12
    loss_weight: float = 1.0


@dataclass
class MemoryConfig:
    """The answer memory (`model.memory`, `medmm.tasks.vqa.memory`).

    Attributes:
        weight: weight of the memory's answers (those of the training questions about the same
            image, by question similarity) added to the classifier's distribution at inference
            (0: off; needs text.freeze).
        temperature: softmax temperature over the cosine similarities of the memory.
    """

    weight: float = 0.0
    temperature: float = 0.05


@dataclass
class KnowledgeConfig:
    """Knowledge-graph facts appended to the question (`model.kg`, `medmm.knowledge.kg`).

    Attributes:
        enabled: append retrieved knowledge-graph facts to the question.
        root: SLAKE folder (or its KG/) holding en_*.csv; needed at setup when enabled.
        top_k: facts appended per question.
        max_tail_words: verbalised fact tails are cut to this many words.
    """

    enabled: bool = False
    root: str | None = None
    top_k: int = 3
    max_tail_words: int = 12


@dataclass
class VQAConfig:
    """The vqa `model:` section.

    Attributes:
        routing: how a question is routed to the closed or the open answers at inference:
            ``predicted`` (from the question, `medmm.tasks.vqa.routing`) or ``annotation`` (the
            dataset's answer_type: an oracle input, listed in the metrics' protocol).
        answer_head: "both" (classifier + generative decoder) or "classifier" (no decoder).
        open_confidence: an open question uses the classifier when its top probability is >= this.
        image: the image encoder (`VQAImageConfig`).
        text: the question encoder (`VQATextConfig`).
        fusion: a `medmm.models` fusion name (cross_attention, gated, film, early, ...).
        fusion_kwargs: extra fusion arguments (heads, layers, dropout).
        dim: fused feature size (also the decoder width).
        augment: training-time augmentation (`VQAAugmentConfig`).
        classifier: the answer classifier (`VQAClassifierConfig`).
        decoder: the generative decoder (`VQADecoderConfig`).
        memory: the answer memory (`MemoryConfig`).
        kg: knowledge-graph facts (`KnowledgeConfig`).
        rationale: add facts and attention evidence to every record.
        rationale_top_k: image cells / tokens listed per record.
        bootstrap_resamples: resamples (by image) for the metrics' confidence intervals.
    """

    routing: Literal["predicted", "annotation"] = "predicted"
    answer_head: Literal["both", "classifier"] = "both"
    open_confidence: float = 0.5
    image: VQAImageConfig = field(default_factory=VQAImageConfig)
    text: VQATextConfig = field(default_factory=VQATextConfig)
    fusion: str = "cross_attention"
    fusion_kwargs: dict[str, Any] = field(default_factory=dict)
    dim: int = 256
    augment: VQAAugmentConfig = field(default_factory=VQAAugmentConfig)
    classifier: VQAClassifierConfig = field(default_factory=VQAClassifierConfig)
    decoder: VQADecoderConfig = field(default_factory=VQADecoderConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    kg: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    rationale: bool = False
    rationale_top_k: int = 3
    bootstrap_resamples: int = 1000

    # The flat keys of earlier versions -> their place now (`medmm config migrate` applies it).
    moved_keys: ClassVar[dict[str, str]] = {
        "image_encoder": "image.encoder", "image_encoder_kwargs": "image.encoder_kwargs", "image_size": "image.size",
        "image_pretrained": "image.pretrained", "freeze_image": "image.freeze", "image_attributes": "image.attributes",
        "text_encoder": "text.encoder", "text_encoder_kwargs": "text.encoder_kwargs", "max_text_length": "text.max_length",
        "freeze_text": "text.freeze", "text_lora": "text.lora",
        "image_augment": "augment.image", "framed_questions": "augment.framed_questions",
        "classifier_hidden": "classifier.hidden", "min_open_answer_count": "classifier.min_open_answer_count",
        "masked_loss": "classifier.masked_loss", "label_smoothing": "classifier.label_smoothing",
        "question_type_mask": "classifier.question_type_mask", "choice_options": "classifier.choice_options",
        "decoder_layers": "decoder.layers", "decoder_heads": "decoder.heads",
        "max_answer_length": "decoder.max_answer_length", "decoder_loss_weight": "decoder.loss_weight",
        "memory_weight": "memory.weight", "memory_temperature": "memory.temperature",
        "use_kg": "kg.enabled", "kg_root": "kg.root", "kg_top_k": "kg.top_k", "kg_max_tail_words": "kg.max_tail_words",
    }


__all__ = ["KnowledgeConfig", "MemoryConfig", "VQAAugmentConfig", "VQAClassifierConfig", "VQAConfig", "VQADecoderConfig",
           "VQAImageConfig", "VQATextConfig"]
