"""report.html + PNG plots for a run directory (matplotlib, no network, no JavaScript).

Plots are made from what the run wrote: loss/metric curves from logs/metrics.csv, and, when a
split's metrics contain them, a confusion matrix (``"confusion_matrix": [[...]]`` with
``"labels": [...]``) and per-class results (``"per_class": {label: {metric: value}}``).
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

from medmm.engine import rundir as rd


def _read_csv_log(path: Path) -> dict[str, list[tuple[float, float]]]:
    """metric name -> [(step, value)] from Lightning's CSV log."""
    series: dict[str, list[tuple[float, float]]] = {}
    if not path.exists():
        return series
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = row.get("step")
            if step in (None, ""):
                continue
            for k, v in row.items():
                if k in ("step", "epoch") or v in (None, ""):
                    continue
                try:
                    val = float(v)
                except ValueError:
                    continue
                if math.isfinite(val):
                    series.setdefault(k, []).append((float(step), val))
    return series


def _plot_curves(series: dict[str, list[tuple[float, float]]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")

    made = []
    # train/loss is logged per step and per epoch (train/loss_step, train/loss_epoch).
    losses = {k: v for k, v in series.items() if k.removesuffix("_step").removesuffix("_epoch").endswith("loss")}
    if losses:
        made.append(_line_plot(losses, "loss", out / "loss.png", legend_size=8, dense_markers=False))
    vals = {k: v for k, v in series.items() if k.startswith("val/") and k not in losses}
    if vals:
        made.append(_line_plot(dict(sorted(vals.items())[:12]), "validation metric", out / "val_metrics.png", legend_size=7))
    return made


def _plot_confusion(cm: list[list[float]], labels: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cm)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * n, 1.0 + 0.5 * n))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize=9)
    top = max((max(r) for r in cm), default=0) or 1
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i][j]:g}", ha="center", va="center", fontsize=7, color="white" if cm[i][j] > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_per_class(per_class: dict[str, dict[str, float]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(per_class)
    # Rates only (every value a float in [0, 1]): counts such as n or tp would dwarf them.
    names = {m for v in per_class.values() for m in v}
    metrics = sorted(
        m
        for m in names
        if all(
            isinstance(v.get(m), float) and (v[m] != v[m] or 0.0 <= v[m] <= 1.0)
            for v in per_class.values()
            if m in v
        )
    )
    fig, ax = plt.subplots(figsize=(min(14, max(4, 0.6 * len(labels) * max(1, len(metrics)))), 3.5))
    width = 0.8 / max(1, len(metrics))
    for i, m in enumerate(metrics):
        ys = [float(per_class[lab].get(m, float("nan"))) for lab in labels]
        ax.bar([x + i * width for x in range(len(labels))], ys, width=width, label=m)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, rotation=45, ha="right", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _table(d: dict[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, (dict, list)):
            v = json.dumps(v, default=str)
            if len(v) > 300:
                v = v[:300] + " ..."
        rows.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _task_figures(run_dir: Path, split: str, plots: Path) -> list[str]:
    """Figures a task draws from its own prediction records (hook: an optional classmethod
    `report_figures(records, plots_dir, split) -> [file names]` on the Task class, e.g.
    segmentation overlays). The engine still knows no specific task: it asks the registry."""
    state_path, preds = run_dir / rd.TASK_STATE, run_dir / "predictions" / f"{split}.jsonl"
    if not state_path.exists() or not preds.exists():
        return []
    from medmm.engine.task import get_task_class
    from medmm.errors import MedmmError

    try:
        task_cls = get_task_class(rd.read_json(state_path)["task"])
    except (MedmmError, KeyError):  # a plugin task not imported here: no task figures, rest of the report stays
        return []
    draw = getattr(task_cls, "report_figures", None)
    if draw is None:
        return []
    records = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(draw(records, plots, split)) if records else []


def write_report(run_dir: str | Path) -> Path:
    """Write run_dir/report.html and run_dir/plots/*.png from the run's files; returns the html path."""
    run_dir = Path(run_dir)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    parts = [f"<h1>medmm run: {html.escape(run_dir.name)}</h1>"]
    env = rd.read_json(run_dir / rd.ENVIRONMENT) if (run_dir / rd.ENVIRONMENT).exists() else {}
    cfg_text = (run_dir / rd.CONFIG).read_text(encoding="utf-8") if (run_dir / rd.CONFIG).exists() else ""

    images = _plot_curves(_read_csv_log(run_dir / "logs" / "metrics.csv"), plots)
    for name in images:
        parts.append(f'<img src="plots/{name}" alt="{name}">')

    for mpath in sorted((run_dir / "metrics").glob("*.json")):
        data = rd.read_json(mpath)
        split = mpath.stem
        metrics = data.get("metrics", {})
        parts.append(f"<h2>{html.escape(split)}</h2>")
        scalars = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
        parts.append(_table(scalars))
        cm, labels = metrics.get("confusion_matrix"), metrics.get("labels")
        if isinstance(cm, list) and cm and isinstance(cm[0], list):
            labels = labels if isinstance(labels, list) and len(labels) == len(cm) else [str(i) for i in range(len(cm))]
            name = f"confusion_{split}.png"
            _plot_confusion(cm, [str(x) for x in labels], f"{split}: confusion matrix", plots / name)
            parts.append(f'<img src="plots/{name}" alt="{name}">')
        per_class = metrics.get("per_class")
        if isinstance(per_class, dict) and per_class and all(isinstance(v, dict) for v in per_class.values()):
            name = f"per_class_{split}.png"
            _plot_per_class(per_class, f"{split}: per class", plots / name)
            parts.append(f'<img src="plots/{name}" alt="{name}">')
        for name in _task_figures(run_dir, split, plots):
            parts.append(f'<img src="plots/{html.escape(name)}" alt="{html.escape(name)}">')
        parts.append("<h3>provenance</h3>" + _table(data.get("provenance", {})))

    parts.append("<h2>environment</h2>" + _table(env))
    parts.append(f"<h2>config</h2><pre>{html.escape(cfg_text)}</pre>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "img{max-width:100%;display:block;margin:1em 0}"
    )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>medmm run {html.escape(run_dir.name)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _line_plot(series: dict, ylabel: str, path: Path, *, legend_size: int, dense_markers: bool = True) -> str:
    """One PNG of step-indexed series (name -> [(step, value), ...]); returns its file name."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, pts in sorted(series.items()):
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="." if dense_markers or len(pts) < 30 else None, label=k)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name
