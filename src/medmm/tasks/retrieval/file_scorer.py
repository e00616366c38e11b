"""The retrieval task's file scorer (`medmm score --task retrieval`), torch-free.

    pred: .npy similarity matrix (row i = query i, column i its match) or .npz with two embedding
          arrays (e.g. "image", "text"; row i of each is one pair);
    ref (optional): .npy boolean relevance matrix, or .jsonl with one record per row in matrix
          order (ids and group fields for ``group_by``).

R@K, MRR, median and mean rank both ways (`medmm.metrics.retrieval`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError
from medmm.metrics.score import FileScorer, Prepared, register_scorer


def prepare_retrieval(pred_path: Path, ref_path: Path | None, *, group_by: str | None = None) -> Prepared:
    """R@K / MRR / median rank both ways from a similarity matrix or paired embeddings."""
    from medmm.metrics.retrieval import cosine_similarity, rank_metrics, ranks, retrieval_metrics

    row_name, col_name = "image", "text"
    try:
        loaded = np.load(pred_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInputError(pred_path, f"not a readable .npy/.npz file: {exc}") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = list(loaded.files)
        if len(names) != 2:
            raise BadInputError(pred_path, f".npz must hold exactly two embedding arrays, found {names}")
        row_name, col_name = names
        try:
            sim = cosine_similarity(loaded[row_name], loaded[col_name])
        except ValueError as exc:
            raise BadInputError(pred_path, str(exc)) from exc
    else:
        sim = np.asarray(loaded, dtype=np.float64)
    relevant = None
    group_ids = None
    ids = [str(k) for k in range(sim.shape[0])] if sim.ndim == 2 else []
    if ref_path is not None:
        if ref_path.suffix == ".npy":
            relevant = np.load(ref_path, allow_pickle=False).astype(bool)
        else:
            from medmm.data.io import read_jsonl

            recs = read_jsonl(ref_path)
            if len(recs) != sim.shape[0]:
                raise BadInputError(ref_path, f"{len(recs)} records for a matrix with {sim.shape[0]} rows")
            ids = [str(r.get("id", k)) for k, r in enumerate(recs)]
            if group_by:
                missing = [k for k, r in enumerate(recs) if r.get(group_by) in (None, "")]
                if missing:
                    raise BadInputError(ref_path, f"rows {missing[:3]} have no {group_by!r}")
                group_ids = [str(r[group_by]) for r in recs]
    elif group_by:
        raise BadInputError(pred_path, "group_by needs a reference .jsonl with one record per matrix row")
    try:
        result = retrieval_metrics(sim, relevant, row_name=row_name, col_name=col_name)
    except ValueError as exc:
        raise BadInputError(pred_path, str(exc)) from exc
    items: list[Any] = []
    if relevant is None or relevant.shape[0] == relevant.shape[1]:
        # a query and its paired item are resampled together; ranks stay those of the full gallery
        items = list(zip(ranks(sim, relevant), ranks(sim.T, None if relevant is None else relevant.T), strict=False))

    def aggregate(sel: list[Any]) -> dict[str, float]:
        if not sel:
            raise BadInputError(ref_path, "resampling needs a square matrix (queries paired both ways)")
        a = rank_metrics(np.asarray([x[0] for x in sel]))
        b = rank_metrics(np.asarray([x[1] for x in sel]))
        return {**{f"{row_name}_to_{col_name}.{k}": v for k, v in a.items()},
                **{f"{col_name}_to_{row_name}.{k}": v for k, v in b.items()}}

    return Prepared(ids, result, items, aggregate, group_ids, "queries resampled; ranks against the full gallery")


SCORER = register_scorer("retrieval", FileScorer(prepare_retrieval, needs_ref=False))
