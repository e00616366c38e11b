"""The `model:` section of the report_generation task: `ReportGenerationConfig`.

About fifty knobs (image encoder, vocabulary, decoder size, retrieval augmentation, findings and
attribute heads, decoding, consensus decoding, self-critical training), each documented below.
They live apart from the task (`task.ReportGenerationTask.Config` is this class) so
the schema reads on its own: `Task.from_config` checks a run's `model:` keys and types against
these fields. A run directory's config.yaml keeps only the keys its config set, so an old run is
rebuilt with these defaults: renaming a field or changing a default changes what old runs do.

    cfg = ReportGenerationConfig(text_field="caption", beam_size=3, mbr_references=128)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class ReportGenerationConfig:
    """The report_generation `model:` section.

    Attributes:
        image_encoder, image_encoder_kwargs: a `medmm.models` image encoder and its arguments.
        image_pretrained: a medmm weights file (`medmm pretrain-image`) loaded strictly into
            the image encoder at setup (training only: the run carries the encoder weights in
            its own checkpoint). Never one whose pretraining saw the evaluation images.
        freeze_image: keep the image encoder fixed (eval mode, no gradients).
        image_size: input side in pixels (null: the encoder's input_spec size).
        text_field: the Sample.text key to generate (report, findings, caption, impression).
        group_by: grouping id (patient|case|study|image|id) whose reports a study may not
            retrieve, and the unit of the bootstrap resampling.
        max_images: views per study used (the first ones).
        min_word_freq, max_vocab: decoder vocabulary fitted on the training text.
        max_report_length: target tokens kept in training (BOS and EOS included).
        dim, decoder_layers, decoder_heads, dropout: decoder size.
        label_smoothing: cross-entropy label smoothing of the report loss.
        rag_k: retrieved training reports fed to the decoder (0 = no retrieval augmentation).
        rag_max_tokens: tokens kept per retrieved report.
        use_findings: predict CheXpert observations and feed them to the decoder.
        findings_min_positive: an observation joins the head when the labeller finds it
            positive in at least this many training reports.
        findings_loss_weight: weight of the findings head's BCE in the loss.
        attribute_targets: categorical Sample.targets keys predicted from the image and fed
            to the decoder (e.g. [modality_detail, plane, location] on MedPix).
        attribute_min_count: classes seen fewer times in training are pooled into "<other>".
        attribute_loss_weight: weight of the attribute heads' cross-entropy in the loss.
        retrieval_run: a trained `retrieval` run directory whose frozen image tower is the
            retrieval key (null: the training-free thumbnail). Its weights are copied into
            this run, so the run directory stays self-contained.
        beam_size, length_penalty, no_repeat_ngram_size, max_length, min_length,
            repetition_penalty, no_immediate_repeat: decoding (`GenerationConfig`). The
            last two act at inference only (beam, greedy, consensus candidates and
            mbr_samples); self-critical training samples without them, so a penalty set in
            a config never changes what training does.
        mbr_references: consensus decoding against the reports of this many nearest
            training studies (0 = off: the best beam hypothesis is the output).
        mbr_candidates: beam hypotheses re-ranked (the beam is widened to this many).
        mbr_retrieved: nearest training reports also offered as candidates (0 = generated
            text only).
        mbr_typical: the most typical training reports (highest consensus over the whole
            training set, `mbr.typical_reports`) also offered as candidates.
        mbr_samples: texts sampled from the decoder (temperature 1) added to the candidates.
        mbr_attribute_weight: weight of a candidate's attribute consistency with the image's
            predicted attributes (`grounding.AttributeLexicon`) added to its expected
            CIDEr-D in the re-ranking (0 = off; needs attribute_targets).
        mbr_reference_power: pseudo-references weigh prod_t p_image(their class_t) ** power
            (`grounding.reference_attribute_weights`; 0 = off).
        typical_baseline: typical training reports of the image-independent "typical
            consensus" baseline scored beside the model (0 = not scored); it always uses
            the plain, ungrounded re-ranking, so it is the same baseline whatever the model's
            decoding.
        scst_samples: self-critical sequence training (Rennie et al. 2017) with this many
            sampled texts per study, rewarded by CIDEr-D against the study's own report (IDF of
            the training reports), baseline = the mean reward of the other samples (Luo 2020);
            0 = teacher forcing (cross-entropy). Validation loss stays cross-entropy.
        scst_xe_weight: cross-entropy added to the self-critical loss (keeps the language model).
        scst_attribute_weight: adds this weight x the sample's attribute consistency with the
            image's REFERENCE attributes (`grounding.AttributeLexicon`, a penalty for
            naming a wrong modality / plane / location) to the self-critical reward.
        init_run: a finished report_generation run (same data and model shapes) whose weights
            initialise this one, e.g. self-critical fine-tuning of a cross-entropy run.
        provenance_k: training reports retrieved for provenance when rag_k is 0.
        bootstrap_resamples: resamples (by group) for the metrics' CIs (0 = none).
    """

    image_encoder: str = "small_cnn"
    image_encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    image_pretrained: str | None = None
    freeze_image: bool = False
    image_size: int | None = None
    text_field: str = "report"
    group_by: Literal["patient", "case", "study", "image", "id"] = "study"
    max_images: int = 4
    min_word_freq: int = 2
    max_vocab: int = 8000
    max_report_length: int = 64
    dim: int = 256
    decoder_layers: int = 3
    decoder_heads: int = 4
    dropout: float = 0.1
    label_smoothing: float = 0.0
    rag_k: int = 0
    rag_max_tokens: int = 40
    use_findings: bool = False
    findings_min_positive: int = 5
    findings_loss_weight: float = 0.5
    attribute_targets: list[str] = field(default_factory=list)
    attribute_min_count: int = 5
    attribute_loss_weight: float = 0.5
    retrieval_run: str | None = None
    beam_size: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 3
    max_length: int = 60
    min_length: int = 1
    repetition_penalty: float = 1.0
    no_immediate_repeat: bool = False
    mbr_references: int = 0
    mbr_candidates: int = 8
    mbr_retrieved: int = 0
    mbr_typical: int = 0
    mbr_samples: int = 0
    mbr_attribute_weight: float = 0.0
    mbr_reference_power: float = 0.0
    typical_baseline: int = 32
    scst_samples: int = 0
    scst_xe_weight: float = 0.0
    scst_attribute_weight: float = 0.0
    init_run: str | None = None
    provenance_k: int = 3
    bootstrap_resamples: int = 1000


__all__ = ["ReportGenerationConfig"]
