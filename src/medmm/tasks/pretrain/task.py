"""Image pretraining as an engine task: a small image encoder learns from labels that cost nothing.

Small downstream sets (VQA-RAD: 314 images; MedPix report generation: ~1,650 training images)
are too small to learn radiology features from scratch. `pretrain_image` trains an image encoder
(`small_cnn` by default) on images of OTHER datasets (`medpix2_covid_cxr`: MedPix 2.0 + COVID-19
chest X-rays) with

* one linear head per label (`model.labels.keys`: modality, plane, location category),
  cross-entropy, labels seen fewer than `min_count` times in training ignored;
* caption matching: symmetric InfoNCE (temperature 0.07) between a projection of the pooled
  feature and the frozen MiniLM embedding of the image's caption (`model.caption`);
* optionally MEVF's denoising reconstruction loss (`model.reconstruction`).

It trains like every task (`medmm train configs/pretrain/image_encoder.yaml --out RUN`:
checkpoints, resume, DDP, provenance, metrics, report); the validation split (grouped by case
/ patient) gives held-out accuracies and caption recall, a sanity check of the pretraining, not
a downstream result. `medmm.tasks.pretrain.export.export_encoder(RUN)` then writes the encoder
file that `model.image.pretrained` of a vqa or report_generation config loads, with its label
heads beside it (`medmm pretrain-image` trains and exports in one command).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from medmm.data.schema import Sample
from medmm.engine.task import Task, register_task
from medmm.errors import MedmmError
from medmm.metrics.headline import Headline
from medmm.tasks.pretrain.config import PretrainImageConfig
from medmm.tasks.pretrain.images import PixelCache, crop_batch
from medmm.tasks.pretrain.metrics import METRIC_DEFINITIONS, majority_floors, pretrain_metrics
from medmm.tasks.pretrain.model import Pretrainer, pretrain_loss
from medmm.tasks.pretrain.vqa_rad import drop_vqa_rad_images

IGNORE = -100


def label_space(samples: list[Sample], key: str, min_count: int) -> list[str]:
    """Values of target `key` seen at least `min_count` times in `samples`, sorted."""
    counts = Counter(s.targets.get(key) for s in samples if s.targets.get(key))
    return sorted(k for k, n in counts.items() if n >= min_count)


@register_task("pretrain_image")
class PretrainImageTask(Task):
    """Label heads + caption matching (+ denoising) over an image encoder; see the module docstring."""

    headline = Headline("val/loss", "min")
    Config = PretrainImageConfig

    def __init__(self, config: PretrainImageConfig | None = None):
        super().__init__(config)
        c = self.config
        if c.encoder.size < 16:
            raise MedmmError(f"model.encoder.size must be >= 16, got {c.encoder.size}")
        if c.caption.weight < 0 or c.reconstruction.weight < 0 or c.reconstruction.noise_std < 0:
            raise MedmmError("model.caption.weight, model.reconstruction.weight and model.reconstruction.noise_std must be >= 0")
        for key in ("gamma", "contrast"):
            lo_hi = getattr(c.augment, key)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise MedmmError(f"model.augment.{key} must be [low, high] with 0 < low <= high, got {lo_hi}")
        self.pad = c.augment.pad if c.augment.pad is not None else max(4, c.encoder.size // 12)
        self.label_spaces: dict[str, list[str]] = {}
        self.use_captions = False
        self.caption_dim = 1
        self.model: Pretrainer | None = None
        self._pixels = PixelCache(c.encoder.size + self.pad)
        self._captions: dict[str, torch.Tensor] = {}  # sample id -> frozen caption embedding
        self._text: list[Any] = []  # the frozen caption encoder, kept out of state_dict and checkpoints
        self._generator = torch.Generator()

    # ------------------------------------------------------------------ setup/state
    def training_samples(self, samples: list[Sample]) -> list[Sample]:
        """The training images minus VQA-RAD's (`model.exclude_vqa_rad`)."""
        if self.config.exclude_vqa_rad is None:
            return samples
        return drop_vqa_rad_images(samples, self.config.exclude_vqa_rad)

    def setup(self, train_samples: list[Sample]) -> None:
        """Label spaces from the training images only; the caption encoder's width; the model."""
        c = self.config
        self.label_spaces = {k: sp for k in c.labels.keys if (sp := label_space(train_samples, k, c.labels.min_count))}
        n_captions = sum(1 for s in train_samples if s.text.get(c.caption.field))
        self.use_captions = c.caption.weight > 0 and n_captions > 1
        self.caption_dim = self._caption_encoder().out_dim if self.use_captions else 1
        if not self.label_spaces and not self.use_captions and c.reconstruction.weight == 0:
            raise MedmmError(f"pretrain_image: nothing to learn: no label of {c.labels.keys} is seen {c.labels.min_count} "
                             f"times in the {len(train_samples)} training images, and no caption or reconstruction loss")
        self._build()

    def state(self) -> dict[str, Any]:
        spec = self.model.encoder.input_spec if self.model is not None else None
        return {"label_spaces": self.label_spaces, "use_captions": self.use_captions, "caption_dim": self.caption_dim,
                "caption_encoder": self.config.caption.encoder if self.use_captions else None,
                "input_spec": None if spec is None else spec.to_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.label_spaces = {k: list(v) for k, v in state["label_spaces"].items()}
        self.use_captions = bool(state["use_captions"])
        self.caption_dim = int(state["caption_dim"])
        self._build()

    def encoder_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of the encoder (saved with the exported weights)."""
        e = self.config.encoder
        return {"in_channels": e.in_channels, "image_size": e.size, "widths": list(e.widths)}

    def _build(self) -> None:
        from medmm.models import create_image_encoder

        encoder = create_image_encoder(self.config.encoder.name, **self.encoder_kwargs())
        self.model = Pretrainer(encoder, {k: len(v) for k, v in self.label_spaces.items()}, self.caption_dim,
                                reconstruct=self.config.reconstruction.weight > 0)
        spec = encoder.input_spec
        self.mean, self.std = float(spec.mean[0]), float(spec.std[0])

    def _caption_encoder(self):
        if not self._text:
            from medmm.models import create_text_encoder

            enc = create_text_encoder(self.config.caption.encoder).eval()
            for p in enc.parameters():
                p.requires_grad_(False)
            self._text.append(enc)
        return self._text[0]

    def random_generators(self) -> dict[str, torch.Generator]:
        return {"augment": self._generator}

    # ------------------------------------------------------------------ batching
    @torch.no_grad()
    def _embed_captions(self, samples: list[Sample]) -> torch.Tensor:
        """(B, caption_dim) frozen, L2-normalised caption embeddings; zeros without a caption."""
        field = self.config.caption.field
        todo = [s for s in samples if s.text.get(field) and s.id not in self._captions]
        if todo:
            enc = self._caption_encoder()
            tok = enc.tokenize([s.text[field] for s in todo], max_length=self.config.caption.max_length)
            emb = F.normalize(enc(tok["input_ids"], tok["attention_mask"]).pooled, dim=-1)
            self._captions.update({s.id: e.clone() for s, e in zip(todo, emb, strict=True)})
        zero = torch.zeros(self.caption_dim)
        return torch.stack([self._captions.get(s.id, zero) if s.text.get(field) else zero for s in samples])

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        pixels = torch.stack([torch.from_numpy(self._pixels.get(s)) for s in samples])
        batch: dict[str, Any] = {
            "ids": [s.id for s in samples], "groups": [s.group("case") for s in samples], "pixels": pixels,
            "labels": {k: torch.tensor([sp.index(v) if (v := s.targets.get(k)) in sp else IGNORE for s in samples])
                       for k, sp in self.label_spaces.items()},
            "references": [{k: s.targets.get(k) for k in self.config.labels.keys} for s in samples],
        }
        if self.use_captions:
            batch["captions"] = self._embed_captions(samples)
        return batch

    # ------------------------------------------------------------------ steps
    def _inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        a = self.config.augment
        gen = self._generator if self.training else None  # training: random crops; evaluation: the centre
        return crop_batch(batch["pixels"], self.config.encoder.size, self.mean, self.std, gen,
                          tuple(a.gamma), tuple(a.contrast))

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        c = self.config
        x = self._inputs(batch)
        seen = x + c.reconstruction.noise_std * torch.randn_like(x) if c.reconstruction.weight > 0 else x
        logits, emb, recon = self.model(seen)
        captions = batch.get("captions")
        has = captions.abs().sum(-1) > 0 if captions is not None else torch.zeros(len(x), dtype=torch.bool)
        weight = c.caption.weight if self.use_captions else 0.0
        loss = pretrain_loss(logits, emb, batch["labels"], captions if captions is not None else emb, has,
                             weight, c.caption.temperature)
        out: dict[str, torch.Tensor] = {}
        if recon is not None:  # rebuild the clean crop from the noisy one
            out["loss_reconstruction"] = F.mse_loss(recon, x)
            rec = c.reconstruction.weight * out["loss_reconstruction"]
            loss = rec if loss is None else loss + rec
        if loss is None:  # nothing to learn from in this batch: a zero loss keeps the step count aligned
            loss = sum(p.sum() * 0.0 for p in self.model.parameters())
        out["loss"] = loss
        return out

    @torch.no_grad()
    def evaluation_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        x = self._inputs(batch)
        logits, emb, recon = self.model(x)
        preds = {k: [self.label_spaces[k][i] for i in lg.argmax(-1).tolist()] for k, lg in logits.items()}
        captions = batch.get("captions")
        records = []
        for j, sid in enumerate(batch["ids"]):
            rec: dict[str, Any] = {"id": sid, "group": batch["groups"][j],
                                   "prediction": {k: v[j] for k, v in preds.items()},
                                   "reference": batch["references"][j]}
            if captions is not None and bool(captions[j].abs().sum() > 0):
                rec["image_embedding"] = [round(v, 5) for v in emb[j].tolist()]
                rec["caption_embedding"] = [round(v, 5) for v in captions[j].tolist()]
            if recon is not None:
                rec["reconstruction_mse"] = float(((recon[j] - x[j]) ** 2).mean())
            records.append(rec)
        return records

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return pretrain_metrics(records, self.label_spaces)

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """Always answering each head's most common training label (the old summary's majority baseline)."""
        return majority_floors(train_samples, records, self.label_spaces, self.config.bootstrap_resamples)

    def protocol(self) -> dict[str, Any]:
        return {"metric_definitions": METRIC_DEFINITIONS, "oracle_inputs": [], "fitted_on_validation": [],
                "selection_metrics": []}

    def serving_inputs(self) -> dict[str, str]:
        return {"image": "one image: DICOM, PNG or JPEG"}
