"""Benchmark medmm.knowledge.VectorIndex: build time, memory, single-query latency and recall@10.

    python benchmarks/index_search.py                       # 1,000,000 x 512, clustered data, IVF
    python benchmarks/index_search.py --data uniform        # i.i.d. uniform vectors (worst case)
    python benchmarks/index_search.py --n 100000 --kind hnsw --ef-search 32,64,128

Data (float32, cosine similarity):
  clustered: a mixture of 10,000 Gaussians (centres ~ N(0, I), points = centre + N(0, I)); queries
      are NEW draws from the same mixture (not copies of stored vectors). Learned embeddings
      of images and reports have this kind of structure (few effective dimensions, clusters of
      similar findings), which is what approximate indexes exploit.
  uniform: i.i.d. U[0, 1]^dim points and queries: no structure at all. In 512 dimensions the
      top-10 neighbours of a query are barely closer than random points, so any ANN index must
      scan most of the collection to reach high recall; reported to show that limit honestly.

Recall@10 = |ANN top-10 ∩ exact top-10| / 10, averaged over the queries; the exact top-10 comes
from brute-force search (faiss.knn) over the same normalised vectors. Latency is measured one
query at a time (batch of 1), as an interactive search would run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc), in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def make_data(kind: str, n: int, dim: int, seed: int, centres: np.ndarray | None, chunk: int = 100_000) -> np.ndarray:
    """n x dim float32 vectors, L2-normalised in place (so inner product = cosine)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        if kind == "uniform":
            block = rng.random((m, dim), dtype=np.float32)
        else:
            which = rng.integers(0, len(centres), m)
            block = centres[which] + rng.standard_normal((m, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a JSON summary (and return it)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--kind", choices=["auto", "exact", "hnsw", "ivf"], default="auto")
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--nprobe", default="4,8,16,32,64", help="IVF nprobe values to sweep (comma-separated)")
    ap.add_argument("--ef-search", default="16,32,64,128", help="HNSW efSearch values to sweep")
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=40)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON summary here")
    args = ap.parse_args(argv)

    import faiss

    from medmm.knowledge.vector_index import VectorIndex

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed + 1)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32) if args.data == "clustered" else None

    t0 = time.perf_counter()
    data = make_data(args.data, args.n, args.dim, args.seed, centres)
    queries = make_data(args.data, args.queries, args.dim, args.seed + 2, centres)
    t_gen = time.perf_counter() - t0
    print(f"generated {args.n} x {args.dim} ({args.data}) in {t_gen:.1f}s", file=sys.stderr)

    t0 = time.perf_counter()
    _, truth = faiss.knn(queries, data, 10, metric=faiss.METRIC_INNER_PRODUCT)
    t_truth = time.perf_counter() - t0
    print(f"exact top-10 of {args.queries} queries in {t_truth:.1f}s", file=sys.stderr)

    rss_before = rss_bytes()
    index = VectorIndex(args.dim, kind=args.kind, metric="cosine", nlist=args.nlist, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, expected_size=args.n)
    ids = np.arange(args.n).astype(str)
    t0 = time.perf_counter()
    chunk = 100_000
    for start in range(0, args.n, chunk):
        # ids only: per-vector metadata would add Python-object memory unrelated to the index
        index.add(data[start : start + chunk], ids[start : start + chunk].tolist())
    t_build = time.perf_counter() - t0
    rss_after = rss_bytes()
    print(f"built {index.kind} index in {t_build:.1f}s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        faiss.write_index(index._index, os.path.join(tmp, "x.faiss"))
        index_file_bytes = os.path.getsize(os.path.join(tmp, "x.faiss"))

    if index.kind == "ivf":
        sweep = [("nprobe", int(v)) for v in args.nprobe.split(",")]
    elif index.kind == "hnsw":
        sweep = [("ef_search", int(v)) for v in args.ef_search.split(",")]
    else:
        sweep = [("exact", 0)]
    results = []
    for name, value in sweep:
        if name != "exact":
            index.set_search_params(**{name: value})
        for q in queries[:20]:  # warm caches before timing
            index.search_raw(q[None], 10)
        lat, found = [], []
        for q in queries:
            t = time.perf_counter()
            _, pos = index.search_raw(q[None], 10)
            lat.append(time.perf_counter() - t)
            found.append(pos[0])
        found = np.stack(found)
        recall = float(np.mean([len(set(f) & set(tr)) / 10 for f, tr in zip(found, truth, strict=True)]))
        lat_ms = np.array(lat) * 1e3
        row = {
            name: value,
            "recall@10": round(recall, 4),
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
            "p95_ms": round(float(np.percentile(lat_ms, 95)), 3),
            "mean_ms": round(float(lat_ms.mean()), 3),
        }
        results.append(row)
        print(json.dumps(row), file=sys.stderr)

    summary = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "data": args.data,
        "clusters": args.clusters if args.data == "clustered" else None,
        "kind": index.kind,
        "nlist": index.nlist if index.kind == "ivf" else None,
        "hnsw_m": args.hnsw_m if index.kind == "hnsw" else None,
        "ef_construction": args.ef_construction if index.kind == "hnsw" else None,
        "threads": args.threads,
        "build_s": round(t_build, 1),
        "exact_truth_s": round(t_truth, 1),
        "index_file_mb": round(index_file_bytes / 2**20, 1),
        "rss_growth_during_build_mb": round((rss_after - rss_before) / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sweep": results,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
        "faiss": faiss.__version__,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
