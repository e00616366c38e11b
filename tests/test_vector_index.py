"""VectorIndex: every kind agrees with exact numpy search on small collections; save/load round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("faiss")

from medmm.errors import BadInputError, MedmmError
from medmm.knowledge.vector_index import VectorIndex, auto_kind, default_nlist


def _numpy_topk(data: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric == "cosine":
        data = data / np.linalg.norm(data, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    if metric == "l2":
        scores = -((queries[:, None, :] - data[None, :, :]) ** 2).sum(-1)
    else:
        scores = queries @ data.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def _collection(n: int = 300, dim: int = 24, nq: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, dim)).astype(np.float32)
    queries = rng.normal(size=(nq, dim)).astype(np.float32)
    ids = [f"s{i:04d}" for i in range(n)]
    meta = [{"row": i, "caption": f"caption {i}"} for i in range(n)]
    return data, queries, ids, meta


@pytest.mark.parametrize(
    "kind,metric,params",
    [
        ("exact", "cosine", {}),
        ("exact", "ip", {}),
        ("exact", "l2", {}),
        # HNSW with a beam wider than the collection and IVF probing every list are exhaustive,
        # so on a small collection they must give exactly the numpy ranking.
        ("hnsw", "cosine", {"ef_search": 512, "hnsw_m": 16}),
        ("ivf", "cosine", {"nlist": 8, "nprobe": 8}),
        ("ivf", "l2", {"nlist": 8, "nprobe": 8}),
    ],
)
def test_matches_numpy_exact_search(kind, metric, params):
    data, queries, ids, meta = _collection()
    index = VectorIndex(data.shape[1], kind=kind, metric=metric, **params)
    index.add(data, ids, meta)
    k = 10
    order, scores = _numpy_topk(data.astype(np.float64), queries.astype(np.float64), k, metric)
    hits = index.search(queries, k)
    assert len(hits) == len(queries)
    for qi, row in enumerate(hits):
        assert [h.id for h in row] == [ids[j] for j in order[qi]]
        np.testing.assert_allclose([h.score for h in row], scores[qi], rtol=1e-4, atol=1e-4)
        assert [h.rank for h in row] == list(range(1, k + 1))
        assert row[0].metadata == meta[order[qi][0]]


def test_incremental_add_and_single_query():
    data, queries, ids, meta = _collection(n=50)
    index = VectorIndex(data.shape[1], kind="exact")
    index.add(data[:20], ids[:20], meta[:20])
    index.add(data[20:], ids[20:], meta[20:])
    assert len(index) == 50
    order, _ = _numpy_topk(data, queries[:1], 5, "cosine")
    assert [h.id for h in index.search_one(queries[0], 5)] == [ids[j] for j in order[0]]
    assert index.get_metadata("s0042") == meta[42]
    # k larger than the collection returns every vector once
    assert len(index.search_one(queries[0], 500)) == 50


def test_save_load_round_trip(tmp_path):
    data, queries, ids, meta = _collection(n=200)
    for kind, params in [("exact", {}), ("hnsw", {"ef_search": 300}), ("ivf", {"nlist": 4, "nprobe": 2})]:
        index = VectorIndex(data.shape[1], kind=kind, **params)
        index.add(data, ids, meta)
        before = index.search(queries, 7)
        out = index.save(tmp_path / kind)
        # saving again over an existing index replaces it, leaving no temporary folders behind
        index.save(out)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
        loaded = VectorIndex.load(out)
        assert loaded.kind == kind and len(loaded) == 200
        assert loaded.nprobe == index.nprobe and loaded.ef_search == index.ef_search
        after = loaded.search(queries, 7)
        assert [[(h.id, round(h.score, 5), h.metadata) for h in r] for r in before] == [
            [(h.id, round(h.score, 5), h.metadata) for h in r] for r in after
        ]


def test_empty_index_round_trip(tmp_path):
    index = VectorIndex(8)
    assert index.search(np.ones((2, 8)), 3) == [[], []]
    loaded = VectorIndex.load(index.save(tmp_path / "empty"))
    assert len(loaded) == 0 and loaded.search_one(np.ones(8), 3) == []


def test_auto_kind_by_size():
    assert auto_kind(1_000) == "exact"
    assert auto_kind(100_000) == "hnsw"
    assert auto_kind(2_000_000) == "ivf"
    assert default_nlist(1_000_000) == 4096
    index = VectorIndex(4, kind="auto")
    index.add(np.eye(4), list("abcd"))
    assert index.kind == "exact"
    big = VectorIndex(4, kind="auto", expected_size=1_000_000, nlist=2)
    big.add(np.random.default_rng(0).normal(size=(10, 4)), [str(i) for i in range(10)])
    assert big.kind == "ivf"


def test_bad_input_is_rejected(tmp_path):
    index = VectorIndex(4, kind="exact")
    with pytest.raises(MedmmError, match="shape"):
        index.add(np.ones((2, 5)), ["a", "b"])
    with pytest.raises(MedmmError, match="2 vectors but 1 ids"):
        index.add(np.ones((2, 4)), ["a"])
    with pytest.raises(MedmmError, match="duplicate id"):
        index.add(np.ones((2, 4)), ["a", "a"])
    with pytest.raises(MedmmError, match="zero vector"):
        index.add(np.zeros((1, 4)), ["z"])
    with pytest.raises(MedmmError, match="NaN"):
        index.add(np.full((1, 4), np.nan), ["n"])
    with pytest.raises(MedmmError, match="JSON"):
        index.add(np.ones((1, 4)), ["j"], [{"x": object()}])
    with pytest.raises(MedmmError, match="unknown index kind"):
        VectorIndex(4, kind="lsh")
    index.add(np.eye(4), list("abcd"))
    with pytest.raises(MedmmError, match="duplicate id"):
        index.add(np.ones((1, 4)), ["a"])
    with pytest.raises(BadInputError, match="index.json missing"):
        VectorIndex.load(tmp_path)
    saved = index.save(tmp_path / "idx")
    doc = json.loads((saved / "index.json").read_text())
    doc["ids"] = doc["ids"][:2]
    (saved / "index.json").write_text(json.dumps(doc))
    with pytest.raises(BadInputError, match="idx"):
        VectorIndex.load(saved)
