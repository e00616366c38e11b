"""Write a registered dataset into WebDataset tar shards, once, resumably.

Layout of an output folder::

    pack.json                 the settings (source, size, channels, shard size); a resumed pack
                              must ask for the same ones
    <split>-000000.tar        WebDataset shard: <key>.json (every Sample field but pixels),
                              <key>.img0.npy, <key>.mask0.npy ... (uint8, already resized)
    <split>-000000.json       the shard's summary: sha256, bytes, its records with the byte offset
                              of every image, and the bad samples of its slice
    index.json                written last: counts per split, bad samples, every shard's sha256

Shard k of a split holds the source samples [k * shard_size, (k + 1) * shard_size) minus the bad
ones, so a killed pack recomputes only the shards whose summary is missing: a shard is written to
``.NAME.tar.tmp`` and renamed, then its summary is written (atomically) — a summary means a whole shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medmm.data.schema import ImageRef, MaskRef, Sample
from medmm.data.shards.records import sample_record
from medmm.errors import BadInputError, MedmmError, require
from medmm.fileio import atomic_open, sha256_file, write_text

FORMAT = "medmm-webdataset-1"


@dataclass(frozen=True)
class PackSettings:
    """What every shard of one pack shares."""

    size: int = 224
    channels: int = 3
    shard_size: int = 1000


def _write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=1))


def prepare_image(arr: np.ndarray, settings: PackSettings) -> np.ndarray:
    """Any image from `read_image` -> uint8 (S, S) or (S, S, 3), via medmm's own transforms
    (channel conversion, intensity to [0, 1], bilinear resize), so training needs no decode."""
    from medmm.data.transforms import resize, to_channels, to_unit_range

    x = resize(to_unit_range(to_channels(arr, settings.channels)), settings.size)
    return np.ascontiguousarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))


def _read(ref: ImageRef | MaskRef) -> np.ndarray:
    from medmm.data.io import read_image

    return np.asarray(ref.array) if ref.array is not None else read_image(ref.path)


def _mask(m: MaskRef, full_hw: tuple[int, int], size: int) -> np.ndarray:
    """A mask as uint8 {0, 1} at the packed size; a cropped mask (``box``) is first placed in the full image."""
    from medmm.data.transforms import preprocess_mask

    arr = _read(m)
    if m.box is not None:
        x, y, w, h = (int(round(v)) for v in m.box)
        canvas = np.zeros(full_hw, dtype=np.uint8)
        crop = preprocess_mask(arr, (h, w))
        hh, ww = max(0, min(h, full_hw[0] - y)), max(0, min(w, full_hw[1] - x))
        canvas[y : y + hh, x : x + ww] = crop[:hh, :ww]
        arr = canvas
    return np.ascontiguousarray(preprocess_mask(arr, size).astype(np.uint8))


def _npy(arr: np.ndarray) -> tuple[bytes, int]:
    """(.npy file bytes, length of the .npy header before the raw pixels)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    data = buf.getvalue()
    return data, len(data) - arr.nbytes


def _encode(s: Sample, settings: PackSettings) -> tuple[dict[str, bytes], dict[str, Any], dict[str, int]]:
    """One sample -> (tar members by extension, its record, header length of each .npy member)."""
    rec = sample_record(s)
    members: dict[str, bytes] = {}
    headers: dict[str, int] = {}
    rec["images"], rec["masks"] = [], []
    full_hw: tuple[int, int] | None = None
    for i, ref in enumerate(s.images):
        try:
            raw = _read(ref)
            img = prepare_image(raw, settings)
        except BadInputError:
            raise
        except (ValueError, OSError) as exc:
            raise BadInputError(str(ref.path or f"<array of {s.id}>"), f"cannot use image: {exc}") from exc
        if i == 0:
            full_hw = tuple(raw.shape[:2])  # type: ignore[assignment]
            sy, sx = settings.size / raw.shape[0], settings.size / raw.shape[1]
            rec["boxes"] = [
                {**b, "x": b["x"] * sx, "y": b["y"] * sy, "width": b["width"] * sx, "height": b["height"] * sy}
                for b in rec["boxes"]
            ]
        ext = f"img{i}.npy"
        members[ext], headers[ext] = _npy(img)
        rec["images"].append(
            {"member": ext, "shape": list(img.shape), "dtype": img.dtype.str, "original_shape": list(raw.shape),
             "modality": ref.modality, "view": ref.view, "image_id": ref.image_id}
        )
    for i, m in enumerate(s.masks):
        if full_hw is None:
            raise BadInputError(str(m.path or s.id), "a mask without an image cannot be packed")
        try:
            arr = _mask(m, full_hw, settings.size)
        except BadInputError:
            raise
        except (ValueError, OSError) as exc:
            raise BadInputError(str(m.path or f"<mask of {s.id}>"), f"cannot use mask: {exc}") from exc
        ext = f"mask{i}.npy"
        members[ext], headers[ext] = _npy(arr)
        rec["masks"].append({"member": ext, "label": m.label, "shape": list(arr.shape), "dtype": arr.dtype.str})
    try:
        members["json"] = json.dumps(rec).encode()
    except TypeError as exc:
        raise BadInputError(s.id, f"a field cannot be stored as JSON: {exc}") from exc
    return members, rec, headers


def write_shard(out: Path, name: str, first: int, samples: Sequence[Sample], settings: PackSettings) -> dict[str, Any]:
    """Write one shard `name`.tar from `samples` (source positions first, first+1, ...) and its summary."""
    wds = require("webdataset", "train", "writing packed shards")
    tar_path = out / f"{name}.tar"
    records: list[dict[str, Any]] = []
    headers: dict[str, dict[str, int]] = {}
    bad: list[dict[str, str]] = []
    with atomic_open(tar_path, "wb") as f:
        writer = wds.TarWriter(f, encoder=False, mtime=0.0)  # mtime 0: the same input gives the same sha256
        for pos, s in enumerate(samples, first):
            try:
                members, rec, hdr = _encode(s, settings)
            except BadInputError as exc:
                bad.append({"id": s.id, "error": str(exc)})
                continue
            key = f"{pos:09d}"
            writer.write({"__key__": key, **members})
            records.append({"key": key, **rec})
            headers[key] = hdr
        writer.close()
    # Byte offsets of the raw pixels: from the tar's own member table, not from guessing its layout.
    offsets: dict[str, int] = {}
    with tarfile.open(tar_path) as tf:
        for ti in tf:
            offsets[ti.name] = ti.offset_data
    for rec in records:
        for entry in rec["images"] + rec["masks"]:
            member = f"{rec['key']}.{entry['member']}"
            entry["offset"] = offsets[member] + headers[rec["key"]][entry["member"]]
    summary = {
        "name": f"{name}.tar",
        "sha256": sha256_file(tar_path),
        "bytes": tar_path.stat().st_size,
        "samples": len(records),
        "bad": bad,
        "records": records,
    }
    _write_json(out / f"{name}.json", summary)
    return summary


def _ids_digest(samples: Sequence[Sample]) -> str:
    return hashlib.sha1("\n".join(s.id for s in samples).encode()).hexdigest()


def pack_samples(
    splits: dict[str, Sequence[Sample]],
    out: str | Path,
    settings: PackSettings,
    *,
    source: dict[str, Any],
    bad_at_load: dict[str, list[dict[str, str]]] | None = None,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Pack `splits` (name -> samples, in a fixed order) into `out`; returns the index.

    Resumes a killed pack of the same source and settings (finished shards are kept, not
    rewritten); a folder packed from other samples or settings is an error, not a mix.
    `progress(n)` is called with the number of source samples each finished shard covered.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = {
        "format": FORMAT,
        "source": source,
        "size": settings.size,
        "channels": settings.channels,
        "shard_size": settings.shard_size,
        "splits": {k: {"source_samples": len(v), "ids_sha1": _ids_digest(v)} for k, v in splits.items()},
    }
    plan_path = out / "pack.json"
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        if old != plan:
            raise MedmmError(f"{out} holds a pack of other data or settings ({plan_path}); use an empty --out folder")
    else:
        _write_json(plan_path, plan)
    (out / "index.json").unlink(missing_ok=True)  # an index means a finished pack

    jobs: list[tuple[str, int, Sequence[Sample]]] = []
    done: dict[str, dict[str, Any]] = {}
    for split, samples in splits.items():
        for k, first in enumerate(range(0, len(samples), settings.shard_size)):
            name = f"{split}-{k:06d}"
            summary = out / f"{name}.json"
            if summary.exists() and (out / f"{name}.tar").exists():
                done[name] = json.loads(summary.read_text())
                if progress:
                    progress(min(settings.shard_size, len(samples) - first))
            else:
                jobs.append((name, first, samples[first : first + settings.shard_size]))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(write_shard, out, n, f, ss, settings): (n, len(ss)) for n, f, ss in jobs}
            for fut in futures:  # in submission order; each result is already on disk when it returns
                name, n = futures[fut]
                done[name] = fut.result()
                if progress:
                    progress(n)
    else:
        for name, first, ss in jobs:
            done[name] = write_shard(out, name, first, ss, settings)
            if progress:
                progress(len(ss))

    index: dict[str, Any] = {k: v for k, v in plan.items() if k != "splits"}
    index["splits"], index["shards"] = {}, []
    for split, samples in splits.items():
        names = [f"{split}-{k:06d}" for k in range(-(-len(samples) // settings.shard_size))]
        bad = [b for n in names for b in done[n]["bad"]]
        load_bad = (bad_at_load or {}).get(split, [])
        index["splits"][split] = {
            "samples": sum(done[n]["samples"] for n in names),
            "source_samples": len(samples),
            "bad": len(bad),
            "bad_samples": bad,
            "bad_at_load": len(load_bad),
            "bad_at_load_samples": load_bad,
            "shards": [f"{n}.tar" for n in names],
        }
        index["shards"] += [
            {"name": done[n]["name"], "split": split, "samples": done[n]["samples"], "bytes": done[n]["bytes"], "sha256": done[n]["sha256"]}
            for n in names
        ]
    _write_json(out / "index.json", index)
    return index


def pack_dataset(
    name: str,
    root: str | Path,
    out: str | Path,
    settings: PackSettings,
    *,
    splits: Sequence[str] | None = None,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    on_loaded: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Pack the named registered dataset at `root` (all its splits but "all" unless `splits`) into `out`.

    Bad samples are skipped and counted: those the loader rejects (``bad_at_load``) and those
    whose image or mask cannot be read (``bad``), per split, with their ids and messages.
    `on_loaded(total)` is called once the samples are listed (before any shard is written).
    """
    from medmm.data.registry import dataset_info, load_dataset

    info = dataset_info(name)
    # "all" is the union of the other splits where a dataset has both: packing it too would
    # store every sample twice, so the default leaves it out.
    default = [s for s in info.splits if s != "all"] or ["all"]
    wanted = list(splits or default)
    loaded: dict[str, Sequence[Sample]] = {}
    bad_at_load: dict[str, list[dict[str, str]]] = {}
    for split in wanted:
        ss = load_dataset(name, root, split, skip_bad=True)
        loaded[split] = ss.samples
        bad_at_load[split] = [{"id": "", "error": str(e)} for e in ss.skipped]
    if on_loaded:
        on_loaded(sum(len(v) for v in loaded.values()))
    source = {"dataset": name, "root": str(Path(root).resolve()), "group_by": info.group_by}
    return pack_samples(loaded, out, settings, source=source, bad_at_load=bad_at_load, workers=workers, progress=progress)
