"""Fusion ablation: train every fusion variant with the same data, budget and seeds, score them
on the same test split, and compare each with the best unimodal baseline.

    from medmm.ablation import run_ablation
    table = run_ablation("configs/diagnosis/covid_cxr.yaml", ["image_only", "text_only", "late"],
                         seeds=3, out_dir="runs/ablation", overrides=["trainer.max_epochs=5"])
    print(table.markdown)

What is compared (and why):
* Every variant is the same config with only ``model.fusion`` (and ``seed``) overridden; the
  data split is pinned with ``data.split_seed`` so all seeds share one test set.
* Per variant, the test probabilities of its seeds are averaged per sample (a seed ensemble):
  the bootstrap CIs and paired tests are over test samples, resampled by patient group.
  The per-seed mean +- sd of the primary metric is reported beside it.
* The baseline is the unimodal variant (image_only / text_only) with the best VALIDATION
  primary metric, so the test split is not used to choose it.
* Paired tests (`medmm.metrics.stats.paired_test`): paired bootstrap and approximate
  randomisation p-values of the difference variant - baseline on the same test samples.

Outputs in out_dir: runs/<fusion>_s<seed>/ (engine run dirs), table.md, table.csv, ablation.png,
ablation.json (everything, incl. per-seed metrics), command.txt.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import MedmmError

log = logging.getLogger("medmm.ablation")



def unimodal_fusions() -> list[str]:
    """The registered fusions that use one modality (the ablation's baselines), image first."""
    from medmm.models.fusion import fusion_info, list_fusions

    return sorted((f for f in list_fusions() if fusion_info(f).unimodal), key=lambda f: not fusion_info(f).uses_image)


def default_fusions() -> list[str]:
    """Every registered fusion: the unimodal baselines first, then the others by name."""
    from medmm.models.fusion import list_fusions

    uni = unimodal_fusions()
    return uni + [f for f in list_fusions() if f not in uni]

METRICS = ("auroc_macro", "f1_macro", "balanced_accuracy", "accuracy")


@dataclass
class AblationTable:
    """Result of `run_ablation`: one row per fusion variant, plus where the files are."""

    rows: list[dict[str, Any]]
    baseline: str
    primary: str
    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)
    markdown: str = ""

    def row(self, fusion: str) -> dict[str, Any]:
        """The row of one variant."""
        for r in self.rows:
            if r["fusion"] == fusion:
                return r
        raise KeyError(fusion)


# ----------------------------------------------------------------------------- metrics
def metric_value(name: str, y: np.ndarray, probs: np.ndarray) -> float:
    """One primary metric of (integer labels, probabilities); decisions are the arg-max."""
    if name not in METRICS:
        raise MedmmError(f"unknown ablation metric {name!r}; use one of {', '.join(METRICS)}")
    return all_metrics(y, probs)[name]


def all_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Every metric of METRICS: the diagnosis task's headline metrics (the same numbers its
    evaluate reports) with arg-max decisions."""
    from medmm.tasks.diagnosis.metrics import diagnosis_headline

    head = diagnosis_headline(y, probs, probs.argmax(axis=1))
    return {"auroc_macro": head["auroc_macro_ovr"], **{m: head[m] for m in METRICS if m != "auroc_macro"}}


def records_arrays(records: list[dict[str, Any]], classes: list[str] | None = None):
    """(ids, groups, y (N,), probs (N, C), classes) of labelled multi-class diagnosis records."""
    labelled = [r for r in records if r.get("reference") is not None]
    if not labelled:
        raise MedmmError("no labelled records to score")
    classes = classes or list(labelled[0]["prediction"]["probs"])
    idx = {k: i for i, k in enumerate(classes)}
    ids = [r["id"] for r in labelled]
    groups = [r.get("group", r["id"]) for r in labelled]
    y = np.array([idx[r["reference"]] for r in labelled])
    p = np.array([[r["prediction"]["probs"][k] for k in classes] for r in labelled], dtype=float)
    return ids, groups, y, p, classes


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------- runner
def _train_variant(cfg_path: str | Path, overrides: list[str], run_dir: Path) -> None:
    from medmm.engine import load_config
    from medmm.engine.api import train

    done = (run_dir / "predictions" / "test.jsonl").exists() and (run_dir / "metrics" / "test.json").exists()
    if done:
        log.info("ablation: %s already trained, reusing it", run_dir)
        return
    cfg = load_config(cfg_path, overrides, validate_model=True)
    if cfg.data.test_split is None or cfg.data.val_split is None:
        raise MedmmError(f"{cfg_path}: an ablation needs a validation and a test split")
    train(cfg, run_dir)


def run_ablation(
    cfg_path: str | Path,
    fusions: Sequence[str] | None = None,
    seeds: int | Sequence[int] = 1,
    out_dir: str | Path = "runs/ablation",
    overrides: Sequence[str] | None = None,
    *,
    primary: str = "auroc_macro",
    n_resamples: int = 1000,
    plot: bool = True,
) -> AblationTable:
    """Train each fusion variant x seed through the engine, then tabulate, test and plot.

    Args:
        cfg_path: a diagnosis run config (multi-class, with val and test splits).
        fusions: fusion names (model.fusion values); must include image_only or text_only.
            None: every registered fusion (`default_fusions()`).
        seeds: number of seeds (0..n-1) or the seed list; the data split stays fixed
            (data.split_seed = the config's seed unless an override sets it).
        out_dir: where run dirs and table.md/table.csv/ablation.png go.
        overrides: dotted overrides applied to every variant (e.g. trainer.max_epochs=3).
        primary: metric for choosing the baseline and for the paired tests
            (auroc_macro | f1_macro | balanced_accuracy | accuracy).
        n_resamples: bootstrap / randomisation resamples.
    Returns:
        AblationTable (rows, baseline, file paths, markdown).
    """
    from medmm.engine import load_config

    fusions = list(dict.fromkeys(default_fusions() if fusions is None else fusions))
    if not any(f in unimodal_fusions() for f in fusions):
        raise MedmmError("an ablation needs a unimodal baseline: include image_only and/or text_only")
    if primary not in METRICS:
        raise MedmmError(f"unknown primary metric {primary!r}; use one of {', '.join(METRICS)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise MedmmError("seeds: need at least one")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    base = load_config(cfg_path, overrides)
    if base.task != "diagnosis":
        raise MedmmError(f"{cfg_path}: the ablation runner compares diagnosis fusions, not task {base.task!r}")
    pin = [] if any(o.startswith("data.split_seed=") for o in overrides) else [f"data.split_seed={base.seed}"]

    per: dict[str, dict[str, Any]] = {}
    for fusion in fusions:
        val_probs, test_probs, seed_metrics = [], [], []
        ref = None
        for seed in seed_list:
            run_dir = out / "runs" / f"{fusion}_s{seed}"
            _train_variant(cfg_path, overrides + pin + [f"model.fusion={fusion}", f"seed={seed}"], run_dir)
            test = _read_jsonl(run_dir / "predictions" / "test.jsonl")
            val = _read_jsonl(run_dir / "predictions" / "val.jsonl")
            ids, groups, y, p, classes = records_arrays(test)
            vids, _, vy, vp, _ = records_arrays(val, classes)
            if ref is None:
                ref = (ids, groups, y, classes, vids, vy)
            elif ids != ref[0] or vids != ref[4]:
                raise MedmmError(f"{run_dir}: test/val samples differ between seeds; the split must be fixed")
            test_probs.append(p)
            val_probs.append(vp)
            seed_metrics.append(all_metrics(y, p))
        per[fusion] = {
            "ids": ref[0], "groups": ref[1], "y": ref[2], "classes": ref[3], "vy": ref[5],
            "probs": np.mean(test_probs, axis=0), "val_probs": np.mean(val_probs, axis=0), "seed_metrics": seed_metrics,
        }
    first = per[fusions[0]]
    for f in fusions[1:]:
        if per[f]["ids"] != first["ids"] or per[f]["classes"] != first["classes"]:
            raise MedmmError(f"variant {f} was scored on other test samples or classes than {fusions[0]}")

    table = _tabulate(per, fusions, seed_list, primary, n_resamples)
    table.out_dir = out
    _write(table, out, cfg_path, fusions, seed_list, overrides, plot, per)
    return table


def _tabulate(per: dict[str, dict[str, Any]], fusions: list[str], seeds: list[int], primary: str, n_resamples: int) -> AblationTable:
    from medmm.metrics.stats import bootstrap_ci, paired_test

    uni = [f for f in fusions if f in unimodal_fusions()]
    val_scores = {f: metric_value(primary, per[f]["vy"], per[f]["val_probs"]) for f in uni}
    baseline = max(uni, key=lambda f: (val_scores[f] if math.isfinite(val_scores[f]) else -1.0))
    y = per[baseline]["y"]
    groups = per[baseline]["groups"]
    rows = []
    for f in fusions:
        probs = per[f]["probs"]
        ci = bootstrap_ci(lambda p, yy: all_metrics(yy, p), probs, y, n_resamples=n_resamples, groups=groups)
        row: dict[str, Any] = {"fusion": f, "n_test": int(len(y)), "n_seeds": len(seeds),
                               "val_" + primary: metric_value(primary, per[f]["vy"], per[f]["val_probs"])}
        for m in METRICS:
            row[m] = ci["estimate"][m]
            row[f"{m}_low"], row[f"{m}_high"] = ci["low"][m], ci["high"][m]
        sm = np.array([s[primary] for s in per[f]["seed_metrics"]], dtype=float)
        row[f"{primary}_seed_mean"] = float(np.nanmean(sm))
        row[f"{primary}_seed_sd"] = float(np.nanstd(sm, ddof=1)) if len(sm) > 1 else None
        if f == baseline:
            row.update(difference=0.0, difference_low=None, difference_high=None, p_bootstrap=None, p_randomisation=None)
        else:
            t = paired_test(lambda p, yy: metric_value(primary, yy, p), probs, per[baseline]["probs"], y,
                            n_resamples=n_resamples, groups=groups)
            row.update(difference=t["difference"], difference_low=t["difference_low"], difference_high=t["difference_high"],
                       p_bootstrap=t["p_bootstrap"], p_randomisation=t["p_randomisation"])
        rows.append(row)
    method = (f"test probabilities averaged over {len(seeds)} seed(s) per variant; 95% percentile bootstrap CIs, "
              f"{n_resamples} resamples of patient groups; paired bootstrap + approximate randomisation vs {baseline} "
              f"(best unimodal by validation {primary})")
    table = AblationTable(rows=rows, baseline=baseline, primary=primary, out_dir=Path("."))
    table.markdown = _markdown(table, method, per[baseline]["classes"])
    return table


def _fmt(v: Any, nd: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _markdown(t: AblationTable, method: str, classes: list[str]) -> str:
    p = t.primary
    lines = [
        (f"| fusion | {p} [95% CI] | macro-F1 [95% CI] | balanced acc. [95% CI] | accuracy | {p} seed mean (sd) "
         f"| Δ{p} vs {t.baseline} [95% CI] | p (bootstrap) | p (randomisation) | val {p} |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t.rows:
        name = f"**{r['fusion']}** (baseline)" if r["fusion"] == t.baseline else r["fusion"]
        sd = r[f"{p}_seed_sd"]
        lines.append(
            f"| {name} | {_fmt(r[p])} [{_fmt(r[p + '_low'])}, {_fmt(r[p + '_high'])}] "
            f"| {_fmt(r['f1_macro'])} [{_fmt(r['f1_macro_low'])}, {_fmt(r['f1_macro_high'])}] "
            f"| {_fmt(r['balanced_accuracy'])} [{_fmt(r['balanced_accuracy_low'])}, {_fmt(r['balanced_accuracy_high'])}] "
            f"| {_fmt(r['accuracy'])} | {_fmt(r[p + '_seed_mean'])} ({_fmt(sd)}) "
            f"| {_fmt(r['difference'], 3) if r['fusion'] != t.baseline else '-'} "
            f"[{_fmt(r['difference_low'])}, {_fmt(r['difference_high'])}] "
            f"| {_fmt(r['p_bootstrap'])} | {_fmt(r['p_randomisation'])} | {_fmt(r['val_' + p])} |"
        )
    n = t.rows[0]["n_test"]
    lines += ["", f"n_test = {n} labelled test samples; classes: {', '.join(classes)}.", "", f"Method: {method}."]
    return "\n".join(lines) + "\n"


def _write(table: AblationTable, out: Path, cfg_path: str | Path, fusions: list[str], seeds: list[int],
           overrides: list[str], plot: bool, per: dict[str, dict[str, Any]]) -> None:
    md = out / "table.md"
    md.write_text(table.markdown, encoding="utf-8")
    csv_path = out / "table.csv"
    keys = list(table.rows[0])
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in table.rows:
            w.writerow(r)
    cmd = ("medmm ablate " + shlex.quote(str(cfg_path)) + " " + " ".join(shlex.quote(o) for o in overrides)
           + f" --fusion {','.join(fusions)} --seeds {len(seeds)} --metric {table.primary} --out {shlex.quote(str(out))}")
    (out / "command.txt").write_text(" ".join(cmd.split()) + "\n# argv: " + " ".join(map(shlex.quote, sys.argv)) + "\n",
                                     encoding="utf-8")
    summary = {
        "config": str(cfg_path), "fusions": fusions, "seeds": seeds, "overrides": overrides,
        "baseline": table.baseline, "primary": table.primary, "rows": table.rows,
        "per_seed": {f: per[f]["seed_metrics"] for f in fusions},
    }
    (out / "ablation.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    table.files = {"markdown": str(md), "csv": str(csv_path), "json": str(out / "ablation.json"),
                   "command": str(out / "command.txt")}
    if plot:
        table.files["plot"] = str(plot_ablation(table, out / "ablation.png"))


def plot_ablation(table: AblationTable, path: str | Path) -> Path:
    """Primary metric and macro-F1 per variant with 95% CIs; p-values (paired bootstrap on the primary
    metric) vs the baseline under the variant names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.rows
    names = [r["fusion"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.7 * len(rows) + 1.8), sharey=True)
    for ax, m in zip(axes, (table.primary, "f1_macro" if table.primary != "f1_macro" else "balanced_accuracy"), strict=True):
        est = np.array([np.nan if r[m] is None else r[m] for r in rows], float)
        lo = np.array([np.nan if r[f"{m}_low"] is None else r[f"{m}_low"] for r in rows], float)
        hi = np.array([np.nan if r[f"{m}_high"] is None else r[f"{m}_high"] for r in rows], float)
        ypos = np.arange(len(rows))
        uni = unimodal_fusions()
        colors = ["tab:red" if n == table.baseline else ("tab:gray" if n in uni else "tab:blue") for n in names]
        ax.errorbar(est, ypos, xerr=[np.nan_to_num(est - lo), np.nan_to_num(hi - est)], fmt="none", ecolor="k", capsize=3)
        ax.scatter(est, ypos, c=colors, zorder=3)
        base = est[names.index(table.baseline)]
        ax.axvline(base, color="tab:red", ls="--", lw=1)
        ax.set_xlabel(f"{m} (95% CI)")
    # p-values go under the variant names (tick labels), never on the baseline line or a CI
    ticks = [f"{r['fusion']}\n(baseline)" if r["fusion"] == table.baseline else
             f"{r['fusion']}\np = {r['p_bootstrap']:.3f}" if r["p_bootstrap"] is not None else r["fusion"] for r in rows]
    axes[0].set_yticks(np.arange(len(rows)), ticks)
    axes[0].invert_yaxis()
    fig.suptitle(f"Fusion ablation (n_test={rows[0]['n_test']}, seeds={rows[0]['n_seeds']}; red = baseline {table.baseline}; "
                 f"p: paired bootstrap on {table.primary})",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
