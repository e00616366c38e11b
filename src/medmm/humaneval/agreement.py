"""Inter-rater agreement and metric-human correlation (numpy/scipy only).

Cohen's kappa (unweighted, linear, quadratic), Fleiss' kappa, Krippendorff's alpha (nominal,
ordinal, interval) and Spearman/Kendall correlation of automated metrics with human ratings.
Formulas: Cohen 1960/1968; Fleiss 1971; Krippendorff, "Computing Krippendorff's alpha-reliability"
(2011), coincidence-matrix form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any, Literal

import numpy as np

Weights = Literal[None, "linear", "quadratic"]
Level = Literal["nominal", "ordinal", "interval"]


def cohen_kappa(
    a: Sequence[Any], b: Sequence[Any], weights: Weights = None, categories: Sequence[Any] | None = None
) -> float:
    """Cohen's kappa of two raters' labels on the same items (weighted for ordered categories).

    ``categories`` fixes the order (and the distance) used by the weights; default: sorted union.
    Returns nan when chance agreement is total (e.g. both raters always give one label).
    """
    if len(a) != len(b):
        raise ValueError(f"raters rated different numbers of items ({len(a)} vs {len(b)})")
    if len(a) == 0:
        return math.nan
    cats = list(categories) if categories is not None else sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    observed = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        observed[index[x], index[y]] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(1), observed.sum(0))
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    elif weights == "quadratic":
        w = ((i - j) ** 2).astype(float)
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    denom = float((w * expected).sum())
    return math.nan if denom == 0 else 1.0 - float((w * observed).sum()) / denom


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from an items x categories table of how many raters chose each category.

    Every item must have the same number of ratings (at least two).
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError("counts must be a non-empty items x categories table")
    n = table.sum(1)
    if not np.all(n == n[0]) or n[0] < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    n_raters = n[0]
    p_j = table.sum(0) / table.sum()
    p_i = ((table**2).sum(1) - n_raters) / (n_raters * (n_raters - 1))
    p_bar, p_e = p_i.mean(), float((p_j**2).sum())
    return math.nan if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def ratings_to_counts(ratings: np.ndarray | Sequence[Sequence[Any]], categories: Sequence[Any] | None = None) -> np.ndarray:
    """Items x raters labels -> items x categories counts (input of ``fleiss_kappa``)."""
    arr = np.asarray(ratings, dtype=object)
    cats = list(categories) if categories is not None else sorted({x for row in arr for x in row})
    index = {c: i for i, c in enumerate(cats)}
    out = np.zeros((arr.shape[0], len(cats)), dtype=int)
    for r, row in enumerate(arr):
        for x in row:
            out[r, index[x]] += 1
    return out


def krippendorff_alpha(data: np.ndarray | Sequence[Sequence[Any]], level: Level = "nominal") -> float:
    """Krippendorff's alpha of a raters x units table; missing values are None or nan.

    Units with fewer than two values are not pairable and are left out, as in Krippendorff (2011).
    Nominal data may be any hashable labels; ordinal and interval data must be numbers.
    """
    table = [list(row) for row in data]
    units = list(zip(*table, strict=False)) if table else []
    values_per_unit = [[v for v in u if not _missing(v)] for u in units]
    values_per_unit = [vs for vs in values_per_unit if len(vs) >= 2]
    if not values_per_unit:
        return math.nan
    cats = sorted({v for vs in values_per_unit for v in vs})
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    o = np.zeros((k, k))
    for vs in values_per_unit:
        m = len(vs)
        idx = [index[v] for v in vs]
        for p, q in ((p, q) for p in range(m) for q in range(m) if p != q):
            o[idx[p], idx[q]] += 1.0 / (m - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    d2 = _delta2(np.asarray(cats, dtype=object), n_c, level)
    d_obs = float((o * d2).sum())
    d_exp = float((np.outer(n_c, n_c) * d2).sum()) / (n - 1)
    return math.nan if d_exp == 0 else 1.0 - d_obs / d_exp


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _delta2(cats: np.ndarray, n_c: np.ndarray, level: Level) -> np.ndarray:
    k = len(cats)
    if level == "nominal":
        return 1.0 - np.eye(k)
    if level == "interval":
        x = cats.astype(float)
        return (x[:, None] - x[None, :]) ** 2
    if level == "ordinal":
        # Distance between ranks c < k: the marginal mass from c to k, minus half of each end.
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        d = np.zeros((k, k))
        for c in range(k):
            for g in range(c + 1, k):
                d[c, g] = d[g, c] = (cum[g + 1] - cum[c] - (n_c[c] + n_c[g]) / 2) ** 2
        return d
    raise ValueError(f"level must be nominal, ordinal or interval, got {level!r}")


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau-b (with two-sided p-values) of paired values."""
    from scipy import stats

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys = xs[keep], ys[keep]
    out: dict[str, Any] = {"n": int(len(xs))}
    if len(xs) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        out.update(spearman=math.nan, spearman_p=math.nan, kendall=math.nan, kendall_p=math.nan)
        return out
    sp = stats.spearmanr(xs, ys)
    kt = stats.kendalltau(xs, ys)
    out.update(spearman=float(sp.statistic), spearman_p=float(sp.pvalue),
               kendall=float(kt.statistic), kendall_p=float(kt.pvalue))
    return out


# ------------------------------------------------------------------ study-level report
LIKERT = ("correctness", "completeness", "usefulness")
LIKERT_CATEGORIES = (1, 2, 3, 4, 5)


def _unit_key(row: dict[str, Any]) -> tuple[str, str]:
    if row.get("design") == "pairwise" or row.get("system_right"):
        pair = sorted([str(row["system_left"]), str(row["system_right"])])
        return (str(row["item_id"]), " vs ".join(pair))
    return (str(row["item_id"]), str(row["system"]))


def _field_values(row: dict[str, Any], field: str) -> Any:
    # Pairwise: agree on WHICH SYSTEM won, never on left/right (randomised per rater).
    return row.get("preferred_system") if field == "preference" else row.get(field)


def field_agreement(rows: Iterable[dict[str, Any]], field: str, ordinal: bool = True) -> dict[str, Any]:
    """Agreement on one rating field over all raters of exported rows (see export.export_rows)."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        v = _field_values(r, field)
        if v is not None and v != "":
            table.setdefault(_unit_key(r), {})[str(r["rater"])] = v
    raters = sorted({rt for d in table.values() for rt in d})
    units = sorted(table)
    out: dict[str, Any] = {"field": field, "raters": raters, "n_units": len(units)}
    cats = list(LIKERT_CATEGORIES) if ordinal and field in LIKERT else None
    pairs = []
    for r1, r2 in combinations(raters, 2):
        both = [u for u in units if r1 in table[u] and r2 in table[u]]
        a, b = [table[u][r1] for u in both], [table[u][r2] for u in both]
        entry: dict[str, Any] = {"raters": [r1, r2], "n": len(both), "kappa": cohen_kappa(a, b, None, cats)}
        if ordinal:
            entry["kappa_linear"] = cohen_kappa(a, b, "linear", cats)
            entry["kappa_quadratic"] = cohen_kappa(a, b, "quadratic", cats)
        pairs.append(entry)
    out["cohen"] = pairs
    complete = [u for u in units if len(table[u]) == len(raters)]
    if len(raters) >= 2 and complete:
        counts = ratings_to_counts([[table[u][r] for r in raters] for u in complete], cats)
        out["fleiss"] = {"kappa": fleiss_kappa(counts), "n_units": len(complete)}
    else:
        out["fleiss"] = {"kappa": math.nan, "n_units": len(complete)}
    data = [[table[u].get(r) for u in units] for r in raters]
    out["krippendorff_nominal"] = krippendorff_alpha(data, "nominal")
    if ordinal:
        out["krippendorff_ordinal"] = krippendorff_alpha(data, "ordinal")
    return out


def metric_correlations(
    rows: Iterable[dict[str, Any]],
    metrics: dict[tuple[str, str], dict[str, float]],
    fields: Sequence[str] = (*LIKERT, "errors_significant"),
) -> list[dict[str, Any]]:
    """Correlate each automated metric with the raters' mean of each field, per (item, system).

    ``metrics`` maps (item_id, system) to {metric name: value}. Single-output studies only:
    a pairwise preference has no per-output score.
    """
    rows = [r for r in rows if r.get("system")]
    means: dict[str, dict[tuple[str, str], float]] = {}
    for f in fields:
        acc: dict[tuple[str, str], list[float]] = {}
        for r in rows:
            if r.get(f) is not None and r.get(f) != "":
                acc.setdefault((str(r["item_id"]), str(r["system"])), []).append(float(r[f]))
        means[f] = {k: float(np.mean(v)) for k, v in acc.items()}
    names = sorted({m for d in metrics.values() for m in d})
    out = []
    for m in names:
        for f in fields:
            keys = [k for k in means[f] if k in metrics and m in metrics[k]]
            res = correlation([metrics[k][m] for k in keys], [means[f][k] for k in keys])
            out.append({"metric": m, "field": f, **res})
    return out


def agreement_report(
    rows: Sequence[dict[str, Any]], metrics: dict[tuple[str, str], dict[str, float]] | None = None
) -> dict[str, Any]:
    """Everything for a study's exported rows: agreement per field, then metric correlations."""
    report: dict[str, Any] = {"n_ratings": len(rows), "fields": []}
    if any(r.get("preferred_system") for r in rows):
        report["fields"].append(field_agreement(rows, "preference", ordinal=False))
    for f in LIKERT:
        if any(r.get(f) is not None for r in rows):
            report["fields"].append(field_agreement(rows, f, ordinal=True))
    if metrics:
        report["correlations"] = metric_correlations(rows, metrics)
    return _json_safe(report)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x
