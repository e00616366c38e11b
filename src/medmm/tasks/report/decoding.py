"""Decoding of the report generator at evaluation and predict time.

What turns a trained `report_generation` model into texts, apart from the model itself:

* the decoding options (`DECODING_KEYS`: `GenerationConfig`'s beam / length / repeat rules, the
  config's ``decoding:`` section, and the consensus-decoding knobs of its ``mbr:`` section, named
  ``mbr_<field>`` here), checked (`check_mbr`) and changeable on a trained task (`set_decoding`);
* `ReportDecodingMixin`, the task's decoding methods: plain generation (`generate_ids`), the
  candidates of consensus decoding (`generate_candidates`: N-best beam hypotheses + seeded
  samples), the consensus pick of one study (`mbr.TrainingReports.pick`, grounded in the
  image's predicted attributes as the config says, `grounding`) and the consensus fields of
  an evaluation record (beam output, retrieval-only and typical-report baselines, `decoding`);
* `generate_reports`: records for samples from a trained run directory, with decoding overrides.

The methods live in a mixin, as Hugging Face's `GenerationMixin` holds `generate` for its models,
so the task module keeps the model, its data and its losses, and callers keep calling
`task.set_decoding(...)`, `task.generate_candidates(batch)`.

    task.set_decoding(beam_size=3, mbr_references=128, mbr_typical=32)
    records = generate_reports("runs/report_medpix2_caption", samples, beam_size=3)
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medmm.data.schema import Sample
from medmm.errors import MedmmError
from medmm.models.decoders import GenerationConfig, beam_search_nbest, generate, sample_decode
from medmm.tasks.report.grounding import reference_attribute_weights
from medmm.tasks.report.mbr import TrainingReports

if TYPE_CHECKING:
    from medmm.knowledge.report_store import ReportStore
    from medmm.models.decoders import TransformerReportDecoder
    from medmm.tasks.report.config import ReportGenerationConfig
    from medmm.tasks.report.grounding import AttributeLexicon
    from medmm.tasks.report.mbr import CiderConsensus

DECODING_KEYS = ("beam_size", "length_penalty", "no_repeat_ngram_size", "max_length", "min_length",
                 "repetition_penalty", "no_immediate_repeat",
                 "mbr_references", "mbr_candidates", "mbr_retrieved", "mbr_typical", "mbr_samples",
                 "mbr_attribute_weight", "mbr_reference_power")
_MBR_INT = ("mbr_references", "mbr_candidates", "mbr_retrieved", "mbr_typical", "mbr_samples")
_MBR_FLOAT = ("mbr_attribute_weight", "mbr_reference_power")


def generation_config(c: ReportGenerationConfig) -> GenerationConfig:
    """The config's decoding options (its `decoding` section) as a checked `GenerationConfig`."""
    return GenerationConfig(**asdict(c.decoding)).check()


def check_mbr(mbr_references: int, mbr_candidates: int, mbr_retrieved: int, mbr_typical: int = 0, mbr_samples: int = 0,
              mbr_attribute_weight: float = 0.0, mbr_reference_power: float = 0.0) -> None:
    """Raise MedmmError unless the consensus-decoding options are in range (`ConsensusConfig`, model.mbr)."""
    if min(mbr_references, mbr_retrieved, mbr_typical, mbr_samples) < 0 or mbr_candidates < 1:
        raise MedmmError("consensus decoding needs model.mbr.references, retrieved, typical, samples >= 0 and mbr.candidates >= 1")
    if mbr_attribute_weight < 0 or mbr_reference_power < 0:
        raise MedmmError("model.mbr.attribute_weight and model.mbr.reference_power must be >= 0")


class ReportDecodingMixin:
    """Decoding methods of `ReportGenerationTask` (see the module docstring).

    They use the task's attributes annotated below: its config and generation options, decoder,
    tokenizer, `encode(batch)`, the retrieval store of training reports with their ids, texts,
    groups and attribute labels, the CIDEr-D consensus, the attribute classes and lexicon, and
    `_reports` (reset to None by the task whenever the store changes).
    """

    config: ReportGenerationConfig
    generation: GenerationConfig
    decoder: TransformerReportDecoder | None
    store: ReportStore
    store_ids: list[str]
    store_texts: list[str]
    store_groups: list[str]
    store_labels: list[list[int]]
    consensus: CiderConsensus
    attributes: dict[str, list[str]]
    lexicon: AttributeLexicon | None
    with_consensus_baselines: bool
    _reports: TrainingReports | None

    def set_decoding(self, **options: Any) -> GenerationConfig:
        """Change decoding at predict time: beam_size, length_penalty, no_repeat_ngram_size,
        max_length, min_length, repetition_penalty, no_immediate_repeat (GenerationConfig, the config's
        `decoding`) and the consensus-decoding options mbr_<field> (its `mbr` section; DECODING_KEYS).
        Returns the new GenerationConfig."""
        unknown = set(options) - set(DECODING_KEYS)
        if unknown:
            raise MedmmError(f"unknown decoding option(s) {sorted(unknown)}; known: {sorted(DECODING_KEYS)}")
        gen_opts = {k: v for k, v in options.items() if k in asdict(self.generation)}
        cfg = GenerationConfig(**{**asdict(self.generation), **gen_opts}).check()
        if cfg.max_length + 1 > self.decoder.max_length:
            raise MedmmError(f"max_length {cfg.max_length} exceeds what the decoder was built for ({self.decoder.max_length - 1})")
        c = self.config
        mbr: dict[str, Any] = {k: int(options.get(k, getattr(c.mbr, k.removeprefix("mbr_")))) for k in _MBR_INT}
        mbr.update({k: float(options.get(k, getattr(c.mbr, k.removeprefix("mbr_")))) for k in _MBR_FLOAT})
        check_mbr(**mbr)
        if (mbr["mbr_attribute_weight"] or mbr["mbr_reference_power"]) and self.lexicon is None:
            raise MedmmError("grounded consensus decoding needs attribute heads and the attribute lexicon "
                             "(attributes.targets; runs trained before it: task.fit_grounding(train samples))")
        for k, v in gen_opts.items():
            setattr(c.decoding, k, v)
        for k, v in mbr.items():
            setattr(c.mbr, k.removeprefix("mbr_"), v)
        self.generation = cfg
        return cfg

    @torch.no_grad()
    def generate_ids(self, batch: dict[str, Any]) -> tuple[list[list[int]], torch.Tensor | None]:
        """Generated token ids per sample and the findings probabilities (or None)."""
        memory, pad, find_logits = self.encode(batch)
        ids = generate(self.decoder, memory, pad, self.generation)
        return ids, (torch.sigmoid(find_logits.float()) if find_logits is not None else None)

    @torch.no_grad()
    def generate_candidates(self, batch: dict[str, Any]) -> tuple[list[list[list[int]]], torch.Tensor | None]:
        """The N-best beam hypotheses per sample (best first; N = max(beam_size, mbr.candidates)),
        then `mbr.samples` sampled texts, and the findings probabilities (or None)."""
        memory, pad, find_logits = self.encode(batch)
        c = self.config
        cfg = replace(self.generation, beam_size=max(self.generation.beam_size, c.mbr.candidates))
        nbest = beam_search_nbest(self.decoder, memory, pad, cfg)
        ids = [[h for _, h in hyps[: c.mbr.candidates]] or [[]] for hyps in nbest]
        if c.mbr.samples > 0:
            # seeded: the same image gets the same candidates in every evaluation
            gen = torch.Generator(device=memory.device).manual_seed(0)
            samples = sample_decode(self.decoder, memory, pad, replace(self.generation, beam_size=1), c.mbr.samples, generator=gen)
            for i in range(len(ids)):
                ids[i] += samples[i * c.mbr.samples : (i + 1) * c.mbr.samples]
        return ids, (torch.sigmoid(find_logits.float()) if find_logits is not None else None)

    @property
    def reports(self) -> TrainingReports:
        """The training reports as consensus decoding sees them (built once per store)."""
        if self._reports is None:
            self._reports = TrainingReports(self.store, self.store_ids, self.store_texts, self.store_groups, self.consensus)
        return self._reports

    def _consensus_pick(self, generated: list[str], hits: list[tuple[str, float]], exclude_group: str | None,
                        image_probs: dict[str, np.ndarray] | None = None, n_typical: int | None = None) -> dict[str, Any]:
        """Consensus decoding of one sample (`TrainingReports.pick` with the config's knobs).

        With `image_probs` (the attribute heads' distributions) the decoding is grounded as the
        config says (mbr.reference_power, mbr.attribute_weight; `grounding`); without,
        it is the plain re-ranking. n_typical: typical candidates (default mbr.typical)."""
        c = self.config
        ground = image_probs is not None and self.lexicon is not None
        reports = self.reports

        def factors(ids: list[str]) -> list[float]:  # references whose attributes fit the image weigh more
            probs = [image_probs[t] for t in self.attributes]
            return reference_attribute_weights([self.store_labels[reports.position(h)] for h in ids], probs, c.mbr.reference_power)

        def bonus(text: str) -> float:  # penalty for naming attributes the image does not show
            return c.mbr.attribute_weight * self.lexicon.consistency(text, image_probs)

        return reports.pick(generated, hits, exclude_group, n_references=c.mbr.references, n_retrieved=c.mbr.retrieved,
                            n_typical=c.mbr.typical if n_typical is None else n_typical,
                            reference_factors=factors if ground and c.mbr.reference_power else None,
                            candidate_bonus=bonus if ground and c.mbr.attribute_weight else None)

    def typical_indices(self, m: int | None = None) -> list[int]:
        """Store positions of the `m` (default mbr.typical) most typical training reports."""
        return self.reports.typical_indices(self.config.mbr.typical if m is None else m)

    def consensus_nn(self, hits: list[tuple[str, float]]) -> str:
        """Retrieval-only consensus baseline (`TrainingReports.consensus_nn`, the config's knobs)."""
        return self.reports.consensus_nn(hits, self.config.mbr.candidates, self.config.mbr.references)

    def _add_consensus(self, rec: dict[str, Any], texts: list[str], hits: list[tuple[str, float]], group: str,
                       image_probs: dict[str, np.ndarray] | None, used: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """Consensus decoding of one evaluation record: its prediction becomes the pick among the
        generated `texts` (beam output kept as beam_prediction), with the consensus baselines and
        the `decoding` summary. Returns `used` (provenance sources) plus the training reports
        offered as candidates and, when the pick is a typical report, that report."""
        c = self.config
        pick = self._consensus_pick(texts, hits, group, image_probs)
        rec["beam_prediction"] = texts[0]
        rec["prediction"] = pick["text"]
        if self.with_consensus_baselines:
            rec["nn_consensus_prediction"] = self.consensus_nn(hits)
        if c.mbr.typical_baseline > 0 and self.with_consensus_baselines:
            # the plain consensus without generated candidates (no grounding): a fixed baseline
            rec["typical_consensus_prediction"] = self._consensus_pick([], hits, group, n_typical=c.mbr.typical_baseline)["text"]
        src = pick["source"]
        rec["decoding"] = {"method": "consensus", "selected_from": src[0] if src else "generated",
                           "training_id": src[1] if src else None, "expected_cider_d": pick["utility"],
                           "n_candidates": pick["n_candidates"], "n_pseudo_references": min(len(hits), c.mbr.references)}
        used = list(dict.fromkeys([*used, *hits[: c.mbr.retrieved]]))
        if src and src[0] == "typical":
            used.append((src[1], 0.0))
        return used


def generate_reports(run_dir: str | Path, samples: list[Sample], **decoding: Any) -> list[dict[str, Any]]:
    """Records (as `medmm predict` writes them) for `samples` from a trained run, with decoding
    options overriding the run's config (beam_size=3, no_repeat_ngram_size=3, ...)."""
    from medmm.engine.api import load_run, run_inference

    cfg, task = load_run(run_dir)
    if not isinstance(task, ReportDecodingMixin):
        raise MedmmError(f"{run_dir}: not a report_generation run (task {cfg.task!r})")
    if decoding:
        task.set_decoding(**decoding)
    records, _ = run_inference(task, samples, cfg, with_references=False)
    return records


__all__ = ["DECODING_KEYS", "ReportDecodingMixin", "check_mbr", "generate_reports", "generation_config"]
