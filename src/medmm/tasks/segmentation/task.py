"""Text-guided semantic segmentation: U-Net baseline and text-conditioned U-Nets.

One training example is an (image, text, binary mask) triple. ``classes`` maps each prompt
name to the mask labels it covers (their union is the target), so a multi-class dataset gives
one example per (image, prompted class): the model segments the class the text names. The
text comes from ``text.template``: ``"{sentence}"`` (MoNuSeg-LViT), ``"{prompt}"`` (the class
name, e.g. "left lung"), ``"{prompt}. {clinical_notes}"``, ... (any `Sample.text` key; a
missing field is empty).

Training: images/masks resized to ``image.size``; optional random crops of ``augment.crop_size``
and flips (drawn from the task's own generator, not the global RNG); Dice+CE / Dice+focal /
Tversky(+BCE) / focal losses from MONAI (``loss.name``). Inference (``inference.mode``):
``resize`` (predict at image.size, upsample the probabilities to the original size) or
``sliding_window`` (MONAI `sliding_window_inference` with ``augment.crop_size`` windows over the
image.size image). Scores are
computed at the ORIGINAL mask resolution. Records carry run-length-encoded masks, so
`report_figures` can draw overlays for report.html without the model.

Modules: this one holds the task (model, batches, augmentation, losses, records); its config is
`config`, the mask encoding and export `masks`, the metrics `metrics`, the overlays `figures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from medmm.data.schema import Sample
from medmm.data.transforms import build_transform
from medmm.engine.task import Task, register_task
from medmm.errors import BadInputError, MedmmError
from medmm.metrics.headline import Headline
from medmm.tasks.segmentation.config import SegmentationConfig
from medmm.tasks.segmentation.masks import class_target, rle_decode, rle_encode
from medmm.tasks.segmentation.metrics import segmentation_summary


@register_task("segmentation")
class Segmentation(Task):
    """Binary segmentation of the class the text names (U-Net or text-guided U-Net)."""

    Config = SegmentationConfig
    headline = Headline("val/dice_mean", "max")

    def __init__(self, config: SegmentationConfig | None = None):
        super().__init__(config)
        c = self.config
        if not c.classes:
            raise MedmmError("segmentation: model.classes is empty")
        if c.conditioning != "none" and not c.text.encoder:
            raise MedmmError(f"segmentation: conditioning {c.conditioning!r} needs model.text.encoder")
        if c.augment.crop_size is not None and c.augment.crop_size > c.image.size:
            raise MedmmError(f"segmentation: augment.crop_size {c.augment.crop_size} > image.size {c.image.size}")
        if c.inference.mode == "sliding_window" and c.augment.crop_size is None:
            raise MedmmError("segmentation: sliding_window inference needs model.augment.crop_size (the window)")
        if c.augment.policy == "lvit" and any(w in p.lower() for p in c.classes for w in ("left", "right")):
            raise MedmmError("segmentation: augment.policy 'lvit' flips images, which swaps the side a prompt names")
        self._build()
        self.loss_fn = self._make_loss()
        # Augmentation stream: seeded from the run seed and checkpointed by the engine.
        self._gen = torch.Generator().manual_seed(0)
        self._cache: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}

    # ----------------------------------------------------------------- model
    def _build(self) -> None:
        from medmm.models import create_text_encoder
        from medmm.models.segmentation import SegmentationModel, TextGuidedUNet

        c = self.config
        text = None
        if c.conditioning != "none":
            text = create_text_encoder(c.text.encoder, **dict(c.text.encoder_kwargs))
        unet = TextGuidedUNet(
            in_channels=c.image.in_channels,
            out_channels=1,
            channels=c.unet.channels,
            text_dim=text.out_dim if text is not None else None,
            conditioning=c.conditioning,
            attention_levels=c.unet.attention_levels,
            heads=c.unet.heads, image_size=c.image.size, mean=c.image.mean, std=c.image.std,  # the U-Net's declared input_spec
        )
        for size in (c.image.size, c.augment.crop_size):
            if size is not None and size % unet.divisor:
                raise MedmmError(f"segmentation: size {size} is not a multiple of {unet.divisor} (2 ** (levels - 1))")
        self.model = SegmentationModel(unet, text, freeze_text=c.text.freeze)
        self._transform = build_transform(unet.input_spec)

    def _make_loss(self):
        from monai.losses import DiceCELoss, DiceFocalLoss, FocalLoss, TverskyLoss

        c = self.config.loss
        if c.name == "dice_ce":
            return DiceCELoss(sigmoid=True)
        if c.name == "dice_focal":
            return DiceFocalLoss(sigmoid=True)
        if c.name == "focal":
            return FocalLoss(use_softmax=False)
        if c.name == "lvit_dice_bce":
            from medmm.models.segmentation_ops import lvit_dice_bce_loss

            return lvit_dice_bce_loss
        tversky = TverskyLoss(sigmoid=True, alpha=c.tversky_alpha, beta=c.tversky_beta)
        return lambda logits, target: tversky(logits, target) + F.binary_cross_entropy_with_logits(logits, target)

    @property
    def uses_text(self) -> bool:
        return self.model.text_encoder is not None

    def setup(self, train_samples: list[Sample]) -> None:
        """Fit the text tokenizer (scratch encoders) on the training texts."""
        if self.uses_text:
            texts = [self.text_of(s, p) for s in train_samples for p in self.config.classes]
            self.model.text_encoder.fit_tokenizer([t for t in texts if t.strip()])

    def state(self) -> dict[str, Any]:
        c = self.config
        return {
            "classes": dict(c.classes),
            "text_template": c.text.template,
            "input": self.model.unet.input_spec.to_dict(),
            "threshold": c.inference.threshold,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if dict(state.get("classes", {})) != dict(self.config.classes):
            raise MedmmError(f"segmentation: saved classes {state.get('classes')} differ from the config's {self.config.classes}")

    def random_generators(self) -> dict[str, torch.Generator]:
        """The augmentation generator, for the engine to seed from the run seed and checkpoint."""
        return {"augment": self._gen}

    # ----------------------------------------------------------------- data
    def text_of(self, sample: Sample, prompt: str) -> str:
        """The text for one (sample, class) example, from `text.template`."""
        fields = _Blank({**sample.text, "prompt": prompt})
        template = self.config.text.template
        return template.format_map(fields).strip(" .") if template else ""

    def _image(self, sample: Sample, cache: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
        from medmm.data.io import read_image

        if not sample.images:
            raise BadInputError(sample.id, "sample has no image")
        ref = sample.images[0]
        key = ref.path or f"array:{sample.id}"
        if key not in self._cache:
            arr = read_image(ref.path) if ref.array is None else np.asarray(ref.array)
            img = self._transform(arr)
            if not cache:  # prediction of new images (e.g. a web service): nothing kept per request
                return img, (int(arr.shape[0]), int(arr.shape[1]))
            # Cached: small datasets are re-read every epoch otherwise (decoding dominates on CPU).
            self._cache[key] = (img, (int(arr.shape[0]), int(arr.shape[1])))
        return self._cache[key]

    def examples(self, sample: Sample) -> list[tuple[str, list[str]]]:
        """(prompt, labels) pairs of the sample (every configured class)."""
        return [(p, list(labels)) for p, labels in self.config.classes.items()]

    def predict_collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Images, texts and meta of every (sample, class) example; no reference mask needed
        and nothing cached for in-memory images (Task hook used by `medmm predict` / `serve`)."""
        c = self.config
        images, texts, meta = [], [], []
        for s in samples:
            img, shape = self._image(s, cache=s.images[0].path is not None if s.images else True)
            for prompt, labels in self.examples(s):
                images.append(img)
                texts.append(self.text_of(s, prompt))
                meta.append({"id": s.id if len(c.classes) == 1 else f"{s.id}#{prompt}", "sample_id": s.id, "label": prompt,
                             "labels": labels, "text": texts[-1], "image": s.images[0].path, "shape": list(shape)})
        batch: dict[str, Any] = {"images": torch.from_numpy(np.stack(images)), "meta": meta}
        if self.uses_text:
            batch.update(self.model.text_encoder.tokenize(texts, max_length=c.text.max_length))
        return batch

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Images (N, C, S, S), masks (N, 1, S, S), tokenized texts, and per-example meta."""
        from medmm.data.transforms import preprocess_mask

        c = self.config
        images, masks, texts, meta = [], [], [], []
        for s in samples:
            img, shape = self._image(s)
            for prompt, labels in self.examples(s):
                mkey = f"mask:{s.id}:{prompt}"
                if mkey not in self._cache:
                    full = class_target(s, labels, shape)
                    small = None if full is None else preprocess_mask(full, c.image.size)
                    self._cache[mkey] = (small, shape)
                small, _ = self._cache[mkey]
                if small is None:
                    continue
                images.append(img)
                masks.append(small[None].astype(np.float32))
                texts.append(self.text_of(s, prompt))
                meta.append({
                    "id": s.id if len(c.classes) == 1 else f"{s.id}#{prompt}",
                    "sample_id": s.id,
                    "label": prompt,
                    "labels": labels,
                    "text": texts[-1],
                    "image": s.images[0].path,
                    "shape": list(shape),
                    "group": s.group("patient"),
                    "masks": [m for m in s.masks if m.label in labels],
                    "regions_without_mask": list(s.meta.get("regions_without_mask") or []),
                })
        if not images:
            raise BadInputError(samples[0].id if samples else "batch", "no example with a known mask in this batch")
        batch: dict[str, Any] = {
            "images": torch.from_numpy(np.stack(images)),
            "masks": torch.from_numpy(np.stack(masks)),
            "meta": meta,
        }
        if self.uses_text:
            batch.update(self.model.text_encoder.tokenize(texts, max_length=c.text.max_length))
        return batch

    # ----------------------------------------------------------------- steps
    def _augment(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config.augment
        g = self._gen
        if c.crop_size is not None and c.crop_size < images.shape[-1]:
            outs_i, outs_m = [], []
            span = images.shape[-1] - c.crop_size + 1
            for i in range(images.shape[0]):
                y, x = (int(v) for v in torch.randint(0, span, (2,), generator=g))
                outs_i.append(images[i, :, y : y + c.crop_size, x : x + c.crop_size])
                outs_m.append(masks[i, :, y : y + c.crop_size, x : x + c.crop_size])
            images, masks = torch.stack(outs_i), torch.stack(outs_m)
        if c.policy == "lvit":  # LViT's operations, in medmm.models.segmentation_ops
            from medmm.models.segmentation_ops import lvit_rotate_flip

            image = self.config.image
            black = (-torch.tensor(image.mean) / torch.tensor(image.std)).tolist()  # raw 0 after normalisation
            return lvit_rotate_flip(images, masks, g, fill=black)
        if c.flip:
            # Up-down flips are always safe; left-right flips would turn a "left lung" target
            # into the right lung, so they are off when a prompt names a side.
            sided = any(w in p.lower() for p in self.config.classes for w in ("left", "right"))
            if torch.rand(1, generator=g).item() < 0.5:
                images, masks = images.flip(-2), masks.flip(-2)
            if not sided and torch.rand(1, generator=g).item() < 0.5:
                images, masks = images.flip(-1), masks.flip(-1)
        return images, masks

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, 1, H, W)."""
        return self.model(images, input_ids, attention_mask)

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images, masks = batch["images"], batch["masks"]
        if self.training:
            images, masks = self._augment(images, masks)
        logits = self(images, batch.get("input_ids"), batch.get("attention_mask"))
        loss = self.loss_fn(logits, masks)
        with torch.no_grad():
            pred = (logits.sigmoid() > self.config.inference.threshold).float()
            inter = (pred * masks).sum()
            dice = 2 * inter / (pred.sum() + masks.sum()).clamp_min(1)
        return {"loss": loss, "dice": dice}

    def predict_probs(self, batch: dict[str, Any]) -> torch.Tensor:
        """Foreground probabilities (N, 1, S, S) at image.size, by resize or sliding window."""
        c = self.config
        images = batch["images"]
        text = self.model.encode_text(batch.get("input_ids"), batch.get("attention_mask"))
        window = c.augment.crop_size
        if c.inference.mode == "resize" or window is None or window >= images.shape[-1]:
            return self.model.unet(images, text).sigmoid()
        from monai.inferers import sliding_window_inference

        from medmm.models.encoders.base import TextFeatures

        out = []
        for i in range(images.shape[0]):
            t = None if text is None else TextFeatures(text.pooled[i : i + 1], text.tokens[i : i + 1], text.mask[i : i + 1])

            def predictor(x: torch.Tensor, t=t) -> torch.Tensor:
                # MONAI batches windows of one image; the text is that image's, repeated.
                if t is None:
                    return self.model.unet(x)
                n = x.shape[0]
                rep = TextFeatures(t.pooled.expand(n, -1), t.tokens.expand(n, -1, -1), t.mask.expand(n, -1))
                return self.model.unet(x, rep)

            logits = sliding_window_inference(
                images[i : i + 1], (window, window), 4, predictor, overlap=c.inference.overlap, mode="gaussian"
            )
            out.append(logits.sigmoid())
        return torch.cat(out)

    def _full_masks(self, batch: dict[str, Any]) -> list[np.ndarray]:
        """Predicted binary masks at each example's original resolution."""
        probs = self.predict_probs(batch).float()
        out = []
        for i, m in enumerate(batch["meta"]):
            h, w = m["shape"]
            p = F.interpolate(probs[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)
            out.append((p[0, 0] > self.config.inference.threshold).cpu().numpy().astype(np.uint8))
        return out

    def evaluation_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        from medmm.data.io import read_mask
        from medmm.metrics.segmentation import binary_scores

        records = []
        for m, pred in zip(batch["meta"], self._full_masks(batch), strict=True):
            shape = tuple(m["shape"])
            ref = np.zeros(shape, np.uint8)
            for mr in m["masks"]:
                ref |= read_mask(mr, shape)
            scores = binary_scores(pred, ref)
            records.append({
                "id": m["id"],
                "sample_id": m["sample_id"],
                "label": m["label"],
                "text": m["text"],
                "image": m["image"],
                "group": m["group"],
                **scores,
                "prediction": rle_encode(pred),
                "reference": rle_encode(ref),
            })
        return records

    def predict_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"id": m["id"], "label": m["label"], "text": m["text"], "image": m["image"], "prediction": rle_encode(pred)}
            for m, pred in zip(batch["meta"], self._full_masks(batch), strict=True)
        ]

    # ----------------------------------------------------------------- metrics
    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Dice/IoU/HD95 per class (mean over images) + bootstrap CIs (resampling patients)."""
        return segmentation_summary(records, list(self.config.classes), self.config.bootstrap_resamples)

    def protocol(self) -> dict[str, Any]:
        """How Dice, IoU and HD95 are computed (docs/segmentation.md)."""
        return {"metric_definitions": {
            "dice_mean": "mean over classes of the mean per-example Dice at the image's original resolution",
            "iou": "per class, mean per-example intersection over union", "hd95": "95th-percentile Hausdorff "
            "distance in pixels (MONAI's definition); undefined when exactly one mask is empty",
            "ci": "95% percentile bootstrap, resampling patients"}}

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]],
               max_train: int = 40) -> dict[str, Any]:
        """Otsu thresholding (`medmm.metrics.floors.segmentation_floors`); the foreground side of each
        class is chosen on up to `max_train` training images with that class's mask."""
        from medmm.data.io import read_image
        from medmm.metrics import floors as F

        def image(s: Sample) -> np.ndarray:
            ref = s.images[0]
            return np.asarray(ref.array) if ref.array is not None else read_image(ref.path)

        pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for prompt, labels in self.config.classes.items():
            for s in [s for s in train_samples if s.images][:max_train]:
                img = image(s)
                m = class_target(s, list(labels), (int(img.shape[0]), int(img.shape[1])))
                if m is not None:
                    pairs.setdefault(prompt, []).append((img, m))
        by_id = {s.id: s for s in samples}
        imgs = [image(by_id[r["sample_id"]]) for r in records]
        return F.segmentation_floors(pairs, imgs, [rle_decode(r["reference"]) for r in records], [r["label"] for r in records],
                                     [r["dice"] for r in records], groups=[r.get("group", r["id"]) for r in records],
                                     n_resamples=self.config.bootstrap_resamples)

    # ----------------------------------------------------------------- plug-in hooks
    @classmethod
    def report_figures(cls, records: list[dict[str, Any]], out_dir: Path, split: str, n: int = 6) -> list[str]:
        """Overlay PNGs (image, reference green, prediction red) of up to n records per class."""
        from medmm.tasks.segmentation.figures import save_overlays

        return save_overlays(records, out_dir, prefix=f"overlay_{split}", n_per_class=n)

    @classmethod
    def file_scorer(cls) -> Any:
        """`medmm score --task segmentation` on exported masks (`export_masks`; `.file_scorer`)."""
        from medmm.tasks.segmentation.file_scorer import SCORER

        return SCORER


class _Blank(dict):
    """format_map fields: a missing text field is empty rather than a KeyError."""

    def __missing__(self, key: str) -> str:
        return ""


__all__ = ["Segmentation"]
