"""Fusion strategies for VQA side by side, pooled over several re-splits, with CIs and paired tests.

    python benchmarks/vqa_fusion_resplits.py configs/vqa/vqa_rad_question_split.yaml \
        --variants text_only early late cross_attention film moe gated \
        --seeds 0 1 2 3 --runs runs/fusions --existing gated=runs/s3/lib_q{seed} --train --jobs 2 \
        --out benchmarks/vqa_rad_fusions_results.json

A variant is a fusion name (trained with ``model.fusion=NAME``) or ``NAME:OVERRIDE,OVERRIDE``
(e.g. ``text_only_nomem:model.fusion=text_only,model.memory.weight=0``). Run folders are
``RUNS/NAME_sSEED``, trained with ``medmm train CONFIG OVERRIDES seed=SEED --out DIR`` (``seed``
sets the split and the initialisation; a folder that already has predictions/test.jsonl is kept).
One split holds ~260 held-out questions (95% CI ~ +-6 points), too few to rank fusions, so every
variant is trained on the same split seeds and the held-out questions are pooled: per variant the
pooled accuracy with a bootstrap CI over (split, image) groups, and paired pooled differences vs
the baseline and the reference variant (`vqa_resplit_compare.compare`). Writes JSON, a markdown
table (next to the JSON, .md) and a PNG of the accuracies with their CIs (.png).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vqa_resplit_compare import compare, correct, load_records, pooled_accuracy

SUBSETS = ("overall", "closed", "open")


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """``NAME`` -> (NAME, [model.fusion=NAME]); ``NAME:a=1,b=2`` -> (NAME, [a=1, b=2])."""
    name, _, rest = spec.partition(":")
    return name, (rest.split(",") if rest else [f"model.fusion={name}"])


def run_dirs(variants: list[str], seeds: list[int], root: Path, existing: dict[str, str]) -> dict[str, list[Path]]:
    """Run folder of every (variant, seed): RUNS/NAME_sSEED, or the --existing pattern's folder."""
    return {v: [Path(existing[v].format(seed=s)) if v in existing else root / f"{v}_s{s}" for s in seeds] for v in variants}


def train_missing(config: Path, specs: dict[str, list[str]], dirs: dict[str, list[Path]], seeds: list[int], jobs: int) -> None:
    """Train the runs without held-out predictions, `jobs` at a time, each logged to DIR.log."""
    todo = [(specs[v], s, d) for v, ds in dirs.items() for s, d in zip(seeds, ds, strict=True) if not (d / "predictions" / "test.jsonl").is_file()]
    timer = ["/usr/bin/time", "-v"] if shutil.which("/usr/bin/time") else []

    def train(job: tuple[list[str], int, Path]) -> int:
        overrides, seed, out = job
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [*timer, "medmm", "train", str(config), *overrides, f"seed={seed}", "--out", str(out)]
        with open(f"{out}.log", "w") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        print(f"{'done' if rc == 0 else f'FAILED (exit {rc})'}: {out}", flush=True)
        return rc

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        failed = [d for (_, _, d), rc in zip(todo, pool.map(train, todo), strict=True) if rc != 0]
    if failed:
        print("failed runs (see their .log):", *map(str, failed), sep="\n  ", file=sys.stderr)


def cpu_seconds(run: Path) -> dict[str, float] | None:
    """User+system CPU seconds and wall seconds that /usr/bin/time -v wrote at the end of DIR.log."""
    log = Path(f"{run}.log")
    text = log.read_text(errors="replace") if log.is_file() else ""
    user, system = re.search(r"User time \(seconds\): ([\d.]+)", text), re.search(r"System time \(seconds\): ([\d.]+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if not (user and system and wall):
        return None
    secs = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.group(1).split(":"))))
    return {"cpu_s": float(user.group(1)) + float(system.group(1)), "wall_s": secs}


def per_seed(run: Path) -> dict[str, Any]:
    """Held-out accuracies of one run (overall, closed, open) and its cost."""
    records = load_records(run)
    hits = correct(records)
    out: dict[str, Any] = {"run": str(run), "n": len(records), "overall": float(hits.mean())}
    for name in ("closed", "open"):
        keep = [r.get("answer_type") == name.upper() for r in records]
        out[name] = float(hits[keep].mean()) if any(keep) else None
    env = run / "environment.json"  # the commit the run was trained at (runs made earlier may differ)
    if env.is_file():
        out["git_commit"] = json.loads(env.read_text()).get("git_commit")
    return out | (cpu_seconds(run) or {})


def summarise(dirs: dict[str, list[Path]], baseline: str, reference: str | None, n_resamples: int = 1000) -> dict[str, Any]:
    """Per variant: pooled accuracies with CIs, per-seed accuracies, and the paired pooled tests
    vs `baseline` and vs `reference` (each variant's run i must share run i's split)."""
    out: dict[str, Any] = {"variants": {}}
    for v, runs in dirs.items():
        row: dict[str, Any] = {"pooled": pooled_accuracy(runs, n_resamples), "seeds": [per_seed(r) for r in runs]}
        for key, other in (("vs_baseline", baseline), ("vs_reference", reference)):
            if other and other != v:
                row[key] = compare(runs, dirs[other], n_resamples)["pooled"]
        out["variants"][v] = row
    return out


def _ci(d: dict[str, Any]) -> str:
    return f"{100 * d['accuracy']:.1f} [{100 * d['low']:.1f}, {100 * d['high']:.1f}]"


def _diff(t: dict[str, Any] | None) -> str:
    if not t:
        return "-"
    return (f"{100 * t['difference']:+.1f} [{100 * t['difference_low']:+.1f}, {100 * t['difference_high']:+.1f}] "
            f"p {t['p_randomisation']:.3f}")


def markdown(res: dict[str, Any], baseline: str, reference: str | None) -> str:
    """Accuracy table (pooled, CIs; per-seed overall) and the paired-difference tables."""
    lines = ["| variant | n | overall | closed | open | overall per seed | CPU s per run |", "|---|---|---|---|---|---|---|"]
    for v, row in res["variants"].items():
        p, seeds = row["pooled"], row["seeds"]
        cpu = [s["cpu_s"] for s in seeds if "cpu_s" in s]
        by_seed = " / ".join(f"{100 * s['overall']:.1f}" for s in seeds)
        cost = f"{min(cpu):.0f}-{max(cpu):.0f}" if cpu else "-"
        lines.append(f"| {v} | {p['overall']['n']} | {_ci(p['overall'])} | {_ci(p['closed'])} | {_ci(p['open'])} | {by_seed} | {cost} |")
    for key, other in (("vs_baseline", baseline), ("vs_reference", reference)):
        if not other:
            continue
        lines += ["", f"Paired pooled difference, variant minus {other} (points, 95% CI, randomisation p):", "",
                  "| variant | overall | closed | open |", "|---|---|---|---|"]
        for v, row in res["variants"].items():
            if key in row:
                lines.append(f"| {v} | " + " | ".join(_diff(row[key].get(s)) for s in SUBSETS) + " |")
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    """Pooled accuracy with its 95% CI per variant, one marker per subset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["variants"])
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 4))
    for j, subset in enumerate(SUBSETS):
        pts = [res["variants"][v]["pooled"][subset] for v in names]
        x = [i + (j - 1) * 0.22 for i in range(len(names))]
        y = [100 * p["accuracy"] for p in pts]
        err = [[100 * (p["accuracy"] - p["low"]) for p in pts], [100 * (p["high"] - p["accuracy"]) for p in pts]]
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, label=subset)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("held-out accuracy, % (95% CI)")
    ax.set_title("VQA fusions pooled over re-splits")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center", bbox_to_anchor=(0.5, 0.3), ncol=3)  # the gap between open and overall
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--variants", nargs="+", required=True, help="fusion names or NAME:OVERRIDE,OVERRIDE")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--runs", type=Path, default=Path("runs/fusions"), help="folder of the run folders NAME_sSEED")
    ap.add_argument("--existing", nargs="*", default=[], help="NAME=PATTERN with {seed}: runs already trained")
    ap.add_argument("--baseline", default="gated")
    ap.add_argument("--reference", default="text_only", help="second comparison (e.g. the question-only model); '' for none")
    ap.add_argument("--train", action="store_true", help="train the runs that lack predictions/test.jsonl")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True, help="results JSON (the .md table and .png plot go next to it)")
    args = ap.parse_args()
    specs = dict(parse_variant(v) for v in args.variants)
    existing = dict(e.split("=", 1) for e in args.existing)
    for name in (args.baseline, args.reference):
        if name and name not in specs:
            raise SystemExit(f"--baseline/--reference {name!r} is not among --variants")
    dirs = run_dirs(list(specs), args.seeds, args.runs, existing)
    if args.train:
        train_missing(args.config, {v: o for v, o in specs.items() if v not in existing}, {v: d for v, d in dirs.items() if v not in existing},
                      args.seeds, args.jobs)
    res = summarise(dirs, args.baseline, args.reference or None, args.resamples)
    # An --existing variant was trained elsewhere: its folders, not overrides, say what it is.
    trained_here = {v: o for v, o in specs.items() if v not in existing}
    res["setup"] = {"config": str(args.config), "seeds": args.seeds, "variants": trained_here, "existing": existing,
                    "baseline": args.baseline, "reference": args.reference or None, "resamples": args.resamples}
    args.out.write_text(json.dumps(res, indent=1))
    table = markdown(res, args.baseline, args.reference or None)
    args.out.with_suffix(".md").write_text(table)
    plot(res, args.out.with_suffix(".png"))
    print(table)


if __name__ == "__main__":
    main()
