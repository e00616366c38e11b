"""Validation of the labeller against the Open-i (IU X-ray) gold labels of the NegBio paper.

The gold file has 0/1 labels for the 14 ChestX-ray14 findings + "normal" per report
(filename CXRnnnn = uid nnnn of ``indiana_reports.csv``). Findings map to CheXpert
observations where they correspond:

    Atelectasis -> Atelectasis            Cardiomegaly -> Cardiomegaly
    Effusion -> Pleural Effusion          Pneumonia -> Pneumonia
    Pneumothorax -> Pneumothorax          Consolidation -> Consolidation
    Edema -> Edema                        Mass OR Nodule -> Lung Lesion
    Infiltration -> Lung Opacity          (approximate: Lung Opacity is broader)
    Pleural_Thickening -> Pleural Other   (Fibrosis is pulmonary fibrosis: no CheXpert label)
    normal -> No Finding
Emphysema, Fibrosis and Hernia have no CheXpert observation; Enlarged Cardiomediastinum, Fracture and
Support Devices have no gold label and are not validated.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from medmm.data.schema import LabelState
from medmm.errors import BadInputError
from medmm.metrics.clinical.labeller import label_report

OPENI_TO_CHEXPERT: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Pleural Effusion": ("Effusion",),
    "Pneumonia": ("Pneumonia",),
    "Pneumothorax": ("Pneumothorax",),
    "Consolidation": ("Consolidation",),
    "Edema": ("Edema",),
    "Lung Lesion": ("Mass", "Nodule"),
    "Lung Opacity": ("Infiltration",),
    "Pleural Other": ("Pleural_Thickening",),
    "No Finding": ("normal",),
}


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
    return {"precision": p, "recall": r, "f1": f, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn}


def load_openi(gold_csv: str | Path, reports_csv: str | Path) -> list[tuple[str, str, dict[str, int]]]:
    """(report id, findings + impression text, gold row) for every gold row with a report."""
    reports: dict[str, str] = {}
    try:
        with open(reports_csv, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                parts = []
                for key in ("findings", "impression"):
                    if (row.get(key) or "").strip():
                        parts.append(f"{key.upper()}: {row[key].strip()}")
                reports[f"CXR{row['uid']}"] = "\n".join(parts)
        with open(gold_csv, newline="", encoding="utf-8") as fh:
            gold = list(csv.DictReader(fh))
    except (OSError, KeyError, csv.Error) as exc:
        raise BadInputError(reports_csv, f"cannot read Open-i reports/gold labels: {exc}") from exc
    out = []
    for row in gold:
        rid = row["filename"]
        if rid in reports and reports[rid].strip():
            out.append((rid, reports[rid], {k: int(v) for k, v in row.items() if k != "filename"}))
    return out


def validate_openi(gold_csv: str | Path, reports_csv: str | Path) -> dict[str, Any]:
    """Per-observation precision/recall/F1 of the labeller vs the Open-i gold labels.

    Two readings of a predicted label: ``strict`` (only POSITIVE counts as positive) and
    ``uncertain_positive`` (UNCERTAIN counts too; the gold has no uncertain class).
    """
    rows = load_openi(gold_csv, reports_csv)
    counts = {mode: {o: [0, 0, 0] for o in OPENI_TO_CHEXPERT} for mode in ("strict", "uncertain_positive")}
    for _, text, gold in rows:
        labels = label_report(text)
        for obs, names in OPENI_TO_CHEXPERT.items():
            g = any(gold[n] == 1 for n in names)
            state = labels.get(obs)
            for mode in counts:
                pos = state == LabelState.POSITIVE or (mode == "uncertain_positive" and state == LabelState.UNCERTAIN)
                c = counts[mode][obs]
                c[0] += pos and g
                c[1] += pos and not g
                c[2] += g and not pos
    return {
        "n_reports": len(rows),
        "mapping": {k: list(v) for k, v in OPENI_TO_CHEXPERT.items()},
        **{mode: {o: _prf(*c) for o, c in per.items()} for mode, per in counts.items()},
    }
