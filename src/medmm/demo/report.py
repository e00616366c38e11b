"""The demo's one-page HTML report.

Every number on the page is read back from the files the runs wrote (metrics/<split>.json,
the ablation table, the data-check JSON), never from variables kept in memory, so the page
says exactly what the run directories hold. Images are linked relative to the page.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from medmm.engine.report import LIGHTBOX_CSS, figure_html
from medmm.engine.selection import is_selection_file, plain_names
from medmm.errors import MedmmError

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}caption{text-align:left;font-size:.9em;color:#555;padding:.2em 0;white-space:nowrap}
.note{color:#555;font-size:.92em}.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.4em .8em}
figure.fig{display:inline-block;margin:.5em;vertical-align:top}figure.fig img{max-width:480px;border:1px solid #ddd;cursor:zoom-in}
figure.fig.wide{display:block}figure.fig.wide img{max-width:100%}
figcaption{font-size:.85em;color:#555;max-width:480px}figure.wide figcaption{max-width:none}code{background:#f4f4f4;padding:.1em .3em}
""" + LIGHTBOX_CSS


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, (int, float)):
        return f"{x:.{nd}f}" if isinstance(x, float) else str(x)
    return _esc(x)


def _ci(ci: Any, nd: int = 3) -> str:
    if not ci or len(ci) != 2:
        return ""
    return f" [{_num(ci[0], nd)}, {_num(ci[1], nd)}]"


def _table(header: list[str], rows: list[list[str]], caption: str) -> str:
    """An HTML table; `caption` says what it counts (its n), shown above it."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{caption}</caption><tr>{head}</tr>{body}</table>"


def read_metrics(run_dir: Path, split: str, whole: bool = False) -> dict[str, Any]:
    """metrics/<split>.json of an engine run (the "metrics" part; `whole`: the whole file)."""
    path = run_dir / "metrics" / f"{split}.json"
    if not path.exists():
        raise MedmmError(f"{path}: missing; the run did not score its {split} split")
    doc = json.loads(path.read_text())
    return doc if whole else doc["metrics"]


def _float(x: Any) -> float | None:
    try:
        return float(x) if x not in (None, "") else None
    except ValueError:
        return None


def _rel(path: Path, base: Path) -> str:
    return path.resolve().relative_to(base.resolve()).as_posix()


def _figures(items: list[tuple[Path, str]], base: Path, wide: bool = False) -> str:
    """(PNG, caption) pairs as thumbnails that open full size (light box) and link to the PNG."""
    return "".join(
        figure_html(_rel(p, base), caption, _rel(p, base), css_class="wide" if wide else "") for p, caption in items if p.is_file()
    )


def _data_section(out: Path) -> str:
    official = json.loads((out / "data" / "check_official.json").read_text())
    grouped = json.loads((out / "data" / "check_grouped_by_image.json").read_text())
    counts = official["counts"]
    rows = [[_esc(split), _num(n)] for split, n in counts.items()]
    parts = [_table(["official split", "questions"], rows, f"n = {sum(counts.values())} questions in the bundled sample")]
    if not counts.get("test"):
        parts.append(
            '<p class="warn">This CC0 sample holds only VQA-RAD\'s official <b>training</b> questions, so the '
            "official train/test image overlap cannot be shown on it. On the full release the official split is by "
            "question and 202 of its 203 test images also occur in train: `medmm data check vqa_rad ROOT` reports "
            "it on any root that holds the test questions. The demo therefore trains and scores on a split "
            "<b>grouped by image</b>:</p>"
        )
    leak = grouped["leakage"]
    parts.append(
        _table(
            ["image-grouped split", "questions"], [[_esc(s), _num(n)] for s, n in grouped["counts"].items()],
            f"n = {sum(grouped['counts'].values())} questions, split 80/20 by image (seed 0), as the VQA run splits them",
        )
    )
    parts.append(f"<p>Leakage check of that split (image ids and identical image files across splits): <b>{_esc(_leak_text(leak))}</b></p>")
    label_rows = []
    for target, info in official.get("labels", {}).items():
        label_rows.append([_esc(target), _num(info.get("n_classes", len(info.get("counts", {})))), _num(info.get("imbalance_ratio"), 2)])
    if label_rows:
        parts.append(_table(["target", "classes", "imbalance (max/min)"], label_rows, f"labels of the n = {sum(counts.values())} questions"))
    return "".join(parts)


def _leak_text(leak: dict[str, Any]) -> str:
    if not leak.get("has_leakage"):
        return (f"no leakage: no {leak.get('group_by')} id and none of {leak.get('n_images_hashed')} hashed images "
                "is in more than one split")
    return (f"LEAKAGE: {len(leak.get('shared_groups') or {})} {leak.get('group_by')} id(s) and "
            f"{len(leak.get('shared_images') or {})} identical image(s) in more than one split")


def _vqa_section(out: Path) -> str:
    run = out / "runs" / "vqa"
    # The VQA run has no test part: its validation part chose the epoch, so its numbers are shown as
    # selection_val (docs/metrics.md), read by their plain names from old and new files alike.
    selection = is_selection_file(read_metrics(run, "val", whole=True))
    shown = "selection_val" if selection else "val"
    m = plain_names(read_metrics(run, "val"))
    ci = m.get("ci", {})
    rows = [
        [f"{shown} {name}", _num(m.get(key)) + _ci(ci.get(key))]
        for name, key in (
            ("overall accuracy", "overall_accuracy"),
            ("closed accuracy", "closed_accuracy"),
            ("open exact match", "open_exact_match"),
            ("open token F1", "open_token_f1"),
        )
        if key in m
    ]
    # The answers themselves (with the cells the model attended to) first, then accuracy by
    # question type, then the loss curve; the rest is in the full run report.
    n = m.get("n", m.get("n_samples", "?"))
    plots = [
        (run / "plots" / "vqa_examples_val.png", f"answers to held-out questions ({shown}), with the image cells the model attended to"),
        (run / "plots" / "by_question_type_val.png", f"{shown} accuracy by question type (n = {n}; each type's n under its bars)"),
        (run / "plots" / "loss.png", "training and validation loss per optimizer step"),
    ]
    chose = "; the epoch was chosen on it, so these are selection numbers, not results" if selection else ""
    return (
        f"<p>Image + question &rarr; answer; held-out questions of unseen images (n = {_num(n)}).</p>"
        + _table(["metric (95% bootstrap CI over images)", "value"], rows,
                 f"{shown} part: n = {_num(n)} questions on images the model never saw in training{chose}")
        + f'<p><a href="{_rel(run / "report.html", out)}">full run report</a></p>'
        + _figures(plots[:2], out, wide=True)
        + _figures(plots[2:], out)
    )


def _retrieval_section(out: Path) -> str:
    run = out / "runs" / "retrieval"
    m = read_metrics(run, "test")
    rows = []
    for direction in ("image_to_text", "text_to_image"):
        vals, ci, rnd = m.get(direction, {}), m.get(f"{direction}_ci", {}), m.get(f"{direction}_random", {})
        for key, v in vals.items():
            rows.append([_esc(direction.replace("_", " ")), _esc(key), _num(v, 2) + _ci(ci.get(key), 2), _num(rnd.get(key), 2)])
    return (
        "<p>Dual encoder (contrastive), test images unseen in training; every question/answer text of an image is a positive.</p>"
        + _table(["direction", "metric", "model [95% CI]", "random ranking"], rows,
                 f"test part: n = {_num(m.get('n_images', '?'))} images and {_num(m.get('n_texts', '?'))} texts "
                 "(question + answer) of images unseen in training")
        + f'<p><a href="{_rel(run / "report.html", out)}">full run report</a></p>'
    )


def _ablation_section(out: Path) -> str:
    abl = out / "ablation"
    data = json.loads((abl / "ablation.json").read_text())
    import csv

    with (abl / "table.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = {"auroc_macro_ovr": "AUROC (macro)", "f1_macro": "F1 (macro)", "balanced_accuracy": "balanced acc."}
    cols = [(m, labels.get(m, m.replace("_", " "))) for m in data["metrics"]]
    body = []
    for r in rows:
        cells = [f"<b>{_esc(r['fusion'])}</b>" if r["fusion"] == data.get("baseline") else _esc(r["fusion"])]
        for key, _ in cols:
            cells.append(_num(_float(r.get(key))) + _ci([_float(r.get(f"{key}_low")), _float(r.get(f"{key}_high"))]))
        diff = _float(r.get("difference"))
        cells.append("baseline" if r["fusion"] == data.get("baseline") else
                     _num(diff) + _ci([_float(r.get("difference_low")), _float(r.get("difference_high"))]))
        cells.append(_num(_float(r.get("p_bootstrap"))))
        body.append(cells)
    header = ["fusion", *[c[1] + " [95% CI]" for c in cols], f"difference vs baseline ({cols[0][1]})", "p (paired bootstrap)"]
    png = abl / "ablation.png"
    return (
        "<p>Image + question &rarr; organ (HEAD / CHEST / ABD), label words masked from the question; every variant "
        "trained with the same data, budget and seed, scored on the same test split; CIs are bootstrap over images, "
        f"p-values paired tests against the best unimodal baseline (<b>{_esc(data.get('baseline'))}</b>).</p>"
        + _split_table(abl)
        + _table(header, body, f"test part: n = {_esc(rows[0]['n_test'] if rows else '?')} questions; one seed per variant")
        + f'<p class="note">full table: <a href="{_rel(abl / "table.md", out)}">table.md</a></p>'
        + _figures([(png, "AUROC and macro-F1 of each variant with 95% CIs; p-values (paired bootstrap) vs the baseline (red) under the names")], out, wide=True)
    )


def _split_table(abl: Path) -> str:
    """The organ classifier's data: how many questions each part of its split holds."""
    rows = []
    for run in sorted((abl / "runs").iterdir()):
        for part in ("train", "val", "test"):
            path = run / "metrics" / f"{part}.json"
            if path.is_file():
                prov = json.loads(path.read_text()).get("provenance", {})
                rows.append([_esc(part), _num(prov.get("n_samples"))])
        if rows:
            total = sum(int(r[1]) for r in rows if r[1].isdigit())
            return _table(["part", "questions"], rows,
                          f"its split: n = {total} questions grouped by image (60/15/25, seed 0), the same for every variant")
    return ""


def _explain_section(out: Path) -> str:
    """One labelled panel per explained sample (id, question, prediction, reference in the image)."""
    parts = []
    for sub in sorted((out / "explanations").iterdir()):
        summary_path = sub / "explanations.json"
        if not sub.is_dir() or not summary_path.is_file():
            continue
        summary = json.loads(summary_path.read_text())
        page = sub / "index.html"
        link = f' (<a href="{_rel(page, out)}">details: token attributions, modality contributions, faithfulness</a>)' if page.exists() else ""
        items = []
        for rec in summary["samples"]:
            if rec.get("panel_png"):
                ref = "" if rec.get("reference") is None else f"; reference {rec['reference']}"
                items.append((sub / rec["panel_png"], f"sample {rec['id']}: predicted {rec['explained_class']}{ref}"))
        parts.append(f"<h3>{_esc(sub.name.replace('_', ' '))}: {len(items)} validation samples{link}</h3>" + _figures(items, out, wide=True))
    return "".join(parts)


def _humaneval_section(part: dict[str, Any]) -> str:
    return (
        f"<p>A blinded rating study of {part['n_items']} VQA predictions was created in "
        f"<code>{_esc(part['db'])}</code> (model identity never reaches the browser). Serve it with:</p>"
        f"<pre>{_esc(part['serve'])}</pre><p>and log in as <code>rater1</code> (password in humaneval/SERVE.txt).</p>"
    )


def write_report(result: Any) -> Path:
    """Write `result.report` (index.html) from the files under `result.out_dir`."""
    out = Path(result.out_dir)
    timings = "".join(f"<tr><td>{_esc(k)}</td><td>{v:.0f} s</td></tr>" for k, v in result.timings.items())
    sections = [
        ("1. Data", _data_section(out)),
        ("2. Visual question answering", _vqa_section(out)),
        ("3. Image-text retrieval", _retrieval_section(out)),
        ("4. Does fusing image and text help? (organ classifier)", _ablation_section(out)),
        ("5. Explanations", _explain_section(out)),
        ("6. Human evaluation", _humaneval_section(result.parts["humaneval"])),
    ]
    body = "".join(f'<h2 id="s{i}">{_esc(t)}</h2>{s}' for i, (t, s) in enumerate(sections, 1))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>medmm demo report</title><style>{CSS}</style></head><body>"
        "<h1>medmm demo</h1><p class='note'>Bundled CC0 VQA-RAD sample (102 images, 602 questions); "
        "everything trained on this machine's CPU by this run. Numbers are read from the run directories.</p>"
        f"{body}<h2>Time</h2><table><caption>wall time of each step of this run, on this machine</caption>{timings}</table></body></html>"
    )
    result.report.write_text(page, encoding="utf-8")
    return result.report
