"""`check_dataset`: what is in a dataset root, and does its split leak?

One call loads every split of a registered dataset (skipping and counting bad samples), and
reports sample counts, label distributions with an imbalance ratio, text lengths in words,
missing images, and the leakage between splits (shared group ids, byte-identical images).
With ``splits=`` fractions the official splits are pooled and re-split by group first
(`medmm.data.splits.grouped_split`), which is how a leak-free split is checked before use.
The result is a plain JSON-ready dict; ``medmm data check`` prints it as tables.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medmm.data.registry import dataset_info, load_all_splits
from medmm.data.schema import LabelState, Sample
from medmm.data.splits import find_leakage, grouped_split
from medmm.errors import BadInputError

Progress = Callable[[str, int, int], None]


def _imbalance(counts: Mapping[str, int]) -> float | None:
    """max/min class count over classes present; None with fewer than two classes."""
    present = [n for n in counts.values() if n > 0]
    return max(present) / min(present) if len(present) >= 2 else None


def label_distribution(parts: Mapping[str, list[Sample]]) -> dict[str, Any]:
    """Per target key: class counts per split and overall, and the overall imbalance ratio."""
    keys = sorted({k for samples in parts.values() for s in samples for k in s.targets})
    out: dict[str, Any] = {}
    for key in keys:
        per_split = {
            name: dict(Counter(s.targets[key] for s in samples if key in s.targets).most_common())
            for name, samples in parts.items()
        }
        total: Counter[str] = Counter()
        for c in per_split.values():
            total.update(c)
        out[key] = {
            "all": dict(total.most_common()),
            "per_split": per_split,
            "n_classes": len(total),
            "imbalance_ratio": _imbalance(total),
            "missing": sum(1 for samples in parts.values() for s in samples if key not in s.targets),
        }
    return out


def findings_distribution(parts: Mapping[str, list[Sample]]) -> dict[str, dict[str, int]]:
    """Per multi-label observation: how many samples state it positive / negative / uncertain."""
    out: dict[str, Counter[str]] = {}
    for samples in parts.values():
        for s in samples:
            for label, state in s.findings.items():
                out.setdefault(label, Counter())[LabelState(state).name.lower()] += 1
    return {k: dict(v) for k, v in sorted(out.items())}


def text_lengths(parts: Mapping[str, list[Sample]]) -> dict[str, dict[str, Any]]:
    """Per text field: count, min/median/max length in whitespace words, and empty count."""
    lengths: dict[str, list[int]] = {}
    for samples in parts.values():
        for s in samples:
            for field, text in s.text.items():
                lengths.setdefault(field, []).append(len(text.split()))
    return {
        field: {
            "n": len(v),
            "min_words": min(v),
            "median_words": statistics.median(v),
            "max_words": max(v),
            "empty": sum(1 for n in v if n == 0),
        }
        for field, v in sorted(lengths.items())
    }


def _files(parts: Mapping[str, list[Sample]]) -> list[tuple[str, str]]:
    """(path, kind) of every image and mask file the samples reference, once each, sorted."""
    files = {(im.path, "image") for samples in parts.values() for s in samples for im in s.images if im.path}
    files |= {(m.path, "mask") for samples in parts.values() for s in samples for m in s.masks if m.path}
    return sorted(files)


def _each_file(
    files: list[tuple[str, str]], check: Any, label: str, progress: Progress | None
) -> list[dict[str, str]]:
    """Run `check(path)` on every file; {"path", "kind", "problem"} of each BadInputError."""
    bad: list[dict[str, str]] = []
    for i, (path, kind) in enumerate(files, 1):
        try:
            check(path)
        except BadInputError as exc:
            bad.append({"path": path, "kind": kind, "problem": exc.problem})
        if progress:
            progress(label, i, len(files))
    return bad


def check_files(parts: Mapping[str, list[Sample]], progress: Progress | None = None) -> dict[str, Any]:
    """Cheap check of every image and mask file: present, non-empty, image magic bytes.

    Finds a text file named .jpg without decoding anything (132 bytes read per file).
    """
    from medmm.data.io import check_image_header

    files = _files(parts)
    bad = _each_file(files, check_image_header, "checking file headers", progress)
    return {"checked": len(files), "bad": bad}


def decode_images(parts: Mapping[str, list[Sample]], progress: Progress | None = None) -> dict[str, Any]:
    """Decode every referenced image and mask file once with `medmm.data.io.read_image`.

    Each decode runs under the reader's watchdog (`medmm.data.io.guard`), so a file that makes
    a decoder loop is reported, not waited on. ``undecodable`` lists "path: problem" strings,
    ``bad`` the same as {"path", "kind", "problem"}.
    """
    from medmm.data.io import read_image

    files = _files(parts)
    bad = _each_file(files, read_image, "decoding images and masks", progress)
    return {
        "decoded": len(files) - len(bad),
        "undecodable": [f"{b['path']}: {b['problem']}" for b in bad],
        "bad": bad,
    }


def check_dataset(
    name: str,
    root: str | Path,
    group_by: str | None = None,
    splits: Mapping[str, float] | None = None,
    *,
    seed: int = 0,
    stratify: str | None = None,
    hash_images: bool = True,
    decode: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Load every split of dataset `name` from `root` and report on it (JSON-ready dict).

    Args:
        name, root: a registered dataset and its folder in the original layout.
        group_by: grouping key for the leakage check / re-split; default = the dataset's own.
        splits: optional {split: fraction}: pool all official splits and re-split by group with
            `grouped_split(seed=seed, stratify=stratify)`; the report is then about that split.
        hash_images: sha1 image files to find identical images across splits.
        decode: also decode every image and mask with `medmm.data.io.read_image` (slow; finds
            truncated and corrupt files). Without it, file headers are still checked (cheap).
        progress: optional ``(stage, done, total)`` callback (the CLI draws a progress bar).

    Keys of the result: dataset, root, mode ("official" or "grouped"), group_by, counts,
    skipped (one entry per bad record: split, error), skipped_per_split, n_groups, images,
    files (header check: checked, bad), labels, findings, text, leakage (+ decode when asked).
    A union split (MedPix's "all") is checked only when the root has no other split.
    """
    info = dataset_info(name)
    group_by = group_by or info.group_by
    official: dict[str, list[Sample]] = {}
    skipped: list[dict[str, str]] = []
    for split, loaded in load_all_splits(name, root, skip_bad=True).items():
        official[split] = loaded.samples
        skipped += [{"split": split, "error": str(e)} for e in loaded.skipped]
    skipped_per_split = {split: sum(1 for e in skipped if e["split"] == split) for split in official}

    if splits:
        pooled = [s for samples in official.values() for s in samples]
        parts = grouped_split(pooled, group_by, splits, seed=seed, stratify=stratify)
        mode = "grouped"
    else:
        parts = official
        mode = "official"

    hash_progress = (lambda d, t: progress("hashing images", d, t)) if progress else None
    leakage = find_leakage(parts, group_by, hash_images=hash_images, progress=hash_progress)
    n_images = {k: sum(len(s.images) for s in v) for k, v in parts.items()}
    result: dict[str, Any] = {
        "dataset": name,
        "root": str(root),
        "mode": mode,
        "split_fractions": dict(splits) if splits else None,
        "seed": seed if splits else None,
        "group_by": group_by,
        "counts": {k: len(v) for k, v in parts.items()},
        "skipped": skipped,
        "skipped_per_split": skipped_per_split,
        "n_groups": {k: len({s.group(group_by) for s in v}) for k, v in parts.items()},
        "images": {
            "per_split": n_images,
            "samples_without_image": {k: sum(1 for s in v if not s.images) for k, v in parts.items()},
        },
        "labels": label_distribution(parts),
        "findings": findings_distribution(parts),
        "text": text_lengths(parts),
        "leakage": leakage.to_dict(),
        "leakage_summary": leakage.summary(),
    }
    result["files"] = check_files(parts, progress)
    if decode:
        result["decode"] = decode_images(parts, progress)
    return result
