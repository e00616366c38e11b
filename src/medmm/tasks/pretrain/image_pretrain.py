"""Pretrain a small image encoder on labelled radiology images of OTHER datasets.

Small downstream sets (VQA-RAD: 314 images; MedPix report generation: ~1,650 training images)
are too small to learn radiology features from scratch. Here a `small_cnn` is pretrained with
supervision that costs nothing to obtain:

* MedPix 2.0 images (`medpix2`): modality (CT/MR), plane and location category from the
  dataset's metadata, plus caption matching (symmetric InfoNCE, temperature 0.07) against
  frozen MiniLM caption embeddings, which brings in findings vocabulary;
* COVID-19 chest X-rays (`covid_cxr`): modality (XR) and location "Thorax".

Each source is read at ONE split (``Source.split``): medpix2 `train`/`dev`/`test`/`all` (its
case-level official split), covid_cxr `all` or `train`/`val`/`test` of the patient-grouped split
of ``configs/diagnosis/covid_cxr.yaml`` (`COVID_SPLIT`), so an encoder for a downstream task can
be kept off that task's evaluation images. Images of a VQA-RAD root (by synpic id: VQA-RAD images
come from MedPix) can be left out too.

A fraction of the CASES / PATIENTS (never single images of a case seen in training) is kept
aside to report held-out accuracies; they are a sanity check of the pretraining, not a
downstream result. The encoder is saved with `medmm.models.pretrained.save_weights` (checksum
+ metadata), and a JSON summary is written beside it (``<out>.json``).

Augmentation: images are resized once to ``image_size + pad`` (pad = max(4, size // 12)); training
takes random ``image_size`` crops with gamma / contrast jitter, held-out images the centre crop.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medmm.errors import BadInputError, MedmmError

LABEL_KEYS = ("modality", "plane", "location")
# The patient-grouped covid_cxr split of configs/diagnosis/covid_cxr.yaml (its seed is the run seed,
# 0); a test checks the two agree, so covid_cxr "train" here never holds a diagnosis test patient.
COVID_SPLIT = {"group_by": "patient", "fractions": {"train": 0.6, "val": 0.15, "test": 0.25}, "seed": 0,
               "stratify": "finding_group"}
# Where each source lives under a data root (../shared/data) when no root is given.
DEFAULT_FOLDERS = {"medpix2": "medpix2/MedPix-2-0", "covid_cxr": "covid_cxr"}
SOURCE_SPLITS = {"medpix2": ("train", "dev", "test", "all"), "covid_cxr": ("all", "train", "val", "test")}
_LICENCES = {
    "medpix2": "MedPix 2.0 (licence not stated, research/teaching)",
    "covid_cxr": "ieee8023 COVID-19 images (mixed, many CC BY-NC-SA)",
}
_SYNPIC = re.compile(r"synpic\d+")


@dataclass
class Source:
    """One dataset read at one split.

    Fields:
        name: `medpix2` or `covid_cxr`.
        root: the dataset folder in its original layout (MedPix-2-0, covid_cxr).
        split: medpix2: train, dev, test or all; covid_cxr: all, or train/val/test of `COVID_SPLIT`.
    """

    name: str
    root: Path
    split: str = "all"


@dataclass
class PretrainConfig:
    """What to pretrain on and how (defaults: the VQA image encoder's recipe).

    Fields:
        sources: datasets and splits to read (see `default_sources`).
        exclude_vqa_rad: a VQA-RAD root; its images (by synpic id) are left out. None: keep all.
        image_size: input side in pixels (grayscale, 1 channel).
        widths: `small_cnn` channel widths per stage.
        epochs, batch_size, lr, weight_decay: AdamW with a one-cycle schedule (10% warm-up).
        caption_weight: weight of the caption InfoNCE loss (0: no MiniLM, labels only).
        reconstruction_weight: weight of a denoising reconstruction loss (0: off). The encoder
            then sees a noisy copy of each crop (Gaussian, `noise_std` in normalised units) and a
            small transposed-convolution decoder (not saved) rebuilds the clean crop from its
            last feature map (mean squared error): the convolutional denoising auto-encoder of
            MEVF (Nguyen et al., MICCAI 2019), which keeps local image detail that labels of
            modality, plane and location do not ask for.
        noise_std: standard deviation of that noise.
        min_label_count: labels seen fewer times in the training images are ignored in the loss.
        held_out_fraction: fraction of cases/patients kept aside for the held-out accuracies.
        seed: seeds the held-out choice, the initialisation and the augmentation.
        num_threads: torch intra-op threads while training (restored afterwards).
    """

    sources: list[Source]
    exclude_vqa_rad: Path | None = None
    image_size: int = 96
    widths: tuple[int, ...] = (32, 64, 128, 256)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    caption_weight: float = 1.0
    reconstruction_weight: float = 0.0
    noise_std: float = 0.4
    min_label_count: int = 10
    held_out_fraction: float = 0.1
    seed: int = 0
    num_threads: int = 1


@dataclass
class PretrainImage:
    """One image with its pretraining labels (None = unknown) and group (case / patient)."""

    path: Path
    source: str
    group: str
    image_id: str
    modality: str | None = None
    plane: str | None = None
    location: str | None = None
    caption: str | None = None

    def label(self, key: str) -> str | None:
        """The label named `key` (one of LABEL_KEYS)."""
        return getattr(self, key)


def default_sources(data_root: str | Path, medpix2_split: str = "all", covid_split: str | None = "all") -> list[Source]:
    """medpix2 (and covid_cxr unless `covid_split` is None) under `data_root` (e.g. ../shared/data)."""
    root = Path(data_root)
    out = [Source("medpix2", root / DEFAULT_FOLDERS["medpix2"], medpix2_split)]
    if covid_split is not None:
        out.append(Source("covid_cxr", root / DEFAULT_FOLDERS["covid_cxr"], covid_split))
    return out


def vqa_rad_synpics(root: str | Path) -> set[str]:
    """synpic ids of every image in a VQA-RAD root's image folder (to keep them out of pretraining)."""
    folder = Path(root) / "VQA_RAD Image Folder"
    if not folder.is_dir():
        raise BadInputError(folder, "VQA-RAD image folder not found (exclude_vqa_rad must be a VQA-RAD root)")
    ids = {p.stem for p in folder.glob("synpic*")}
    if not ids:
        raise BadInputError(folder, "no synpic* images: nothing to exclude (wrong folder?)")
    return ids


def _medpix2(source: Source) -> list[PretrainImage]:
    from medmm.data import load_dataset

    out = []
    for s in load_dataset("medpix2", source.root, source.split).samples:
        t = s.targets
        out.append(PretrainImage(
            path=Path(s.images[0].path), source="medpix2", group=f"medpix2:{s.group('case')}", image_id=s.id,
            modality=t.get("modality"), plane=t.get("plane"), location=t.get("location_category"),
            caption=s.text.get("caption") or None,
        ))
    return out


def _covid_cxr(source: Source) -> list[PretrainImage]:
    from medmm.data import load_dataset
    from medmm.data.splits import grouped_split

    samples = load_dataset("covid_cxr", source.root, "all").samples
    if source.split != "all":
        c = COVID_SPLIT
        samples = grouped_split(samples, c["group_by"], c["fractions"], c["seed"], stratify=c["stratify"])[source.split]
    out = []
    for s in samples:
        if not s.images or s.images[0].path is None or not Path(s.images[0].path).is_file():
            continue  # metadata rows without an image file (text-only rows of the collection)
        out.append(PretrainImage(
            path=Path(s.images[0].path), source="covid_cxr", group=f"covid_cxr:{s.group('patient')}", image_id=s.id,
            modality=s.images[0].modality, location="Thorax",
        ))
    return out


_READERS: dict[str, Callable[[Source], list[PretrainImage]]] = {"medpix2": _medpix2, "covid_cxr": _covid_cxr}


def collect_images(config: PretrainConfig) -> tuple[list[PretrainImage], list[dict[str, Any]]]:
    """The images of every source (minus VQA-RAD images) and per-source counts.

    Raises MedmmError for an unknown source or split, BadInputError naming a missing root, and
    MedmmError when a source (or the whole selection) yields no image.
    """
    if not config.sources:
        raise MedmmError("no pretraining source given; known sources: " + ", ".join(_READERS))
    exclude = vqa_rad_synpics(config.exclude_vqa_rad) if config.exclude_vqa_rad is not None else set()
    images: list[PretrainImage] = []
    counts = []
    for src in config.sources:
        if src.name not in _READERS:
            raise MedmmError(f"unknown pretraining source {src.name!r}; known: {', '.join(_READERS)}")
        if src.split not in SOURCE_SPLITS[src.name]:
            raise MedmmError(f"source {src.name!r} has no split {src.split!r}; splits: {', '.join(SOURCE_SPLITS[src.name])}")
        if not Path(src.root).is_dir():
            raise BadInputError(src.root, f"{src.name} dataset root not found")
        got = _READERS[src.name](src)
        kept = [im for im in got if not (m := _SYNPIC.search(im.path.name)) or m.group(0) not in exclude]
        if not kept:
            raise MedmmError(f"{src.root}: source {src.name} split {src.split!r} has no usable image "
                             f"({len(got)} found, {len(got) - len(kept)} excluded as VQA-RAD images)")
        counts.append({"name": src.name, "root": str(src.root), "split": src.split, "n_images": len(kept),
                       "n_excluded_vqa_rad": len(got) - len(kept), "n_groups": len({im.group for im in kept})})
        images.extend(kept)
    return images, counts


def held_out_split(groups: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): a `fraction` of the distinct GROUPS is held out, so no
    case/patient has images on both sides. The choice depends only on the set of groups and seed."""
    if not 0.0 <= fraction < 1.0:
        raise MedmmError(f"held_out_fraction must be in [0, 1), got {fraction}")
    distinct = sorted(set(groups))
    n_out = int(round(fraction * len(distinct)))
    if fraction > 0 and n_out == 0:
        n_out = 1  # asked for a held-out part: never silently give none
    if n_out >= len(distinct) and n_out > 0:
        raise MedmmError(f"held_out_fraction {fraction} leaves no training group ({len(distinct)} groups)")
    chosen = set(np.random.default_rng(seed).permutation(len(distinct))[:n_out].tolist())
    out_groups = {g for i, g in enumerate(distinct) if i in chosen}
    mask = np.array([g in out_groups for g in groups], dtype=bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def label_space(rows: Sequence[Any], key: str, min_count: int) -> list[str]:
    """Labels of `key` seen at least `min_count` times (rarer ones are ignored in the loss).
    `rows` are PretrainImage records or dicts."""
    get = (lambda r: r.get(key)) if rows and isinstance(rows[0], dict) else (lambda r: r.label(key))
    c = Counter(get(r) for r in rows if get(r))
    return sorted(k for k, n in c.items() if n >= min_count)


def load_pixels(images: Sequence[PretrainImage], size: int, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """All images as uint8 (N, size, size) grayscale, resized once (random crops come later)."""
    from medmm.data.io import read_image
    from medmm.data.transforms import resize, to_channels, to_unit_range

    out = np.zeros((len(images), size, size), dtype=np.uint8)
    for i, im in enumerate(images):
        x = resize(to_unit_range(to_channels(np.asarray(read_image(im.path)), 1)), size)
        out[i] = np.clip(np.asarray(x).reshape(size, size) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if progress:
            progress(i + 1, len(images))
    return out


def caption_embeddings(captions: Sequence[str | None], progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Frozen MiniLM mean-pooled, L2-normalised caption embeddings (zeros where there is no caption)."""
    from medmm.models import create_text_encoder

    enc = create_text_encoder("minilm").eval()
    out = torch.zeros(len(captions), enc.out_dim)
    idx = [i for i, c in enumerate(captions) if c]
    with torch.no_grad():
        for k in range(0, len(idx), 64):
            part = idx[k : k + 64]
            tok = enc.tokenize([captions[i] for i in part], max_length=64)
            out[part] = F.normalize(enc(tok["input_ids"], tok["attention_mask"]).pooled, dim=-1)
            if progress:
                progress(min(k + 64, len(idx)), len(idx))
    return out


class Pretrainer(nn.Module):
    """The encoder plus one linear head per label, a caption projection and, for the denoising
    loss, a decoder from the last feature map back to the input image."""

    def __init__(self, encoder: nn.Module, n_classes: dict[str, int], text_dim: int, reconstruct: bool = False):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict({k: nn.Linear(encoder.out_dim, n) for k, n in n_classes.items()})
        self.caption = nn.Linear(encoder.out_dim, text_dim)
        self.decoder = _decoder(encoder.out_dim) if reconstruct else None

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """(label logits, normalised caption embedding, reconstruction of x or None)."""
        feats = self.encoder(x)
        pooled = feats.pooled
        recon = None
        if self.decoder is not None:
            b, n, d = feats.tokens.shape
            side = round(n**0.5)
            grid = feats.tokens.transpose(1, 2).reshape(b, d, side, side)
            recon = F.interpolate(self.decoder(grid), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {k: h(pooled) for k, h in self.heads.items()}, F.normalize(self.caption(pooled), dim=-1), recon


def _decoder(in_dim: int, stages: int = 4) -> nn.Sequential:
    """Transposed convolutions, each doubling the side and halving the width, then a 3x3 to one
    channel (a 6x6 map of a 96 px input comes back at 96 px; other sizes are resized to fit)."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(stages):
        nxt = max(width // 2, 8)
        layers += [nn.ConvTranspose2d(width, nxt, 4, stride=2, padding=1), nn.BatchNorm2d(nxt), nn.ReLU(inplace=True)]
        width = nxt
    layers.append(nn.Conv2d(width, 1, 3, padding=1))
    return nn.Sequential(*layers)


def batches(
    pixels: np.ndarray, idx: np.ndarray, crop: int, train: bool, rng: np.random.Generator, bs: int,
    mean: float = 0.5, std: float = 0.25,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(indices, normalised (B, 1, crop, crop) tensor): random crop + gamma/contrast jitter when
    training (shuffled), centre crop otherwise (in order)."""
    size = pixels.shape[1]
    order = rng.permutation(idx) if train else np.asarray(idx)
    for k in range(0, len(order), bs):
        part = order[k : k + bs]
        out = np.empty((len(part), 1, crop, crop), dtype=np.float32)
        for j, i in enumerate(part):
            if train:
                y, x = rng.integers(0, size - crop + 1, 2)
            else:
                y = x = (size - crop) // 2
            img = pixels[i, y : y + crop, x : x + crop].astype(np.float32) / 255.0
            if train:  # gamma / contrast jitter: scanners and windowing differ
                img = np.clip(img ** rng.uniform(0.7, 1.4) * rng.uniform(0.85, 1.15), 0, 1)
            out[j, 0] = (img - mean) / std
        yield part, torch.from_numpy(out)


def pretrain_loss(
    logits: dict[str, torch.Tensor], emb: torch.Tensor, labels: dict[str, torch.Tensor], captions: torch.Tensor,
    has_caption: torch.Tensor, caption_weight: float,
) -> torch.Tensor | None:
    """Sum of per-head cross-entropies (unknown labels = -100 ignored) + caption_weight x symmetric
    InfoNCE over the batch's captioned images; None when the batch has nothing to learn from."""
    terms = [F.cross_entropy(logits[k], labels[k], ignore_index=-100) for k in logits if bool((labels[k] >= 0).any())]
    if caption_weight > 0 and int(has_caption.sum()) > 1:
        sim = emb[has_caption] @ captions[has_caption].T / 0.07
        tgt = torch.arange(sim.shape[0])
        terms.append(caption_weight * 0.5 * (F.cross_entropy(sim, tgt) + F.cross_entropy(sim.T, tgt)))
    return torch.stack(terms).sum() if terms else None


@torch.no_grad()
def evaluate(
    model: Pretrainer, pixels: np.ndarray, idx: np.ndarray, labels: dict[str, torch.Tensor], size: int,
    captions: torch.Tensor | None = None, mean: float = 0.5, std: float = 0.25,
) -> dict[str, float]:
    """Accuracy per label head on `idx` (centre crop); with `captions`, image->caption recall@1/@5
    among the captioned images of `idx` (chance: 1/n and 5/n); with a decoder, the mean squared
    error of rebuilding the clean crop (`recon_mse`, normalised units)."""
    model.eval()
    hits: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    embs = []
    sq_err, n_px = 0.0, 0
    for part, x in batches(pixels, idx, size, False, np.random.default_rng(0), 128, mean, std):
        logits, emb, recon = model(x)
        embs.append(emb)
        if recon is not None:
            sq_err, n_px = sq_err + float(((recon - x) ** 2).sum()), n_px + x.numel()
        for k, lg in logits.items():
            y = labels[k][part]
            ok = y >= 0
            hits[k] += int((lg.argmax(-1)[ok] == y[ok]).sum())
            seen[k] += int(ok.sum())
    out = {f"acc_{k}": round(hits[k] / seen[k], 4) for k in labels if seen[k]}
    if n_px:
        out["recon_mse"] = round(sq_err / n_px, 4)
    if captions is not None and embs:
        cap = captions[torch.as_tensor(idx)]
        has = cap.abs().sum(-1) > 0
        if int(has.sum()) > 1:
            sim = torch.cat(embs)[has] @ cap[has].T
            rank = (sim > sim.diag()[:, None]).sum(-1)  # captions scored above the image's own
            out["caption_r1"] = round(float((rank < 1).float().mean()), 4)
            out["caption_r5"] = round(float((rank < 5).float().mean()), 4)
            out["n_captions"] = int(has.sum())
    return out


def majority_baseline(labels: dict[str, torch.Tensor], train_idx: np.ndarray, val_idx: np.ndarray) -> dict[str, float]:
    """Held-out accuracy of always answering the most common training label of each head."""
    out = {}
    for k, y in labels.items():
        tr, va = y[torch.as_tensor(train_idx)], y[torch.as_tensor(val_idx)]
        tr, va = tr[tr >= 0], va[va >= 0]
        if len(tr) and len(va):
            out[f"acc_{k}"] = round(float((va == torch.mode(tr).values).float().mean()), 4)
    return out


def summary_path(out_path: str | Path) -> Path:
    """Where the JSON summary of a weights file goes: beside it, same stem, `.json`."""
    return Path(out_path).with_suffix(".json")


def heads_path(out_path: str | Path) -> Path:
    """Where the label heads of a pretrained encoder go: beside it, `<stem>.heads.pt` (a medmm
    weights file: one Linear per label over the encoder's pooled feature; metadata
    `label_spaces` and `encoder_sha256`)."""
    p = Path(out_path)
    return p.with_name(p.stem + ".heads.pt")


def pretrain_image_encoder(
    config: PretrainConfig,
    out_path: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Pretrain a `small_cnn` on `config.sources`, save it to `out_path` (medmm weights file) and a
    JSON summary to `summary_path(out_path)`; returns that summary.

    progress(stage, done, total) is called while loading images ("images"), embedding captions
    ("captions") and training ("train"); on_epoch(record) after each epoch with the training loss
    and the held-out metrics. The summary holds the sources and their counts, label spaces,
    history, held-out metrics, majority baseline, sha256 and CPU seconds.
    """
    from medmm.models import create_image_encoder
    from medmm.models.pretrained import input_spec_metadata, save_weights

    c = config
    if c.image_size < 16:
        raise MedmmError(f"image_size must be >= 16, got {c.image_size}")
    if c.reconstruction_weight < 0 or c.noise_std < 0:
        raise MedmmError(f"reconstruction_weight and noise_std must be >= 0 (got {c.reconstruction_weight}, {c.noise_std})")
    if c.epochs < 1 or c.batch_size < 1 or c.lr <= 0:
        raise MedmmError(f"epochs, batch_size and lr must be positive (got {c.epochs}, {c.batch_size}, {c.lr})")
    out_path = Path(out_path)
    if out_path.suffix == ".json":
        raise MedmmError(f"{out_path}: the weights file must not end in .json (the summary goes beside it as .json)")
    t0, w0 = time.process_time(), time.time()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(c.num_threads)
    try:
        step = (lambda stage: (lambda d, t: progress(stage, d, t))) if progress else (lambda stage: None)
        images, counts = collect_images(c)
        train_idx, val_idx = held_out_split([im.group for im in images], c.held_out_fraction, c.seed)
        # Label spaces from the training images only: the held-out images must not shape the model.
        train_rows = [images[i] for i in train_idx]
        spaces = {k: label_space(train_rows, k, c.min_label_count) for k in LABEL_KEYS}
        labels = {k: torch.tensor([sp.index(im.label(k)) if im.label(k) in sp else -100 for im in images])
                  for k, sp in spaces.items() if sp}
        pad = max(4, c.image_size // 12)
        pixels = load_pixels(images, c.image_size + pad, step("images"))
        caps = [im.caption for im in images]
        use_captions = c.caption_weight > 0 and sum(1 for x in caps if x) > 1
        captions = caption_embeddings(caps, step("captions")) if use_captions else torch.zeros(len(images), 1)
        has_cap = captions.abs().sum(-1) > 0

        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        kwargs = {"in_channels": 1, "image_size": c.image_size, "widths": list(c.widths)}
        encoder = create_image_encoder("small_cnn", **kwargs)
        spec = encoder.input_spec
        mean, std = float(spec.mean[0]), float(spec.std[0])
        model = Pretrainer(encoder, {k: len(spaces[k]) for k in labels}, captions.shape[1], reconstruct=c.reconstruction_weight > 0)
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        per_epoch = -(-len(train_idx) // c.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=c.epochs * per_epoch, pct_start=0.1)
        train_step = step("train")
        history: list[dict[str, Any]] = []
        done = 0
        for epoch in range(c.epochs):
            model.train()
            tot, n = 0.0, 0
            for part, x in batches(pixels, train_idx, c.image_size, True, rng, c.batch_size, mean, std):
                seen_x = x + c.noise_std * torch.randn_like(x) if c.reconstruction_weight > 0 else x
                logits, emb, recon = model(seen_x)
                loss = pretrain_loss(logits, emb, {k: y[part] for k, y in labels.items()}, captions[part],
                                     has_cap[part], c.caption_weight if use_captions else 0.0)
                if recon is not None:  # rebuild the clean crop from the noisy one
                    rec_loss = c.reconstruction_weight * F.mse_loss(recon, x)
                    loss = rec_loss if loss is None else loss + rec_loss
                if loss is not None:
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    tot, n = tot + loss.item() * len(part), n + len(part)
                sched.step()  # keep the schedule aligned with the planned steps even for a skipped batch
                done += 1
                if train_step:
                    train_step(done, c.epochs * per_epoch)
            rec: dict[str, Any] = {"epoch": epoch, "train_loss": round(tot / max(n, 1), 4)}
            if len(val_idx):
                rec.update({f"held_out_{k}": v for k, v in evaluate(
                    model, pixels, val_idx, labels, c.image_size, captions if use_captions else None, mean, std).items()})
            rec["cpu_s"] = round(time.process_time() - t0, 1)
            history.append(rec)
            if on_epoch:
                on_epoch(rec)

        cpu_s = round(time.process_time() - t0, 1)
        held_out = {k[len("held_out_"):]: v for k, v in history[-1].items() if k.startswith("held_out_")}
        describe = ", ".join(f"{s['name']} split {s['split']} ({s['n_images']} images)" for s in counts)
        summary: dict[str, Any] = {
            "weights": str(out_path),
            "architecture": "small_cnn",
            "encoder_config": kwargs,
            "config": {**asdict(c), "sources": [{"name": s.name, "root": str(s.root), "split": s.split} for s in c.sources],
                       "exclude_vqa_rad": str(c.exclude_vqa_rad) if c.exclude_vqa_rad is not None else None,
                       "widths": list(c.widths)},
            "sources": counts,
            "n_images": len(images),
            "n_train_images": int(len(train_idx)),
            "n_held_out_images": int(len(val_idx)),
            "n_held_out_groups": len({images[i].group for i in val_idx}),
            "n_captions": int(has_cap.sum()),
            "label_spaces": spaces,
            "held_out": held_out,
            "held_out_majority_baseline": majority_baseline(labels, train_idx, val_idx) if len(val_idx) else {},
            "history": history,
            "cpu_s": cpu_s,
            "wall_s": round(time.time() - w0, 1),
        }
        meta = {
            "architecture": "small_cnn",
            "config": kwargs,
            "input_spec": input_spec_metadata(spec),
            "labels": None,
            "source": f"medmm.tasks.pretrain.image_pretrain: {describe}; labels modality/plane/location"
                      + (" + caption InfoNCE vs frozen MiniLM" if use_captions else "")
                      + (f" + denoising reconstruction (weight {c.reconstruction_weight})" if c.reconstruction_weight > 0 else "")
                      + ("; VQA-RAD images excluded" if c.exclude_vqa_rad is not None else ""),
            "licence": "trained on " + " and ".join(_LICENCES[s["name"]] for s in counts) + ": research use only",
            "notes": json.dumps({k: summary[k] for k in ("config", "sources", "n_images", "label_spaces", "held_out", "cpu_s")}),
        }
        summary["sha256"] = save_weights(encoder, out_path, meta)
        # The label heads too, so downstream tasks can read the image as words (e.g. VQA's
        # image_attributes); kept out of the encoder file, which must load into the bare encoder.
        head_spaces = {k: spaces[k] for k in labels}
        summary["heads"] = str(heads_path(out_path))
        summary["heads_sha256"] = save_weights(model.heads, heads_path(out_path), {
            "architecture": "linear_heads", "config": {"in_dim": encoder.out_dim, "label_spaces": head_spaces},
            "labels": None, "label_spaces": head_spaces, "encoder_sha256": summary["sha256"],
            "source": f"label heads of {out_path.name} (medmm.tasks.pretrain.image_pretrain)", "licence": meta["licence"]})
        path = summary_path(out_path)
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        return summary
    finally:
        torch.set_num_threads(threads_before)
