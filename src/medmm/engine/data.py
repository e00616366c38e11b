"""From a DataConfig to DataLoaders over samples (a list, or packed shards' lazy `PackedSamples`)
that survive bad samples.

* `load_splits` reads the dataset's official splits, or pools and re-splits them by group.
* `SafeCollate` calls `task.collate`; with ``data.skip_bad: true`` a sample raising
  BadInputError is dropped and counted (a run must not die hours in because of one unreadable
  image); with ``skip_bad: false`` the first one stops the run with its error.
* Skips are counted per split and per record: `SplitData.skipped` holds the bad records of
  that role's split only (one entry per record, never merged by file).
* `ResumableSampler` shuffles from (seed, epoch) only and can skip the batches a resumed run
  already trained on, so a run killed mid-epoch continues exactly where it stopped. It also
  shards each *global* batch over DDP ranks, so 1 process x batch 8 and 2 processes x batch 4
  see the same samples per optimizer step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from medmm.data.io.verify import verify_headers
from medmm.data.registry import ErrorPolicy, load_all_splits, load_dataset
from medmm.data.schema import Sample
from medmm.engine.config import DataConfig
from medmm.errors import BadInputError, MedmmError

log = logging.getLogger("medmm.engine")


@dataclass
class SplitData:
    """The samples of one role (train/val/test) and the bad records of its split.

    ``skipped``: one BadInputError per bad record of this role's split (found while loading or
    by the file-header check). ``skipped_before_split``: in grouped mode, the bad records of the
    pooled source splits, dropped before the grouped split, so they belong to no role.
    """

    name: str
    samples: Sequence[Sample]  # a list, or a lazy `PackedSamples` (packed shards)
    skipped: list[BadInputError] = field(default_factory=list)
    skipped_before_split: list[BadInputError] = field(default_factory=list)


def load_splits(data: DataConfig, seed: int) -> dict[str, SplitData]:
    """Samples for the roles "train", "val", "test" (roles whose split is null are absent).

    "official": each role reads the dataset split of that name. "grouped": the splits named in
    `source_splits` (default: every split of the dataset that overlaps no other, see
    `medmm.data.registry.load_all_splits`) are pooled and split by `group_by` with
    `medmm.data.splits.grouped_split`, seeded by the run's seed. Each role's image files are
    then checked cheaply (present, non-empty, image magic bytes) under ``data.skip_bad``.
    """
    if not Path(data.root).exists():
        # Shipped configs point at ../shared/data/...; on another machine the data lives elsewhere.
        raise MedmmError(
            f"data.root {data.root} does not exist; pass the {data.dataset!r} dataset folder (original layout) "
            f"on the command line: medmm train CONFIG data.root=PATH --out RUN_DIR"
        )
    roles = {"train": data.train_split, "val": data.val_split, "test": data.test_split}
    roles = {r: s for r, s in roles.items() if s is not None}
    out: dict[str, SplitData] = {}
    if data.split == "official":
        for role, split in roles.items():
            ss = load_dataset(data.dataset, data.root, split, skip_bad=data.skip_bad)
            out[role] = SplitData(split, _own(ss.samples), list(ss.skipped))
    else:
        from medmm.data.splits import grouped_split

        if data.source_splits:  # a list: naming one split twice is caught below as shared ids
            sets = [load_dataset(data.dataset, data.root, s, skip_bad=data.skip_bad) for s in data.source_splits]
        else:
            sets = list(load_all_splits(data.dataset, data.root, skip_bad=data.skip_bad).values())
        sources = [ss.split for ss in sets]
        pooled = _pool([ss.samples for ss in sets])
        skipped: list[BadInputError] = [exc for ss in sets for exc in ss.skipped]
        ids = [s.id for s in pooled]
        if len(set(ids)) != len(ids):
            raise MedmmError(
                f"data.source_splits {sources} of {data.dataset!r} share sample ids; list splits that do not overlap"
            )
        split_seed = seed if data.split_seed is None else data.split_seed
        parts = grouped_split(pooled, data.group_by, data.fractions, split_seed, stratify=data.stratify)
        for role, split in roles.items():
            out[role] = SplitData(split, parts[split], [], list(skipped))
    if data.max_samples is not None:
        for sd in out.values():
            sd.samples = sd.samples[: data.max_samples]
    for sd in out.values():
        # A text file named .jpg fails here, before training, not as a silent skip mid-epoch.
        policy = ErrorPolicy(skip_bad=data.skip_bad)
        sd.samples = verify_headers(sd.samples, policy)
        sd.skipped.extend(policy.skipped)
    if "train" in out and not out["train"].samples:
        raise MedmmError(f"the training split {data.train_split!r} of {data.dataset!r} at {data.root} is empty")
    return out


def _own(samples: Sequence[Sample]) -> Sequence[Sample]:
    """A copy of a list (roles must not share one list object); a lazy sequence as it is (immutable)."""
    return list(samples) if isinstance(samples, list) else samples


def _pool(parts: list[Sequence[Sample]]) -> Sequence[Sample]:
    """The samples of several splits as one: packed splits stay one lazy `PackedSamples`."""
    from medmm.data.shards.samples import PackedSamples

    nonempty = [p for p in parts if len(p)]
    if nonempty and all(isinstance(p, PackedSamples) for p in nonempty):
        return PackedSamples.concat(nonempty)  # type: ignore[arg-type]
    return [s for p in parts for s in p]


class SampleDataset(Dataset):
    """A map-style dataset over a sequence of Samples (reading happens in the task's collate).

    A lazy sequence (`PackedSamples`) builds each Sample when the loader asks for it, in the
    worker that collates it; its compact index is shared by forked workers, not copied."""

    def __init__(self, samples: Sequence[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


@dataclass
class SafeBatch:
    """A collated batch plus the ids and messages of the samples dropped from it."""

    batch: Any
    n: int
    skipped: list[tuple[str, str]]


class StopOnBadSample(BadInputError):
    """The BadInputError that ends a run under ``data.skip_bad: false``.

    A DataLoader worker hands an exception back by rebuilding it from one message string
    ("Caught ... Original Traceback ... StopOnBadSample: PATH: PROBLEM"); this class accepts that
    and keeps only the last line, so the user still sees one line naming the file.
    """

    def __init__(self, path: str | None, problem: str | None = None):
        if problem is None:  # rebuilt in the main process from the worker's message
            last = [ln for ln in str(path).splitlines() if ln.strip()][-1]
            super().__init__(None, last.split(f"{type(self).__name__}: ", 1)[-1])
        else:
            super().__init__(path, problem)


class SafeCollate:
    """Wrap `task.collate`: drop samples that raise BadInputError, record them, go on.

    With ``skip_bad=False`` the first BadInputError is raised instead (``data.skip_bad: false``).
    """

    def __init__(self, collate: Callable[[list[Sample]], Any], skip_bad: bool = True):
        self.collate = collate
        self.skip_bad = skip_bad

    def __call__(self, samples: list[Sample]) -> SafeBatch:
        try:
            return SafeBatch(self.collate(samples), len(samples), [])
        except BadInputError as exc:
            if not self.skip_bad:
                raise StopOnBadSample(exc.path, f"{exc.problem} (data.skip_bad is false)") from exc
        # Find the bad ones one by one; the cost is paid only by batches that hold one.
        good, skipped = [], []
        for s in samples:
            try:
                self.collate([s])
                good.append(s)
            except BadInputError as exc:
                skipped.append((s.id, str(exc)))
        batch = self.collate(good) if good else None
        return SafeBatch(batch, len(good), skipped)


class ResumableSampler(Sampler[int]):
    """Shuffled indices from (seed, epoch), sharded per global batch over ranks, skippable.

    For global batch j (size batch_size * world_size) of the epoch's permutation, rank r
    takes the slice [r*batch_size, (r+1)*batch_size). The index list is padded by wrapping
    around so every rank has the same number of batches (DDP needs that).
    `skip_batches()` is asked at the start of each epoch how many batches to skip (non-zero
    only in the epoch a resumed run continues). `current_epoch()`, when given, is asked for the
    epoch instead of relying on `set_epoch`: Lightning creates the loader iterator (and workers
    prefetch from it) before it calls `set_epoch`, so a mid-epoch resume with workers would
    otherwise draw its first batches from epoch 0's order.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
        skip_batches: Callable[[], int] | None = None,
        weights: list[float] | None = None,
        current_epoch: Callable[[], int | None] | None = None,
    ):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.current_epoch = current_epoch
        if weights is not None and (len(weights) != n or min(weights) < 0 or sum(weights) <= 0):
            raise MedmmError(f"sample weights: need {n} non-negative weights with a positive sum")
        self.weights = weights
        self.rank, self.world_size = rank, world_size
        self.skip_batches = skip_batches
        self.epoch = 0
        self.num_batches = math.ceil(n / (batch_size * world_size)) if n else 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch."""
        self.epoch = epoch

    def _indices(self) -> list[int]:
        epoch = self.current_epoch() if self.current_epoch is not None else None
        if epoch is not None:
            self.epoch = epoch
        if self.weights is not None:
            # Weighted draw with replacement (class-balanced sampling), still a function of
            # (seed, epoch) only, so resume stays exact.
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            w = torch.tensor(self.weights, dtype=torch.double)
            order = torch.multinomial(w, self.n, replacement=True, generator=g).tolist()
        elif self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.num_batches * self.batch_size * self.world_size
        if self.world_size > 1 and total > len(order):
            order = (order * math.ceil(total / len(order)))[:total]
        out: list[int] = []
        gb = self.batch_size * self.world_size
        for j in range(self.num_batches):
            out.extend(order[j * gb + self.rank * self.batch_size : j * gb + (self.rank + 1) * self.batch_size])
        return out

    def __iter__(self) -> Iterator[int]:
        idx = self._indices()
        skip = self.skip_batches() if self.skip_batches else 0
        return iter(idx[skip * self.batch_size :])

    def __len__(self) -> int:
        return len(self._indices())


class ResumableLoader(DataLoader):
    """A DataLoader Lightning treats as resumable (it has state_dict/load_state_dict).

    The resume position is not stored here: the sampler asks the trainer's own progress
    counters (restored from the checkpoint) how many batches of the epoch are done.
    """

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": getattr(self.sampler, "epoch", 0)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(int(state.get("epoch", 0)))


def make_loader(
    samples: Sequence[Sample],
    collate: Callable[[list[Sample]], Any],
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    shuffle: bool,
    rank: int = 0,
    world_size: int = 1,
    skip_batches: Callable[[], int] | None = None,
    weights: list[float] | None = None,
    skip_bad: bool = True,
    current_epoch: Callable[[], int | None] | None = None,
) -> DataLoader:
    """A DataLoader yielding `SafeBatch`es; training loaders shuffle and shard per rank.

    `skip_bad`: drop and count bad samples (True) or stop at the first one (False).

    `weights` (training only): per-sample sampling weights; each epoch draws len(samples)
    samples with replacement in proportion to them (see `Task.sample_weights`)."""
    # An explicit generator keeps the DataLoader from drawing on the global RNG, so a resumed
    # run's random stream (dropout, ...) matches an uninterrupted one.
    gen = torch.Generator().manual_seed(seed)
    common = dict(
        collate_fn=SafeCollate(collate, skip_bad),
        num_workers=num_workers,
        generator=gen,
        # Workers (and the tasks' bounded image caches in them) live for the whole run instead
        # of being rebuilt every epoch; the sampler runs in the main process, so resume is unchanged.
        persistent_workers=num_workers > 0,
    )
    if shuffle or world_size > 1 or weights is not None:
        sampler = ResumableSampler(
            len(samples),
            batch_size,
            seed=seed,
            shuffle=shuffle,
            rank=rank,
            world_size=world_size,
            skip_batches=skip_batches,
            weights=weights,
            current_epoch=current_epoch,
        )
        return ResumableLoader(SampleDataset(samples), batch_size=batch_size, sampler=sampler, **common)
    return DataLoader(SampleDataset(samples), batch_size=batch_size, shuffle=False, **common)
