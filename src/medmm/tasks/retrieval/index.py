"""Searchable indexes of a dataset embedded by a trained retrieval run (`medmm index build/search`).

An index folder holds two `VectorIndex`es and a description:

    INDEX/
      index.json   run dir, dataset, split, data root, counts (what the index was built from)
      image/       one vector per distinct image; metadata: sample ids, image path, case, patient, image id, text
      text/        one vector per distinct text;  metadata: sample ids, text, image key, path, case, patient, image id

A text query searches `image/` and an image query searches `text/` (cross-modal); either may
also search its own modality. Every hit's metadata names the sample(s) it came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError, MedmmError
from medmm.fileio import atomic_dir

INDEX_DESCRIPTION = "index.json"
FORMAT_VERSION = 1


@dataclass
class IndexSummary:
    """What `build_index` wrote."""

    path: Path
    n_images: int
    n_texts: int
    n_samples: int
    n_skipped: int
    kind: str


def _load_retrieval_run(run_dir: str | Path):
    from medmm.engine.api import load_run

    cfg, task = load_run(run_dir)
    if not (hasattr(task, "encode_images") and hasattr(task, "encode_texts")):
        raise MedmmError(f"{run_dir}: run of task {cfg.task!r} has no image/text embeddings; use a retrieval run")
    return cfg, task


def build_index(
    run_dir: str | Path,
    data_root: str | Path,
    out: str | Path,
    *,
    dataset: str | None = None,
    split: str = "train",
    kind: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> IndexSummary:
    """Embed every image and text of `split` with the run's model and save both indexes to `out`.

    The folder is written next to `out` and renamed into place, so a failed build never
    leaves a half-written index. `progress(done, total)` is called after each chunk of samples
    (`medmm index build` draws a progress bar with it).
    """
    from medmm.data.registry import load_dataset
    from medmm.knowledge.vector_index import VectorIndex

    cfg, task = _load_retrieval_run(run_dir)
    name = dataset or cfg.data.dataset
    ss = load_dataset(name, data_root, split, skip_bad=True)
    if not ss.samples:
        raise MedmmError(f"{data_root}: no samples in split {split!r} of dataset {name!r}")
    by_id = {s.id: s for s in ss.samples}
    records, skipped = _embed_with_progress(task, list(ss.samples), cfg, progress)

    images: dict[str, dict[str, Any]] = {}
    texts: dict[str, dict[str, Any]] = {}
    for rec in records:
        ref, pred, sample = rec["reference"], rec["prediction"], by_id[rec["id"]]
        ik, tk = ref["image_key"], ref["text_key"]
        # absolute, so hits lead back to the file whatever directory the search runs from
        path = str(Path(rec["image_path"]).resolve()) if rec.get("image_path") else None
        if ik not in images:
            images[ik] = {
                "vec": pred["image_embedding"],
                "meta": {"sample_ids": [], "image_path": path, "case_id": sample.case_id, "patient_id": sample.patient_id,
                         "image_id": sample.image_id, "text": ref.get("text"), "dataset": name, "split": split},
            }
        images[ik]["meta"]["sample_ids"].append(rec["id"])
        if tk not in texts:
            texts[tk] = {
                "vec": pred["text_embedding"],
                "meta": {"sample_ids": [], "text": ref.get("text"), "image_key": ik, "image_path": path, "case_id": sample.case_id,
                         "patient_id": sample.patient_id, "image_id": sample.image_id, "dataset": name, "split": split},
            }
        texts[tk]["meta"]["sample_ids"].append(rec["id"])

    out = Path(out)
    with atomic_dir(out) as tmp:
        built_kind = kind
        for sub, items in (("image", images), ("text", texts)):
            vecs = np.asarray([v["vec"] for v in items.values()], dtype=np.float32)
            index = VectorIndex(vecs.shape[1], kind=kind, metric="cosine")
            index.add(vecs, list(items), [v["meta"] for v in items.values()])
            index.save(tmp / sub)
            built_kind = index.kind
        desc = {
            "format_version": FORMAT_VERSION,
            "run_dir": str(Path(run_dir).resolve()),
            "dataset": name,
            "split": split,
            "data_root": str(Path(data_root).resolve()),
            "n_samples": len(records),
            "n_images": len(images),
            "n_texts": len(texts),
            "skipped": {**{(e.path or f"#{i}"): e.problem for i, e in enumerate(ss.skipped)}, **skipped},
        }
        (tmp / INDEX_DESCRIPTION).write_text(json.dumps(desc, indent=2), encoding="utf-8")
    return IndexSummary(out, len(images), len(texts), len(records), len(desc["skipped"]), built_kind)


def _embed_with_progress(task: Any, samples: list[Any], cfg: Any, progress: Callable[[int, int], None] | None,
                         chunk: int = 64) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """run_inference over `samples` in chunks, reporting (done, total) after each."""
    from medmm.engine.api import run_inference

    records: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for start in range(0, len(samples), chunk):
        recs, skip = run_inference(task, samples[start : start + chunk], cfg)
        records.extend(recs)
        skipped.update(skip)
        if progress is not None:
            progress(min(start + chunk, len(samples)), len(samples))
    return records, skipped


def read_queries(path: str | Path) -> list[dict[str, str]]:
    """Queries from a text file, one per line: a text, or "image:PATH" for an image query
    (a relative PATH is taken from the file's folder). Blank lines and lines starting with "#"
    are skipped."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "query file not found")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("image:"):
            img = Path(line.removeprefix("image:").strip())
            out.append({"image": str(img if img.is_absolute() else path.parent / img)})
        else:
            out.append({"text": line})
    if not out:
        raise BadInputError(path, "no queries (one text per line, or image:PATH)")
    return out


class RetrievalSearcher:
    """Loads an index folder and its run's model once; embeds queries and searches, as often as
    wanted (`searcher.search(text=...)`, `searcher.search_many([...])`): keep one and reuse it."""

    def __init__(self, index_dir: str | Path, run_dir: str | Path | None = None):
        from medmm.knowledge.vector_index import VectorIndex

        self.index_dir = Path(index_dir)
        desc_path = self.index_dir / INDEX_DESCRIPTION
        if not desc_path.is_file():
            raise BadInputError(self.index_dir, f"not a retrieval index ({INDEX_DESCRIPTION} missing); build one with `medmm index build`")
        try:
            self.description = json.loads(desc_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BadInputError(desc_path, f"unreadable index description: {exc}") from exc
        self.indexes = {sub: VectorIndex.load(self.index_dir / sub) for sub in ("image", "text")}
        self.cfg, self.task = _load_retrieval_run(run_dir or self.description["run_dir"])

    def embed_text(self, text: str) -> np.ndarray:
        """The (E,) embedding of a text query."""
        if not text.strip():
            raise MedmmError("empty text query")
        return self.task.encode_texts([text])[0].float().cpu().numpy()

    def embed_image(self, path: str | Path) -> np.ndarray:
        """The (E,) embedding of an image file, preprocessed as in training."""
        import torch

        from medmm.data.schema import ImageRef, Sample

        path = Path(path)
        if not path.is_file():
            raise BadInputError(path, "query image not found")
        sample = Sample(id=str(path), dataset="query", split="query", images=[ImageRef(path=str(path))])
        with torch.no_grad():
            return self.task.encode_images(self.task.image_tensor(sample)[None])[0].float().cpu().numpy()

    def search(self, *, text: str | None = None, image: str | Path | None = None, k: int = 10, target: str | None = None):
        """Hits for one query: a text (default target: images) or an image (default: texts)."""
        if (text is None) == (image is None):
            raise MedmmError("give exactly one query: a text or an image")
        target = target or ("image" if text is not None else "text")
        if target not in self.indexes:
            raise MedmmError(f"unknown target {target!r}; use image or text")
        vec = self.embed_text(text) if text is not None else self.embed_image(image)
        return self.indexes[target].search_one(vec, k)

    def search_many(self, queries: list[dict[str, str]], k: int = 10, target: str | None = None) -> list[list[Any]]:
        """Hits for each query ({"text": ...} or {"image": path}, as `read_queries` gives), in order.
        All text queries are embedded in one batched call."""
        text_pos = [i for i, q in enumerate(queries) if "text" in q]
        if any(not queries[i]["text"].strip() for i in text_pos):
            raise MedmmError("empty text query")
        emb = self.task.encode_texts([queries[i]["text"] for i in text_pos]).float().cpu().numpy() if text_pos else []
        vecs = dict(zip(text_pos, emb, strict=True))
        out = []
        for i, q in enumerate(queries):
            tgt = target or ("image" if "text" in q else "text")
            if tgt not in self.indexes:
                raise MedmmError(f"unknown target {tgt!r}; use image or text")
            vec = vecs[i] if i in vecs else self.embed_image(q["image"])
            out.append(self.indexes[tgt].search_one(vec, k))
        return out


def case_label(meta: dict[str, Any]) -> str:
    """What a hit belongs to, for people: its case id, else its patient id, else its image
    (VQA-RAD, for one, has neither cases nor patients)."""
    if meta.get("case_id"):
        return str(meta["case_id"])
    if meta.get("patient_id"):
        return f"patient {meta['patient_id']}"
    image = meta.get("image_id") or (Path(meta["image_path"]).name if meta.get("image_path") else None)
    return f"image {image}" if image else ""
