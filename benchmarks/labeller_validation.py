"""Labeller vs the Open-i gold labels (NegBio paper): per-observation P/R/F1 as a markdown table.

    python benchmarks/labeller_validation.py [--data ../shared/data]

The mapping from the gold's ChestX-ray14 names to CheXpert observations is in
medmm.metrics.clinical.openi. Result recorded in docs/metrics.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medmm.metrics.clinical.openi import validate_openi

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data"


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT)
    args = ap.parse_args()
    root = args.data / "iu_xray_reports"
    res = validate_openi(root / "openi_gld_std14_negbio_labels.csv", root / "kaggle_raddar_csv/indiana_reports.csv")
    print(f"{res['n_reports']} Open-i reports with gold labels and non-empty findings/impression\n")
    print("| CheXpert observation | gold (Open-i) | support | P | R | F1 | P (U=1) | R (U=1) | F1 (U=1) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for obs, names in res["mapping"].items():
        s, u = res["strict"][obs], res["uncertain_positive"][obs]
        print(f"| {obs} | {' or '.join(names)} | {s['support']} | {_f(s['precision'])} | {_f(s['recall'])} | "
              f"{_f(s['f1'])} | {_f(u['precision'])} | {_f(u['recall'])} | {_f(u['f1'])} |")


if __name__ == "__main__":
    main()
