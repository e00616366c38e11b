"""The `model:` section of the report_generation task: `ReportGenerationConfig`.

About fifty knobs, grouped by concern into nested sections: the image encoder (`image:`), the
decoder and its vocabulary (`decoder:`), retrieval of training reports (`retrieval:`), the
findings and attribute heads (`findings:`, `attributes:`), decoding (`decoding:`), consensus
decoding (`mbr:`) and self-critical training (`scst:`), each field documented below
(`medmm config show report_generation` prints them). They live apart from the task
(`task.ReportGenerationTask.Config` is this class) so the schema reads on its own:
`Task.from_config` checks a run's `model:` keys and types against these fields. A run
directory's config.yaml keeps only the keys its config set, so an old run is rebuilt with these
defaults: renaming a field or changing a default changes what old runs do. The flat keys of
earlier versions (``beam_size``, ``rag_k``, ...) are listed in its `moved_keys` and fail with their new
place. This module is torch-free.

    cfg = ReportGenerationConfig(text_field="caption", decoding=DecodingConfig(beam_size=3),
                                 mbr=ConsensusConfig(references=128))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from medmm.generation_config import GenerationConfig


@dataclass
class ReportImageConfig:
    """The image side of report generation (`model.image`).

    Attributes:
        encoder: a `medmm.models` image encoder name (small_cnn, resnet18, ...).
        encoder_kwargs: extra arguments of the image encoder.
        pretrained: a medmm weights file (`medmm pretrain-image`) loaded strictly into the image
            encoder at setup (training only: the run carries the encoder weights in its own
            checkpoint). Never one whose pretraining saw the evaluation images.
        freeze: keep the image encoder fixed (eval mode, no gradients).
        size: input side in pixels (null: the encoder's input_spec size).
        max_images: views per study used (the first ones).
    """

    encoder: str = "small_cnn"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    freeze: bool = False
    size: int | None = None
    max_images: int = 4


@dataclass
class ReportDecoderConfig:
    """The report decoder and its vocabulary (`model.decoder`).

    Attributes:
        layers: Transformer decoder layers.
        heads: attention heads (also of the retrieved-report encoder).
        min_word_freq: a word joins the vocabulary when seen this often in the training text.
        max_vocab: most words in the vocabulary (the most frequent ones).
        max_report_length: target tokens kept in training (BOS and EOS included).
        label_smoothing: cross-entropy label smoothing of the report loss.
        pretrained: a Hugging Face causal LM (hub name or folder: GPT-2, Llama, Qwen2, ...)
            as the decoder instead of the one trained from scratch: the image (and findings /
            attribute) tokens, projected to its width, are its prefix (ClipCap), and its own
            tokenizer replaces the word vocabulary (layers, heads, min_word_freq and max_vocab
            then do not apply; lengths count its tokens). `medmm.models.prefix_lm`.
        lora: with `pretrained`, LoRA adapters {r, alpha, dropout, target_modules} train
            instead of the whole LM (null: every LM weight trains).
    """

    layers: int = 3
    heads: int = 4
    min_word_freq: int = 2
    max_vocab: int = 8000
    max_report_length: int = 64
    label_smoothing: float = 0.0
    pretrained: str | None = None
    lora: dict[str, Any] | None = None


@dataclass
class ReportRetrievalConfig:
    """Retrieval of training reports: the decoder's extra input and the provenance shown (`model.retrieval`).

    Attributes:
        run: a trained `retrieval` run directory whose frozen image tower is the retrieval key
            (null: the training-free thumbnail). Its weights are copied into this run, so the
            run directory stays self-contained.
        rag_k: retrieved training reports fed to the decoder (0 = no retrieval augmentation).
        rag_max_tokens: tokens kept per retrieved report.
        provenance_k: training reports retrieved for provenance when rag_k is 0.
    """

    run: str | None = None
    rag_k: int = 0
    rag_max_tokens: int = 40
    provenance_k: int = 3


@dataclass
class FindingsConfig:
    """The CheXpert findings head (`model.findings`).

    Attributes:
        enabled: predict CheXpert observations and feed them to the decoder.
        min_positive: an observation joins the head when the labeller finds it positive in at
            least this many training reports.
        loss_weight: weight of the findings head's BCE in the loss.
    """

    enabled: bool = False
    min_positive: int = 5
    loss_weight: float = 0.5


@dataclass
class AttributesConfig:
    """Categorical attribute heads (`model.attributes`).

    Attributes:
        targets: categorical Sample.targets keys predicted from the image and fed to the decoder
            (e.g. [modality_detail, plane, location] on MedPix).
        min_count: classes seen fewer times in training are pooled into "<other>".
        loss_weight: weight of the attribute heads' cross-entropy in the loss.
    """

    targets: list[str] = field(default_factory=list)
    min_count: int = 5
    loss_weight: float = 0.5


@dataclass
class DecodingConfig(GenerationConfig):
    """Decoding (`model.decoding`): `medmm.generation_config.GenerationConfig` with
    the report task's defaults (no_repeat_ngram_size 3).

    Attributes:
        beam_size: beam width (1 = greedy).
        length_penalty: finished beams are ranked by sum(log p) / length ** length_penalty
            (> 1 favours longer texts, 0 = raw sum).
        no_repeat_ngram_size: an n-gram occurs at most once in a generated text (0 = off).
        max_length: most generated tokens (EOS excluded).
        min_length: EOS is forbidden before this many tokens.
        repetition_penalty: CTRL's penalty on every token already generated (1 = off, >= 1).
            Inference only (beam, greedy, consensus candidates and mbr.samples): self-critical
            training samples without it, so a penalty set in a config never changes training.
        no_immediate_repeat: a token may not directly follow itself. Inference only, as
            repetition_penalty.
    """

    no_repeat_ngram_size: int = 3  # the report task's default; every other field as GenerationConfig


@dataclass
class ConsensusConfig:
    """Consensus (minimum Bayes risk) decoding and its baseline (`model.mbr`).

    Attributes:
        references: consensus decoding against the reports of this many nearest training
            studies (0 = off: the best beam hypothesis is the output).
        candidates: beam hypotheses re-ranked (the beam is widened to this many).
        retrieved: nearest training reports also offered as candidates (0 = generated text only).
        typical: the most typical training reports (highest consensus over the whole training
            set, `mbr.typical_reports`) also offered as candidates.
        samples: texts sampled from the decoder (temperature 1) added to the candidates.
        attribute_weight: weight of a candidate's attribute consistency with the image's
            predicted attributes (`grounding.AttributeLexicon`) added to its expected CIDEr-D in
            the re-ranking (0 = off; needs attributes.targets).
        reference_power: pseudo-references weigh prod_t p_image(their class_t) ** power
            (`grounding.reference_attribute_weights`; 0 = off).
        typical_baseline: typical training reports of the image-independent "typical consensus"
            baseline scored beside the model (0 = not scored); it always uses the plain,
            ungrounded re-ranking, so it is the same baseline whatever the model's decoding.
    """

    references: int = 0
    candidates: int = 8
    retrieved: int = 0
    typical: int = 0
    samples: int = 0
    attribute_weight: float = 0.0
    reference_power: float = 0.0
    typical_baseline: int = 32


@dataclass
class SCSTConfig:
    """Self-critical sequence training (Rennie et al. 2017) (`model.scst`).

    Attributes:
        samples: sampled texts per study, rewarded by CIDEr-D against the study's own report
            (IDF of the training reports), baseline = the mean reward of the other samples
            (Luo 2020); 0 = teacher forcing (cross-entropy). Validation loss stays cross-entropy.
        xe_weight: cross-entropy added to the self-critical loss (keeps the language model).
        attribute_weight: adds this weight x the sample's attribute consistency with the image's
            REFERENCE attributes (`grounding.AttributeLexicon`, a penalty for naming a wrong
            modality / plane / location) to the self-critical reward.
    """

    samples: int = 0
    xe_weight: float = 0.0
    attribute_weight: float = 0.0


@dataclass
class ReportGenerationConfig:
    """The report_generation `model:` section.

    Attributes:
        text_field: the Sample.text key to generate (report, findings, caption, impression).
        group_by: grouping id (patient|case|study|image|id) whose reports a study may not
            retrieve, and the unit of the bootstrap resampling.
        image: the image encoder and the views per study (`ReportImageConfig`).
        dim: model width (decoder, view embeddings, retrieved-report and attribute encoders).
        dropout: dropout of the decoder and the heads.
        decoder: decoder size and vocabulary (`ReportDecoderConfig`).
        retrieval: retrieval of training reports (`ReportRetrievalConfig`).
        findings: the CheXpert findings head (`FindingsConfig`).
        attributes: categorical attribute heads (`AttributesConfig`).
        decoding: beam search and its rules (`DecodingConfig`).
        mbr: consensus decoding (`ConsensusConfig`).
        scst: self-critical training (`SCSTConfig`).
        init_run: a finished report_generation run (same data and model shapes) whose weights
            initialise this one, e.g. self-critical fine-tuning of a cross-entropy run.
        bootstrap_resamples: resamples (by group) for the metrics' CIs (0 = none).
    """

    text_field: str = "report"
    group_by: Literal["patient", "case", "study", "image", "id"] = "study"
    image: ReportImageConfig = field(default_factory=ReportImageConfig)
    dim: int = 256
    dropout: float = 0.1
    decoder: ReportDecoderConfig = field(default_factory=ReportDecoderConfig)
    retrieval: ReportRetrievalConfig = field(default_factory=ReportRetrievalConfig)
    findings: FindingsConfig = field(default_factory=FindingsConfig)
    attributes: AttributesConfig = field(default_factory=AttributesConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    mbr: ConsensusConfig = field(default_factory=ConsensusConfig)
    scst: SCSTConfig = field(default_factory=SCSTConfig)
    init_run: str | None = None
    bootstrap_resamples: int = 1000

    # The flat keys of earlier versions -> their place now (`medmm config migrate` applies it).
    moved_keys: ClassVar[dict[str, str]] = {
        "image_encoder": "image.encoder", "image_encoder_kwargs": "image.encoder_kwargs",
        "image_pretrained": "image.pretrained", "freeze_image": "image.freeze", "image_size": "image.size",
        "max_images": "image.max_images",
        "decoder_layers": "decoder.layers", "decoder_heads": "decoder.heads", "min_word_freq": "decoder.min_word_freq",
        "max_vocab": "decoder.max_vocab", "max_report_length": "decoder.max_report_length",
        "label_smoothing": "decoder.label_smoothing",
        "retrieval_run": "retrieval.run", "rag_k": "retrieval.rag_k", "rag_max_tokens": "retrieval.rag_max_tokens",
        "provenance_k": "retrieval.provenance_k",
        "use_findings": "findings.enabled", "findings_min_positive": "findings.min_positive",
        "findings_loss_weight": "findings.loss_weight",
        "attribute_targets": "attributes.targets", "attribute_min_count": "attributes.min_count",
        "attribute_loss_weight": "attributes.loss_weight",
        **{k: f"decoding.{k}" for k in ("beam_size", "length_penalty", "no_repeat_ngram_size", "max_length",
                                          "min_length", "repetition_penalty", "no_immediate_repeat")},
        **{f"mbr_{k}": f"mbr.{k}" for k in ("references", "candidates", "retrieved", "typical", "samples",
                                              "attribute_weight", "reference_power")},
        "typical_baseline": "mbr.typical_baseline",
        "scst_samples": "scst.samples", "scst_xe_weight": "scst.xe_weight", "scst_attribute_weight": "scst.attribute_weight",
    }


__all__ = ["AttributesConfig", "ConsensusConfig", "DecodingConfig", "FindingsConfig", "ReportDecoderConfig",
           "ReportGenerationConfig", "ReportImageConfig", "ReportRetrievalConfig", "SCSTConfig"]
