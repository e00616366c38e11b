"""Compare every number two `medmm demo` output folders hold (benchmarks/demo_equivalence.md).

    python benchmarks/demo_equivalence.py BEFORE AFTER [--json out.json] [--rename OLD=NEW ...]

Reads, in both folders: every run's metrics/*.json (`metrics` and `floors`), logs/metrics.csv (every
logged value, by step), the ablation's ablation.json rows, the explanations' explanations.json and
the data checks (data/*.json). Prints, per file, how many numbers are equal (exactly, as stored),
how many differ (with the largest absolute difference and the keys), and keys on one side only.
Clock and place (provenance, times, paths) are not numbers of the demo and are left out.
`--rename OLD=NEW` reads BEFORE's keys with a metric renamed since (e.g. the ablation's
`auroc_macro` -> `auroc_macro_ovr`), so its numbers are compared and not listed as one-sided.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any

SKIP = {"provenance", "created", "time", "wall_s", "seconds", "time_utc", "elapsed_s", "files"}


def flat(x: Any, pre: str = "") -> dict[str, float]:
    """Key path -> number of a JSON value (bools and strings left out; SKIP keys not entered)."""
    out: dict[str, float] = {}
    if isinstance(x, dict):
        for k, v in x.items():
            if k not in SKIP:
                out.update(flat(v, f"{pre}.{k}" if pre else str(k)))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out.update(flat(v, f"{pre}[{i}]"))
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        out[pre] = float(x)
    return out


def numbers_of(path: Path) -> dict[str, float]:
    """The numbers of one demo file, by key path."""
    if path.suffix == ".csv":
        out = {}
        with path.open(newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f)):
                for k, v in row.items():
                    if k in ("step", "epoch") or v in ("", None):
                        continue
                    out[f"row{i}(step {row.get('step')}).{k}"] = float(v)
        return out
    doc = json.loads(path.read_text(encoding="utf-8"))
    if path.parent.name == "metrics":
        return flat({k: doc.get(k) for k in ("metrics", "floors")})
    return flat(doc)


def demo_files(root: Path) -> list[Path]:
    """The files compared, relative to the demo folder."""
    pats = ["runs/*/metrics/*.json", "runs/*/logs/metrics.csv", "ablation/runs/*/metrics/*.json",
            "ablation/runs/*/logs/metrics.csv", "ablation/ablation.json", "explanations/*/explanations.json", "data/*.json"]
    return sorted({p.relative_to(root) for pat in pats for p in root.glob(pat)})


def renamed(numbers: dict[str, float], renames: list[tuple[str, str]]) -> dict[str, float]:
    """`numbers` with each OLD in a key replaced by NEW (where it is not already NEW)."""
    for old, new in renames:
        pattern = re.compile(re.escape(old) + (f"(?!{re.escape(new[len(old):])})" if new.startswith(old) else ""))
        numbers = {pattern.sub(new, k): v for k, v in numbers.items()}
    return numbers


def compare(before: Path, after: Path, renames: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """One record per file: n numbers, equal, differing keys (with before/after), one-sided keys."""
    out = []
    for rel in demo_files(before):
        rec: dict[str, Any] = {"file": str(rel)}
        if not (after / rel).exists():
            rec["missing_after"] = True
            out.append(rec)
            continue
        a, b = renamed(numbers_of(before / rel), renames or []), numbers_of(after / rel)
        both = [k for k in a if k in b]
        diff = {k: [a[k], b[k]] for k in both if a[k] != b[k] and not (a[k] != a[k] and b[k] != b[k])}
        rec.update(n=len(both), equal=len(both) - len(diff), differ=diff,
                   max_abs_diff=max((abs(x - y) for x, y in diff.values()), default=0.0),
                   only_before=sorted(set(a) - set(b)), only_after=sorted(set(b) - set(a)))
        out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--json", type=Path, help="write the full comparison (every differing key) here")
    ap.add_argument("--rename", action="append", default=[], metavar="OLD=NEW", help="a key renamed since BEFORE")
    a = ap.parse_args()
    result = compare(a.before, a.after, [tuple(r.split("=", 1)) for r in a.rename])
    for r in result:
        if r.get("missing_after"):
            print(f"{r['file']}: MISSING in {a.after}")
            continue
        keys = sorted({k.split(".", 1)[-1] if k.startswith("row") else k for k in r["differ"]})
        print(f"{r['file']}: {r['n']} numbers, {r['equal']} equal, {len(r['differ'])} differ"
              + (f" (max |diff| {r['max_abs_diff']:.3g}; keys {keys[:6]}{' ...' if len(keys) > 6 else ''})" if r["differ"] else "")
              + (f"; only before {r['only_before'][:3]}" if r["only_before"] else "")
              + (f"; only after {r['only_after'][:3]}" if r["only_after"] else ""))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
