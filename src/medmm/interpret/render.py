"""Rendering: heatmap overlays (PNG), token highlights (HTML) and the explanation index page."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=float)


def overlay_rgb(image: Any, heat: Any, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """RGB uint8 (H, W, 3): the image (grey (H, W), (1, H, W) or (3, H, W)) blended with a heatmap.

    The image is min-max scaled for display (inputs are usually normalised); the heatmap is
    resized to the image's size if needed and drawn with `cmap`, weighted by `alpha` * heat so
    cold regions stay readable.
    """
    from matplotlib import colormaps

    img = _to_numpy(image)
    if img.ndim == 3:
        img = img.mean(0) if img.shape[0] in (1, 3) else img.mean(-1)
    h = _to_numpy(heat)
    if h.shape != img.shape:
        import torch
        import torch.nn.functional as F

        h = F.interpolate(torch.from_numpy(h)[None, None].float(), size=img.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    lo, hi = img.min(), img.max()
    grey = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    hl, hh = h.min(), h.max()
    hn = (h - hl) / (hh - hl) if hh > hl else np.zeros_like(h)
    colour = colormaps[cmap](hn)[..., :3]
    w = (alpha * hn)[..., None]
    rgb = (1 - w) * grey[..., None] + w * colour
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def save_png(rgb: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write an RGB uint8 (H, W, 3) or grey array as PNG, upscaled by `scale` (nearest) for viewing."""
    import matplotlib.image as mpimg

    arr = np.asarray(rgb)
    if scale > 1:
        arr = arr.repeat(scale, 0).repeat(scale, 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mpimg.imsave(path, arr, cmap="gray" if arr.ndim == 2 else None)
    return path


def save_overlay(image: Any, heat: Any, path: str | Path, alpha: float = 0.45, scale: int = 1) -> Path:
    """overlay_rgb + save_png."""
    return save_png(overlay_rgb(image, heat, alpha), path, scale)


def save_image(image: Any, path: str | Path, scale: int = 1) -> Path:
    """The (normalised) model input as a display PNG."""
    return save_png(overlay_rgb(image, np.zeros(_to_numpy(image).shape[-2:]), 0.0), path, scale)


# What a reader sees instead of the method keys (file names keep the keys: gradcam++ -> gradcampp.png).
METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "integrated_gradients": "integrated gradients",
    "occlusion": "occlusion",
    "attention_rollout": "attention rollout",
    "cross_attention": "fusion attention, question to image (cross-attention, gated or BAN map)",
}


def method_label(method: str) -> str:
    """The readable name of an explanation method key."""
    return METHOD_LABELS.get(method, method.replace("_", " "))


def save_panel(tiles: list[tuple[str, str | Path]], title_lines: list[str], path: str | Path, tile_inches: float = 2.4) -> Path:
    """One labelled PNG of a sample's explanation: its tiles (label, PNG) in a row under a title
    that says what is explained (sample id, question/text, prediction, reference), so the
    picture still says what it shows when opened on its own."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    n = max(1, len(tiles))
    width = tile_inches * n
    lines = [w for line in title_lines for w in textwrap.wrap(line, width=int(width * 13)) or [""]]
    head = 0.22 * len(lines) + 0.2
    fig, axes = plt.subplots(1, n, figsize=(width, tile_inches + 0.35 + head), squeeze=False)
    for ax, (label, png) in zip(axes[0], tiles, strict=False):
        ax.imshow(mpimg.imread(str(png)))
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.text(0.01, 0.99, "\n".join(lines), ha="left", va="top", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, wspace=0.05, top=1 - (head + 0.1) / (tile_inches + 0.35 + head))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def merge_wordpieces(tokens: list[str], weights: list[float]) -> tuple[list[str], list[float]]:
    """Join WordPiece continuations ("##x") to their word, summing the attributions."""
    words: list[str] = []
    ws: list[float] = []
    for t, w in zip(tokens, weights, strict=False):
        if t.startswith("##") and words:
            words[-1] += t[2:]
            ws[-1] += w
        else:
            words.append(t)
            ws.append(float(w))
    return words, ws


def token_html(tokens: list[str], weights: list[float], title: str = "") -> str:
    """Tokens as <span>s shaded by weight: red = supports the target, blue = against.

    Opacity is |weight| / max |weight| of the sequence; the value is in each span's tooltip.
    """
    words, ws = merge_wordpieces(list(tokens), list(weights))
    top = max((abs(w) for w in ws), default=0.0) or 1.0
    spans = []
    for t, w in zip(words, ws, strict=True):
        a = min(1.0, abs(w) / top)
        rgb = "220,40,40" if w >= 0 else "40,90,220"
        spans.append(f'<span title="{w:+.4f}" style="background:rgba({rgb},{a:.2f});padding:1px 2px;border-radius:3px">{html.escape(t)}</span>')
    head = f"<div class='tok-title'>{html.escape(title)}</div>" if title else ""
    return f"{head}<div class='tokens'>{' '.join(spans)}</div>"


_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}
.sample{border-top:1px solid #ccc;padding:1em 0}.row{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;text-align:center;font-size:0.85em}figure img{width:192px;image-rendering:pixelated}
.tokens{line-height:2em}.flag{color:#b00;font-weight:bold}.ok{color:#070}
table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"""


def index_html(title: str, intro: str, sections: list[str]) -> str:
    """A self-contained HTML page (inline CSS) from pre-rendered section snippets."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{intro}{''.join(sections)}</body></html>")
