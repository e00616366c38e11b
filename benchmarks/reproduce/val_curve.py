"""A run's per-epoch validation curve, as the model-selection record of a reproduction page.

    python benchmarks/reproduce/val_curve.py RUN --out results/NAME_val_curve.csv [--plot results/NAME_val_curve.png]

Reads RUN/logs/metrics.csv (the engine's CSV log) and writes one row per validated epoch: epoch
(1-based), optimizer step, the validation AUROC and accuracy, and the learning rate of that epoch
(NaN where the run's log interval logged no LR in that epoch).
The columns are named `selection_val_*`: the split chose the epoch, so none of it is a result.
The plot marks the epoch the run chose (the first best by the run's own `trainer.monitor` and
`monitor_mode`, compared at full precision as the checkpoint callback does) and the LR decays.
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

COLUMNS = {"auroc_macro_ovr": "val/auroc_macro_ovr", "accuracy": "val/accuracy"}


def chosen_epoch(run: Path) -> int:
    """The 1-based epoch whose checkpoint the run kept: the first best of its monitored metric."""
    import yaml

    trainer = yaml.safe_load((run / "config.yaml").read_text())["trainer"]
    monitor, mode = trainer.get("monitor", "val/loss"), trainer.get("monitor_mode", "min")
    with (run / "logs" / "metrics.csv").open() as f:
        points = [(int(r["epoch"]) + 1, float(r[monitor])) for r in csv.DictReader(f) if r.get(monitor)]
    if not points:
        raise SystemExit(f"{run}/logs/metrics.csv has no {monitor} rows")
    best = max(v for _, v in points) if mode == "max" else min(v for _, v in points)
    return next(e for e, v in points if v == best)


def val_curve(run: Path) -> list[dict[str, float]]:
    """One dict per validated epoch: epoch (1-based), step, selection_val_<metric>, lr."""
    with (run / "logs" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    lr_of_epoch = {int(r["epoch"]): float(r["lr"]) for r in rows if r.get("lr")}
    curve = []
    for r in rows:
        if not r.get(COLUMNS["auroc_macro_ovr"]):
            continue
        epoch = int(r["epoch"])
        point = {"epoch": epoch + 1, "step": int(r["step"])}
        point.update({f"selection_val_{name}": round(float(r[col]), 4) for name, col in COLUMNS.items()})
        point["lr"] = lr_of_epoch.get(epoch, float("nan"))
        curve.append(point)
    if not curve:
        raise SystemExit(f"{run}/logs/metrics.csv has no {COLUMNS['auroc_macro_ovr']} rows")
    return curve


def plot(curve: list[dict[str, float]], chosen: int, out: Path, title: str) -> None:
    """Validation AUROC per epoch, the `chosen` epoch marked, LR decays as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [p["epoch"] for p in curve]
    auroc = [p["selection_val_auroc_macro_ovr"] for p in curve]
    best = epochs.index(chosen)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    ax.plot(epochs, auroc, lw=1.2, label="val AUROC (selection split)")
    ax.plot([epochs[best]], [auroc[best]], "o", color="C3", label=f"chosen: epoch {epochs[best]}, AUROC {auroc[best]:.3f}")
    for a, b in itertools.pairwise(curve):
        if b["lr"] < a["lr"]:
            ax.axvline(b["epoch"] - 0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("epoch (dashed: learning-rate decay)")
    ax.set_ylabel("AUROC")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="CSV to write")
    ap.add_argument("--plot", type=Path, help="PNG of the curve")
    args = ap.parse_args(argv)
    curve = val_curve(args.run)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    if args.plot:
        plot(curve, chosen_epoch(args.run), args.plot, f"{args.run.name}: validation AUROC per epoch")
    return curve


if __name__ == "__main__":
    main()
