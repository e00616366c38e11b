"""Leak-free splits and a check for leakage between splits.

Two ways to get splits:

* ``official_split(name, root, split)``: the split the dataset's authors published. It is
  exactly `medmm.data.registry.load_dataset` (kept here so split code has one import site).
  Official splits are not always leak-free: VQA-RAD's train and test share images.
* ``grouped_split(samples, group_by, fractions, seed)``: a new split in which every group
  (patient, case, study, image) lands in exactly one split, so a model never sees the same
  patient at test time. Fractions are fractions of *groups*, not of samples.

``find_leakage(splits, group_by)`` then lists every group id and every byte-identical image
file found in more than one split.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medmm.data.registry import SampleSet, load_dataset
from medmm.data.schema import Sample
from medmm.errors import MedmmError
from medmm.fileio import file_digest

MISSING_STRATUM = "<missing>"


def official_split(name: str, root: str | Path, split: str, *, skip_bad: bool = False) -> SampleSet:
    """The dataset's published split; identical to ``load_dataset(name, root, split)``."""
    return load_dataset(name, root, split, skip_bad=skip_bad)


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    if not fractions:
        raise MedmmError("split fractions are empty; give e.g. {'train': 0.8, 'test': 0.2}")
    out: dict[str, float] = {}
    for name, frac in fractions.items():
        frac = float(frac)
        if not math.isfinite(frac) or frac < 0:
            raise MedmmError(f"split fraction for {name!r} must be >= 0, got {frac}")
        out[str(name)] = frac
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise MedmmError(f"split fractions must sum to 1, got {total:.6g} ({out})")
    return out


def _allocate(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Split n items into integer counts proportional to fractions (largest remainder)."""
    exact = {k: n * f for k, f in fractions.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    left = n - sum(counts.values())
    # Ties broken by the order the caller gave the splits, so results are reproducible.
    order = sorted(fractions, key=lambda k: (-(exact[k] - counts[k]), list(fractions).index(k)))
    for k in order[:left]:
        counts[k] += 1
    return counts


def _stratum(values: Counter) -> str:
    """A group's stratum: its most common value of the stratify target (ties: smallest value)."""
    best = max(values.values())
    return min(v for v, c in values.items() if c == best)


def grouped_split_indices(
    samples: Iterable[Sample],
    group_by: str,
    fractions: Mapping[str, float],
    seed: int,
    stratify: str | None = None,
) -> dict[str, list[int]]:
    """`grouped_split` as positions: split name -> indices into `samples`, ascending.

    Reads each sample once (its group id and stratify target) and keeps only those, so a lazy
    sequence of a million samples is split without holding its Samples.
    """
    fracs = _check_fractions(fractions)
    groups: dict[str, list[int]] = defaultdict(list)
    values: dict[str, Counter] = defaultdict(Counter)
    for i, s in enumerate(samples):
        gid = s.group(group_by)
        groups[gid].append(i)
        if stratify is not None:
            values[gid][s.targets.get(stratify, MISSING_STRATUM)] += 1

    if stratify is None:
        strata = {"": sorted(groups)}
    else:
        by_stratum: dict[str, list[str]] = defaultdict(list)
        for gid in sorted(groups):
            by_stratum[_stratum(values[gid])].append(gid)
        strata = dict(sorted(by_stratum.items()))

    rng = random.Random(seed)
    assigned: dict[str, str] = {}
    for stratum in strata:
        gids = list(strata[stratum])  # sorted first: the result must not depend on input order
        rng.shuffle(gids)
        counts = _allocate(len(gids), fracs)
        start = 0
        for name, n in counts.items():
            for gid in gids[start : start + n]:
                assigned[gid] = name
            start += n

    out: dict[str, list[int]] = {name: [] for name in fracs}
    for gid, idx in groups.items():
        out[assigned[gid]].extend(idx)
    return {name: sorted(idx) for name, idx in out.items()}


def grouped_split(
    samples: Sequence[Sample],
    group_by: str,
    fractions: Mapping[str, float],
    seed: int,
    stratify: str | None = None,
) -> dict[str, Sequence[Sample]]:
    """Split samples so that no group (``Sample.group(group_by)``) is in two splits.

    Args:
        samples: the samples to split (e.g. ``load_dataset("covid_cxr", root, "all").samples``).
        group_by: "patient", "case", "study", "image", "question" or "id". Samples without that id are
            their own group (see `Sample.group`).
        fractions: split name -> fraction of the *groups*; must sum to 1. Counts are rounded
            with the largest-remainder rule, so they add up to the number of groups.
        seed: the same samples, fractions and seed always give the same split.
        stratify: optional key of ``Sample.targets``; groups are then allocated per stratum
            (a group's stratum is its most common value) so label proportions stay similar.

    Returns:
        split name -> samples, in input order, each a copy with ``split`` set to that name: a
        list, or, for a lazy sequence offering ``take(indices, split=name)`` (packed shards'
        `PackedSamples`), that sequence's ``take``, so the parts stay lazy too.
    """
    parts = grouped_split_indices(samples, group_by, fractions, seed, stratify)
    take = getattr(samples, "take", None)
    if callable(take):
        return {name: take(idx, split=name) for name, idx in parts.items()}
    return {name: [replace(samples[i], split=name) for i in idx] for name, idx in parts.items()}


@dataclass
class LeakageReport:
    """Groups and identical images found in more than one split.

    Fields:
        group_by: the grouping key checked.
        shared_groups: group id -> {split: number of samples of that group in the split}.
        shared_images: sha1 of file bytes -> {split: [paths]}, only for hashes seen in 2+ splits.
        n_samples: samples per split.
        n_images_hashed: distinct image files (or arrays) hashed.
        unreadable: image paths that could not be read (missing file, permission).
        cross_group_duplicates: sha1 -> sorted group ids, for identical images held by
            different groups in any split. Not a leak yet, but a grouped split cannot keep
            them apart (e.g. one picture published for two "patients"): deduplicate first.
    """

    group_by: str
    shared_groups: dict[str, dict[str, int]] = field(default_factory=dict)
    shared_images: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    n_samples: dict[str, int] = field(default_factory=dict)
    n_images_hashed: int = 0
    unreadable: list[str] = field(default_factory=list)
    cross_group_duplicates: dict[str, list[str]] = field(default_factory=dict)

    @property
    def has_leakage(self) -> bool:
        """True when any group or any identical image is in two or more splits."""
        return bool(self.shared_groups or self.shared_images)

    def summary(self, max_items: int = 5) -> str:
        """A few readable lines: what leaks between which splits, with examples."""
        splits = ", ".join(f"{k}={v}" for k, v in self.n_samples.items())
        key = "sample" if self.group_by == "id" else self.group_by
        lines = [f"leakage check by {self.group_by!r} over splits ({splits})"]
        if not self.has_leakage:
            images = (
                f"none of {self.n_images_hashed} hashed images" if self.n_images_hashed else "no image files were hashed"
            )
            shared = " is in more than one split" if self.n_images_hashed else ""
            lines.append(f"no leakage: no {key} id is in more than one split; {images}{shared}")
        if self.shared_groups:
            lines.append(_leak_line(f"{key} ids", self.shared_groups))
            for gid in sorted(self.shared_groups)[:max_items]:
                where = ", ".join(f"{k}:{n}" for k, n in sorted(self.shared_groups[gid].items()))
                lines.append(f"  {self.group_by} {gid} -> {where}")
        if self.shared_images:
            lines.append(_leak_line("identical images", self.shared_images))
            for digest in sorted(self.shared_images)[:max_items]:
                where = "; ".join(f"{k}: {v[0]}" for k, v in sorted(self.shared_images[digest].items()))
                lines.append(f"  sha1 {digest[:12]} -> {where}")
        if self.cross_group_duplicates:
            first = next(iter(self.cross_group_duplicates.values()))
            lines.append(
                f"note: {len(self.cross_group_duplicates)} identical images belong to different {key} ids "
                f"(e.g. {', '.join(first)}); a grouped split cannot keep them apart, deduplicate first"
            )
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} image files could not be read, e.g. {self.unreadable[0]}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "group_by": self.group_by,
            "has_leakage": self.has_leakage,
            "n_samples": dict(self.n_samples),
            "shared_groups": {k: dict(v) for k, v in self.shared_groups.items()},
            "shared_images": {k: {s: list(p) for s, p in v.items()} for k, v in self.shared_images.items()},
            "n_images_hashed": self.n_images_hashed,
            "unreadable": list(self.unreadable),
            "cross_group_duplicates": {k: list(v) for k, v in self.cross_group_duplicates.items()},
        }


def _leak_line(what: str, shared: Mapping[str, Mapping[str, Any]]) -> str:
    """'LEAK: N <what> in more than one split (train & val: n; ...)' for one kind of leak."""
    pairs = Counter(" & ".join(sorted(v)) for v in shared.values())
    counts = "; ".join(f"{p}: {n}" for p, n in sorted(pairs.items()))
    return f"LEAK: {len(shared)} {what} in more than one split ({counts})"


def sha1_file(path: str | Path) -> str:
    """sha1 of a file's raw bytes (no decoding: identical files, not similar pictures)."""
    return file_digest(path, "sha1")


def find_leakage(
    splits: Mapping[str, Sequence[Sample]],
    group_by: str,
    hash_images: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> LeakageReport:
    """Every group id and every identical image (sha1 of bytes) present in more than one split.

    Args:
        splits: split name -> samples (a `grouped_split` result or official splits).
        group_by: "patient", "case", "study", "image", "question" or "id".
        hash_images: hash image files / arrays; False checks group ids only (fast).
        progress: optional callback ``(done, total)`` called after each image is hashed.
    """
    report = LeakageReport(group_by=group_by, n_samples={k: len(v) for k, v in splits.items()})
    group_counts: dict[str, Counter[str]] = defaultdict(Counter)
    for name, samples in splits.items():
        for s in samples:
            group_counts[s.group(group_by)][name] += 1
    report.shared_groups = {g: dict(sorted(c.items())) for g, c in sorted(group_counts.items()) if len(c) > 1}

    if not hash_images:
        return report

    # (split, path-or-array) to hash; a file used by many samples is hashed once.
    todo: list[tuple[str, str, Any, str]] = []
    for name, samples in splits.items():
        for s in samples:
            for i, im in enumerate(s.images):
                if im.path is not None:
                    todo.append((name, im.path, None, s.group(group_by)))
                elif im.array is not None:
                    todo.append((name, f"<array {s.id}#{i}>", im.array, s.group(group_by)))
    cache: dict[str, str | None] = {}
    where: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    owners: dict[str, set[str]] = defaultdict(set)
    for done, (name, label, array, gid) in enumerate(todo, 1):
        if array is not None:
            h = hashlib.sha1(f"{array.dtype}{array.shape}".encode())
            h.update(memoryview(array.tobytes()))
            digest: str | None = h.hexdigest()
        else:
            if label not in cache:
                try:
                    cache[label] = sha1_file(label)
                except OSError:
                    cache[label] = None
                    report.unreadable.append(label)
            digest = cache[label]
        if digest is not None:
            where[digest][name].add(label)
            owners[digest].add(gid)
        if progress is not None:
            progress(done, len(todo))
    report.n_images_hashed = len(where)
    report.shared_images = {
        d: {k: sorted(v) for k, v in sorted(by_split.items())}
        for d, by_split in sorted(where.items())
        if len(by_split) > 1
    }
    report.cross_group_duplicates = {d: sorted(g) for d, g in sorted(owners.items()) if len(g) > 1}
    return report
