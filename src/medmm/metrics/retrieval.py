"""Image-text retrieval metrics from a similarity matrix: R@K, MRR, median and mean rank.

``similarity[i, j]`` scores row item i (e.g. image i) against column item j (e.g. report j).
The ground truth is the diagonal (row i matches column i) unless ``relevant`` (a boolean
matrix of the same shape) says otherwise, e.g. several captions per image.

Ranks are 1-based and ties are handled PESSIMISTICALLY: a correct item that ties with k
incorrect items is ranked after all of them, so a constant similarity matrix gives the worst
rank, never a lucky one. With several correct items the best-scoring one counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medmm.metrics.provenance import provenance

DEFAULT_KS = (1, 5, 10)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix of two embedding sets (n, d) x (m, d) -> (n, m)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be (n, d) and (m, d); got {a.shape} and {b.shape}")
    an = np.linalg.norm(a, axis=1, keepdims=True)
    bn = np.linalg.norm(b, axis=1, keepdims=True)
    if np.any(an == 0) or np.any(bn == 0):
        raise ValueError("an embedding has zero norm; cosine similarity is undefined for it")
    return (a / an) @ (b / bn).T


def _check(similarity: np.ndarray, relevant: np.ndarray | None) -> np.ndarray:
    if similarity.ndim != 2 or similarity.size == 0:
        raise ValueError(f"similarity must be a non-empty 2-D matrix, got shape {similarity.shape}")
    if not np.all(np.isfinite(similarity)):
        raise ValueError("similarity contains NaN or infinite values")
    if relevant is None:
        if similarity.shape[0] != similarity.shape[1]:
            raise ValueError(
                f"similarity is {similarity.shape}; a non-square matrix needs an explicit 'relevant' matrix")
        return np.eye(similarity.shape[0], dtype=bool)
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape != similarity.shape:
        raise ValueError(f"relevant {relevant.shape} and similarity {similarity.shape} differ")
    return relevant


def ranks(similarity: np.ndarray, relevant: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of the best correct column for each row (pessimistic ties).

    Rows without any correct column get rank 0 and should be removed by the caller;
    :func:`retrieval_metrics` refuses them.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    relevant = _check(similarity, relevant)
    best = np.where(relevant, similarity, -np.inf).max(axis=1, keepdims=True)
    # every incorrect column scoring >= the best correct one is ranked ahead of it
    ahead = np.sum((similarity >= best) & ~relevant, axis=1)
    out = ahead + 1
    out[~relevant.any(axis=1)] = 0
    return out


def rank_metrics(r: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """R@K (%), MRR, median and mean rank from 1-based ranks."""
    r = np.asarray(r)
    if r.size == 0:
        raise ValueError("no ranks to score")
    out = {f"R@{k}": float(100.0 * np.mean(r <= k)) for k in ks}
    out["mrr"] = float(np.mean(1.0 / r))
    out["median_rank"] = float(np.median(r))
    out["mean_rank"] = float(np.mean(r))
    return out


def retrieval_metrics(
    similarity: np.ndarray,
    relevant: np.ndarray | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    row_name: str = "image",
    col_name: str = "text",
    with_provenance: bool = True,
) -> dict[str, Any]:
    """Metrics in both directions: ``{row}_to_{col}`` (rows are queries) and ``{col}_to_{row}``."""
    similarity = np.asarray(similarity, dtype=np.float64)
    rel = _check(similarity, relevant)
    if not rel.any(axis=1).all():
        raise ValueError(f"{int((~rel.any(axis=1)).sum())} {row_name} queries have no relevant {col_name}")
    if not rel.any(axis=0).all():
        raise ValueError(f"{int((~rel.any(axis=0)).sum())} {col_name} queries have no relevant {row_name}")
    out: dict[str, Any] = {
        f"{row_name}_to_{col_name}": rank_metrics(ranks(similarity, rel), ks),
        f"{col_name}_to_{row_name}": rank_metrics(ranks(similarity.T, rel.T), ks),
    }
    if with_provenance:
        out["provenance"] = provenance(
            "retrieval",
            implementation="medmm.metrics.retrieval (numpy)",
            n_samples=int(similarity.shape[0]),
            n_columns=int(similarity.shape[1]),
            ties="pessimistic: a correct item tied with incorrect ones is ranked after them",
            ground_truth="diagonal" if relevant is None else "relevance matrix",
            recall_unit="percent",
        )
    return out
