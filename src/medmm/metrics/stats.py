"""Bootstrap confidence intervals and paired significance tests for any metric function.

A metric function takes aligned per-sample sequences (predictions, references, ...) and
returns a float or a flat/nested dict of floats. Resampling is by sample, or by group
(patient, case, image) when ``groups`` is given: whole groups are drawn with replacement so
that correlated samples of one patient do not narrow the interval falsely.

Resamples on which the metric is undefined (NaN, e.g. AUROC of a resample holding a single
class) are left out of the percentiles and counted in ``n_invalid``; they are never silently
turned into numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0


def _take(seq: Any, idx: np.ndarray) -> Any:
    if isinstance(seq, np.ndarray):
        return seq[idx]
    if isinstance(seq, (list, tuple)):
        return [seq[i] for i in idx]
    raise TypeError(f"cannot resample a {type(seq).__name__}; pass a numpy array or a list")


def _length(args: Sequence[Any]) -> int:
    lengths = {len(a) for a in args}
    if len(lengths) != 1:
        raise ValueError(f"inputs to resample have different lengths: {sorted(lengths)}")
    (n,) = lengths
    if n == 0:
        raise ValueError("nothing to resample: inputs are empty")
    return n


def flatten(values: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) dict as {"a.b": value}; a bare number becomes {"value": x}."""
    if not isinstance(values, dict):
        return {prefix or "value": float(values)}
    out: dict[str, float] = {}
    for k, v in values.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


class _Groups:
    """Index arrays of the members of each group, for group-level resampling."""

    def __init__(self, groups: Sequence[Any] | None, n: int):
        if groups is None:
            self.members = None
            self.n = n
            return
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries for {n} samples")
        _, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        self.members = np.split(order, bounds)
        self.n = len(self.members)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        pick = rng.integers(0, self.n, size=self.n)
        if self.members is None:
            return pick
        return np.concatenate([self.members[g] for g in pick])

    def sample_mask(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Per-sample coin flips, shared by all samples of a group (for permutation tests)."""
        flips = rng.random(self.n) < 0.5
        if self.members is None:
            return flips
        mask = np.zeros(n, dtype=bool)
        for g, members in enumerate(self.members):
            mask[members] = flips[g]
        return mask


def _ci_method(n_resamples: int, confidence: float, groups: Sequence[Any] | None, kind: str) -> str:
    unit = "groups" if groups is not None else "samples"
    return f"{kind}, {n_resamples} resamples of {unit}, {confidence:.0%} interval"


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    *inputs: Any,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = DEFAULT_SEED,
    groups: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap CI of ``metric_fn(*inputs)``.

    Returns ``{"estimate": {...}, "low": {...}, "high": {...}, "n_invalid": {...}, "method",
    "n_resamples", "seed", "confidence", "n_units"}``; the inner dicts are keyed like
    :func:`flatten` of the metric's output.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    n = _length(inputs)
    grouping = _Groups(groups, n)
    estimate = flatten(metric_fn(*inputs))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in estimate}
    for _ in range(n_resamples):
        idx = grouping.draw(rng)
        values = flatten(metric_fn(*(_take(a, idx) for a in inputs)))
        for k in draws:
            draws[k].append(values.get(k, math.nan))
    alpha = (1 - confidence) / 2
    low, high, invalid = {}, {}, {}
    for k, vals in draws.items():
        arr = np.asarray(vals, dtype=float)
        ok = arr[np.isfinite(arr)]
        invalid[k] = int(arr.size - ok.size)
        if ok.size == 0:
            low[k] = high[k] = None
        else:
            low[k], high[k] = (float(x) for x in np.quantile(ok, [alpha, 1 - alpha]))
    return {
        "estimate": {k: (v if math.isfinite(v) else None) for k, v in estimate.items()},
        "low": low,
        "high": high,
        "n_invalid": invalid,
        "method": _ci_method(n_resamples, confidence, groups, "percentile bootstrap"),
        "n_resamples": n_resamples,
        "seed": seed,
        "confidence": confidence,
        "n_units": grouping.n,
    }


def _swap(a: Any, b: Any, mask: np.ndarray) -> tuple[Any, Any]:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        sel = mask.reshape((-1,) + (1,) * (a.ndim - 1))
        return np.where(sel, b, a), np.where(sel, a, b)
    new_a = [y if m else x for x, y, m in zip(a, b, mask, strict=True)]
    new_b = [x if m else y for x, y, m in zip(a, b, mask, strict=True)]
    return new_a, new_b


def paired_test(
    metric_fn: Callable[..., float],
    pred_a: Any,
    pred_b: Any,
    *shared: Any,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = DEFAULT_SEED,
    groups: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Compare systems A and B scored on the same samples: ``metric_fn(pred, *shared) -> float``.

    Two tests, both on the difference d = metric(A) - metric(B):
      * paired bootstrap: the same resample for A and B; gives the percentile CI of d and a
        two-sided p-value from the bootstrap distribution shifted to the null (mean 0):
        p = (1 + #{|d* - d| >= |d|}) / (1 + R).
      * approximate randomisation: A's and B's outputs are swapped per sample (per group when
        ``groups`` is given) with probability 1/2; p = (1 + #{|d_perm| >= |d|}) / (1 + R).
    Raises ValueError when the metric is not finite on the full data.
    """
    res = paired_tests(metric_fn, pred_a, pred_b, *shared, n_resamples=n_resamples, confidence=confidence,
                       seed=seed, groups=groups)
    out = res.pop("value")
    if "error" in out:
        raise ValueError(out["error"])
    return out


def paired_tests(
    metric_fn: Callable[..., Any],
    pred_a: Any,
    pred_b: Any,
    *shared: Any,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = DEFAULT_SEED,
    groups: Sequence[Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`paired_test` for a metric returning a dict: one result per key of :func:`flatten`,
    all keys sharing the same resamples (one metric call per system and resample).

    A key whose value is not finite on the full data for A or B gets ``{"error": reason}``.
    """
    n = _length((pred_a, pred_b, *shared))
    grouping = _Groups(groups, n)

    def score(pred: Any, sub: Sequence[Any]) -> dict[str, float]:
        return flatten(metric_fn(pred, *sub))

    a, b = score(pred_a, shared), score(pred_b, shared)
    keys = [k for k in a if k in b]
    observed = {k: a[k] - b[k] for k in keys}
    ok_keys = [k for k in keys if math.isfinite(observed[k])]
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {k: [] for k in ok_keys}
    for _ in range(n_resamples):
        idx = grouping.draw(rng)
        sub = [_take(s, idx) for s in shared]
        sa, sb = score(_take(pred_a, idx), sub), score(_take(pred_b, idx), sub)
        for k in ok_keys:
            boot[k].append(sa.get(k, math.nan) - sb.get(k, math.nan))
    hits = dict.fromkeys(ok_keys, 0)
    valid = dict.fromkeys(ok_keys, 0)
    for _ in range(n_resamples):
        mask = grouping.sample_mask(rng, n)
        pa, pb = _swap(pred_a, pred_b, mask)
        sa, sb = score(pa, shared), score(pb, shared)
        for k in ok_keys:
            d = sa.get(k, math.nan) - sb.get(k, math.nan)
            if math.isfinite(d):
                valid[k] += 1
                hits[k] += abs(d) >= abs(observed[k]) - 1e-12
    alpha = (1 - confidence) / 2
    method = _ci_method(n_resamples, confidence, groups, "paired percentile bootstrap + approximate randomisation")
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        if k not in boot:
            out[k] = {"a": a[k], "b": b[k],
                      "error": f"metric {k} is not finite on the full data (A={a[k]}, B={b[k]}); cannot test"}
            continue
        arr = np.asarray(boot[k], dtype=float)
        fin = arr[np.isfinite(arr)]
        d = observed[k]
        if fin.size:
            low, high = (float(x) for x in np.quantile(fin, [alpha, 1 - alpha]))
            p_boot = (1 + int(np.sum(np.abs(fin - d) >= abs(d) - 1e-12))) / (1 + fin.size)
        else:
            low = high = p_boot = None
        out[k] = {
            "a": a[k], "b": b[k], "difference": d, "difference_low": low, "difference_high": high,
            "p_bootstrap": p_boot,
            "p_randomisation": (1 + hits[k]) / (1 + valid[k]) if valid[k] else None,
            "n_invalid": int(arr.size - fin.size) + (n_resamples - valid[k]),
            "method": method, "n_resamples": n_resamples, "seed": seed, "confidence": confidence,
            "n_units": grouping.n,
        }
    return out
