"""How a score was computed, recorded next to the score.

Every metrics dict that medmm writes carries a ``"provenance"`` entry made here, so a number
in a table can be traced to the implementation, the label handling and the sample count that
produced it (a common source of non-comparable results in this field).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

import medmm


def provenance(
    metric: str,
    *,
    implementation: str,
    n_samples: int,
    tokenisation: str | None = None,
    label_handling: dict[str, Any] | None = None,
    seed: int | None = None,
    ci_method: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A provenance record for one metric family.

    Args:
        metric: what was scored ("classification", "clinical_efficacy", ...).
        implementation: module/function (and library) that computed it.
        n_samples: number of samples scored (after id matching).
        tokenisation: how text was tokenised/normalised (text metrics).
        label_handling: e.g. {"uncertain": "ignore", "missing": "negative"}.
        seed: random seed of any resampling.
        ci_method: e.g. "percentile bootstrap, 1000 resamples, groups=patient".
        extra: anything else worth recording (thresholds, averaging, ...).
    """
    record: dict[str, Any] = {
        "metric": metric,
        "implementation": implementation,
        "medmm_version": medmm.__version__,
        "python": platform.python_version(),
        "n_samples": int(n_samples),
        "tokenisation": tokenisation,
        "label_handling": label_handling,
        "seed": seed,
        "ci_method": ci_method,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Write a metrics dict as JSON; refuses a dict without a ``provenance`` entry."""
    if "provenance" not in metrics:
        raise ValueError("metrics dict has no 'provenance' entry; build one with provenance()")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(metrics), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
