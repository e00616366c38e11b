"""Otsu floor for MoNuSeg nuclei, and models' per-image Dice tested against it (paired).

    python benchmarks/reproduce/monuseg_floors.py --data ../shared/data/monuseg_lvit --split val \
        [--predictions NAME=runs/x/predictions/val.jsonl ...] --out floors.json

Floor: colour deconvolution to the hematoxylin channel (Ruifrok & Johnston's H&E-DAB stain
vectors, as scikit-image's rgb2hed), then Otsu's threshold of that image: pixels above it are
nuclei. No training, nothing tuned. Scored like the models: Dice per image at the mask's stored
resolution, mean over images, 95% percentile-bootstrap CI over images. A model's per-image Dice
comes from a predictions jsonl: a training run's `predictions/<split>.jsonl` (with "dice") or
`medmm predict RUN --data ROOT --split test` output (RLE masks, scored here); paired bootstrap
difference model - Otsu (and between models) with CI and p-values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import paired_record, write_result

from medmm.data.io import read_image, read_mask
from medmm.data.registry import load_dataset
from medmm.metrics.segmentation import binary_scores
from medmm.metrics.stats import bootstrap_ci

# Rows: hematoxylin, eosin, DAB optical-density vectors (Ruifrok & Johnston 2001).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


def hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Hematoxylin concentration of an (H, W, 3) uint8 RGB image (optical density unmixing)."""
    od = -np.log(np.maximum(rgb.astype(np.float64) / 255.0, 1e-6))
    return (od.reshape(-1, 3) @ HED_FROM_RGB)[:, 0].reshape(rgb.shape[:2])


def otsu_threshold(x: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the histogram cut maximising the between-class variance."""
    hist, edges = np.histogram(x, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def otsu_masks(data: Path, split: str) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Ids, Otsu masks and reference masks of a split (masks at their stored resolution)."""
    ids, preds, refs = [], [], []
    for s in load_dataset("monuseg_lvit", data, split).samples:
        rgb = np.asarray(read_image(s.images[0].path))
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=-1)
        h = hematoxylin(rgb[..., :3])
        ref = np.zeros(rgb.shape[:2], np.uint8)
        for m in s.masks:
            ref |= read_mask(m, rgb.shape[:2])
        ids.append(s.id)
        preds.append(h > otsu_threshold(h))
        refs.append(ref.astype(bool))
    return ids, preds, refs


def _dice_of(record: dict, ref: np.ndarray) -> float:
    """The record's Dice: its "dice" (training-run records) or its RLE mask (`medmm predict`) scored."""
    if "dice" in record:
        return float(record["dice"])
    from medmm.tasks.segmentation.masks import rle_decode

    return float(binary_scores(rle_decode(record["prediction"]), ref)["dice"])


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="LViT's MoNuSeg folder (or the folder holding MoNuSeg/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--predictions", nargs="*", default=[], help="NAME=predictions.jsonl of a run on that split")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    ids, preds, refs = otsu_masks(args.data, args.split)
    otsu = np.asarray([binary_scores(p, r)["dice"] for p, r in zip(preds, refs, strict=True)])
    ci = bootstrap_ci(_mean, otsu, n_resamples=args.resamples)
    result: dict = {
        "data": str(args.data), "split": args.split, "n": len(ids),
        "floors": {"otsu_hematoxylin": {"dice_mean": ci["estimate"]["value"], "ci95": [ci["low"]["value"], ci["high"]["value"]],
                                        "per_image": dict(zip(ids, otsu.round(4).tolist(), strict=True))}},
        "models": {},
    }
    dices: dict[str, np.ndarray] = {}
    for spec in args.predictions:
        name, _, path = spec.partition("=")
        recs = {r["id"]: r for r in map(json.loads, Path(path).read_text(encoding="utf-8").splitlines()) if r}
        if set(recs) != set(ids):
            raise SystemExit(f"{path}: its ids differ from the {args.split} split's")
        dice = dices[name] = np.asarray([_dice_of(recs[i], ref) for i, ref in zip(ids, refs, strict=True)])
        mci = bootstrap_ci(_mean, dice, n_resamples=args.resamples)
        result["models"][name] = {
            "dice_mean": mci["estimate"]["value"], "ci95": [mci["low"]["value"], mci["high"]["value"]],
            "minus_otsu": paired_record(_mean, dice, otsu, n_resamples=args.resamples),
        }
    names = list(dices)
    result["model_pairs"] = {}
    for i, a in enumerate(names):  # e.g. text-guided minus image-only, same images
        for b in names[i + 1:]:
            result["model_pairs"][f"{a}_minus_{b}"] = paired_record(_mean, dices[a], dices[b], n_resamples=args.resamples)
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
