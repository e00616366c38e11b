"""Report / caption generation from one or several images, with retrieval augmentation and
clinical-findings conditioning.

Model (all trained from scratch on the training split; nothing is downloaded):

* image encoder (`medmm.models`, e.g. small_cnn) applied to each view of a study (at most
  ``image.max_images``); the spatial tokens of all views, projected to ``dim`` and tagged with a view
  embedding, are concatenated into the decoder memory;
* retrieval augmentation (``retrieval.rag_k > 0``): the k most similar TRAINING reports are tokenised,
  encoded by one Transformer layer and appended to the memory, so the decoder can cross-attend to
  (and copy from) them. Similarity is cosine between image keys: a fixed thumbnail embedding
  (`medmm.knowledge.report_store`) or, with ``retrieval.run``, the frozen image tower of a
  trained contrastive `retrieval` run (`medmm.tasks.report.retrieval`). A study never
  retrieves reports of its own group (patient/case/study), at training or test time;
* clinical knowledge (``findings.enabled: true``): a findings head on the pooled image features
  predicts the CheXpert observations that the rule-based labeller of `medmm.metrics.clinical`
  finds in the training reports; each observation becomes one memory token, interpolated
  between a "present" and an "absent" embedding by its predicted probability;
* image attributes (``attributes.targets``, e.g. modality, plane, location): one softmax head per
  categorical `Sample.targets` key; its predicted distribution becomes one memory token (the
  probability-weighted class embeddings), so the text can name what the image shows;
* a Transformer decoder (`medmm.models.decoders`) over a word vocabulary fitted on the
  training text (saved in the task state), trained with teacher forcing, or, with
  ``decoder.pretrained``, a Hugging Face causal LM reading the memory as a projected prefix
  (`medmm.models.prefix_lm`; GPT-2, Llama, Qwen2; optional LoRA); decoding greedy or
  beam search with length penalty, no-repeat-n-gram and min/max length (config ``decoding:``, or
  `set_decoding(...)` / `decoding.generate_reports(...)` at predict time);
* consensus decoding (``mbr.references: K > 0``): the N-best beam hypotheses (and optionally
  the nearest and the most typical training reports) are re-ranked by their mean CIDEr-D against
  the reports of the K nearest training studies (minimum Bayes risk, `medmm.tasks.report.mbr`);
* self-critical training (``scst.samples: n``): REINFORCE on sampled texts with a CIDEr-D reward,
  usually from the weights of a cross-entropy run (``init_run``).

Modules: this one holds the task (model, data-dependent state, batches, losses, records,
metrics); its config is `config`, its decoding methods (a mixin) `decoding`, the
self-critical loss `scst`, the cached image inputs and retrieval keys `inputs`; the
heads live in `attributes`, the scores and provenance in `scoring`, the consensus
re-ranking in `mbr` (grounded by `grounding`), the trained retrieval key in
`retrieval`.

Every evaluation also scores the nearest-neighbour baseline ("copy the report of the most
similar training study", same retrieval) under ``nn_baseline/`` (and, with a trained key, the
thumbnail-retrieval one under ``nn_thumbnail_baseline/``; with consensus decoding, the
retrieval-only consensus of Devlin et al. under ``nn_consensus_baseline/``, the plain beam
output under ``beam/`` and, with typical-report candidates, the same consensus without the
generated candidates under ``typical_consensus_baseline/``). Each record carries
sentence-level provenance: for every generated sentence, the retrieved training reports
(ids) that share most of its words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medmm.data.schema import LabelState, Sample
from medmm.engine.task import Task, register_task
from medmm.errors import BadInputError, MedmmError
from medmm.knowledge.report_store import ReportStore
from medmm.metrics.headline import Headline
from medmm.models.decoders import PAD, TransformerReportDecoder, WordTokenizer, join_tokens, pad_batch, word_tokenize
from medmm.models.frozen_features import FrozenImageFeatures
from medmm.models.prefix_lm import HFPrefixDecoder, HFTokenizer, tokenizer_from_dict
from medmm.tasks.report.attributes import (
    AttributeHeads,
    FindingsHeads,
    attribute_accuracy,
    attribute_index,
    fit_attribute_classes,
    rename_legacy_keys,
)
from medmm.tasks.report.config import ReportGenerationConfig
from medmm.tasks.report.decoding import ReportDecodingMixin, check_mbr, generation_config
from medmm.tasks.report.grounding import AttributeLexicon
from medmm.tasks.report.inputs import StudyInputs
from medmm.tasks.report.mbr import CiderConsensus, TrainingReports
from medmm.tasks.report.retrieval import FrozenImageKey
from medmm.tasks.report.scoring import report_scores, sentence_provenance
from medmm.tasks.report.scst import self_critical_loss


@register_task("report_generation")
class ReportGenerationTask(ReportDecodingMixin, Task):
    """Image(s) -> report text (module docstring)."""

    Config = ReportGenerationConfig
    headline = Headline("val/cider_d", "max")

    def __init__(self, config: ReportGenerationConfig | None = None):
        super().__init__(config)
        from medmm.models import create_image_encoder

        c = self.config
        if c.retrieval.rag_k < 0 or c.image.max_images < 1 or c.decoder.max_report_length < 3:
            raise MedmmError("model.retrieval.rag_k must be >= 0, model.image.max_images >= 1 and model.decoder.max_report_length >= 3")
        check_mbr(c.mbr.references, c.mbr.candidates, c.mbr.retrieved, c.mbr.typical, c.mbr.samples,
                  c.mbr.attribute_weight, c.mbr.reference_power)
        if (c.mbr.attribute_weight or c.mbr.reference_power or c.scst.attribute_weight) and not c.attributes.targets:
            raise MedmmError("model.mbr.attribute_weight / mbr.reference_power / scst.attribute_weight need model.attributes.targets")
        if c.decoder.pretrained and c.retrieval.rag_k > 0:
            raise MedmmError("model.retrieval.rag_k > 0 embeds retrieved reports with the word decoder's embedding; "
                             "with model.decoder.pretrained (a causal LM) use retrieval.rag_k: 0")
        if c.decoder.lora is not None and not c.decoder.pretrained:
            raise MedmmError("model.decoder.lora adapts a pretrained causal LM: set model.decoder.pretrained too")
        if c.scst.samples == 1 or c.scst.samples < 0:
            raise MedmmError("model.scst.samples must be 0 (off) or >= 2 (the baseline is the other samples' mean reward)")
        self.image_encoder = create_image_encoder(c.image.encoder, **c.image.encoder_kwargs)
        if c.image.freeze:
            from medmm.models import freeze

            freeze(self.image_encoder)
        self.image_pretrained_sha256: str | None = None
        self.frozen_image_features = FrozenImageFeatures()  # a frozen encoder's features per view file
        self.input_spec = self.image_encoder.input_spec.with_size(c.image.size)
        spec = self.input_spec
        self.image_size, self.channels, self.mean, self.std = spec.size, spec.in_channels, spec.mean, spec.std
        self.generation = generation_config(c)
        d = c.dim
        self.image_proj = nn.Sequential(nn.Linear(self.image_encoder.out_dim, d), nn.LayerNorm(d))
        self.view_embed = nn.Parameter(torch.zeros(c.image.max_images, d))
        self.type_embed = nn.Parameter(torch.zeros(3, d))  # 0 image, 1 retrieved report, 2 findings
        nn.init.normal_(self.view_embed, std=0.02)
        nn.init.normal_(self.type_embed, std=0.02)
        self.tokenizer: WordTokenizer | None = None
        self.observations: list[str] = []
        self.attributes: dict[str, list[str]] = {}  # target -> classes (last may be "<other>")
        self.store_labels: list[list[int]] = []  # per training report: class index per attribute (-1 unknown)
        self.lexicon: AttributeLexicon | None = None
        self.retrieval_key: FrozenImageKey | None = None
        self._consensus: CiderConsensus | None = None
        self.store_ids: list[str] = []
        self.store_texts: list[str] = []
        self.store_groups: list[str] = []
        self._store: ReportStore | None = None
        self._thumb_store: ReportStore | None = None
        self._reports: TrainingReports | None = None
        self.decoder: TransformerReportDecoder | HFPrefixDecoder | None = None
        self.inputs = StudyInputs(c.image.max_images, self.input_spec)
        self.last_attribute_logits: list[torch.Tensor] = []
        # consensus baselines in every record (off only to time the model alone)
        self.with_consensus_baselines = True

    def train(self, mode: bool = True) -> ReportGenerationTask:
        """As nn.Module.train, but a frozen image encoder stays in eval mode (fixed statistics)."""
        super().train(mode)
        if self.config.image.freeze:
            self.image_encoder.eval()
        return self

    # -- data-dependent state --------------------------------------------------------------
    def setup(self, train_samples: list[Sample]) -> None:
        """Fit the vocabulary, the findings label set and the retrieval store; build the heads."""
        from medmm.metrics.clinical import label_report

        c = self.config
        usable = [s for s in train_samples if self._text(s) and s.images]
        if not usable:
            raise MedmmError(f"no training sample has both an image and a non-empty text[{c.text_field!r}]")
        if c.decoder.pretrained:
            self.tokenizer = HFTokenizer(c.decoder.pretrained)
        else:
            self.tokenizer = WordTokenizer.fit([self._text(s) for s in usable], c.decoder.min_word_freq, c.decoder.max_vocab)
        if c.findings.enabled:
            counts: dict[str, int] = {}
            for s in usable:
                for obs, state in label_report(self._text(s)).items():
                    if state == LabelState.POSITIVE:
                        counts[obs] = counts.get(obs, 0) + 1
            self.observations = sorted(o for o, n in counts.items() if n >= c.findings.min_positive)
        self.attributes = fit_attribute_classes(usable, c.attributes.targets, c.attributes.min_count)
        self.store_ids = [s.id for s in usable]
        self.store_texts = [self._text(s) for s in usable]
        self.store_groups = [s.group(c.group_by) for s in usable]
        self.fit_grounding(usable)
        if c.image.pretrained:
            from medmm.models.pretrained import load_into

            meta = load_into(self.image_encoder, c.image.pretrained)
            self.image_pretrained_sha256 = meta.get("sha256")
            self.frozen_image_features.reset()
        emb = np.stack([self.inputs.thumbnail(s) for s in usable])
        key = FrozenImageKey.from_run(c.retrieval.run) if c.retrieval.run else None
        self._build(emb.shape[1], key)
        self.store_embeddings.copy_(torch.from_numpy(emb))
        if self.retrieval_key is not None:
            self.store_keys.copy_(torch.from_numpy(np.stack([self.inputs.key(s, self.retrieval_key) for s in usable])))
        self._store = self._thumb_store = self._consensus = self._reports = None
        if c.init_run:
            self._init_from(c.init_run)

    def fit_grounding(self, store_samples: list[Sample]) -> None:
        """Class labels of the training reports and the attribute lexicon (`grounding`).

        Called by setup(); call it on a run trained before grounding existed, with the run's
        training samples (same ids, in store order), to use grounded decoding with it.
        """
        if [s.id for s in store_samples] != self.store_ids:
            raise MedmmError("fit_grounding needs the run's training samples, in the order of its report store")
        if not self.attributes:
            self.store_labels, self.lexicon = [], None
            return
        self.store_labels = [[attribute_index(cls, s.targets.get(t)) for t, cls in self.attributes.items()]
                             for s in store_samples]
        labels = {t: [lab[j] for lab in self.store_labels] for j, t in enumerate(self.attributes)}
        self.lexicon = AttributeLexicon.fit(self.store_texts, labels, self.attributes)

    def _init_from(self, run_dir: str) -> None:
        """Copy the weights of a finished run fitted on the same data (checked: vocabulary,
        label sets and training reports must be identical; the load is strict)."""
        from medmm.engine import rundir as rd

        state = rd.read_json(Path(run_dir) / rd.TASK_STATE)
        mine = self.state()
        for key in ("tokenizer", "observations", "attributes"):
            if state["state"].get(key) != mine.get(key):
                raise MedmmError(f"model.init_run {run_dir}: its {key} differs from this run's (different data or config)")
        if state["state"]["store"]["ids"] != mine["store"]["ids"]:
            raise MedmmError(f"model.init_run {run_dir}: trained on other reports than this run")
        weights = torch.load(Path(run_dir) / state.get("weights", rd.WEIGHTS), map_location="cpu", weights_only=True)
        self.load_state_dict(weights, strict=True)

    def serving_inputs(self) -> dict[str, str]:
        """The image only: `text_field` is what this task generates, not an input (Task hook)."""
        return {"image": "one view of the study: DICOM, PNG or JPEG"}

    def state(self) -> dict[str, Any]:
        if self.tokenizer is None:
            raise MedmmError("report_generation task has no state before setup()")
        return {
            "tokenizer": self.tokenizer.to_dict(),
            "observations": self.observations,
            "attributes": self.attributes,
            "store_labels": self.store_labels,
            "attribute_lexicon": self.lexicon.to_dict() if self.lexicon is not None else None,
            "image_pretrained_sha256": self.image_pretrained_sha256,
            "retrieval_key": self.retrieval_key.spec() if self.retrieval_key is not None else None,
            "store": {"ids": self.store_ids, "texts": self.store_texts, "groups": self.store_groups,
                      "dim": int(self.store_embeddings.shape[1]),
                      "embedding": "retrieval_run" if self.retrieval_key is not None else "thumbnail16"},
            "image_size": self.image_size,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "text_field": self.config.text_field,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.tokenizer = tokenizer_from_dict(state["tokenizer"])
        self.observations = list(state["observations"])
        self.attributes = {k: list(v) for k, v in (state.get("attributes") or {}).items()}
        self.store_labels = [list(v) for v in state.get("store_labels") or []]  # absent in older runs
        lex = state.get("attribute_lexicon")
        self.lexicon = AttributeLexicon.from_dict(lex) if lex else None
        self.image_pretrained_sha256 = state.get("image_pretrained_sha256")
        st = state["store"]
        self.store_ids, self.store_texts, self.store_groups = list(st["ids"]), list(st["texts"]), list(st["groups"])
        spec = state.get("retrieval_key")
        # the embeddings and the key's weights themselves arrive with the weights
        self._build(int(st["dim"]), FrozenImageKey(spec) if spec else None)
        self._store = self._thumb_store = self._consensus = self._reports = None

    def _build(self, store_dim: int, retrieval_key: FrozenImageKey | None = None) -> None:
        c = self.config
        d = c.dim
        self.register_buffer("store_embeddings", torch.zeros(len(self.store_ids), store_dim))
        if retrieval_key is not None:
            self.retrieval_key = retrieval_key
            self.register_buffer("store_keys", torch.zeros(len(self.store_ids), retrieval_key.dim))
        max_len = max(c.decoder.max_report_length, c.decoding.max_length + 1)
        if isinstance(self.tokenizer, HFTokenizer):
            self.decoder = HFPrefixDecoder(self.tokenizer.source, d, self.tokenizer, c.decoder.lora)
        else:
            self.decoder = TransformerReportDecoder(len(self.tokenizer), d, c.decoder.layers, c.decoder.heads, max_len, c.dropout)
        if c.retrieval.rag_k > 0:
            self.rag_pos = nn.Parameter(torch.zeros(1, 1, c.retrieval.rag_max_tokens, d))
            self.rag_rank = nn.Parameter(torch.zeros(1, c.retrieval.rag_k, 1, d))
            nn.init.normal_(self.rag_pos, std=0.02)
            nn.init.normal_(self.rag_rank, std=0.02)
            self.rag_encoder = nn.TransformerEncoderLayer(d, c.decoder.heads, 4 * d, c.dropout, batch_first=True, norm_first=True)
        if c.findings.enabled and self.observations:
            self.findings = FindingsHeads(self.image_encoder.out_dim, d, len(self.observations))
        if self.attributes:
            self.attribute_model = AttributeHeads(self.image_encoder.out_dim, d, self.attributes, c.dropout)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        rename_legacy_keys(state_dict, prefix)  # runs saved before the heads had their own module
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._store = self._thumb_store = self._reports = None  # rebuilt from the loaded embeddings on first use
        self.frozen_image_features.reset()  # the image encoder's weights may be others now

    @property
    def store(self) -> ReportStore:
        """The retrieval store of training reports, keyed by the configured retrieval key
        (the trained one when there is one, else the thumbnail)."""
        if self._store is None:
            if self.tokenizer is None:
                raise MedmmError("report_generation task used before setup()/load_state()")
            keys = self.store_keys if self.retrieval_key is not None else self.store_embeddings
            self._store = ReportStore(self.store_ids, self.store_texts, self.store_groups, keys.detach().cpu().numpy())
        return self._store

    @property
    def thumbnail_store(self) -> ReportStore:
        """The same training reports keyed by the thumbnail (for the thumbnail NN baseline)."""
        if self.retrieval_key is None:
            return self.store
        if self._thumb_store is None:
            self._thumb_store = ReportStore(self.store_ids, self.store_texts, self.store_groups,
                                            self.store_embeddings.detach().cpu().numpy())
        return self._thumb_store

    @property
    def consensus(self) -> CiderConsensus:
        """CIDEr-D with document frequencies of the training reports (consensus decoding)."""
        if self._consensus is None:
            self._consensus = CiderConsensus(self.store_texts)
        return self._consensus

    # -- inputs ----------------------------------------------------------------------------
    def _text(self, s: Sample) -> str:
        return (s.text.get(self.config.text_field) or "").strip()

    def _query(self, s: Sample) -> np.ndarray:
        """The study's query vector for `store` (trained key or thumbnail)."""
        return self.inputs.key(s, self.retrieval_key) if self.retrieval_key is not None else self.inputs.thumbnail(s)

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Images (all views stacked), target tokens, retrieved reports, findings targets, metadata."""
        if self.tokenizer is None:
            raise MedmmError("report_generation task used before setup()/load_state()")
        c = self.config
        views: list[np.ndarray] = []
        counts: list[int] = []
        for s in samples:
            v = self.inputs.views(s)
            views.extend(v)
            counts.append(len(v))
        texts = [self._text(s) for s in samples]
        if self.training:  # an empty target would teach "say nothing"; at inference it is fine
            for s, t in zip(samples, texts, strict=True):
                if not t:
                    raise BadInputError(s.id, f"study has no {c.text_field!r} text to train on")
        groups = [s.group(c.group_by) for s in samples]
        k = max(c.retrieval.rag_k, c.retrieval.provenance_k, c.mbr.retrieved, 1)
        if not self.training:  # consensus decoding needs its pseudo-references only at inference
            k = max(k, c.mbr.references, c.mbr.candidates if c.mbr.references else 0)
        hits = self.store.search(np.stack([self._query(s) for s in samples]), k, exclude_groups=groups)
        batch: dict[str, Any] = {
            "images": torch.from_numpy(np.stack(views)),
            "view_counts": torch.tensor(counts, dtype=torch.long),
            "targets": pad_batch([self.tokenizer.encode(t, c.decoder.max_report_length) for t in texts]),
            "ids": [s.id for s in samples],
            "references": texts,
            "groups": groups,
            "hits": [[(h.id, round(h.score, 4)) for h in hs] for hs in hits],
        }
        if c.image.freeze:  # per view, the key of its frozen features (None: an in-memory image, not cached)
            batch["image_paths"] = [r.path and str(r.path) for s in samples for r in s.images[: c.image.max_images]]
        if self.retrieval_key is not None and not self.training:  # the thumbnail NN baseline
            th = self.thumbnail_store.search(np.stack([self.inputs.thumbnail(s) for s in samples]), 1, exclude_groups=groups)
            batch["thumbnail_nn"] = [hs[0].id if hs else None for hs in th]
        if self.attributes:
            batch["attributes"] = torch.tensor(
                [[attribute_index(self.attributes[t], s.targets.get(t)) for t in self.attributes] for s in samples],
                dtype=torch.long)
            batch["attribute_references"] = [{t: s.targets.get(t) for t in self.attributes} for s in samples]
        if c.retrieval.rag_k > 0:
            rag = torch.full((len(samples), c.retrieval.rag_k, c.retrieval.rag_max_tokens), PAD, dtype=torch.long)
            for i, hs in enumerate(hits):
                for j, h in enumerate(hs[: c.retrieval.rag_k]):
                    ids = self.tokenizer.encode(h.text, c.retrieval.rag_max_tokens, bos=False)
                    rag[i, j, : len(ids)] = torch.tensor(ids)
            batch["rag_tokens"] = rag
        if self.observations:
            y = torch.full((len(samples), len(self.observations)), -1.0)
            for i, (s, t) in enumerate(zip(samples, texts, strict=True)):
                if not t:
                    continue
                labels = self.inputs.labels(s.id, t)
                for j, o in enumerate(self.observations):
                    state = labels.get(o)
                    # uncertain mentions are left out of the loss; not mentioned counts as absent
                    y[i, j] = -1.0 if state == LabelState.UNCERTAIN else float(state == LabelState.POSITIVE)
            batch["findings"] = y
        return batch

    # -- model -----------------------------------------------------------------------------
    def encode(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Decoder memory (B, M, dim), its padding mask (True = pad) and findings logits (or None).

        The attribute heads' logits (a list, one (B, classes) tensor per target) are left in
        ``self.last_attribute_logits`` for the loss and the records.
        """
        feats = self._image_features(batch)
        tokens = self.image_proj(feats.tokens)  # (V_total, N, d)
        counts = batch["view_counts"].tolist()
        b, n, d = len(counts), tokens.shape[1], tokens.shape[2]
        vmax = max(counts)
        mem = tokens.new_zeros(b, vmax * n, d)
        pad = torch.ones(b, vmax * n, dtype=torch.bool, device=tokens.device)
        pooled = feats.pooled.new_zeros(b, feats.pooled.shape[1])
        start = 0
        for i, cnt in enumerate(counts):
            t = tokens[start : start + cnt] + self.view_embed[:cnt, None]
            mem[i, : cnt * n] = t.reshape(cnt * n, d)
            pad[i, : cnt * n] = False
            pooled[i] = feats.pooled[start : start + cnt].mean(0)
            start += cnt
        parts, pads = [mem + self.type_embed[0]], [pad]
        find_logits = None
        if "rag_tokens" in batch and self.config.retrieval.rag_k > 0:
            rt = batch["rag_tokens"]  # (B, k, L)
            k, L = rt.shape[1], rt.shape[2]
            e = self.decoder.embed(rt) + self.rag_pos[:, :, :L] + self.rag_rank[:, :k]
            e = e.reshape(b, k * L, d) + self.type_embed[1]
            rpad = rt.eq(PAD).reshape(b, k * L)
            # a study with fewer hits (tiny store) has all-pad rows; keep one slot visible
            rpad[:, 0] = False
            parts.append(self.rag_encoder(e, src_key_padding_mask=rpad))
            pads.append(rpad)
        if self.observations:
            ft, find_logits = self.findings(pooled)
            parts.append(ft + self.type_embed[2])
            pads.append(torch.zeros(b, ft.shape[1], dtype=torch.bool, device=tokens.device))
        self.last_attribute_logits = []
        if self.attributes:
            at, self.last_attribute_logits = self.attribute_model(pooled)
            parts.append(at)
            pads.append(torch.zeros(b, at.shape[1], dtype=torch.bool, device=tokens.device))
        return torch.cat(parts, 1), torch.cat(pads, 1), find_logits

    def _image_features(self, batch: dict[str, Any]) -> Any:
        """Features of every view; a frozen encoder's once per view file (`medmm.models.frozen_features`)."""
        if self.config.image.freeze and "image_paths" in batch:
            return self.frozen_image_features(self.image_encoder, batch["images"], batch["image_paths"],
                                              {"input_spec": self.input_spec.to_dict()})
        return self.image_encoder(batch["images"])

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        memory, pad, find_logits = self.encode(batch)
        tgt = batch["targets"]
        c = self.config
        out: dict[str, torch.Tensor] = {}
        if c.scst.samples > 0 and self.training:
            loss = self_critical_loss(self.decoder, memory, pad, batch["references"], self.tokenizer, self.consensus,
                                      self.generation, c.scst.samples, out, self.lexicon, self.attributes,
                                      batch.get("attributes"), c.scst.attribute_weight)
            if c.scst.xe_weight > 0:
                loss = loss + c.scst.xe_weight * self._xe_loss(memory, pad, tgt)
        else:
            loss_report = self._xe_loss(memory, pad, tgt)
            out["loss_report"] = loss_report.detach()
            loss = loss_report
        if find_logits is not None and "findings" in batch:
            y = batch["findings"]
            m = y.ge(0)
            if bool(m.any()):
                lf = F.binary_cross_entropy_with_logits(find_logits.float()[m], y[m])
            else:
                lf = find_logits.sum() * 0.0
            loss = loss + self.config.findings.loss_weight * lf
            out["loss_findings"] = lf.detach()
        if self.last_attribute_logits and "attributes" in batch:
            y = batch["attributes"]
            la = sum(F.cross_entropy(lg.float(), y[:, j], ignore_index=-1) if bool(y[:, j].ge(0).any()) else lg.sum() * 0.0
                     for j, lg in enumerate(self.last_attribute_logits)) / len(self.last_attribute_logits)
            loss = loss + self.config.attributes.loss_weight * la
            out["loss_attributes"] = la.detach()
        out["loss"] = loss
        return out

    def _xe_loss(self, memory: torch.Tensor, pad: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(tgt[:, :-1], memory, pad)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tgt[:, 1:].reshape(-1),
                               ignore_index=PAD, label_smoothing=self.config.decoder.label_smoothing)

    # -- evaluation (generation and consensus decoding: ReportDecodingMixin, decoding.py) --
    def evaluation_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per study: prediction, reference, nearest-neighbour baseline(s), provenance."""
        c = self.config
        mbr = c.mbr.references > 0
        if mbr:
            cand_ids, probs = self.generate_candidates(batch)
        else:
            ids, probs = self.generate_ids(batch)
            cand_ids = [[g] for g in ids]
        attr_probs = [torch.softmax(lg.float(), -1) for lg in self.last_attribute_logits]
        store = self.store
        records = []
        for i, cands in enumerate(cand_ids):
            hits = batch["hits"][i]
            texts = [join_tokens(self.tokenizer.decode_tokens(g)) for g in cands]
            rec: dict[str, Any] = {
                "id": batch["ids"][i],
                "prediction": texts[0],
                "reference": batch["references"][i],
                "group": batch["groups"][i],
                "nn_prediction": store.text_of(hits[0][0]) if hits else "",
            }
            n_shown = max(c.retrieval.rag_k, c.retrieval.provenance_k, c.mbr.retrieved)
            rec["retrieved"] = [{"id": h, "score": sc} for h, sc in hits[:n_shown]]
            used = hits[: c.retrieval.rag_k] if c.retrieval.rag_k > 0 else hits[: c.retrieval.provenance_k]
            if mbr:
                probs_i = {t: p[i].cpu().numpy() for t, p in zip(self.attributes, attr_probs, strict=True)} if attr_probs else None
                used = self._add_consensus(rec, texts, hits, batch["groups"][i], probs_i, used)
            if "thumbnail_nn" in batch:
                tid = batch["thumbnail_nn"][i]
                rec["nn_thumbnail_prediction"] = store.text_of(tid) if tid else ""
            words = word_tokenize(rec["prediction"]) if mbr else self.tokenizer.decode_tokens(cands[0])
            rec["sentences"] = sentence_provenance(words, [(h, store.text_of(h)) for h, _ in used],
                                                   used_by_model=c.retrieval.rag_k > 0 or (mbr and (c.mbr.retrieved > 0 or c.mbr.typical > 0)))
            if probs is not None:
                rec["findings"] = {o: round(float(p), 4) for o, p in zip(self.observations, probs[i].tolist(), strict=True)}
            if attr_probs:
                rec["attributes"] = {}
                for (t, classes), p in zip(self.attributes.items(), attr_probs, strict=True):
                    j = int(p[i].argmax())
                    ref = batch["attribute_references"][i][t]
                    k = attribute_index(classes, ref)
                    rec["attributes"][t] = {"prediction": classes[j], "probability": round(float(p[i, j]), 4),
                                            "reference": ref, "reference_class": classes[k] if k >= 0 else None}
            records.append(rec)
        return records

    @classmethod
    def file_scorer(cls) -> Any:
        """`medmm score --task report_generation` (`medmm.tasks.report.file_scorer`)."""
        from medmm.tasks.report.file_scorer import SCORER

        return SCORER

    def instruction_records(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """A request for the `text_field` -> the sample's text (`medmm.tasks.report.instruct`)."""
        from medmm.tasks.report.instruct import report_instruction_records

        return report_instruction_records(samples, self.config.text_field)

    def explainable(self, samples: list[Sample]) -> Any:
        """Sentence-to-region maps: the decoder's cross-attention of each generated sentence. A causal
        LM decoder has none: its report by the image regions behind it (`explain_generation`)."""
        if isinstance(self.decoder, HFPrefixDecoder):
            from medmm.tasks.report.explain_generation import prefix_report_explainable

            return prefix_report_explainable(self, samples)
        from medmm.interpret.explainable import WordRegions
        from medmm.tasks.report.sentence_regions import report_sentence_regions

        batch = self.collate(samples)
        counts = batch["view_counts"].tolist()
        return WordRegions(self.name, "sentence", report_sentence_regions(self, batch), batch["images"],
                           [sum(counts[:i]) for i in range(len(samples))])

    def protocol(self) -> dict[str, Any]:
        return {"metric_definitions": {
            "bleu_1..4, meteor, rouge_l, cider_d": "corpus scores of medmm.metrics.nlg (pycocoevalcap definitions, "
            "PTB tokenisation; docs/metrics-nlg.md)", "clinical_efficacy": "micro/macro P/R/F1 of the rule labeller's "
            "observations, prediction vs reference", "nn_baseline": "the same scores for the retrieved nearest training report",
            "ci": "95% percentile bootstrap, resampling groups"}}

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """The report of the nearest training image by pixel thumbnails (`medmm.metrics.floors.report_floors`)."""
        from medmm.metrics import floors as F

        train = [s for s in train_samples if s.images and self._text(s)]
        by_id = {s.id: s for s in samples}
        scored = [r for r in records if str(r.get("reference") or "").strip() and by_id.get(r["id"]) and by_id[r["id"]].images]
        px = F.PixelThumbnails()
        return F.report_floors(px.matrix([s.images[0] for s in train]), [self._text(s) for s in train],
                               px.matrix([by_id[r["id"]].images[0] for r in scored]), [r["reference"] for r in scored],
                               [r["prediction"] for r in scored], groups=[r.get("group") or r["id"] for r in scored],
                               n_resamples=self.config.bootstrap_resamples)

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, clinical efficacy (+ bootstrap CIs) for the model
        and, under ``nn_baseline``, for copying the nearest training report (plus the other
        baselines the records carry: thumbnail NN, consensus NN, plain beam output)."""
        if not records:
            raise MedmmError("no evaluation records to score")
        scored = [r for r in records if str(r.get("reference") or "").strip()]
        if not scored:
            raise MedmmError(f"none of the {len(records)} records has a reference text to score against")
        n = self.config.bootstrap_resamples
        out = report_scores(scored, "prediction", n)
        out["nn_baseline"] = report_scores(scored, "nn_prediction", n)
        for fld, name in (("nn_thumbnail_prediction", "nn_thumbnail_baseline"),
                          ("nn_consensus_prediction", "nn_consensus_baseline"),
                          ("typical_consensus_prediction", "typical_consensus_baseline"), ("beam_prediction", "beam")):
            if all(fld in r for r in scored):
                out[name] = report_scores(scored, fld, n)
        if any("attributes" in r for r in scored):
            out["attribute_accuracy"] = attribute_accuracy(scored)
        out["n_scored"] = len(scored)
        out["n_without_reference"] = len(records) - len(scored)
        out["n_empty_predictions"] = sum(1 for r in scored if not r["prediction"].strip())
        return out
