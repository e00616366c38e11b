"""Optional model-based report metrics (off by default; need torch + transformers and published weights).

``medmm score --task report_generation --model-metrics chexbert=PATH`` adds F1-CheXbert.
PATH is ``chexbert.pth``, a folder holding it, or a Hub repo id. Importing this package is
torch-free; the model is built only when a metric is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

KNOWN = ("chexbert",)


def parse_specs(items: Sequence[str] | None) -> dict[str, str]:
    """``["chexbert=PATH", ...]`` -> ``{"chexbert": "PATH"}``; unknown names and bad forms are errors."""
    specs: dict[str, str] = {}
    for item in items or ():
        name, sep, where = item.partition("=")
        name = name.strip().lower()
        if not sep or not where.strip():
            raise ValueError(f"--model-metrics {item!r}: expected NAME=PATH, e.g. chexbert=/models/chexbert.pth")
        if name not in KNOWN:
            raise ValueError(f"--model-metrics {item!r}: unknown metric {name!r}; known: {list(KNOWN)}")
        specs[name] = where.strip()
    return specs


def label_with_models(specs: dict[str, str], hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Per metric: {"hyp": labels, "ref": labels, "provenance": {...}} for the aligned reports."""
    out: dict[str, Any] = {}
    if "chexbert" in specs:
        from medmm.metrics.model_based.chexbert import LABEL_HANDLING, CheXbertLabeller

        model = CheXbertLabeller(specs["chexbert"])
        out["chexbert"] = {"hyp": model.label(hyps), "ref": model.label(refs),
                           "provenance": {**model.provenance(), "label_handling": LABEL_HANDLING,
                                          "implementation": "medmm.metrics.model_based.chexbert (CheXbert, Smit et al. 2020)",
                                          "averaging": "micro = pooled counts; macro = mean over observations with a defined F1"}}
    return out


def aggregate(labelled: dict[str, Any], index: Sequence[int] | None = None) -> dict[str, Any]:
    """The metrics of ``label_with_models``' output, optionally over a subset of samples (bootstrap)."""
    out: dict[str, Any] = {}
    if "chexbert" in labelled:
        from medmm.metrics.model_based.chexbert import f1_chexbert

        lab = labelled["chexbert"]
        sel = range(len(lab["hyp"])) if index is None else index
        out.update(f1_chexbert([lab["hyp"][i] for i in sel], [lab["ref"][i] for i in sel]))
    return out
