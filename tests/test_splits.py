from __future__ import annotations

import numpy as np
import pytest

from medmm.data.schema import ImageRef, Sample
from medmm.data.splits import find_leakage, grouped_split, official_split
from medmm.errors import MedmmError


def _samples(n_patients: int = 50, per_patient: int = 3) -> list[Sample]:
    out = []
    for p in range(n_patients):
        label = "pos" if p % 5 == 0 else "neg"
        for k in range(per_patient):
            out.append(Sample(id=f"p{p}-{k}", dataset="toy", split="all", patient_id=f"P{p}", targets={"y": label}))
    return out


def test_no_group_in_two_splits_and_all_samples_kept():
    samples = _samples()
    parts = grouped_split(samples, "patient", {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    assert sum(len(v) for v in parts.values()) == len(samples)
    seen: dict[str, str] = {}
    for name, part in parts.items():
        for s in part:
            assert s.split == name
            assert seen.setdefault(s.patient_id, name) == name
    # fractions are of groups: 50 patients -> 35 / 5 / 10
    n_groups = {k: len({s.patient_id for s in v}) for k, v in parts.items()}
    assert n_groups == {"train": 35, "val": 5, "test": 10}
    assert not find_leakage(parts, "patient", hash_images=False).has_leakage


def test_deterministic_for_seed_and_independent_of_input_order():
    samples = _samples()
    fr = {"train": 0.8, "test": 0.2}
    a = grouped_split(samples, "patient", fr, seed=3)
    b = grouped_split(list(reversed(samples)), "patient", fr, seed=3)
    c = grouped_split(samples, "patient", fr, seed=4)
    ids = lambda parts: {k: sorted(s.id for s in v) for k, v in parts.items()}  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)


def test_stratified_keeps_label_proportions():
    samples = _samples(n_patients=100)
    parts = grouped_split(samples, "patient", {"train": 0.8, "test": 0.2}, seed=1, stratify="y")
    pos = {k: len({s.patient_id for s in v if s.targets["y"] == "pos"}) for k, v in parts.items()}
    assert pos == {"train": 16, "test": 4}  # 20 positive patients split exactly 80/20


def test_question_groups_stay_together():
    # paraphrases share a question group: a question and its rewording never straddle splits
    samples = [Sample(id=str(i), dataset="t", split="all", question_id=f"q{i // 2}", image_id="img") for i in range(40)]
    parts = grouped_split(samples, "question", {"a": 0.5, "b": 0.5}, seed=0)
    assert {s.question_id for s in parts["a"]}.isdisjoint({s.question_id for s in parts["b"]})
    assert samples[3].group("question") == "q1" and Sample(id="9", dataset="t", split="x").group("question") == "sample:9"


def test_missing_group_id_means_own_group():
    samples = [Sample(id=str(i), dataset="t", split="all") for i in range(10)]
    parts = grouped_split(samples, "patient", {"a": 0.5, "b": 0.5}, seed=0)
    assert len(parts["a"]) == len(parts["b"]) == 5


@pytest.mark.parametrize("bad", [{}, {"train": 0.5}, {"train": 1.2, "test": -0.2}])
def test_bad_fractions(bad):
    with pytest.raises(MedmmError):
        grouped_split(_samples(), "patient", bad, seed=0)


def test_find_leakage_groups_and_identical_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"same bytes")
    (tmp_path / "copy_of_a.png").write_bytes(b"same bytes")
    (tmp_path / "b.png").write_bytes(b"other bytes")

    def s(i, split, pid, img):
        return Sample(id=i, dataset="t", split=split, patient_id=pid, images=[ImageRef(path=tmp_path / img)])

    splits = {
        "train": [s("1", "train", "P1", "a.png"), s("2", "train", "P2", "b.png")],
        "test": [s("3", "test", "P1", "b.png"), s("4", "test", "P3", "copy_of_a.png")],
    }
    calls = []
    rep = find_leakage(splits, "patient", progress=lambda d, t: calls.append((d, t)))
    assert rep.has_leakage
    assert rep.shared_groups == {"P1": {"test": 1, "train": 1}}
    assert len(rep.shared_images) == 2  # a.png == copy_of_a.png, and b.png in both
    assert rep.n_images_hashed == 2
    assert calls[-1] == (4, 4)
    text = rep.summary()
    assert "1 patient ids" in text and "2 identical images" in text
    assert rep.to_dict()["has_leakage"] is True


def test_find_leakage_arrays_and_unreadable(tmp_path):
    arr = np.zeros((4, 4), dtype=np.uint8)
    splits = {
        "train": [Sample(id="1", dataset="t", split="train", images=[ImageRef(array=arr)])],
        "test": [
            Sample(id="2", dataset="t", split="test", images=[ImageRef(array=arr.copy())]),
            Sample(id="3", dataset="t", split="test", images=[ImageRef(path=tmp_path / "gone.png")]),
        ],
    }
    rep = find_leakage(splits, "id")
    assert len(rep.shared_images) == 1 and not rep.shared_groups
    assert rep.unreadable == [str(tmp_path / "gone.png")]


def test_clean_split_reports_no_leakage(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(bytes([i]))
    samples = [
        Sample(id=str(i), dataset="t", split="all", patient_id=f"P{i // 2}", images=[ImageRef(path=tmp_path / f"{i}.png")])
        for i in range(4)
    ]
    parts = grouped_split(samples, "patient", {"train": 0.5, "test": 0.5}, seed=0)
    rep = find_leakage(parts, "patient")
    assert not rep.has_leakage and "no leakage" in rep.summary()


def test_official_split_is_load_dataset(tmp_path):
    with pytest.raises(MedmmError):
        official_split("no_such_dataset", tmp_path, "train")


def test_cross_group_duplicates_noted_even_within_one_split(tmp_path):
    (tmp_path / "x.png").write_bytes(b"x")
    (tmp_path / "x_again.png").write_bytes(b"x")
    splits = {
        "train": [
            Sample(id="1", dataset="t", split="train", patient_id="P1", images=[ImageRef(path=tmp_path / "x.png")]),
            Sample(id="2", dataset="t", split="train", patient_id="P2", images=[ImageRef(path=tmp_path / "x_again.png")]),
        ]
    }
    rep = find_leakage(splits, "patient")
    assert not rep.has_leakage
    assert list(rep.cross_group_duplicates.values()) == [["P1", "P2"]]
    assert "deduplicate" in rep.summary()


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    given = None

if given is not None:

    @settings(max_examples=60, deadline=None)
    @given(
        groups=st.lists(st.integers(min_value=0, max_value=12), min_size=0, max_size=60),
        weights=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=4).filter(any),
        seed=st.integers(min_value=0, max_value=2**16),
        stratified=st.booleans(),
    )
    def test_grouped_split_properties(groups, weights, seed, stratified):
        samples = [
            Sample(id=str(i), dataset="t", split="all", patient_id=f"P{g}", targets={"y": str(g % 3)})
            for i, g in enumerate(groups)
        ]
        fractions = {f"s{i}": w / sum(weights) for i, w in enumerate(weights)}
        parts = grouped_split(samples, "patient", fractions, seed=seed, stratify="y" if stratified else None)
        assert sorted(s.id for v in parts.values() for s in v) == sorted(s.id for s in samples)
        assert not find_leakage(parts, "patient", hash_images=False).shared_groups
        n_groups = len(set(groups))
        for name, frac in fractions.items():
            got = len({s.patient_id for s in parts[name]})
            if frac == 0:
                assert got == 0
            elif not stratified:  # largest remainder: within one group of the exact share
                assert abs(got - frac * n_groups) < 1
