"""Diagnosis: classification from an image and/or clinical text (multi-class or multi-label).

Model: `medmm.models.build_classifier` (any image encoder, any text encoder, any fusion, incl.
the unimodal `image_only` / `text_only`). Targets:

* multi-class: ``target: <Sample.targets key>``; a value listed in `ignore_values` (default
  "unknown") or an absent one is missing: masked from the loss (IGNORE) and left out of metrics.
* multi-label: ``findings: [names]`` (``[]`` = every finding seen in training) from
  `Sample.findings`; UNCERTAIN and absent observations are masked per label (``uncertain:
  ignore``; or counted ``positive``/``negative``).

Label-leakage guard (``text.mask_label_words: true``): words that name a class (the class names,
their content words and their synonyms in `medmm.data.label_maps.VOCABULARY`) are replaced by
``[MASK]`` in the text input, so a text model cannot read the answer off the notes.

Imbalance (the ``imbalance:`` section): ``loss: ce | weighted_ce | focal | logit_adjusted`` (Menon
et al.), ``balanced_sampling: true`` (Task.sample_weights -> class-balanced sampler), and
``threshold_tuning: f1 | youden`` (per-class thresholds fitted on validation after training,
saved in task_state.json and used for every later prediction).

External validation: `prepare_external` maps the model's classes onto another dataset's label
space through a `medmm.data.label_maps.LabelMap`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from medmm.data import label_maps as lm
from medmm.data.image_cache import PreprocessedImages
from medmm.data.schema import LabelState, Sample
from medmm.engine.task import Task, register_task
from medmm.errors import BadInputError, MedmmError
from medmm.metrics.headline import Headline
from medmm.models.frozen_features import FrozenImageFeatures, array_key
from medmm.tasks import losses as L
from medmm.tasks.diagnosis.config import DiagnosisConfig
from medmm.tasks.diagnosis.headline import diagnosis_units
from medmm.tasks.diagnosis.metrics import decision_scores, diagnosis_headline, diagnosis_metrics  # noqa: F401 (also imported from here)

if TYPE_CHECKING:
    from medmm.tasks.diagnosis.zero_shot import ZeroShotDiagnosis

MASK_TOKEN = "[MASK]"


@register_task("diagnosis")
class DiagnosisTask(Task):
    """Image + text classification; configured by `Config` (the run config's `model:` section)."""

    headline = Headline("val/auroc_macro_ovr", "max", diagnosis_units)
    zero_shot_dataset = "pneumoniamnist"  # `medmm evaluate --model CLIP --task diagnosis` without --dataset

    Config = DiagnosisConfig

    def __init__(self, config: DiagnosisConfig | None = None):
        super().__init__(config)
        c = self.config
        from medmm.models.fusion import fusion_info

        fusion = fusion_info(c.fusion)  # unknown name -> "unknown fusion ... known: ..."
        self.uses_image = fusion.uses_image and c.image.encoder is not None
        self.uses_text = fusion.uses_text and c.text.encoder is not None
        self.multilabel = c.findings is not None
        self.classes: list[str] = []
        self.class_counts: list[int] = []
        self.thresholds: list[float] | None = None
        self.mask_words: list[str] = []
        self.model: nn.Module | None = None
        self._images: PreprocessedImages | None = None  # made for the image encoder's input spec on first use
        self.frozen_image_features = FrozenImageFeatures()  # a frozen image encoder's features per image
        self._array_keys: dict[str, str | None] = {}  # dataset/id -> the feature key of its in-memory image
        self._external: dict[str, Any] | None = None
        self.train_dataset: str | None = None
        # model.zero_shot.pretrained: a CLIP-style model classifies by class prompts, never trained (zero_shot.py)
        self.zero_shot: ZeroShotDiagnosis | None = None
        if c.zero_shot.pretrained is not None:
            from medmm.tasks.diagnosis.zero_shot import ZeroShotDiagnosis

            self.zero_shot = ZeroShotDiagnosis.from_config(c)
            self.uses_image, self.uses_text = True, False
            self.classes, self.model = list(self.zero_shot.classes), self.zero_shot.model

    # ------------------------------------------------------------------ labels
    def _label_of(self, s: Sample) -> str | None:
        v = s.targets.get(self.config.target)
        if v is None or v in self.config.ignore_values:
            return None
        return str(v)

    def _finding_vector(self, s: Sample) -> list[float]:
        """0/1 per class, NaN where missing or (with uncertain: ignore) uncertain."""
        out = []
        for name in self.classes:
            st = s.findings.get(name)
            if st is None:
                out.append(float("nan"))
            elif st == LabelState.UNCERTAIN:
                u = self.config.uncertain
                out.append(float("nan") if u == "ignore" else (1.0 if u == "positive" else 0.0))
            else:
                out.append(1.0 if int(st) == int(LabelState.POSITIVE) else 0.0)
        return out

    def _class_index(self, s: Sample) -> int | None:
        lab = self._label_of(s)
        if lab is None:
            return None
        try:
            return self.classes.index(lab)
        except ValueError:
            return None  # a class not seen in training cannot be scored as one of ours

    # ------------------------------------------------------------------ setup/state
    def text_of(self, s: Sample) -> str:
        """The sample's text input after the label-leakage guard."""
        text = s.text.get(self.config.text.field) or ""
        return lm.mask_words(text, self.mask_words, MASK_TOKEN) if self.mask_words else text

    def setup(self, train_samples: list[Sample]) -> None:
        """Classes and counts from training, leakage-guard words, tokenizer; builds the model."""
        c = self.config
        if self.zero_shot is not None:
            raise MedmmError("model.zero_shot.pretrained is set: a zero-shot classifier has nothing to train; score it with "
                             "`medmm evaluate --model NAME_OR_FOLDER --task diagnosis`, or drop model.zero_shot to train one")
        self.train_dataset = train_samples[0].dataset if train_samples else None
        if self.multilabel:
            names = list(c.findings or sorted({k for s in train_samples for k in s.findings}))
            if not names:
                raise MedmmError("diagnosis: multi-label (findings) but no training sample has findings")
            self.classes = names
            vec = np.array([self._finding_vector(s) for s in train_samples], dtype=float).reshape(-1, len(names))
            self.class_counts = [int(np.nansum(vec[:, j])) for j in range(len(names))]
        else:
            labels = [self._label_of(s) for s in train_samples]
            seen = sorted({x for x in labels if x is not None})
            self.classes = list(c.classes) if c.classes else seen
            if len(self.classes) < 2:
                raise MedmmError(
                    f"diagnosis: target {c.target!r} has {len(self.classes)} class(es) in the training split; need >= 2"
                )
            self.class_counts = [sum(1 for x in labels if x == k) for k in self.classes]
        self.mask_words = self._guard_words()
        self._build()
        if self.uses_text:
            self.model.text_encoder.fit_tokenizer([self.text_of(s) for s in train_samples if s.text.get(c.text.field)])

    def _guard_words(self, classes: list[str] | None = None) -> list[str]:
        if not self.config.text.mask_label_words:
            return list(self.config.text.extra_mask_words)
        return lm.label_words(list(self.classes if classes is None else classes) + list(self.config.text.extra_mask_words))

    def state(self) -> dict[str, Any]:
        spec = self.model.image_encoder.input_spec if self.model is not None and self.model.image_encoder is not None else None
        return {
            "classes": self.classes,
            "train_dataset": self.train_dataset,
            "target": None if self.multilabel else self.config.target,
            "multilabel": self.multilabel,
            "class_counts": self.class_counts,
            "thresholds": self.thresholds,
            "threshold_tuning": self.config.imbalance.threshold_tuning,
            "mask_words": self.mask_words,
            "text_field": self.config.text.field,
            "input_spec": None if spec is None else {"size": spec.size, "in_channels": spec.in_channels,
                                                    "mean": list(spec.mean), "std": list(spec.std)},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes = list(state["classes"])
        self.class_counts = list(state.get("class_counts") or [0] * len(self.classes))
        self.thresholds = state.get("thresholds")
        self.mask_words = list(state.get("mask_words") or [])
        self.train_dataset = state.get("train_dataset")
        self._build()

    def _build(self) -> None:
        from medmm.models import build_classifier

        c = self.config
        if self.zero_shot is not None:
            return  # built in __init__ from the prompt set and the pretrained dual encoder
        image_kw = dict(c.image.encoder_kwargs)
        image_kw.setdefault("in_channels", c.image.in_channels)
        if c.image.size is not None and c.image.encoder and not c.image.encoder.startswith("hf:"):
            image_kw.setdefault("image_size", c.image.size)
        if c.image.stem == "small" and self.uses_image:
            # The encoder registry builds the stem (resnet18/34/50 accept stem="small").
            if c.image.encoder not in ("resnet18", "resnet34", "resnet50"):
                raise MedmmError(f"model.image.stem: small needs a ResNet encoder, not {c.image.encoder!r}")
            image_kw.setdefault("stem", "small")
        text_kw = dict(c.text.encoder_kwargs)
        if (c.text.encoder and c.text.encoder in ("scratch", "minilm")) or (c.text.encoder or "").startswith("hf:"):
            text_kw.setdefault("max_length", c.text.max_length)
        self.model = build_classifier(
            c.image.encoder if self.uses_image else None,
            c.text.encoder if self.uses_text else None,
            c.fusion,
            len(self.classes),
            dim=c.dim,
            image_kw=image_kw,
            text_kw=text_kw,
            fusion_kw=dict(c.fusion_kw),
            dropout=c.dropout,
        )
        for flag, enc in ((c.text.freeze, self.model.text_encoder), (c.image.freeze, self.model.image_encoder)):
            if flag and enc is not None:
                for p in enc.parameters():
                    p.requires_grad_(False)
        counts = torch.tensor(self.class_counts or [1] * len(self.classes), dtype=torch.float)
        self.register_buffer("class_weight", torch.tensor(L.class_weights(counts.tolist(), c.imbalance.class_weight_kind)), persistent=False)
        self.register_buffer("log_prior", torch.tensor(L.log_prior(counts.tolist())), persistent=False)
        self._images = None
        self.frozen_image_features.reset()  # a new encoder

    def train(self, mode: bool = True) -> DiagnosisTask:
        """Frozen encoders stay in eval mode (no dropout/BN updates) while the rest trains."""
        super().train(mode)
        if self.model is not None:
            for flag, enc in ((self.config.text.freeze, self.model.text_encoder),
                              (self.config.image.freeze, self.model.image_encoder)):
                if flag and enc is not None:
                    enc.eval()
        return self

    # ------------------------------------------------------------------ imbalance hooks
    def sample_weights(self, samples: list[Sample]) -> list[float] | None:
        """Class-balanced sampling weights when `balanced_sampling` (multi-class only)."""
        if not self.config.imbalance.balanced_sampling:
            return None
        if self.multilabel:
            raise MedmmError("model.imbalance.balanced_sampling is for multi-class targets; use imbalance.loss: focal or weighted_ce for findings")
        return L.sample_weights_balanced([self._class_index(s) for s in samples])

    def calibrate(self, val_records: list[dict[str, Any]]) -> bool:
        """Fit per-class thresholds on validation records (threshold_tuning: f1 | youden)."""
        if self.config.imbalance.threshold_tuning == "none":
            return False
        y_true, y_score = self._arrays(val_records)
        if len(y_true) == 0:
            return False
        self.thresholds = L.tune_thresholds(y_true, y_score, self.config.imbalance.threshold_tuning)
        return True

    # ------------------------------------------------------------------ batching
    def _image(self, s: Sample, cache_arrays: bool = True) -> torch.Tensor:
        if self._images is None:
            self._images = PreprocessedImages(self.model.image_encoder.input_spec)
        # in-memory arrays are cached per sample (a diagnosis sample's array does not change)
        key = f"{s.dataset}/{s.id}" if cache_arrays else None
        return torch.from_numpy(self._images.get(s.images[0], key=key))

    def _feature_key(self, s: Sample, cache_arrays: bool) -> str | None:
        """The frozen-feature key of a sample's image: its path; an in-memory image's pixel checksum,
        hashed once per sample (not every epoch); none for `predict_collate`'s in-memory inputs."""
        ref = s.images[0]
        if ref.path is not None:
            return array_key(ref)
        if not cache_arrays:
            return None
        key = f"{s.dataset}/{s.id}"
        if key not in self._array_keys:
            self._array_keys[key] = array_key(ref)
        return self._array_keys[key]

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        return self._collate(samples, cache_arrays=True)

    def predict_collate(self, samples: list[Sample]) -> dict[str, Any]:
        """`collate` that keeps no in-memory image: predicting new inputs (`medmm serve`) sees
        each once, and a per-request cache entry would grow without bound (Task hook)."""
        return self._collate(samples, cache_arrays=False)

    def _collate(self, samples: list[Sample], cache_arrays: bool) -> dict[str, Any]:
        c = self.config
        external = self._external is not None
        for s in samples:
            if (c.image.required or self.uses_image) and not s.images:
                raise BadInputError(s.id, "sample has no image")
            if c.text.required and not external and not (s.text.get(c.text.field) or "").strip():
                raise BadInputError(s.id, f"sample has no {c.text.field!r} text")
            if self.zero_shot is not None:
                self.zero_shot.check_label(s, self._label_of(s))
        batch: dict[str, Any] = {"ids": [s.id for s in samples], "groups": [s.group("patient") for s in samples]}
        if self.uses_image:
            batch["images"] = torch.stack([self._image(s, cache_arrays) for s in samples])
            if c.image.freeze and self.zero_shot is None:  # keys of the frozen encoder's cached features
                # an in-memory image by its pixels' checksum; none for `predict_collate`, as `_image`
                batch["image_keys"] = [self._feature_key(s, cache_arrays) for s in samples]
        if self.uses_text:
            batch.update(self.model.text_encoder.tokenize([self.text_of(s) for s in samples], c.text.max_length))
        if self.multilabel:
            batch["targets"] = torch.tensor([self._finding_vector(s) for s in samples], dtype=torch.float)
        else:
            batch["targets"] = torch.tensor([L.IGNORE if (i := self._class_index(s)) is None else i for s in samples])
        batch["external_refs"] = [self._external_reference(s) for s in samples] if external else None
        return batch

    # ------------------------------------------------------------------ steps
    def forward(self, batch: dict[str, Any]):
        """Logits (and aux loss) of a collated batch; a frozen image encoder's features are computed
        once per image and cached (`medmm.models.frozen_features`; no augmentation here to exclude)."""
        args = (batch.get("images"), batch.get("input_ids"), batch.get("attention_mask"))
        enc = getattr(self.model, "image_encoder", None)
        if "image_keys" in batch and self.config.image.freeze and enc is not None:  # not zero-shot (no image_keys)
            img = self.frozen_image_features(enc, batch["images"], batch["image_keys"], {"input_spec": enc.input_spec.to_dict()})
            return self.model(*args, image_features=img)
        return self.model(*args)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.config
        if self.multilabel:
            mask = torch.isfinite(y)
            yt = torch.nan_to_num(y, nan=0.0)
            w = self.class_weight if c.imbalance.loss == "weighted_ce" or (c.imbalance.loss == "focal" and c.imbalance.focal_weighted) else None
            gamma = c.imbalance.focal_gamma if c.imbalance.loss == "focal" else 0.0
            return L.focal_loss(logits, yt, gamma=gamma, weight=w, multilabel=True, mask=mask)
        if c.imbalance.loss == "logit_adjusted":
            if not (y != L.IGNORE).any():
                return logits.sum() * 0.0
            return L.logit_adjusted_ce(logits, y, self.log_prior, c.imbalance.logit_adjust_tau)
        if c.imbalance.loss == "focal":
            return L.focal_loss(logits, y, gamma=c.imbalance.focal_gamma, weight=self.class_weight if c.imbalance.focal_weighted else None)
        if not (y != L.IGNORE).any():
            return logits.sum() * 0.0  # every sample of the batch unlabelled: nothing to learn
        w = self.class_weight.to(logits) if c.imbalance.loss == "weighted_ce" else None
        return nn.functional.cross_entropy(logits, y, weight=w, ignore_index=L.IGNORE, label_smoothing=c.label_smoothing)

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self(batch)
        y = batch["targets"].to(out.logits.device)
        loss = self._loss(out.logits, y) + out.aux_loss
        result = {"loss": loss}
        if not self.multilabel:
            keep = y != L.IGNORE
            if keep.any():
                result["acc"] = (out.logits.argmax(-1)[keep] == y[keep]).float().mean().detach()
        return result

    def _probs(self, logits: torch.Tensor) -> np.ndarray:
        logits = logits.float()
        p = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)
        return p.cpu().numpy()

    def _decide(self, probs: np.ndarray) -> list[Any]:
        """Final decisions: per-class thresholds when tuned, else arg-max / 0.5."""
        if self.multilabel:
            t = np.asarray(self.thresholds if self.thresholds is not None else [0.5] * len(self.classes))
            return [[n for n, p, th in zip(self.classes, row, t, strict=False) if p >= th] for row in probs]
        if self.thresholds is not None:
            idx = L.predict_with_thresholds(probs, self.thresholds)
        else:
            idx = probs.argmax(axis=1)
        return [self.classes[i] for i in idx]

    def _records(self, batch: dict[str, Any], with_refs: bool) -> list[dict[str, Any]]:
        out = self(batch)
        probs = self._probs(out.logits)
        decisions = self._decide(probs)
        if self._external is not None:
            return self._external_records(batch, probs, with_refs)
        recs = []
        for i, sid in enumerate(batch["ids"]):
            rec: dict[str, Any] = {
                "id": sid,
                "group": batch["groups"][i],
                "prediction": {"label" if not self.multilabel else "positive": decisions[i],
                               "probs": {k: float(v) for k, v in zip(self.classes, probs[i], strict=True)}},
            }
            if with_refs:
                y = batch["targets"][i]
                if self.multilabel:
                    rec["reference"] = {k: (None if not np.isfinite(float(v)) else int(v)) for k, v in zip(self.classes, y.tolist(), strict=True)}
                else:
                    rec["reference"] = None if int(y) == L.IGNORE else self.classes[int(y)]
            recs.append(rec)
        return recs

    def evaluation_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return self._records(batch, with_refs=True)

    def predict_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return self._records(batch, with_refs=False)

    # ------------------------------------------------------------------ plug-in hooks
    @classmethod
    def zero_shot_section(cls, section: dict[str, Any], pretrained: str, dataset: str | None,
                          prompts: str | None = None) -> dict[str, Any]:
        """`medmm evaluate --model CLIP --task diagnosis`: model.zero_shot set (`medmm.tasks.diagnosis.zero_shot`)."""
        from medmm.tasks.diagnosis.zero_shot import zero_shot_section

        return zero_shot_section(section, pretrained, dataset, prompts)

    @classmethod
    def file_scorer(cls) -> Any:
        """`medmm score --task diagnosis` (`medmm.tasks.diagnosis.file_scorer`)."""
        from medmm.tasks.diagnosis.file_scorer import SCORER

        return SCORER

    def instruction_records(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """Text input + "which <target> is it: ...?" -> the class (`medmm.tasks.diagnosis.instruct`);
        multi-class only (a multi-label answer would hide its missing labels)."""
        from medmm.tasks.diagnosis.instruct import diagnosis_instruction_records

        if self.multilabel:
            raise MedmmError("a multi-label diagnosis task has no instruction form (missing labels have no answer)")
        # before setup: the classes of these samples, and the leakage guard built from them
        classes = self.classes or list(self.config.classes or []) or sorted({lab for s in samples if (lab := self._label_of(s))})
        words = self.mask_words or self._guard_words(classes)

        def text_of(s: Sample) -> str:
            text = s.text.get(self.config.text.field) or ""
            return lm.mask_words(text, words, MASK_TOKEN) if words else text

        return diagnosis_instruction_records(samples, self.config.target, classes, self._label_of, text_of)

    # ------------------------------------------------------------------ metrics
    def explainable(self, samples: list[Sample]) -> Any:
        """The classifier of (image, clinical text), explained at its predicted class."""
        from medmm.interpret.explainable import Explainable, ModelOutput, decode_text

        model, batch = self.model, self.collate(samples)

        def forward(images, ids, mask) -> ModelOutput:
            out = model(images if model.image_encoder is not None else None, ids if model.text_encoder is not None else None, mask)
            img = out.image
            return ModelOutput(out.logits, list(img.maps) if img else [], list(img.attentions) if img else [], out.extras,
                               img.tokens if img else None)

        with torch.no_grad():
            logits = forward(batch.get("images"), batch.get("input_ids"), batch.get("attention_mask")).logits
        texts = [""] * len(batch["ids"])
        if batch.get("input_ids") is not None:
            texts = [decode_text(model.text_encoder, row, m) for row, m in zip(batch["input_ids"], batch["attention_mask"], strict=True)]
        return Explainable(forward, list(self.classes), batch.get("images") if model.image_encoder is not None else None,
                           batch.get("input_ids") if model.text_encoder is not None else None, batch.get("attention_mask"),
                           model.text_encoder, logits.argmax(-1), texts, self.name,
                           references=None if self.multilabel else [
                               None if (v := s.targets.get(self.config.target)) is None else str(v) for s in samples])

    def _arrays(self, records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(y_true one-vs-rest (N, C) with NaN = missing, probs (N, C)) of labelled records."""
        classes = self._external["classes"] if self._external is not None else self.classes
        rows_t, rows_s = [], []
        for r in records:
            ref = r.get("reference")
            if ref is None:
                continue
            probs = r["prediction"]["probs"]
            rows_s.append([probs[k] for k in classes])
            if isinstance(ref, dict):
                rows_t.append([np.nan if ref.get(k) is None else float(ref[k]) for k in classes])
            else:
                rows_t.append([1.0 if ref == k else 0.0 for k in classes])
        return np.asarray(rows_t, dtype=float).reshape(-1, len(classes)), np.asarray(rows_s, dtype=float).reshape(-1, len(classes))

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """classification_metrics on labelled records, plus the final-decision scores.

        Multi-class: AUROC/AUPRC/ECE from the probabilities; accuracy, balanced accuracy and
        macro-F1 from the final decisions (per-class thresholds when tuned, else arg-max);
        `argmax_*` keep the arg-max ones. Unlabelled records are counted, not scored.
        """
        return diagnosis_metrics(records, self._external["classes"] if self._external else self.classes,
                                 self.multilabel and self._external is None, self.thresholds is not None,
                                 n_resamples=self.config.bootstrap_resamples)

    def protocol(self) -> dict[str, Any]:
        """Metric definitions; thresholds tuned on validation make its decision metrics `selection_*`."""
        from medmm.tasks.diagnosis.floors import diagnosis_protocol

        return diagnosis_protocol(self)

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """Prior and logistic regressions on pixels / text TF-IDF (`medmm.tasks.diagnosis.floors`)."""
        from medmm.tasks.diagnosis.floors import diagnosis_floors

        return diagnosis_floors(self, train_samples, samples, records)

    # ------------------------------------------------------------------ external validation
    def prepare_external(self, dataset: str, label_map: str | None = None) -> dict[str, Any] | None:
        """Map this model's classes onto `dataset`'s label space (named map or found one)."""
        if self.multilabel:
            raise MedmmError("external validation with a label map is implemented for multi-class diagnosis")
        src = self.train_dataset
        if label_map is not None:
            m = lm.get_label_map(label_map)
        else:
            if src is None:
                raise MedmmError("no label map named and the training dataset is unknown; pass --label-map")
            m = lm.find_label_map((src, self.config.target), dataset)
        if m.target[0] != dataset:
            raise MedmmError(f"label map {m.name!r} targets {m.target[0]!r}, not {dataset!r}")
        missing = [k for k in self.classes if k not in m.mapping]
        if missing:
            raise MedmmError(f"label map {m.name!r} does not cover the model's classes {missing}")
        proj = lm.reference_projection(m.target)
        self._external = {"map": m, "classes": list(m.target_classes), "reference": proj}
        return m.describe()

    def _external_reference(self, s: Sample) -> str | None:
        m: lm.LabelMap = self._external["map"]
        proj = self._external["reference"]
        if proj is None:
            v = s.targets.get(m.target[1])
            return None if v is None or v not in m.target_classes else str(v)
        key, table = proj
        v = s.targets.get(key)
        return None if v is None else table.get(str(v))

    def _external_records(self, batch: dict[str, Any], probs: np.ndarray, with_refs: bool) -> list[dict[str, Any]]:
        m: lm.LabelMap = self._external["map"]
        classes = self._external["classes"]
        projected = np.asarray(m.project_probs(self.classes, probs.tolist()))
        recs = []
        for i, sid in enumerate(batch["ids"]):
            rec = {
                "id": sid,
                "group": batch["groups"][i],
                "prediction": {"label": classes[int(projected[i].argmax())],
                               "probs": {k: float(v) for k, v in zip(classes, projected[i], strict=True)},
                               "model_probs": {k: float(v) for k, v in zip(self.classes, probs[i], strict=True)}},
            }
            if with_refs:
                rec["reference"] = batch["external_refs"][i]
            recs.append(rec)
        return recs
