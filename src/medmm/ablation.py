"""Fusion ablation: train every fusion variant with the same data, budget and seeds, score them
on the same test split, and compare each with the best unimodal baseline.

    from medmm.ablation import run_ablation
    table = run_ablation("configs/diagnosis/covid_cxr.yaml", ["image_only", "text_only", "late"],
                         seeds=3, out_dir="runs/ablation", overrides=["trainer.max_epochs=5"])
    print(table.markdown)

Any task whose class declares a `headline` with per-unit scores (`medmm.metrics.headline`:
classification, answer accuracy, retrieval ranks) can be ablated; this module names no task.
What is compared (and why):
* Every variant is the same config with only ``model.fusion`` (or the `vary` key) and ``seed``
  overridden; the data split is pinned with ``data.split_seed`` so all seeds share one test set.
* The metrics are the task's headline metrics, computed from its per-unit scores (a sample, a
  question, a retrieval query). Per variant, the seeds' per-unit predictions are averaged (a
  seed ensemble: class probabilities, correctness, ranks); the bootstrap CIs and paired tests
  are over test units, resampled by group (patient, image). The per-seed mean +- sd of the
  primary metric is reported beside it.
* The baseline is the unimodal variant (image_only / text_only; for another `vary` key the
  first variant) with the best VALIDATION primary metric, so the test split does not choose it.
* Paired tests (`medmm.metrics.stats.paired_test`): paired bootstrap and approximate
  randomisation p-values of the difference variant - baseline on the same test units.

Outputs in out_dir: runs/<variant>_s<seed>/ (engine run dirs), table.md, table.csv, ablation.png,
ablation.json (everything, incl. per-seed metrics), command.txt.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import MedmmError
from medmm.metrics.headline import Headline, Units, mean_units

log = logging.getLogger("medmm.ablation")
FUSION_KEY = "model.fusion"
# The column of the validation score that chose the baseline (and each run's epoch): a selection
# number, never a result (docs/metrics.md); ablation.json files written before say "val_<metric>".
SELECTION_VAL = "selection_val_"


def unimodal_fusions() -> list[str]:
    """The registered vector fusions that use one modality (the ablation's baselines), image first."""
    from medmm.models.fusion import fusion_info, list_fusions

    return sorted((f for f in list_fusions() if fusion_info(f).unimodal), key=lambda f: not fusion_info(f).uses_image)


def default_fusions() -> list[str]:
    """Every registered vector fusion: the unimodal baselines first, then the others by name."""
    from medmm.models.fusion import list_fusions

    uni = unimodal_fusions()
    return uni + [f for f in list_fusions() if f not in uni]


@dataclass
class AblationTable:
    """Result of `run_ablation`: one row per variant, plus where the files are.

    metrics: the table's metric columns, the primary first (default: read from the rows)."""

    rows: list[dict[str, Any]]
    baseline: str
    primary: str
    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)
    markdown: str = ""
    metrics: list[str] = field(default_factory=list)
    column: str = "fusion"  # the varied key's last part: the rows' variant column
    mode: str = "max"

    def __post_init__(self) -> None:
        if not self.metrics and self.rows:
            self.metrics = [k[:-4] for k in self.rows[0] if k.endswith("_low") and not k.startswith("difference")]

    def row(self, variant: str) -> dict[str, Any]:
        """The row of one variant."""
        for r in self.rows:
            if r[self.column] == variant:
                return r
        raise KeyError(variant)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _headline(task: str) -> Headline:
    from medmm.engine.task import get_task_class

    head = getattr(get_task_class(task), "headline", None)
    if not isinstance(head, Headline) or head.units is None:
        raise MedmmError(f"task {task!r} declares no headline with per-unit scores (Task.headline = "
                         "medmm.metrics.headline.Headline(metric, mode, units)); its variants cannot be compared")
    return head


def _units(head: Headline, records: list[dict[str, Any]], key: str, where: Path) -> Units:
    labelled = [r for r in records if r.get("reference") is not None]
    if not labelled:
        raise MedmmError(f"{where}: no labelled records to score")
    units = head.units(labelled, key)
    got = units.scores()
    if key not in got:
        raise MedmmError(f"{where}: unknown metric {key!r}; the task's headline scores give {', '.join(got)}")
    return units


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


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
    variants: Sequence[str] | None = None,
    seeds: int | Sequence[int] = 1,
    out_dir: str | Path = "runs/ablation",
    overrides: Sequence[str] | None = None,
    *,
    primary: str | None = None,
    mode: str | None = None,
    n_resamples: int = 1000,
    plot: bool = True,
    vary: str = FUSION_KEY,
) -> AblationTable:
    """Train each variant x seed through the engine, then tabulate, test and plot.

    Args:
        cfg_path: a run config (with val and test splits) of a task declaring a headline.
        variants: values of `vary`; for fusions they must include image_only or text_only.
            None: every registered vector fusion (`default_fusions()`).
        seeds: number of seeds (0..n-1) or the seed list; the data split stays fixed
            (data.split_seed = the config's seed unless an override sets it).
        out_dir: where run dirs and table.md/table.csv/ablation.png go.
        overrides: dotted overrides applied to every variant (e.g. trainer.max_epochs=3).
        primary: the metric that chooses the baseline and is tested (default: the task's
            headline, e.g. auroc_macro_ovr); any key of its headline scores.
        mode: "max" or "min": which is better for `primary` (default: the headline's mode, else max).
        n_resamples: bootstrap / randomisation resamples.
        vary: the model.* config key whose values the variants are (baseline: for model.fusion the
            best unimodal fusion on validation, else the first variant).
    Returns:
        AblationTable (rows, baseline, file paths, markdown).
    """
    from medmm.engine import load_config
    from medmm.engine.task import get_task_class

    overrides = list(overrides or [])
    base = load_config(cfg_path, overrides)
    head = _headline(base.task)
    if not vary.startswith("model.") or vary[6:] not in {f.name for f in dataclasses.fields(get_task_class(base.task).Config)}:
        raise MedmmError(f"task {base.task!r} has no config key {vary!r} to vary (model.<field of its Config>)")
    fusion = vary == FUSION_KEY
    variants = list(dict.fromkeys(default_fusions() if variants is None and fusion else (variants or [])))
    candidates = [v for v in variants if v in unimodal_fusions()] if fusion else variants[:1]
    if len(variants) < 2 and not fusion:
        raise MedmmError(f"an ablation of {vary} needs at least two variants")
    if not candidates:
        raise MedmmError("an ablation needs a unimodal baseline: include image_only and/or text_only")
    primary = primary or head.key
    mode = mode or (head.mode if primary == head.key else "max")
    if mode not in ("max", "min"):
        raise MedmmError(f"mode must be max or min, got {mode!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise MedmmError("seeds: need at least one")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pin = [] if any(o.startswith("data.split_seed=") for o in overrides) else [f"data.split_seed={base.seed}"]

    per: dict[str, dict[str, Any]] = {}
    for variant in variants:
        tests, vals = [], []
        for seed in seed_list:
            run_dir = out / "runs" / f"{_safe(variant)}_s{seed}"
            _train_variant(cfg_path, overrides + pin + [f"{vary}={variant}", f"seed={seed}"], run_dir)
            tests.append(_units(head, _read_jsonl(run_dir / "predictions" / "test.jsonl"), primary, run_dir))
            vals.append(_units(head, _read_jsonl(run_dir / "predictions" / "val.jsonl"), primary, run_dir))
        per[variant] = {"test": mean_units(tests), "val": mean_units(vals), "seed_metrics": [u.scores() for u in tests]}
    first = per[variants[0]]["test"]
    for v in variants[1:]:
        if not per[v]["test"].same_units(first):
            raise MedmmError(f"variant {v} was scored on other test units or references than {variants[0]}")

    table = _tabulate(per, variants, seed_list, primary, n_resamples, candidates, mode, vary.split(".")[-1])
    table.out_dir = out
    _write(table, out, cfg_path, variants, seed_list, overrides, plot, per, vary, base.task)
    return table


def _better(score: float, mode: str) -> float:
    """Sort key: larger is better; undefined scores last."""
    if not math.isfinite(score):
        return -math.inf
    return score if mode == "max" else -score


def _tabulate(per: dict[str, dict[str, Any]], variants: list[str], seeds: list[int], primary: str, n_resamples: int,
              candidates: list[str] | None = None, mode: str = "max", column: str = "fusion") -> AblationTable:
    from medmm.metrics.stats import bootstrap_ci

    candidates = candidates or [v for v in variants if v in unimodal_fusions()]
    val_scores = {v: per[v]["val"].scores()[primary] for v in variants}
    baseline = max(candidates, key=lambda v: _better(val_scores[v], mode))
    base_units: Units = per[baseline]["test"]
    metrics = [primary] + [k for k in base_units.scores() if k != primary]
    rows = []
    for v in variants:
        units: Units = per[v]["test"]
        ci = bootstrap_ci(lambda *a, fn=units.fn: fn(*a), *units.predictions, *units.references,
                          n_resamples=n_resamples, groups=units.groups)
        row: dict[str, Any] = {column: v, "n_test": len(units.ids), "n_seeds": len(seeds),
                               # validation chose the baseline and each run's epoch: a selection number
                               SELECTION_VAL + primary: val_scores[v]}
        for m in metrics:
            row[m] = ci["estimate"][m]
            row[f"{m}_low"], row[f"{m}_high"] = ci["low"][m], ci["high"][m]
        sm = np.array([s[primary] for s in per[v]["seed_metrics"]], dtype=float)
        row[f"{primary}_seed_mean"] = float(np.nanmean(sm))
        row[f"{primary}_seed_sd"] = float(np.nanstd(sm, ddof=1)) if len(sm) > 1 else None
        if v == baseline:
            row.update(difference=0.0, difference_low=None, difference_high=None, p_bootstrap=None, p_randomisation=None)
        else:
            row.update(_paired(units, base_units, primary, n_resamples))
        rows.append(row)
    chosen = f"best unimodal variant by validation {primary}" if column == "fusion" else "the first variant"
    method = (f"test predictions averaged over {len(seeds)} seed(s) per variant; 95% percentile bootstrap CIs, "
              f"{n_resamples} resamples of groups; paired bootstrap + approximate randomisation vs {baseline} ({chosen})")
    table = AblationTable(rows=rows, baseline=baseline, primary=primary, out_dir=Path("."), metrics=metrics,
                          column=column, mode=mode)
    table.markdown = _markdown(table, method)
    return table


def _paired(a: Units, b: Units, key: str, n_resamples: int) -> dict[str, Any]:
    """Paired tests of metric `key` of system a - system b on the same units. Unit i of a is
    index i, of b index n + i: resampling and swapping indices resamples and swaps the systems'
    per-unit predictions together, references shared."""
    from medmm.metrics.stats import paired_test

    n = len(a.ids)
    both = [np.concatenate([pa, pb]) for pa, pb in zip(a.predictions, b.predictions, strict=True)]

    def metric(idx: np.ndarray, *refs: np.ndarray) -> float:
        return a.fn(*(p[idx] for p in both), *refs)[key]

    t = paired_test(metric, np.arange(n), np.arange(n) + n, *a.references, n_resamples=n_resamples, groups=a.groups)
    return {k: t[k] for k in ("difference", "difference_low", "difference_high", "p_bootstrap", "p_randomisation")}


def _fmt(v: Any, nd: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _markdown(t: AblationTable, method: str) -> str:
    p = t.primary
    lines = [
        (f"| {t.column} | " + " | ".join(f"{m} [95% CI]" for m in t.metrics) + f" | {p} seed mean (sd) "
         f"| Δ{p} vs {t.baseline} [95% CI] | p (bootstrap) | p (randomisation) | {SELECTION_VAL}{p} |"),
        "|---" * (len(t.metrics) + 6) + "|",
    ]
    for r in t.rows:
        name = f"**{r[t.column]}** (baseline)" if r[t.column] == t.baseline else r[t.column]
        cells = [f"{_fmt(r[m])} [{_fmt(r[m + '_low'])}, {_fmt(r[m + '_high'])}]" for m in t.metrics]
        diff = "-" if r[t.column] == t.baseline else _fmt(r["difference"], 3)
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {_fmt(r[p + '_seed_mean'])} ({_fmt(r[p + '_seed_sd'])}) "
            f"| {diff} [{_fmt(r['difference_low'])}, {_fmt(r['difference_high'])}] "
            f"| {_fmt(r['p_bootstrap'])} | {_fmt(r['p_randomisation'])} | {_fmt(r[SELECTION_VAL + p])} |"
        )
    better = "higher" if t.mode == "max" else "lower"
    lines += ["", f"n_test = {t.rows[0]['n_test']} test units; {better} {p} is better.", "", f"Method: {method}."]
    return "\n".join(lines) + "\n"


def _write(table: AblationTable, out: Path, cfg_path: str | Path, variants: list[str], seeds: list[int],
           overrides: list[str], plot: bool, per: dict[str, dict[str, Any]], vary: str = FUSION_KEY,
           task: str | None = None) -> None:
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
           + (f" --vary {vary}" if vary != FUSION_KEY else "")
           + f" --fusion {shlex.quote(','.join(variants))} --seeds {len(seeds)} --metric {shlex.quote(table.primary)}"
           + f" --mode {table.mode} --out {shlex.quote(str(out))}")
    (out / "command.txt").write_text(" ".join(cmd.split()) + "\n# argv: " + " ".join(map(shlex.quote, sys.argv)) + "\n",
                                     encoding="utf-8")
    summary = {
        "config": str(cfg_path), "task": task, "vary": vary, "fusions": variants, "seeds": seeds, "overrides": overrides,
        "baseline": table.baseline, "primary": table.primary, "mode": table.mode, "metrics": table.metrics,
        "rows": table.rows, "per_seed": {v: per[v]["seed_metrics"] for v in variants},
    }
    (out / "ablation.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    table.files = {"markdown": str(md), "csv": str(csv_path), "json": str(out / "ablation.json"),
                   "command": str(out / "command.txt")}
    if plot:
        table.files["plot"] = str(plot_ablation(table, out / "ablation.png"))


def plot_ablation(table: AblationTable, path: str | Path) -> Path:
    """The primary metric and the next metric of the table per variant with 95% CIs; p-values
    (paired bootstrap on the primary metric) vs the baseline under the variant names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, col = table.rows, table.column
    names = [r[col] for r in rows]
    shown = [table.primary] + [m for m in table.metrics if m != table.primary][:1]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 0.7 * len(rows) + 1.8), sharey=True, squeeze=False)
    axes = axes[0]
    uni = unimodal_fusions() if col == "fusion" else []
    for ax, m in zip(axes, shown, strict=True):
        est = np.array([np.nan if r[m] is None else r[m] for r in rows], float)
        lo = np.array([np.nan if r[f"{m}_low"] is None else r[f"{m}_low"] for r in rows], float)
        hi = np.array([np.nan if r[f"{m}_high"] is None else r[f"{m}_high"] for r in rows], float)
        ypos = np.arange(len(rows))
        colors = ["tab:red" if n == table.baseline else ("tab:gray" if n in uni else "tab:blue") for n in names]
        ax.errorbar(est, ypos, xerr=[np.nan_to_num(est - lo), np.nan_to_num(hi - est)], fmt="none", ecolor="k", capsize=3)
        ax.scatter(est, ypos, c=colors, zorder=3)
        ax.axvline(est[names.index(table.baseline)], color="tab:red", ls="--", lw=1)
        ax.set_xlabel(f"{m} (95% CI)")
    # p-values go under the variant names (tick labels), never on the baseline line or a CI
    ticks = [f"{r[col]}\n(baseline)" if r[col] == table.baseline else
             f"{r[col]}\np = {r['p_bootstrap']:.3f}" if r["p_bootstrap"] is not None else r[col] for r in rows]
    axes[0].set_yticks(np.arange(len(rows)), ticks)
    axes[0].invert_yaxis()
    fig.suptitle(f"{col.capitalize()} ablation (n_test={rows[0]['n_test']}, seeds={rows[0]['n_seeds']}; red = baseline "
                 f"{table.baseline}; p: paired bootstrap on {table.primary})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
