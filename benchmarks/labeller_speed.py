"""Labeller speed: reports per second on one core, on the IU X-ray (Open-i) reports.

    python benchmarks/labeller_speed.py [--reports ../shared/data/iu_xray_reports/kaggle_raddar_csv/indiana_reports.csv]

Labels every report (findings + impression) `--repeat` times in this process (one core, no
parallelism) and prints the best and median throughput. Results: benchmarks/labeller_speed.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path

from medmm.metrics.clinical import label_report

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data/iu_xray_reports/kaggle_raddar_csv/indiana_reports.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    with open(args.reports, newline="", encoding="utf-8") as fh:
        texts = [f"FINDINGS: {r['findings']}\nIMPRESSION: {r['impression']}" for r in csv.DictReader(fh)]
    label_report(texts[0])  # compile the rules outside the timing
    rates, cpu_rates = [], []
    for _ in range(args.repeat):
        start, cpu = time.perf_counter(), time.process_time()
        for t in texts:
            label_report(t)
        rates.append(len(texts) / (time.perf_counter() - start))
        # CPU time of this process: what one core delivers when other jobs share the machine
        cpu_rates.append(len(texts) / (time.process_time() - cpu))
    chars = sum(map(len, texts)) / len(texts)
    print(f"{len(texts)} reports (mean {chars:.0f} characters), {args.repeat} runs, one core, "
          f"Python {platform.python_version()}, {platform.machine()}")
    print(f"wall clock: best {max(rates):.0f} reports/s, median {statistics.median(rates):.0f} reports/s")
    print(f"per CPU-second: best {max(cpu_rates):.0f} reports/s, median {statistics.median(cpu_rates):.0f} reports/s")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
