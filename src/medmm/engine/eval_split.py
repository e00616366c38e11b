"""Which samples `medmm evaluate` and `medmm predict` score: a part of the run's own split, or a
dataset split as published, and how many of them the run trained on (a TrainingDataWarning when any)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medmm.data.schema import Sample
from medmm.engine.config import RunConfig
from medmm.engine.data import SplitData, load_splits
from medmm.engine.loading import import_plugins
from medmm.errors import BadInputError, MedmmError


class TrainingDataWarning(UserWarning):
    """`evaluate` scored samples the run was trained on: the numbers are not held-out results."""


class RunSplits:
    """The run's own splits, rebuilt from its config exactly as `train` built them (`load_splits`
    with the run's data section and seed): loaded at most once per evaluation, on first use, and
    shared by the choice of samples and the protocol (training overlap, floors)."""

    def __init__(self, cfg: RunConfig):
        self._cfg = cfg
        self._by_role: dict[str, SplitData] | None = None
        self._error: MedmmError | OSError | None = None

    def get(self) -> dict[str, SplitData]:
        """Role ("train", "val", "test") -> its part; raises the loading error (again, on later calls)."""
        if self._by_role is None and self._error is None:
            try:
                self._by_role = load_splits(self._cfg.data, self._cfg.seed)
            except (MedmmError, OSError) as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        assert self._by_role is not None
        return self._by_role


def samples_for(
    cfg: RunConfig, data_root: str | Path, dataset: str | None, split: str
) -> tuple[Sequence[Sample], list[BadInputError], str]:
    """Every readable record of a dataset split as published: (samples, load errors, dataset name)."""
    from medmm.data.io.verify import verify_headers
    from medmm.data.registry import ErrorPolicy, load_dataset

    import_plugins()
    name = dataset or cfg.data.dataset
    ss = load_dataset(name, data_root, split, skip_bad=cfg.data.skip_bad)
    policy = ErrorPolicy(skip_bad=cfg.data.skip_bad)
    samples = verify_headers(ss.samples, policy)  # a list gives a new list; packed shards stay lazy
    return samples, [*ss.skipped, *policy.skipped], name


def eval_samples(
    cfg: RunConfig, data_root: str | Path | None, dataset: str | None, split: str, run_splits: RunSplits | None = None
) -> tuple[list[Sample], list[BadInputError], str, Path, dict[str, Any]]:
    """What `evaluate` scores: (samples, load_skipped, dataset, root, provenance extras).

    With no `data_root` (or the run's own root and dataset with a name that is not a published
    split), `split` names a part of the run's own split, rebuilt exactly as `train` built it
    (`load_splits` with the run's data section and seed): for a grouped run the keys of
    data.fractions ("train", "val", "test") and the roles. A published split name with a root,
    or another root, is a dataset split read as published (every record of it). The extras
    say where the samples came from and how many of them the run trained on.
    `run_splits`: the run's own splits, when the caller needs them too (loaded here otherwise).
    """
    import_plugins()
    name = dataset or cfg.data.dataset
    run_root = Path(cfg.data.root)
    own_root = data_root is None or (name == cfg.data.dataset and Path(data_root).resolve() == run_root.resolve())
    if data_root is None and name != cfg.data.dataset:
        raise MedmmError(f"--dataset {name!r} differs from the run's dataset {cfg.data.dataset!r}: give its root with --data")
    if own_root and not run_root.is_dir():
        raise BadInputError(run_root, "the run's data root does not exist here; give the dataset root with --data")
    parts: dict[str, SplitData] = {}
    train_ids: set[str] | None = None
    # samples of one patient/image/... as a training sample are not held out either
    group_by = cfg.data.group_by if cfg.data.split == "grouped" else "image"
    if name == cfg.data.dataset and run_root.is_dir():
        # the run's own parts: needed to score one of them and to count training samples
        by_role = (run_splits or RunSplits(cfg)).get()
        parts = {**{sd.name: sd for sd in by_role.values()}, **by_role}
        train_ids = {s.id for s in by_role["train"].samples}
        train_groups = {s.group(group_by) for s in by_role["train"].samples}
    extras: dict[str, Any] = {}
    # An explicit root with a published split name scores that split as published (all of it,
    # whatever data.max_samples the run trained with); the run's own parts are for the rest.
    published = data_root is not None and split in dataset_split_names(name)
    if own_root and split in parts and not published:
        chosen = parts[split]
        # the load errors in the shape samples_for returns them (a list of BadInputError, one per record)
        samples, skipped = chosen.samples, list(chosen.skipped)
        root = run_root
        how = f"grouped by {cfg.data.group_by}, seed {cfg.seed if cfg.data.split_seed is None else cfg.data.split_seed}"
        extras["split_source"] = f"the run's own {chosen.name!r} part" + (f" ({how})" if cfg.data.split == "grouped" else "")
    elif own_root and cfg.data.split == "grouped" and split not in dataset_split_names(name):
        names = sorted(set(parts) | set(cfg.data.fractions))
        raise MedmmError(
            f"split {split!r} is neither a part of this run's grouped split ({', '.join(names)}; "
            f"data.fractions {cfg.data.fractions}) nor a split of dataset {name!r}"
        )
    else:
        root = run_root if data_root is None else Path(data_root)
        samples, skipped, _ = samples_for(cfg, root, name, split)
        extras["split_source"] = f"dataset {name!r} split {split!r} as published"
    if train_ids is None:
        extras["trained_on"] = "not checked (another dataset, or the run's data root is absent)"
    else:
        n_seen = sum(s.id in train_ids for s in samples)
        n_group = sum(s.group(group_by) in train_groups for s in samples)
        extras["n_trained_on"] = n_seen
        extras[f"n_sharing_a_training_{group_by}"] = n_group
        if n_seen or n_group:
            extras["warning"] = (
                f"{n_seen} of {len(samples)} scored samples are in this run's TRAINING part"
                + (f" ({n_group} share a {group_by} with it)" if n_group != n_seen else "")
                + ": these numbers are not held-out results"
            )
    if not samples:
        own = f"; this run's own parts: {', '.join(sorted(parts))}" if own_root and parts else ""
        raise MedmmError(f"{root}: no samples in split {split!r} of dataset {name!r}{own}")
    return list(samples), skipped, name, root, extras


def dataset_split_names(name: str) -> tuple[str, ...]:
    """The published split names of a registered dataset."""
    from medmm.data.registry import dataset_info

    return tuple(dataset_info(name).splits)
