"""What the floors scripts of benchmarks/reproduce/ share: the paired comparison record and the output."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medmm.metrics.stats import paired_test


def paired_record(metric: Callable[..., Any], a: Any, b: Any, *shared: Any, n_resamples: int) -> dict[str, Any]:
    """metric(a) - metric(b) on the same samples, with its 95% CI and the bootstrap and
    approximate-randomisation p-values (`medmm.metrics.stats.paired_test`)."""
    t = paired_test(metric, a, b, *shared, n_resamples=n_resamples)
    return {"difference": t["difference"], "ci95": [t["difference_low"], t["difference_high"]],
            "p_bootstrap": t["p_bootstrap"], "p_randomisation": t["p_randomisation"]}


def write_result(result: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """Print the result as JSON and write it to `out` when given."""
    text = json.dumps(result, indent=1)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return result
