"""Retrieval of similar training reports for retrieval-augmented report generation.

A `ReportStore` holds one entry per training study: its id, report text, grouping id (patient,
case or study) and an image embedding, searched with `medmm.knowledge.vector_index.VectorIndex`
(exact cosine search). A query (a new study's image embedding) gets the k most similar
training studies and their reports; entries of the query's own group can be excluded so a
training study never retrieves itself or a sibling image of the same case (a leak that would
teach the decoder to copy).

Embedding: `thumbnail_embedding` is a fixed, training-free image descriptor (a 16 x 16 grey
thumbnail made by the shared preprocessing path for `thumbnail_spec`, mean-centred, L2-normalised;
the views of a study averaged). It needs no weights, is
identical at training and test time and is stored with the run, which is what a retrieval key
has to be while the report model's own image encoder is still changing. It finds images of the
same modality, plane and body region; it does not know pathology.

    store = ReportStore(ids, texts, groups, embeddings)
    hits = store.search(query_embeddings, k=3, exclude_groups=["case:12"])   # [[ReportHit, ...]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmm.data.transforms import ImageInputSpec, build_transform
from medmm.errors import BadInputError, MedmmError
from medmm.knowledge.vector_index import VectorIndex

THUMBNAIL_SIZE = 16


@dataclass
class ReportHit:
    """One retrieved training report."""

    id: str
    text: str
    score: float
    group: str
    rank: int


def thumbnail_spec(size: int = THUMBNAIL_SIZE) -> ImageInputSpec:
    """The thumbnail key's declared input: `size` px grey, intensities in [0, 1] (mean 0, std 1)."""
    return ImageInputSpec(size=size, in_channels=1, mean=(0.0,), std=(1.0,))


def thumbnail_embedding(images: Sequence[np.ndarray], size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """Training-free embedding of a study's images: mean over views of the centred, L2-normalised
    `size` x `size` grey thumbnail (float32, size * size values)."""
    if len(images) == 0:
        raise MedmmError("a study needs at least one image to embed")
    transform = build_transform(thumbnail_spec(size))
    vecs = []
    for arr in images:
        x = transform(np.asarray(arr)).reshape(-1).astype(np.float64)
        x = x - x.mean()  # brightness/contrast differences between scanners matter less
        n = np.linalg.norm(x)
        vecs.append(x / n if n > 0 else x)
    v = np.mean(vecs, axis=0)
    n = np.linalg.norm(v)
    if n == 0:  # a flat image has no pattern: give it a fixed direction so cosine is defined
        return np.full(v.shape, 1.0 / np.sqrt(v.size), np.float32)
    return (v / n).astype(np.float32)


class ReportStore:
    """Training reports searchable by image embedding (see the module docstring)."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str], groups: Sequence[str], embeddings: np.ndarray):
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or len(emb) != len(ids) or len(texts) != len(ids) or len(groups) != len(ids):
            raise MedmmError(
                f"report store needs one embedding row, text and group per id: {len(ids)} ids, {len(texts)} texts, "
                f"{len(groups)} groups, embeddings {emb.shape}"
            )
        if len(ids) == 0:
            raise MedmmError("report store is empty: no training reports")
        self.ids = [str(i) for i in ids]
        self.texts = [str(t) for t in texts]
        self.groups = [str(g) for g in groups]
        self.embeddings = emb
        self.index = VectorIndex(emb.shape[1], kind="exact", metric="cosine")
        self.index.add(emb, self.ids, [{"group": g} for g in self.groups])
        self._pos = {i: p for p, i in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def text_of(self, id: str) -> str:
        """Report text of a stored id."""
        return self.texts[self._pos[id]]

    def search(self, queries: np.ndarray, k: int, exclude_groups: Sequence[str | None] | None = None) -> list[list[ReportHit]]:
        """Top-k training reports per query row, best first, skipping each query's excluded group."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if k <= 0:
            return [[] for _ in range(len(q))]
        excl = list(exclude_groups) if exclude_groups is not None else [None] * len(q)
        if len(excl) != len(q):
            raise MedmmError(f"{len(q)} queries but {len(excl)} exclude_groups")
        # Ask for more than k so that dropping the excluded group still leaves k; retry with all.
        want = min(len(self), k + 16)
        out: list[list[ReportHit]] = []
        scores, pos = self.index.search_raw(q, want)
        for r in range(len(q)):
            hits = self._collect(scores[r], pos[r], k, excl[r])
            if len(hits) < min(k, len(self)) and want < len(self):
                s_all, p_all = self.index.search_raw(q[r : r + 1], len(self))
                hits = self._collect(s_all[0], p_all[0], k, excl[r])
            out.append(hits)
        return out

    def _collect(self, scores: np.ndarray, pos: np.ndarray, k: int, exclude: str | None) -> list[ReportHit]:
        hits: list[ReportHit] = []
        for s, p in zip(scores.tolist(), pos.tolist(), strict=True):
            if p < 0 or (exclude is not None and self.groups[p] == exclude):
                continue
            hits.append(ReportHit(self.ids[p], self.texts[p], float(s), self.groups[p], len(hits) + 1))
            if len(hits) == k:
                break
        return hits

    # -- persistence (library use; the report task keeps the store inside its run dir state) --
    def save(self, directory: str | Path) -> Path:
        """Write the index (VectorIndex format) with texts and groups as metadata."""
        d = Path(directory)
        idx = VectorIndex(self.embeddings.shape[1], kind="exact", metric="cosine")
        idx.add(self.embeddings, self.ids, [{"group": g, "text": t} for g, t in zip(self.groups, self.texts, strict=True)])
        out = idx.save(d)
        # the raw embeddings too: a cosine index keeps only normalised copies
        np.save(Path(out) / "report_embeddings.npy", self.embeddings)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> ReportStore:
        """Read a store written by `save`."""
        idx = VectorIndex.load(directory)
        if any("text" not in m for m in idx.metadata):
            raise BadInputError(directory, "not a report store: index metadata lacks report texts")
        emb_path = Path(directory) / "report_embeddings.npy"
        if not emb_path.is_file():
            raise BadInputError(emb_path, "report store embeddings missing")
        emb = np.load(emb_path)
        return cls(idx.ids, [m["text"] for m in idx.metadata], [m.get("group", "") for m in idx.metadata], emb)
