"""Clinical efficacy: precision/recall/F1 of the observations of generated vs reference reports.

Both sides are labelled by the same labeller (:mod:`medmm.metrics.clinical.labeller`), then
each observation state is turned into 1 / 0 / ignored by two EXPLICIT options, recorded in
the output's provenance:

  * ``uncertain``: "positive" (U-ones), "negative" (U-zeros) or "ignore" (the pair is left
    out for that observation when either side is uncertain);
  * ``missing`` (observation not mentioned): "negative" (the usual CheXbert-style reading)
    or "ignore".

Per observation: precision, recall, F1 (None when undefined, e.g. no positive on either side).
Micro: pooled counts over the observations. Macro: mean of the observations' defined F1s
(undefined ones are listed in ``macro_excluded``, never counted as 0 or 1 silently).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from medmm.data.schema import LabelState
from medmm.metrics.clinical.labeller import COMPETITION_5, OBSERVATIONS, VERSION, label_report
from medmm.metrics.provenance import provenance

Uncertain = Literal["positive", "negative", "ignore"]
Missing = Literal["negative", "ignore"]
Labels = Mapping[str, LabelState]


def observation_set(name: str | Sequence[str]) -> tuple[str, ...]:
    """'14' (all CheXpert observations), '5' (competition five) or an explicit list."""
    if isinstance(name, str):
        if name in ("14", "all"):
            return OBSERVATIONS
        if name in ("5", "competition"):
            return COMPETITION_5
        raise ValueError(f"unknown observation set {name!r}; use '14', '5' or a list")
    unknown = [o for o in name if o not in OBSERVATIONS]
    if unknown:
        raise ValueError(f"unknown observations {unknown}; known: {list(OBSERVATIONS)}")
    return tuple(name)


def binarise(state: LabelState | None, uncertain: Uncertain, missing: Missing) -> int | None:
    """1, 0 or None (ignored) for one observation state under the chosen handling."""
    if uncertain not in ("positive", "negative", "ignore"):
        raise ValueError(f"uncertain must be positive, negative or ignore, not {uncertain!r}")
    if missing not in ("negative", "ignore"):
        raise ValueError(f"missing must be negative or ignore, not {missing!r}")
    if state is None:
        return 0 if missing == "negative" else None
    state = LabelState(state)
    if state == LabelState.UNCERTAIN:
        return {"positive": 1, "negative": 0, "ignore": None}[uncertain]
    return int(state == LabelState.POSITIVE)


def _prf(tp: int, fp: int, fn: int) -> tuple[float | None, float | None, float | None]:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    if tp + fp + fn == 0:
        f = None  # nothing positive on either side: F1 is undefined
    else:
        f = 2 * tp / (2 * tp + fp + fn)
    return p, r, f


def clinical_efficacy(
    hyp_labels: Sequence[Labels],
    ref_labels: Sequence[Labels],
    *,
    observations: str | Sequence[str] = "14",
    uncertain: Uncertain = "ignore",
    missing: Missing = "negative",
    with_provenance: bool = True,
) -> dict[str, Any]:
    """P/R/F1 per observation, micro and macro, from aligned label dicts."""
    if len(hyp_labels) != len(ref_labels):
        raise ValueError(f"{len(hyp_labels)} generated vs {len(ref_labels)} reference label sets")
    if not hyp_labels:
        raise ValueError("no reports to score")
    obs = observation_set(observations)
    per: dict[str, dict[str, Any]] = {}
    totals = [0, 0, 0, 0]
    for o in obs:
        tp = fp = fn = tn = 0
        for h, r in zip(hyp_labels, ref_labels, strict=True):
            hb = binarise(h.get(o), uncertain, missing)
            rb = binarise(r.get(o), uncertain, missing)
            if hb is None or rb is None:
                continue
            tp += hb and rb
            fp += hb and not rb
            fn += rb and not hb
            tn += not hb and not rb
        p, rc, f = _prf(tp, fp, fn)
        per[o] = {"precision": p, "recall": rc, "f1": f, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                  "support": tp + fn, "n_pairs": tp + fp + fn + tn}
        for i, v in enumerate((tp, fp, fn, tn)):
            totals[i] += v
    mp, mr, mf = _prf(*totals[:3])
    defined = {o: v for o, v in per.items() if v["f1"] is not None}

    def macro(key: str) -> float | None:
        vals = [v[key] for v in per.values() if v[key] is not None]
        return sum(vals) / len(vals) if vals else None

    out: dict[str, Any] = {
        "per_observation": per,
        "micro": {"precision": mp, "recall": mr, "f1": mf},
        "macro": {"precision": macro("precision"), "recall": macro("recall"),
                  "f1": sum(v["f1"] for v in defined.values()) / len(defined) if defined else None},
        "macro_excluded": [o for o in obs if o not in defined],
        "observations": list(obs),
        "uncertain": uncertain,
        "missing": missing,
    }
    if with_provenance:
        out["provenance"] = provenance(
            "clinical_efficacy",
            implementation=f"medmm.metrics.clinical ({VERSION}: CheXpert phrases + medmm regex negation/uncertainty)",
            n_samples=len(hyp_labels),
            label_handling={"uncertain": uncertain, "missing": missing,
                            "observations": "14" if obs == OBSERVATIONS else list(obs)},
            averaging="micro = pooled counts; macro = mean over observations with a defined value",
        )
    return out


def clinical_efficacy_from_text(
    hypotheses: Mapping[str, str],
    references: Mapping[str, str | Sequence[str]],
    **kwargs: Any,
) -> dict[str, Any]:
    """Label generated and reference reports (same ids) and score them with :func:`clinical_efficacy`.

    With several references per id the first one is labelled (recorded in provenance).
    """
    missing_ids = sorted(set(hypotheses) ^ set(references))
    if missing_ids:
        raise ValueError(f"ids differ between generated and reference reports, e.g. {missing_ids[:5]}")
    ids = sorted(hypotheses)
    hyp = [label_report(hypotheses[i]) for i in ids]
    ref = [label_report(references[i] if isinstance(references[i], str) else references[i][0]) for i in ids]
    out = clinical_efficacy(hyp, ref, **kwargs)
    if "provenance" in out:
        out["provenance"]["reference_used"] = "first reference per id"
    return out
