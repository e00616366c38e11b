"""report.html + PNG plots for a run directory (matplotlib, no network, no JavaScript).

Plots are made from what the run wrote: loss/metric curves from logs/metrics.csv, and, when a
split's metrics contain them, a confusion matrix (``"confusion_matrix": [[...]]`` with
``"labels": [...]``) and per-class results (``"per_class": {label: {metric: value}}``).

Each split's scalar metrics are shown with their 95% interval when the task computed one
(``"ci": {metric: [low, high]}`` or ``{metric: {"low", "high"}}``, or ``"<name>_ci"`` beside a
dict ``<name>`` of metrics), so a reader never sees a point estimate without its uncertainty.
Breakdowns (``"by_<key>": {group: {metric: value}}``, e.g. accuracy by question type) are
shown as a table and a bar chart. A metrics file's ``protocol`` (which split chose the model, which
split is reported, oracle inputs) and ``floors`` (trivial baselines with model - floor, CI and
p-value) are shown above and below its metrics.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

from medmm.engine import rundir as rd
from medmm.engine.selection import SELECTION_PREFIX, is_selection_file, plain_names, selection_floors, selection_names

# A figure opens full size without JavaScript: the thumbnail links to a CSS :target light box
# (the PNG at its natural size, with its caption), and the caption links to the PNG itself.
LIGHTBOX_CSS = (
    ".lightbox{display:none;position:fixed;inset:0;z-index:10;background:rgba(0,0,0,.85);overflow:auto;padding:1.5em;text-align:center}"
    ".lightbox:target{display:block}.lightbox .lb-bg{position:fixed;inset:0}"
    ".lightbox figure{position:relative;display:inline-block;margin:0;background:#fff;padding:.6em;text-align:left}"
    ".lightbox figure img{max-width:none;width:auto;height:auto;display:block;border:0}"
    ".lightbox figcaption{max-width:none;font-size:.9em;color:#333}"
)


def figure_html(src: str, caption: str, key: str, *, caption_html: str | None = None, css_class: str = "") -> str:
    """A thumbnail that opens the PNG full size in a light box (no JavaScript), plus a link to the PNG.

    src: the PNG's URL relative to the page; caption: plain text (escaped; also the alt text);
    caption_html: an already-escaped caption to show instead; key: unique on the page (anchor id).
    """
    cap = caption_html if caption_html is not None else html.escape(caption)
    src_e, alt, anchor = html.escape(src), html.escape(caption), "fig-" + "".join(ch if ch.isalnum() else "-" for ch in key)
    return (
        f'<figure class="fig {css_class}"><a href="#{anchor}" title="open full size"><img src="{src_e}" alt="{alt}"></a>'
        f'<figcaption>{cap} <a href="{src_e}">[PNG]</a></figcaption></figure>'
        f'<div class="lightbox" id="{anchor}"><a class="lb-bg" href="#_" aria-label="close"></a>'
        f'<figure><img src="{src_e}" alt="{alt}"><figcaption>{cap} &middot; <a href="{src_e}">open the PNG</a>'
        f' &middot; <a href="#_">close</a></figcaption></figure></div>'
    )



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


def _plot_curves(series: dict[str, list[tuple[float, float]]], out: Path, val_is_selection: bool = False) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")

    if val_is_selection:  # validation chose the model: its curves are selection numbers, named so
        series = {(SELECTION_PREFIX + k if k.startswith("val/") else k): v for k, v in series.items()}
    made = []
    # train/loss is logged per step and per epoch (train/loss_step, train/loss_epoch).
    losses = {k: v for k, v in series.items() if k.removesuffix("_step").removesuffix("_epoch").endswith("loss")}
    if losses:
        made.append(_line_plot(losses, "loss", out / "loss.png", legend_size=8, dense_markers=False))
    # Headline validation metrics only: breakdowns ("val/by_question_type/ABN/n") have their own
    # charts, and counts (n, n_open) are not curves. Rates in [0, 1] and other scales (R@k in
    # percent, ranks) go on separate axes, so a count or a rank never flattens an accuracy.
    vals = {k: v for k, v in series.items() if k.removeprefix(SELECTION_PREFIX).startswith("val/") and k not in losses
            and "/by_" not in k and not _is_count_name(k)}
    rates = {k: v for k, v in vals.items() if all(0.0 <= y <= 1.0 for _, y in v)}
    other = {k: v for k, v in vals.items() if k not in rates}
    if rates:
        made.append(_line_plot(dict(sorted(rates.items())[:12]), "validation metric (rate)", out / "val_metrics.png", legend_size=7))
    if other:
        made.append(_line_plot(dict(sorted(other.items())[:12]), "validation metric", out / "val_metrics_other.png", legend_size=7))
    return made


_CURVE_CAPTIONS = {
    "loss.png": "training and validation loss per optimizer step",
    "val_metrics.png": "validation metrics in [0, 1] per optimizer step",
    "val_metrics_other.png": "validation metrics on other scales (percent, ranks) per optimizer step",
}
_SELECTION_CAPTION = " (selection_val: validation chose the model, so these are selection numbers, not results)"


def _val_is_selection(run_dir: Path) -> bool:
    """True when the run's metrics/val.json says validation chose the model (old runs: by its protocol)."""
    path = run_dir / "metrics" / "val.json"
    try:
        return path.exists() and is_selection_file(rd.read_json(path))
    except (OSError, ValueError):
        return False


def _total(cm: list[list[float]]) -> str:
    return f"{sum(sum(r) for r in cm):g}"


def _is_count_name(name: str) -> bool:
    last = name.rsplit("/", 1)[-1]
    return last == "n" or last.startswith("n_") or last.endswith("_n")


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


def _is_rate(value: Any) -> bool:
    """A float in [0, 1], NaN or missing (None): what a bar of a per-group rate chart can show."""
    return value is None or (isinstance(value, float) and (value != value or 0.0 <= value <= 1.0))


def _plot_per_class(per_class: dict[str, dict[str, float]], title: str, path: Path, max_metrics: int | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # A group's size, when given, goes into its label: a rate of 1.0 on two examples reads differently.
    labels = [f"{k} (n={v['n']})" if isinstance(v.get("n"), int) else str(k) for k, v in per_class.items()]
    # Rates only (every value a float in [0, 1]): counts such as n or tp would dwarf them.
    names = list(dict.fromkeys(m for v in per_class.values() for m in v))
    rates = [m for m in names if all(_is_rate(v.get(m)) for v in per_class.values()) and any(
        isinstance(v.get(m), float) for v in per_class.values())]
    # max_metrics: keep the first ones in the task's own order (its headline metrics come first).
    metrics = rates[:max_metrics] if max_metrics else sorted(rates)
    fig, ax = plt.subplots(figsize=(min(14, max(4, 0.6 * len(labels) * max(1, len(metrics)))), 3.5))
    width = 0.8 / max(1, len(metrics))
    for i, m in enumerate(metrics):
        ys = [float("nan") if v.get(m) is None else float(v[m]) for v in per_class.values()]
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


def _interval(value: Any) -> tuple[float, float] | None:
    """(low, high) from the two shapes tasks write a CI in: [low, high] or {"low", "high"}."""
    if isinstance(value, dict):
        value = [value.get("low"), value.get("high")]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(x, (int, float)) for x in value):
        return float(value[0]), float(value[1])
    return None


def _number(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "" if v is None else str(v)
    return "n/a" if v != v else f"{v:.4g}"


def _metrics_table(values: dict[str, Any], intervals: dict[str, Any]) -> str:
    """metric | value | 95% CI rows (the CI column only when some metric has one)."""
    cis = {k: _interval(intervals.get(k)) for k in values}
    with_ci = any(cis.values())
    head = "<tr><th>metric</th><th>value</th>" + ("<th>95% CI</th>" if with_ci else "") + "</tr>"
    rows = []
    for k, v in values.items():
        ci = cis[k]
        cell = f"<td>[{ci[0]:.4g}, {ci[1]:.4g}]</td>" if ci else "<td></td>"
        rows.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_number(v))}</td>{cell if with_ci else ''}</tr>")
    return "<table>" + head + "".join(rows) + "</table>"


def _breakdown_table(groups: dict[str, dict[str, Any]], max_rows: int = 60) -> str:
    """One row per group, one column per scalar metric of the groups."""
    cols = list(dict.fromkeys(m for v in groups.values() for m, x in v.items() if not isinstance(x, (dict, list))))
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>"
    rows = [
        f"<tr><th>{html.escape(str(g))}</th>" + "".join(f"<td>{html.escape(_number(v.get(c)))}</td>" for c in cols) + "</tr>"
        for g, v in list(groups.items())[:max_rows]
    ]
    more = f"<p>... {len(groups) - max_rows} more rows in the metrics JSON</p>" if len(groups) > max_rows else ""
    return "<table>" + head + "".join(rows) + "</table>" + more


def _split_section(metrics: dict[str, Any], split: str, plots: Path, shown: str | None = None) -> list[str]:
    """Tables (with CIs) and plots of one split's metrics; `shown`: the split's name on the page
    (``selection_val`` when it chose the model), `split` names the PNGs."""
    shown = shown or split
    parts = []
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list)) and not k.endswith("_ci")}
    parts.append(_metrics_table(scalars, metrics.get("ci") or {}))
    for name, value in metrics.items():
        if name in ("ci", "provenance") or name.endswith("_ci") or not isinstance(value, dict) or not value:
            continue
        base = name.removeprefix(SELECTION_PREFIX)  # the PNG's name is the same for old and new files
        if all(isinstance(v, dict) for v in value.values()):
            parts.append(f"<h3>{html.escape(name)}</h3>" + _breakdown_table(value))
            if base.startswith("by_"):
                png = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in f"{base}_{split}") + ".png"
                title = f"{shown}: {base.removeprefix('by_').replace('_', ' ')}"
                _plot_per_class(value, title, plots / png, max_metrics=4)
                parts.append(figure_html(f"plots/{png}", title, png))
        elif all(not isinstance(v, (dict, list)) for v in value.values()):
            parts.append(f"<h3>{html.escape(name)}</h3>" + _metrics_table(value, metrics.get(f"{name}_ci") or {}))
    return parts


def _floors_table(floors: dict[str, Any]) -> str:
    """One row per (floor, metric): the floor's value, model - floor with its 95% CI and p-value."""
    if not floors:
        return "<p>the task declares no floors</p>"
    if isinstance(floors.get("skipped") or floors.get("error"), str):
        return f"<p>floors not computed: {html.escape(str(floors.get('skipped') or floors.get('error')))}</p>"
    head = "<tr><th>floor</th><th>metric</th><th>floor value</th><th>model - floor</th><th>95% CI</th><th>p</th></tr>"
    rows = []
    for name, entry in floors.items():
        if not isinstance(entry, dict):
            continue
        if "skipped" in entry or "error" in entry:
            reason = entry.get("skipped") or entry.get("error")
            rows.append(f"<tr><th>{html.escape(name)}</th><td colspan='5'>not computed: {html.escape(str(reason))}</td></tr>")
            continue
        values = _flat(entry.get("metrics", {}))
        diffs = _flat(entry.get("model_minus_floor", {}), leaf="difference")
        for metric, value in values.items():
            d = diffs.get(metric, {})
            ci = _interval(d.get("ci"))
            rows.append(
                f"<tr><th>{html.escape(name)}</th><td>{html.escape(metric)}</td><td>{html.escape(_number(value))}</td>"
                f"<td>{html.escape(_number(d.get('difference')))}</td>"
                f"<td>{f'[{ci[0]:.4g}, {ci[1]:.4g}]' if ci else ''}</td><td>{html.escape(_number(d.get('p_value')))}</td></tr>"
            )
    return "<table>" + head + "".join(rows) + "</table>"


def _flat(d: dict[str, Any], leaf: str | None = None, prefix: str = "") -> dict[str, Any]:
    """Nested floor entries (retrieval nests by direction) flattened to "direction/metric"; with
    `leaf`, a dict holding that key is a leaf."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not (leaf and (leaf in v or "error" in v)):
            out.update(_flat(v, leaf, f"{key}/"))
        else:
            out[key] = v
    return out


def _protocol_table(protocol: dict[str, Any]) -> str:
    keep = ("reported_split", "selection_split", "reported_is_selection_split", "selected_on_selection_split",
            "oracle_inputs", "training", "selection_metrics_renamed")
    return _table({k: protocol[k] for k in keep if k in protocol})


def _task_figures(run_dir: Path, split: str, plots: Path) -> list[str]:
    """Figures a task draws from its own prediction records (the `Task.report_figures` hook,
    e.g. segmentation overlays). The engine knows no specific task: it asks the registry."""
    state_path, preds = run_dir / rd.TASK_STATE, run_dir / "predictions" / f"{split}.jsonl"
    if not state_path.exists() or not preds.exists():
        return []
    from medmm.engine.task import get_task_class
    from medmm.errors import MedmmError

    try:
        task_cls = get_task_class(rd.read_json(state_path)["task"])
    except (MedmmError, KeyError):  # a plugin task not imported here: no task figures, rest of the report stays
        return []
    records = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(task_cls.report_figures(records, plots, split)) if records else []


def write_report(run_dir: str | Path) -> Path:
    """Write run_dir/report.html and run_dir/plots/*.png from the run's files; returns the html path."""
    run_dir = Path(run_dir)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    parts = [f"<h1>medmm run: {html.escape(run_dir.name)}</h1>"]
    env = rd.read_json(run_dir / rd.ENVIRONMENT) if (run_dir / rd.ENVIRONMENT).exists() else {}
    cfg_text = (run_dir / rd.CONFIG).read_text(encoding="utf-8") if (run_dir / rd.CONFIG).exists() else ""

    val_is_selection = _val_is_selection(run_dir)
    images = _plot_curves(_read_csv_log(run_dir / "logs" / "metrics.csv"), plots, val_is_selection)
    for name in images:
        parts.append(figure_html(f"plots/{name}", _CURVE_CAPTIONS.get(name, name) + (_SELECTION_CAPTION if val_is_selection else ""), name))

    for mpath in sorted((run_dir / "metrics").glob("*.json")):
        data = rd.read_json(mpath)
        split = mpath.stem
        metrics = data.get("metrics", {})
        selection = is_selection_file(data)
        # A split that chose the model is shown as selection_<split>, in its heading and figure titles
        # too (also for files written before their keys were prefixed).
        shown = SELECTION_PREFIX + split if selection else split
        if selection:  # a file written before the rule shows its numbers under selection_ names too
            metrics = selection_names(metrics)
            data = {**data, "floors": selection_floors(data["floors"])} if isinstance(data.get("floors"), dict) else data
        n = data.get("provenance", {}).get("n_samples")
        parts.append(f"<h2>{html.escape(shown)}" + (f" (n = {n})" if n is not None else "")
                     + (": the split that chose the model; selection numbers, not results" if selection else "") + "</h2>")
        if "protocol" in data:
            if selection:
                parts.append("<p><b>This split chose the model (selection split): its numbers are not results.</b></p>")
            parts.append("<h3>protocol</h3>" + _protocol_table(data["protocol"]))
        parts.extend(_split_section(metrics, split, plots, shown))
        if "floors" in data:
            parts.append(f"<h3>floors (trivial baselines on the same samples, paired){' on ' + html.escape(shown) if selection else ''}</h3>"
                         + _floors_table(data["floors"]))
        plain = plain_names(metrics)  # figures read by the task's own key names, old and new files alike
        cm, labels = plain.get("confusion_matrix"), plain.get("labels")
        if isinstance(cm, list) and cm and isinstance(cm[0], list):
            labels = labels if isinstance(labels, list) and len(labels) == len(cm) else [str(i) for i in range(len(cm))]
            name = f"confusion_{split}.png"
            _plot_confusion(cm, [str(x) for x in labels], f"{shown}: confusion matrix", plots / name)
            parts.append(figure_html(f"plots/{name}", f"{shown}: confusion matrix (n = {_total(cm)})", name))
        per_class = plain.get("per_class")
        if isinstance(per_class, dict) and per_class and all(isinstance(v, dict) for v in per_class.values()):
            name = f"per_class_{split}.png"
            _plot_per_class(per_class, f"{shown}: per class", plots / name)
            parts.append(figure_html(f"plots/{name}", f"{shown}: per class", name))
        for name in _task_figures(run_dir, split, plots):
            parts.append(figure_html(f"plots/{name}", f"{shown}: {Path(name).stem.replace('_', ' ')}", name))
        parts.append("<h3>provenance</h3>" + _table(data.get("provenance", {})))

    parts.append("<h2>environment</h2>" + _table(env))
    parts.append(f"<h2>config</h2><pre>{html.escape(cfg_text)}</pre>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "figure.fig{margin:1em 0}figure.fig img{max-width:100%;display:block}figcaption{font-size:.85em;color:#555}"
        + LIGHTBOX_CSS
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
