"""Segmentation figures for a run's report.html (`Segmentation.report_figures`): overlays of the
predicted and reference masks on the image, drawn from prediction records without the model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError
from medmm.tasks.segmentation.masks import rle_decode


def _overlay(image: np.ndarray, pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    from medmm.data.transforms import to_channels, to_unit_range

    rgb = to_unit_range(to_channels(image, 3)).astype(np.float32)
    out = rgb * 0.7
    # Outline-free tint: reference green, prediction red, overlap yellow.
    out[..., 0] += 0.3 * pred
    out[..., 1] += 0.3 * ref
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def save_overlays(records: list[dict[str, Any]], out_dir: str | Path, prefix: str = "overlay",
                  n_per_class: int = 6) -> list[str]:
    """Write one PNG per class (a row of up to n overlays: reference green, prediction red,
    overlap yellow) into out_dir; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medmm.data.io import read_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    labels = list(dict.fromkeys(r.get("label", "mask") for r in records))
    for label in labels:
        rows = [r for r in records if r.get("label", "mask") == label and "prediction" in r][:n_per_class]
        if not rows:
            continue
        fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 3.0), squeeze=False)
        for ax, r in zip(axes[0], rows, strict=True):
            pred = rle_decode(r["prediction"])
            ref = rle_decode(r["reference"]) if isinstance(r.get("reference"), dict) else np.zeros_like(pred)
            try:
                img = read_image(r["image"])
            except (BadInputError, TypeError):
                img = np.zeros(pred.shape, np.uint8)
            if img.shape[:2] != pred.shape:
                img = np.zeros(pred.shape, np.uint8)
            ax.imshow(_overlay(img, pred, ref))
            dice = r.get("dice")
            ax.set_title(f"{str(r.get('sample_id', r['id']))[:18]}" + (f"\nDice {dice:.2f}" if dice is not None else ""), fontsize=7)
            ax.axis("off")
        fig.suptitle(f"{label}: reference green, prediction red, overlap yellow", fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 0.9))  # room for the suptitle
        safe = hashlib.sha1(label.encode()).hexdigest()[:6]
        name = f"{prefix}_{''.join(ch if ch.isalnum() else '_' for ch in label)[:30]}_{safe}.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        made.append(name)
    return made


__all__ = ["save_overlays"]
