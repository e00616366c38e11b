"""De-identification benchmark: real report text of the shared data with synthetic PHI inserted by
the seeded generator (benchmarks/deid_synth.py), scored per category; speed on one core; report-labeller
agreement before and after de-identification.

    python benchmarks/deid.py --data ../shared/data [--seed 0] [--out benchmarks/deid_results.json]

Reports: IU X-ray (Kaggle `indiana_reports.csv`: indication, findings, impression; 3,851) and MedPix 2.0
cases (`Case_topic.json`: history, findings, case diagnosis; 602). Every report gets one header,
history, comparison, device, impression and sign-off with PHI of each category (see deid_synth.py).

Scoring. Recall: a gold PHI span counts as found when every non-space character of it is inside a
detected span (of any category: any mask removes it). Precision: a detected span is correct when it
overlaps a gold span; per category by the detected category. 95% Wilson intervals; spans of one
report are not independent, so the intervals are somewhat optimistic. Over-masking on the untouched
real text (where every detection is a false positive: the data are already de-identified) is
reported too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

from scipy.stats import binomtest

from medmm.deid import CATEGORIES, TextDeidentifier
from medmm.metrics.clinical.labeller import label_report

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deid_synth import PhiGenerator  # the benchmark's generator, beside this script


def load_reports(data: Path) -> list[tuple[str, str, str, str]]:
    """(source id, indication, findings, impression) of every IU X-ray and MedPix 2.0 report."""
    out = []
    with (data / "iu_xray_reports/kaggle_raddar_csv/indiana_reports.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if (row["findings"] or row["impression"]).strip():
                out.append((f"iu{row['uid']}", row["indication"], row["findings"], row["impression"]))
    for case in json.loads((data / "medpix2/MedPix-2-0/Case_topic.json").read_text()):
        c = case["Case"]
        out.append((case["U_id"], c.get("History", ""), c.get("Findings", ""), c.get("Case Diagnosis", "")))
    return out


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return [round(ci.low, 4), round(ci.high, 4)]


def covered(span: tuple[int, int], masked: bytearray, text: str) -> bool:
    return all(masked[i] or text[i].isspace() for i in range(span[0], span[1]))


def plain_report(indication: str, findings: str, impression: str) -> str:
    return f"INDICATION: {indication}\n\nFINDINGS: {findings}\n\nIMPRESSION: {impression}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/deid_results.json"))
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):  # one core, literally
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    reports = load_reports(args.data)
    gen = PhiGenerator(args.seed)
    synth = [gen.make(ind, fnd, imp, patient_id=sid) for sid, ind, fnd, imp in reports]
    deid = TextDeidentifier(mode="mask", seed=args.seed)

    # Speed: detection + masking of every synthetic report, one process (one core). CPU time of this
    # process is the one-core figure; wall time also counts waiting for the shared machine's cores.
    deid.deidentify(synth[0].text)  # load the lists outside the timing
    t0, c0 = time.perf_counter(), time.process_time()
    results = [deid.deidentify(s.text, s.patient_id) for s in synth]
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    load = os.getloadavg()[0]

    found = {c: [0, 0] for c in CATEGORIES}  # gold category -> [found, total]
    precise = {c: [0, 0] for c in CATEGORIES}  # detected category -> [correct, total]
    misses: list[str] = []
    false_pos: list[str] = []
    for s, (_, audit) in zip(synth, results, strict=True):
        masked = bytearray(len(s.text))
        for a in audit:
            masked[a["start"]:a["end"]] = b"\x01" * (a["end"] - a["start"])
        gold_mask = bytearray(len(s.text))
        for start, end, cat in s.spans:
            gold_mask[start:end] = b"\x01" * (end - start)
            ok = covered((start, end), masked, s.text)
            found[cat][0] += ok
            found[cat][1] += 1
            if not ok and len(misses) < 40:
                misses.append(f"{cat}: {s.text[start:end]!r}")
        for a in audit:
            ok = any(gold_mask[a["start"]:a["end"]])
            precise[a["category"]][0] += ok
            precise[a["category"]][1] += 1
            if not ok and len(false_pos) < 40:
                false_pos.append(f"{a['category']}: {s.text[a['start']:a['end']]!r} in "
                                 f"{s.text[max(0, a['start'] - 30):a['end'] + 20]!r}")

    # Over-masking of the real, untouched text, and labeller agreement.
    plain = [plain_report(ind, fnd, imp) for _, ind, fnd, imp in reports]
    plain_spans: dict[str, int] = {}
    same_synth = same_plain = same_surrogate = 0
    surrogate = TextDeidentifier(mode="surrogate", seed=args.seed)
    for text, s, (clean, _) in zip(plain, synth, results, strict=True):
        clean_plain, audit = deid.deidentify(text)
        for a in audit:
            plain_spans[a["category"]] = plain_spans.get(a["category"], 0) + 1
        labels = label_report(s.text)
        same_plain += label_report(text) == label_report(clean_plain)
        same_synth += labels == label_report(clean)
        same_surrogate += labels == label_report(surrogate.deidentify(s.text, s.patient_id)[0])
    n = len(synth)

    tot_f = sum(v[0] for v in found.values())
    tot_g = sum(v[1] for v in found.values())
    tot_c = sum(v[0] for v in precise.values())
    tot_d = sum(v[1] for v in precise.values())
    out = {
        "data": f"{n} reports: IU X-ray indiana_reports.csv with findings/impression + MedPix 2.0 Case_topic.json",
        "seed": args.seed,
        "machine": "shared 2-core x86_64 VM, one process pinned to one core",
        "recall": {c: {"found": k, "n": m, "recall": round(k / m, 4) if m else None, "ci95": wilson(k, m)}
                   for c, (k, m) in found.items() if m},
        "recall_all": {"found": tot_f, "n": tot_g, "recall": round(tot_f / tot_g, 4), "ci95": wilson(tot_f, tot_g)},
        "precision": {c: {"correct": k, "n": m, "precision": round(k / m, 4) if m else None, "ci95": wilson(k, m)}
                      for c, (k, m) in precise.items() if m},
        "precision_all": {"correct": tot_c, "n": tot_d, "precision": round(tot_c / tot_d, 4),
                          "ci95": wilson(tot_c, tot_d)},
        "real_text_false_positives": {"reports": n, "spans": plain_spans},
        "labeller_same_14_labels": {
            "synthetic_before_vs_after": {"same": same_synth, "n": n, "rate": round(same_synth / n, 4),
                                          "ci95": wilson(same_synth, n)},
            "synthetic_before_vs_surrogate": {"same": same_surrogate, "n": n, "rate": round(same_surrogate / n, 4),
                                              "ci95": wilson(same_surrogate, n)},
            "real_text_before_vs_after": {"same": same_plain, "n": n, "rate": round(same_plain / n, 4),
                                          "ci95": wilson(same_plain, n)},
        },
        "speed": {"reports": n, "cpu_seconds": round(cpu, 3), "reports_per_cpu_s": round(n / cpu, 1),
                  "wall_seconds": round(elapsed, 3), "reports_per_wall_s": round(n / elapsed, 1),
                  "load_average_1min": round(load, 1), "cpus": os.cpu_count(),
                  "mean_chars": round(sum(len(s.text) for s in synth) / n)},
        "examples_missed": misses,
        "examples_false_positive": false_pos,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if not k.startswith("examples")}, indent=1))
    print("missed:", *misses[:20], sep="\n  ")
    print("false positives:", *false_pos[:20], sep="\n  ")


if __name__ == "__main__":
    main()
