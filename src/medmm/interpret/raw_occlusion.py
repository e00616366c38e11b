"""Occlusion of the raw image, before a model's processor: heatmaps in the original image's coordinates.

Models whose processor turns an image into tiles (Idefics3 / SmolVLM) or flattened patches
(Qwen2-VL) have no (3, H, W) pixel tensor to attribute, and the processor (resizing, splitting)
is not differentiable. Occlusion needs neither: each window of the raw image (C, H, W), values
in [0, 1], is replaced by a fill (the image's per-channel mean, or a blurred copy of the image),
every occluded image goes through the caller's score (which re-runs the model's own processor),
and a pixel's attribution is the mean score drop over the windows that cover it.

Windows are relative to the image: `grid` windows of ceil(side / grid) pixels per side, half a
window apart, the last one flush with the far edge so every pixel is covered (captum's
Occlusion stops where the stride no longer fits, leaving the last rows and columns of an
arbitrary-sized image unattributed, hence this small implementation).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from medmm.errors import MedmmError

RAW_OCCLUSION_GRID = 8  # windows 1/8 of each side, half a window apart: 15 x 15 occluded images at any resolution
FILLS = ("mean", "blur")
RawScores = Callable[[torch.Tensor], torch.Tensor]


def window_starts(size: int, window: int) -> list[int]:
    """Start offsets of windows of `window` pixels along a side of `size`, about half a window
    apart, the first at 0 and the last flush with the far edge."""
    if window >= size:
        return [0]
    stride = max(1, window // 2)
    n = math.ceil((size - window) / stride) + 1
    return sorted({round(k * (size - window) / (n - 1)) for k in range(n)})


def fill_image(image: torch.Tensor, fill: str, window: tuple[int, int]) -> torch.Tensor:
    """What an occluded window shows, as a full image (C, H, W): the per-channel mean, or a
    Gaussian blur with sigma half the window (reflect padding), which removes the window's
    detail but keeps its overall brightness."""
    if fill == "mean":
        return image.mean((1, 2), keepdim=True).expand_as(image).clone()
    if fill != "blur":
        raise MedmmError(f"unknown occlusion fill {fill!r}; known: {', '.join(FILLS)}")
    out = image[None].float()
    for axis, w in ((2, window[0]), (3, window[1])):
        sigma = max(w / 2, 0.5)
        radius = min(int(3 * sigma), out.shape[axis] - 1)
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-(x**2) / (2 * sigma**2))
        k = (k / k.sum()).view(1, 1, -1, 1) if axis == 2 else (k / k.sum()).view(1, 1, 1, -1)
        pad = (0, 0, radius, radius) if axis == 2 else (radius, radius, 0, 0)
        c = out.shape[1]
        out = F.conv2d(F.pad(out, pad, mode="reflect"), k.expand(c, 1, *k.shape[2:]), groups=c)
    return out[0].to(image.dtype)


def raw_window(size: tuple[int, int], grid: int = RAW_OCCLUSION_GRID) -> tuple[int, int]:
    """(height, width) of the occlusion window of an image of `size`: ceil(side / grid)."""
    if grid < 1:
        raise MedmmError(f"occlusion grid must be at least 1, got {grid}")
    return math.ceil(size[0] / grid), math.ceil(size[1] / grid)


@torch.no_grad()
def raw_occlusion(score: RawScores, image: torch.Tensor, grid: int = RAW_OCCLUSION_GRID, fill: str = "mean",
                  batch_size: int = 16, progress: bool = True) -> torch.Tensor:
    """Signed occlusion map (H, W) of a raw image (C, H, W): per pixel, the mean of
    score(image) - score(occluded) over the windows covering it (positive: hiding it lowers the score).

    score(images (K, C, H, W)) -> (K,), called with at most `batch_size` images at a time.
    progress: a rich progress bar on a terminal (stderr) when there is more than one batch.
    """
    if image.dim() != 3:
        raise MedmmError(f"raw occlusion takes one image (C, H, W), got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    wh, ww = raw_window((h, w), grid)
    filled = fill_image(image, fill, (wh, ww))
    boxes = [(t, left) for t in window_starts(h, wh) for left in window_starts(w, ww)]
    base = float(score(image[None])[0])
    total = torch.zeros(h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    batches = range(0, len(boxes), max(1, batch_size))
    bar, task = _progress(progress and len(batches) > 1, len(boxes))
    try:
        for s in batches:
            chunk = boxes[s : s + batch_size]
            occluded = image[None].repeat(len(chunk), 1, 1, 1)
            for j, (t, left) in enumerate(chunk):
                occluded[j, :, t : t + wh, left : left + ww] = filled[:, t : t + wh, left : left + ww]
            drops = base - score(occluded).double().cpu()
            for (t, left), d in zip(chunk, drops, strict=True):
                total[t : t + wh, left : left + ww] += d
                count[t : t + wh, left : left + ww] += 1
            if bar is not None:
                bar.advance(task, len(chunk))
    finally:
        if bar is not None:
            bar.stop()
    return (total / count).float()  # every pixel is covered: window_starts ends flush with the edge


def _progress(show: bool, total: int):
    """A started transient rich progress bar on stderr (None when not asked for or not a terminal)."""
    if not show or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("occluding the raw image"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task("occlusion", total=total)
    bar.start()
    return bar, task
