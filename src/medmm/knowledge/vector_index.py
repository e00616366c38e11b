"""A FAISS vector index whose hits lead back to samples (string id + JSON metadata per vector).

Kinds:
  - ``exact``: ``IndexFlatIP``; with ``metric="cosine"`` vectors are L2-normalised first, so the
    inner product is the cosine similarity. Brute force, exact, no training.
  - ``hnsw``: ``IndexHNSWFlat`` (graph search, no training; fast queries, slower to build).
  - ``ivf``: ``IndexIVFFlat`` (k-means coarse quantiser, needs training on the first batch;
    fast to build at a million vectors on few cores, where HNSW construction takes too long).
  - ``auto``: picked from the size of the first batch added (or ``expected_size``):
    below 20,000 vectors exact search is already fast (about a millisecond per query), so it is
    exact; up to 500,000 HNSW; beyond that IVF.

Positions inside FAISS are 0..n-1 in insertion order; ``ids``/``metadata`` are parallel lists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError, MedmmError, require
from medmm.fileio import atomic_dir

FORMAT_VERSION = 1
KINDS = ("auto", "exact", "hnsw", "ivf")
METRICS = ("cosine", "ip", "l2")
EXACT_BELOW = 20_000
HNSW_BELOW = 500_000


@dataclass
class Hit:
    """One search result: the stored id, its similarity score (higher = closer) and metadata."""

    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    rank: int = 0


def _faiss():
    return require("faiss", "train", "vector search")


def auto_kind(n: int) -> str:
    """The index kind `auto` picks for a collection of `n` vectors."""
    if n < EXACT_BELOW:
        return "exact"
    if n < HNSW_BELOW:
        return "hnsw"
    return "ivf"


def default_nlist(n: int) -> int:
    """IVF list count: about 4 * sqrt(n), rounded to a power of two, within [16, 4096].

    sqrt(n) balances the coarse search (nlist comparisons) against the list scan (n/nlist * nprobe);
    4x that keeps neighbours in fewer, smaller cells: at 1M x 512 (benchmarks/index_search.md)
    nlist 1024 reached recall@10 0.856 under 5 ms, nlist 4096 with nprobe 16 reached 0.964 at 1 ms.
    """
    if n <= 0:
        return 16
    return int(min(4096, max(16, 2 ** round(np.log2(4 * np.sqrt(n))))))


class VectorIndex:
    """A vector store: `add(vectors, ids, metadata)`, `search(queries, k)`, `save(dir)`, `load(dir)`.

    Args:
        dim: vector dimension.
        kind: "auto", "exact", "hnsw" or "ivf" (see the module docstring).
        metric: "cosine" (L2-normalise, inner product), "ip" (raw inner product) or "l2"
            (scores are negative squared distances, so higher is still closer).
        hnsw_m, ef_construction, ef_search: HNSW graph degree and beam widths.
        nlist, nprobe: IVF list count (None: `default_nlist` of the training batch) and lists probed.
        expected_size: collection size used by `auto` instead of the first batch's size.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "auto",
        metric: str = "cosine",
        *,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int = 16,
        expected_size: int | None = None,
    ):
        if kind not in KINDS:
            raise MedmmError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
        if metric not in METRICS:
            raise MedmmError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if dim <= 0:
            raise MedmmError(f"index dimension must be positive, got {dim}")
        self.dim = int(dim)
        self.kind = kind
        self.metric = metric
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.expected_size = expected_size
        self.ids: list[str] = []
        self.metadata: list[dict[str, Any]] = []
        self._pos: dict[str, int] = {}  # id -> position, for metadata look-ups
        self._index = None  # created on the first add, when `auto` knows the size

    # -- building ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def _prepare(self, vectors: np.ndarray | Sequence, what: str = "vectors") -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise MedmmError(f"{what} must have shape (n, {self.dim}), got {tuple(np.shape(vectors))}")
        if not np.all(np.isfinite(x)):
            raise MedmmError(f"{what} contain NaN or infinite values")
        x = np.ascontiguousarray(x)
        if self.metric == "cosine":
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            if np.any(norms == 0):
                raise MedmmError(f"{what} contain a zero vector, which has no cosine similarity")
            x = np.ascontiguousarray(x / norms)
        return x

    def _create(self, n_first: int) -> None:
        faiss = _faiss()
        if self.kind == "auto":
            self.kind = auto_kind(self.expected_size or n_first)
        faiss_metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if self.kind == "exact":
            self._index = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss_metric)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
            self._index = index
        else:  # ivf
            if self.nlist is None:
                self.nlist = default_nlist(self.expected_size or n_first)
            quantizer = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss_metric)
            index.nprobe = self.nprobe
            self._index = index

    def add(
        self,
        vectors: np.ndarray | Sequence,
        ids: Sequence[str],
        metadata: Sequence[dict[str, Any]] | None = None,
        *,
        train_size: int | None = None,
    ) -> None:
        """Add vectors (n, dim) with unique string ids and optional JSON-serialisable metadata.

        For IVF the first call also trains the coarse quantiser, on at most `train_size`
        vectors of this batch (default 64 per list, sampled at random: k-means needs a few dozen
        points per centroid, and more only slows training).
        """
        x = self._prepare(vectors)
        ids = [str(i) for i in ids]
        if len(ids) != len(x):
            raise MedmmError(f"got {len(x)} vectors but {len(ids)} ids")
        meta = [dict(m) for m in metadata] if metadata is not None else [{} for _ in ids]
        if len(meta) != len(x):
            raise MedmmError(f"got {len(x)} vectors but {len(meta)} metadata records")
        seen = set()
        for i in ids:
            if i in self._pos or i in seen:
                raise MedmmError(f"duplicate id {i!r}: ids must be unique so a hit leads to one sample")
            seen.add(i)
        for m in meta:
            try:
                json.dumps(m)
            except TypeError as exc:
                raise MedmmError(f"metadata must be JSON-serialisable: {exc}") from exc
        if len(x) == 0:
            return
        if self._index is None:
            self._create(len(x))
        if self.kind == "ivf" and not self._index.is_trained:
            if len(x) < self.nlist:
                raise MedmmError(f"an IVF index with {self.nlist} lists needs at least {self.nlist} vectors to train; got {len(x)}")
            n_train = min(len(x), train_size or 64 * self.nlist)
            rng = np.random.default_rng(0)
            sample = x if n_train == len(x) else x[np.sort(rng.choice(len(x), n_train, replace=False))]
            self._index.train(sample)
        self._index.add(x)
        start = len(self.ids)
        self.ids.extend(ids)
        self.metadata.extend(meta)
        self._pos.update((i, start + j) for j, i in enumerate(ids))

    # -- searching --------------------------------------------------------------------------
    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change the speed/recall trade-off of HNSW (ef_search) or IVF (nprobe) searches."""
        if ef_search is not None:
            self.ef_search = int(ef_search)
            if self._index is not None and self.kind == "hnsw":
                self._index.hnsw.efSearch = self.ef_search
        if nprobe is not None:
            self.nprobe = int(nprobe)
            if self._index is not None and self.kind == "ivf":
                self._index.nprobe = self.nprobe

    def search_raw(self, queries: np.ndarray | Sequence, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """FAISS-level search: (scores (nq, k), positions (nq, k)); position -1 = no hit.

        Scores are similarities (higher = closer); for metric "l2" the negated squared distance.
        """
        if k <= 0:
            raise MedmmError(f"k must be positive, got {k}")
        q = self._prepare(queries, "queries")
        if self._index is None or len(self) == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        k = min(k, len(self))
        scores, pos = self._index.search(q, k)
        if self.metric == "l2":
            scores = -scores
        return scores, pos

    def search(self, queries: np.ndarray | Sequence, k: int = 10) -> list[list[Hit]]:
        """For each query (a row of (nq, dim), or one (dim,) vector), its top-k hits, best first."""
        scores, pos = self.search_raw(queries, k)
        out: list[list[Hit]] = []
        for srow, prow in zip(scores, pos, strict=True):
            hits = []
            for s, p in zip(srow, prow, strict=True):
                if p < 0:  # FAISS pads with -1 when fewer than k vectors were reached
                    continue
                hits.append(Hit(self.ids[p], float(s), self.metadata[p], rank=len(hits) + 1))
            out.append(hits)
        return out

    def search_one(self, query: np.ndarray | Sequence, k: int = 10) -> list[Hit]:
        """Top-k hits of one query vector (dim,)."""
        return self.search(np.asarray(query, dtype=np.float32).reshape(1, -1), k)[0]

    def get_metadata(self, id: str) -> dict[str, Any]:
        """Metadata stored for `id` (KeyError when absent)."""
        return self.metadata[self._pos[id]]

    # -- persistence ------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "kind": self.kind,
            "metric": self.metric,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "size": len(self),
        }

    def save(self, directory: str | Path) -> Path:
        """Write the index to `directory` atomically (index.faiss + index.json).

        Files go to a temporary sibling folder that then replaces `directory`, so a crash
        mid-write never leaves a half-written index where a reader would load it.
        """
        faiss = _faiss()
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            if self._index is not None:
                faiss.write_index(self._index, str(tmp / "index.faiss"))
            doc = {"config": self._config(), "ids": self.ids, "metadata": self.metadata}
            with open(tmp / "index.json", "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
                fh.flush()
                os.fsync(fh.fileno())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> VectorIndex:
        """Read an index written by `save`; a missing or inconsistent file raises BadInputError."""
        faiss = _faiss()
        directory = Path(directory)
        meta_path = directory / "index.json"
        if not meta_path.is_file():
            raise BadInputError(directory, "not a vector index (index.json missing)")
        try:
            doc = json.loads(meta_path.read_text(encoding="utf-8"))
            cfg = doc["config"]
            ids, metadata = doc["ids"], doc["metadata"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BadInputError(meta_path, f"unreadable index description: {exc}") from exc
        if cfg.get("format_version") != FORMAT_VERSION:
            raise BadInputError(meta_path, f"index format {cfg.get('format_version')} is not {FORMAT_VERSION}")
        if len(ids) != len(metadata) or len(ids) != cfg["size"]:
            raise BadInputError(meta_path, "ids, metadata and size disagree")
        if len(set(ids)) != len(ids):
            raise BadInputError(meta_path, "ids are not unique")
        self = cls(
            cfg["dim"], cfg["kind"], cfg["metric"], hnsw_m=cfg["hnsw_m"], ef_construction=cfg["ef_construction"],
            ef_search=cfg["ef_search"], nlist=cfg["nlist"], nprobe=cfg["nprobe"],
        )
        faiss_path = directory / "index.faiss"
        if faiss_path.exists():
            try:
                self._index = faiss.read_index(str(faiss_path))
            except RuntimeError as exc:
                raise BadInputError(faiss_path, f"unreadable FAISS index: {exc}") from exc
            if self._index.ntotal != len(ids) or self._index.d != self.dim:
                raise BadInputError(faiss_path, f"holds {self._index.ntotal} vectors of dim {self._index.d}; index.json says {len(ids)} of dim {self.dim}")
            self.set_search_params(ef_search=self.ef_search, nprobe=self.nprobe)
        elif ids:
            raise BadInputError(directory, "index.faiss missing")
        self.ids = list(ids)
        self.metadata = list(metadata)
        self._pos = {i: j for j, i in enumerate(self.ids)}
        return self

    def memory_bytes(self) -> int:
        """Size of the serialised FAISS index in bytes (vectors + graph/lists)."""
        if self._index is None:
            return 0
        return int(_faiss().serialize_index(self._index).nbytes)
