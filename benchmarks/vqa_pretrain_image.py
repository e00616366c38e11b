"""Pretrain the VQA image encoder offline on OTHER radiology images (no VQA-RAD image, no QA).

    python benchmarks/vqa_pretrain_image.py --out runs/vqa_image_encoder/small_cnn96.pt

VQA-RAD has 314 images, too few to learn radiology features from scratch (the last from-scratch
model learnt only answer priors). MEVF pretrains its image encoder (a denoising autoencoder +
MAML) on extra unlabelled images; here a small CNN is pretrained with supervision that costs
nothing to obtain and matches what VQA-RAD asks about (modality, plane, organ system):

* MedPix 2.0 (1,850 CT/MR images): modality (CT/MR), plane and location category from its
  metadata, plus a caption-matching loss against frozen MiniLM caption embeddings (InfoNCE),
  which brings in findings vocabulary;
* COVID-19 chest X-rays (covid_cxr, ~600 images): modality "XR", location "Thorax".

MedPix images whose synpic id is also a VQA-RAD image (19 in the shared copies) are dropped, so
no VQA-RAD image, held-out or not, is seen here. 10% of the images are kept aside to report the
pretraining accuracies (sanity check only). The output is a medmm weights file (checksum +
metadata: architecture, constructor config, input spec, sources) that
``model.image_pretrained`` of the VQA configs loads; the trained VQA run then carries the
encoder weights in its own checkpoint.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def vqa_rad_synpics(root: Path) -> set[str]:
    """synpic ids of every image in a VQA-RAD image folder (to keep them out of pretraining)."""
    return {p.stem for p in (root / "VQA_RAD Image Folder").glob("synpic*")}


def collect(shared: Path, exclude: set[str]) -> list[dict]:
    """Image paths with their pretraining labels (None = unknown) and captions."""
    from medmm.data import load_dataset

    rows = []
    for s in load_dataset("medpix2", shared / "medpix2" / "MedPix-2-0", "all").samples:
        m = re.search(r"synpic\d+", str(s.images[0].path))
        if m and m.group(0) in exclude:
            continue
        t = s.targets
        rows.append({"path": s.images[0].path, "modality": t.get("modality"), "plane": t.get("plane"),
                     "location": t.get("location_category"), "caption": s.text.get("caption") or None})
    for s in load_dataset("covid_cxr", shared / "covid_cxr", "all").samples:
        if s.images and s.images[0].path is not None and Path(s.images[0].path).is_file():
            rows.append({"path": s.images[0].path, "modality": "XR", "plane": None, "location": "Thorax", "caption": None})
    return rows


def label_space(rows: list[dict], key: str, min_count: int) -> list[str]:
    """Labels of `key` seen at least `min_count` times (rarer ones are ignored in the loss)."""
    c = Counter(r[key] for r in rows if r[key])
    return sorted(k for k, n in c.items() if n >= min_count)


def load_pixels(rows: list[dict], size: int) -> np.ndarray:
    """All images as uint8 (N, size, size) grayscale, resized once (random crops come later)."""
    from medmm.data.io import read_image
    from medmm.data.transforms import resize, to_channels, to_unit_range

    out = np.zeros((len(rows), size, size), dtype=np.uint8)
    for i, r in enumerate(rows):
        x = resize(to_unit_range(to_channels(np.asarray(read_image(r["path"])), 1)), size)
        out[i] = np.clip(np.asarray(x).reshape(size, size) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def caption_embeddings(rows: list[dict]) -> torch.Tensor:
    """Frozen MiniLM mean-pooled caption embeddings (zeros where a row has no caption)."""
    from medmm.models import create_text_encoder

    enc = create_text_encoder("minilm").eval()
    out = torch.zeros(len(rows), enc.out_dim)
    idx = [i for i, r in enumerate(rows) if r["caption"]]
    with torch.no_grad():
        for k in range(0, len(idx), 64):
            part = idx[k : k + 64]
            tok = enc.tokenize([rows[i]["caption"] for i in part], max_length=64)
            out[part] = F.normalize(enc(tok["input_ids"], tok["attention_mask"]).pooled, dim=-1)
    return out


class Pretrainer(nn.Module):
    """The encoder plus one linear head per label and a caption projection."""

    def __init__(self, encoder: nn.Module, n_classes: dict[str, int], text_dim: int):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict({k: nn.Linear(encoder.out_dim, n) for k, n in n_classes.items()})
        self.caption = nn.Linear(encoder.out_dim, text_dim)

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        pooled = self.encoder(x).pooled
        return {k: h(pooled) for k, h in self.heads.items()}, F.normalize(self.caption(pooled), dim=-1)


def batches(pixels: np.ndarray, idx: np.ndarray, crop: int, train: bool, rng: np.random.Generator, bs: int):
    """Normalised (B, 1, crop, crop) tensors: random crop + contrast jitter when training, else centre."""
    size = pixels.shape[1]
    order = rng.permutation(idx) if train else idx
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
            out[j, 0] = (img - 0.5) / 0.25
        yield part, torch.from_numpy(out)


def main() -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--caption-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from medmm.models import create_image_encoder
    from medmm.models.pretrained import input_spec_metadata, save_weights

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.process_time()
    rows = collect(args.shared, vqa_rad_synpics(args.shared / "vqa_rad"))
    spaces = {k: label_space(rows, k, 10) for k in ("modality", "plane", "location")}
    labels = {k: torch.tensor([sp.index(r[k]) if r[k] in sp else -100 for r in rows]) for k, sp in spaces.items()}
    pad = max(4, args.size // 12)
    pixels = load_pixels(rows, args.size + pad)
    captions = caption_embeddings(rows)
    has_cap = captions.abs().sum(-1) > 0
    print(f"{len(rows)} images; labels {json.dumps({k: len(v) for k, v in spaces.items()})}; "
          f"{int(has_cap.sum())} captions; prep {time.process_time() - t0:.0f}s CPU", flush=True)

    perm = rng.permutation(len(rows))
    n_val = len(rows) // 10
    val_idx, train_idx = np.sort(perm[:n_val]), perm[n_val:]
    kwargs = {"in_channels": 1, "image_size": args.size, "widths": list(args.widths)}
    encoder = create_image_encoder("small_cnn", **kwargs)
    model = Pretrainer(encoder, {k: len(v) for k, v in spaces.items()}, captions.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * -(-len(train_idx) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    history = []
    for epoch in range(args.epochs):
        model.train()
        tot = 0.0
        for part, x in batches(pixels, train_idx, args.size, True, rng, args.batch_size):
            logits, emb = model(x)
            loss = sum(F.cross_entropy(logits[k], labels[k][part], ignore_index=-100) for k in logits
                       if bool((labels[k][part] >= 0).any()))
            cap = has_cap[part]
            if args.caption_weight > 0 and int(cap.sum()) > 1:
                sim = emb[cap] @ captions[part][cap].T / 0.07
                tgt = torch.arange(sim.shape[0])
                loss = loss + args.caption_weight * 0.5 * (F.cross_entropy(sim, tgt) + F.cross_entropy(sim.T, tgt))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(part)
        acc = evaluate(model, pixels, val_idx, labels, args.size, rng)
        history.append({"epoch": epoch, "train_loss": tot / len(train_idx), **acc})
        print(json.dumps(history[-1]), f"CPU {time.process_time() - t0:.0f}s", flush=True)

    meta = {
        "architecture": "small_cnn",
        "config": kwargs,
        "input_spec": input_spec_metadata(encoder.input_spec),
        "labels": None,
        "source": "benchmarks/vqa_pretrain_image.py: MedPix 2.0 (modality/plane/location + caption InfoNCE "
                  "vs frozen MiniLM) and covid_cxr X-rays; VQA-RAD images excluded",
        "licence": "trained on MedPix 2.0 (licence not stated, research/teaching) and ieee8023 COVID-19 "
                   "images (mixed, many CC BY-NC-SA): research use only",
        "notes": json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "n_images": len(rows),
                             "label_spaces": spaces, "held_out_val": history[-1], "cpu_s": round(time.process_time() - t0)}),
    }
    digest = save_weights(encoder, args.out, meta)
    print(f"wrote {args.out} sha256 {digest[:12]}; CPU {time.process_time() - t0:.0f}s", flush=True)


@torch.no_grad()
def evaluate(model: Pretrainer, pixels, idx, labels, size, rng) -> dict[str, float]:
    """Accuracy per label head on the kept-aside images (centre crop)."""
    model.eval()
    hits: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for part, x in batches(pixels, idx, size, False, rng, 128):
        logits, _ = model(x)
        for k, lg in logits.items():
            y = labels[k][part]
            ok = y >= 0
            hits[k] += int((lg.argmax(-1)[ok] == y[ok]).sum())
            seen[k] += int(ok.sum())
    return {f"val_acc_{k}": round(hits[k] / max(seen[k], 1), 4) for k in labels}


if __name__ == "__main__":
    main()
