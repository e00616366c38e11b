"""Datasets registered by name: `load_dataset("vqa_rad", root, "train")`.

A loader is a function ``(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]``
decorated with `register_dataset`. Every module in ``medmm.data.datasets`` is imported on
first use, so adding a dataset means adding one file there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medmm.data.schema import Sample
from medmm.errors import BadInputError, MedmmError
from medmm.registry import Entry, Registry


class ErrorPolicy:
    """What a loader does with a bad sample: raise at once, or skip it and count it."""

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.skipped: list[BadInputError] = []

    def handle(self, error: BadInputError) -> None:
        """Raise `error`, or record it when skipping bad samples."""
        if not self.skip_bad:
            raise error
        self.skipped.append(error)


@dataclass
class SampleSet:
    """The samples of one split of one dataset, plus the bad ones that were skipped."""

    name: str
    split: str
    root: Path
    samples: list[Sample]
    skipped: list[BadInputError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


Loader = Callable[[Path, str, ErrorPolicy], list[Sample]]


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about a dataset."""

    name: str
    loader: Loader
    splits: tuple[str, ...]
    description: str
    group_by: str  # the id that keeps a split leak-free: "patient", "case", "image", "id"
    # A split that is the union of the others (MedPix 2.0's and the manifest's "all"): never
    # counted, checked for leakage or pooled as a split of its own beside them.
    union_split: str | None = None

    @property
    def own_splits(self) -> tuple[str, ...]:
        """The splits that do not overlap each other (all but `union_split`)."""
        return tuple(s for s in self.splits if s != self.union_split)


# loader -> metadata (splits, description, group_by, union_split); every module of
# medmm.data.datasets is imported before the first lookup.
_REGISTRY: Registry[Loader] = Registry("dataset", discover=("medmm.data.datasets.*",))


def register_dataset(
    name: str, *, splits: tuple[str, ...], description: str, group_by: str = "id", union_split: str | None = None
):
    """Decorator registering a loader under `name` (`union_split`: see `DatasetInfo`)."""

    def wrap(fn: Loader) -> Loader:
        if union_split is not None and union_split not in splits:
            raise MedmmError(f"dataset {name!r}: union_split {union_split!r} is not one of its splits")
        return _REGISTRY.register(name, fn, splits=tuple(splits), description=description, group_by=group_by,
                                  union_split=union_split)

    return wrap


def _info(entry: Entry[Loader]) -> DatasetInfo:
    m = entry.meta
    return DatasetInfo(entry.name, entry.obj, m["splits"], m["description"], m["group_by"], m["union_split"])


def list_datasets() -> list[DatasetInfo]:
    """All registered datasets, sorted by name."""
    return [_info(e) for e in _REGISTRY.entries()]


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for `name`, with a clear error listing the known names."""
    return _info(_REGISTRY.entry(name))


def load_dataset(name: str, root: str | Path, split: str, *, skip_bad: bool = False) -> SampleSet:
    """Load one split of a registered dataset from `root` (its original layout).

    A split the dataset defines but `root` does not hold gives an empty set, not an error,
    so evaluation commands work on roots that hold only some splits.
    """
    info = dataset_info(name)
    root = Path(root)
    if not root.exists():
        raise BadInputError(root, f"dataset root for {name!r} does not exist")
    if split not in info.splits:
        raise MedmmError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(info.splits)}")
    policy = ErrorPolicy(skip_bad=skip_bad)
    samples = info.loader(root, split, policy)
    return SampleSet(name=name, split=split, root=root, samples=samples, skipped=policy.skipped)


def load_all_splits(name: str, root: str | Path, *, skip_bad: bool = False) -> dict[str, SampleSet]:
    """Every split of a dataset that does not overlap another, by name.

    The union split (e.g. MedPix 2.0's "all") is loaded only when every other split is empty
    at `root` (a root without MedPix's splitted_dataset/), so no record is counted twice.
    """
    info = dataset_info(name)
    sets = {split: load_dataset(name, root, split, skip_bad=skip_bad) for split in info.own_splits}
    if info.union_split is not None and not any(len(ss) or ss.skipped for ss in sets.values()):
        return {info.union_split: load_dataset(name, root, info.union_split, skip_bad=skip_bad)}
    return sets
