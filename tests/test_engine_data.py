"""Engine data plumbing: resumable sharded sampler, bad-sample-skipping collate, split loading."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from engine_toy import make_toy_root
from medmm.data.schema import ImageRef, Sample
from medmm.engine.config import DataConfig
from medmm.engine.data import ResumableSampler, SafeCollate, load_splits, make_loader
from medmm.errors import BadInputError, MedmmError


def _batches(sampler: ResumableSampler) -> list[list[int]]:
    idx = list(sampler)
    return [idx[i : i + sampler.batch_size] for i in range(0, len(idx), sampler.batch_size)]


def test_sampler_depends_on_seed_and_epoch_only():
    a = ResumableSampler(20, 4, seed=1, shuffle=True)
    b = ResumableSampler(20, 4, seed=1, shuffle=True)
    assert list(a) == list(b) and sorted(a) == list(range(20))
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(ResumableSampler(20, 4, seed=2, shuffle=True)) != list(b)


def test_sampler_shards_each_global_batch_over_ranks():
    one = _batches(ResumableSampler(16, 8, seed=0, shuffle=True))
    r0 = _batches(ResumableSampler(16, 4, seed=0, shuffle=True, rank=0, world_size=2))
    r1 = _batches(ResumableSampler(16, 4, seed=0, shuffle=True, rank=1, world_size=2))
    assert len(r0) == len(r1) == len(one) == 2
    for g, a, b in zip(one, r0, r1, strict=True):
        assert a + b == g  # the same samples per optimizer step as one process with batch 8


def test_sampler_pads_uneven_ranks_and_skips_done_batches():
    r0 = ResumableSampler(7, 2, seed=0, shuffle=False, rank=0, world_size=2)
    r1 = ResumableSampler(7, 2, seed=0, shuffle=False, rank=1, world_size=2)
    assert len(r0) == len(r1) == 4
    assert set(r0) | set(r1) == set(range(7))
    s = ResumableSampler(10, 3, seed=0, shuffle=True, skip_batches=lambda: 2)
    full = ResumableSampler(10, 3, seed=0, shuffle=True)
    assert list(s) == list(full)[6:]


def _sample(i: int, bad: bool = False) -> Sample:
    img = ImageRef(path=f"/nope/{i}.png") if bad else ImageRef(array=np.full((2, 2), i, dtype=np.float32))
    return Sample(id=str(i), dataset="t", split="train", images=[img])


def _collate(samples):
    for s in samples:
        if s.images[0].array is None:
            raise BadInputError(s.images[0].path, "unreadable")
    return [s.id for s in samples]


def test_safe_collate_drops_and_reports_bad_samples():
    sb = SafeCollate(_collate)([_sample(0), _sample(1, bad=True), _sample(2)])
    assert sb.batch == ["0", "2"] and sb.n == 2
    assert sb.skipped == [("1", "/nope/1.png: unreadable")]
    all_bad = SafeCollate(_collate)([_sample(3, bad=True)])
    assert all_bad.batch is None and all_bad.n == 0

    def buggy(samples):
        raise KeyError("a bug, not bad data")

    with pytest.raises(KeyError):  # only BadInputError is skipped; bugs still surface
        SafeCollate(buggy)([_sample(0)])
    loader = make_loader([_sample(i, bad=i == 3) for i in range(6)], _collate, batch_size=4, num_workers=0, seed=0, shuffle=False)
    got = [(b.batch, [s for s, _ in b.skipped]) for b in loader]
    assert got == [(["0", "1", "2"], ["3"]), (["4", "5"], [])]


def test_load_splits_official_grouped_and_limits(tmp_path):
    root = make_toy_root(tmp_path, {"train": 20, "val": 6, "test": 6})
    off = load_splits(DataConfig(dataset="toy_engine", root=str(root), max_samples=5), seed=0)
    assert [len(off[r].samples) for r in ("train", "val", "test")] == [5, 5, 5]
    grouped = load_splits(
        DataConfig(dataset="toy_engine", root=str(root), split="grouped", group_by="patient",
                   fractions={"train": 0.5, "val": 0.25, "test": 0.25}, source_splits=["train"]),
        seed=0,
    )
    groups = {r: {s.patient_id for s in grouped[r].samples} for r in grouped}
    assert sum(len(grouped[r].samples) for r in grouped) == 20
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"])
    with pytest.raises(MedmmError, match="share sample ids"):
        load_splits(DataConfig(dataset="toy_engine", root=str(root), split="grouped",
                               source_splits=["train", "train"]), seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedmmError, match="is empty"):
        load_splits(DataConfig(dataset="toy_engine", root=str(tmp_path / "empty")), seed=0)


def test_weighted_sampler_is_seeded_sharded_and_follows_weights():
    w = [1.0] * 90 + [9.0] * 10  # the last 10 samples carry half the weight
    a = ResumableSampler(100, 10, seed=0, shuffle=True, weights=w)
    assert list(a) == list(ResumableSampler(100, 10, seed=0, shuffle=True, weights=w))
    drawn = list(a)
    assert len(drawn) == 100 and 30 <= sum(i >= 90 for i in drawn) <= 70
    one = _batches(ResumableSampler(16, 8, seed=3, shuffle=True, weights=[1.0] * 16))
    r0 = _batches(ResumableSampler(16, 4, seed=3, shuffle=True, rank=0, world_size=2, weights=[1.0] * 16))
    r1 = _batches(ResumableSampler(16, 4, seed=3, shuffle=True, rank=1, world_size=2, weights=[1.0] * 16))
    assert [a + b for a, b in zip(r0, r1, strict=True)] == one
    with pytest.raises(MedmmError, match="non-negative weights"):
        ResumableSampler(3, 1, seed=0, shuffle=True, weights=[1.0, -1.0, 1.0])


def test_worker_processes_give_the_same_batches():
    samples = [_sample(i, bad=i == 2) for i in range(7)]
    kw = dict(batch_size=3, seed=0, shuffle=True)
    main = [(b.batch, b.skipped) for b in make_loader(samples, _collate, num_workers=0, **kw)]
    workers = [(b.batch, b.skipped) for b in make_loader(samples, _collate, num_workers=2, **kw)]
    assert main == workers and sum(len(s) for _, s in main) == 1
