"""A VQA run's example answers, drawn for the run report: each image with its question, the
model's answer against the reference, and, when the records carry a rationale, the image cells
the fusion attended to most outlined on the image.

Why: a table of accuracies does not show a clinician what the model does. A few right and a few
wrong answers, with the evidence the model reports, do (and show when that evidence sits on
the label text or the background instead of the anatomy asked about).

Cells are drawn where the model saw them: medmm resizes every image to a square input without
keeping its aspect ratio (`medmm.data.transforms.preprocess_image`), so cell (row, col) of a
g x g grid covers the same fraction of the original image's height and width.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from medmm.errors import BadInputError
from medmm.metrics.vqa import normalise_answer


def is_correct(record: dict[str, Any]) -> bool:
    """Exact match of prediction and reference after `normalise_answer` (the metrics' rule)."""
    return normalise_answer(str(record.get("prediction", ""))) == normalise_answer(str(record.get("reference", "")))


def _take(pool: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The first k of pool, one record per image first, then the rest in order."""
    out: list[dict[str, Any]] = []
    images: set[str] = set()
    for r in pool:
        key = str(r.get("image_path"))
        if len(out) < k and key not in images:
            out.append(r)
            images.add(key)
    taken = {id(r) for r in out}
    out += [r for r in pool if id(r) not in taken][: k - len(out)]
    return out


def pick_examples(records: list[dict[str, Any]], n: int = 8) -> list[dict[str, Any]]:
    """Up to n scored records, half right and half wrong when there are enough of each,
    different images first. Deterministic (record order), so a report rewritten from the same
    predictions shows the same examples."""
    scored = [r for r in records if r.get("reference") is not None and "prediction" in r]
    right = [r for r in scored if is_correct(r)]
    wrong = [r for r in scored if not is_correct(r)]
    n_wrong = min(len(wrong), n - min(len(right), n // 2))
    return _take(right, n - n_wrong) + _take(wrong, n_wrong)


def _cells(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The rationale's grid cells; entries of another shape (token indices of a non-square
    token set, a hand-made file) are left out rather than drawn wrongly."""
    rationale = record.get("rationale")
    regions = rationale.get("image_regions") if isinstance(rationale, dict) else None
    ok = []
    for c in regions if isinstance(regions, list) else []:
        if not isinstance(c, dict):
            continue
        grid, weight = c.get("grid"), c.get("weight", 0.0)
        if (isinstance(grid, list) and len(grid) == 2 and all(isinstance(x, int) and x > 0 for x in grid)
                and all(isinstance(c.get(k), int) for k in ("row", "col")) and isinstance(weight, (int, float))):
            ok.append(c)
    return ok


def _caption(record: dict[str, Any], width: int = 38) -> str:
    mark = "right" if is_correct(record) else "WRONG"
    qtype = record.get("question_type") or record.get("answer_type") or ""
    lines = textwrap.wrap(f"Q: {record.get('question', '')}", width)[:3]
    lines += textwrap.wrap(f"A: {record.get('prediction', '')} ({mark})", width)[:2]
    lines += textwrap.wrap(f"ref: {record.get('reference', '')}", width)[:2]
    if qtype:
        lines.append(f"[{qtype}{', ' + str(record['source']) if record.get('source') else ''}]")
    return "\n".join(lines)


def save_examples(records: list[dict[str, Any]], out_dir: str | Path, split: str, n: int = 8) -> list[str]:
    """Write `vqa_examples_<split>.png` (up to n answered questions, attended cells outlined)
    into out_dir; returns the file names (none when no record has a reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from medmm.data.io import read_image
    from medmm.data.transforms import to_channels, to_unit_range

    chosen = pick_examples(records, n)
    if not chosen:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = min(4, len(chosen))
    rows = (len(chosen) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 5.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, r in zip(axes.ravel(), chosen, strict=False):
        try:
            img = to_unit_range(to_channels(read_image(r["image_path"]), 1))
        except (BadInputError, KeyError, TypeError, ValueError):
            img = None
        if img is None:
            ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=8, transform=ax.transAxes)
        else:
            h, w = img.shape[:2]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            cells = _cells(r)
            top = max((float(c.get("weight", 0.0)) for c in cells), default=0.0) or 1.0
            for c in cells:
                g_rows, g_cols = c["grid"]
                ch, cw = h / g_rows, w / g_cols
                alpha = 0.35 + 0.65 * max(float(c.get("weight", 0.0)), 0.0) / top  # strongest cell most opaque
                ax.add_patch(Rectangle((c["col"] * cw, c["row"] * ch), cw, ch, fill=False, edgecolor="orange",
                                       linewidth=2, alpha=min(alpha, 1.0)))
        ax.set_title(_caption(r), fontsize=7, loc="left", color="black" if is_correct(r) else "darkred")
    fig.suptitle(f"{split}: example answers (orange: image cells the model attended to most)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    name = f"vqa_examples_{split}.png"
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
    return [name]
