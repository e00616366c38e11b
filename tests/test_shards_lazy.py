"""Packed splits held lazily (`PackedSamples`): the same Samples as building them all at load time,
a fixed ~20 bytes per sample in memory, views (slices, take, concat, grouped splits) that stay
lazy, and a shard summary changed after loading found instead of read silently."""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from medmm.data.io.text import read_json
from medmm.data.registry import ErrorPolicy
from medmm.data.schema import ImageRef, Sample
from medmm.data.shards.pack import PackSettings, pack_samples
from medmm.data.shards.read import load_split
from medmm.data.shards.records import sample_from_record
from medmm.data.shards.samples import PackedSamples, scan_summary
from medmm.data.splits import grouped_split
from medmm.errors import BadInputError


def _pack(tmp_path: Path, n: int, split: str = "train", shard_size: int = 4, first: int = 0) -> Path:
    rng = np.random.default_rng(first)
    ss = [
        Sample(id=f"{split}{i}", dataset="synthetic", split=split, images=[ImageRef(array=rng.integers(0, 255, (6, 5), dtype=np.uint8))],
               text={"report": f"r{i} caf\u00e9"}, targets={"label": "ab"[i % 2]}, patient_id=f"p{(first + i) // 2}", meta={"i": i})
        for i in range(n)
    ]
    pack_samples({split: ss}, tmp_path, PackSettings(size=4, channels=1, shard_size=shard_size), source={})
    return tmp_path


def _key(s: Sample) -> tuple:
    im = s.images[0].array
    return (s.id, s.split, s.text, s.targets, s.patient_id, s.meta, im.path, im.offset, im.shape, np.asarray(im).tobytes())


def _eager(root: Path, split: str) -> list[Sample]:
    """What load_split returned before it was lazy: every record built at load time."""
    out = []
    for shard in read_json(root / "index.json")["splits"][split]["shards"]:
        tar = root / shard
        out.extend(sample_from_record(rec, str(tar)) for rec in read_json(tar.with_suffix(".json"))["records"])
    return out


def test_lazy_split_gives_the_samples_built_eagerly(tmp_path):
    root = _pack(tmp_path, 11)
    lazy = load_split(root, "train")
    assert isinstance(lazy, PackedSamples) and len(lazy) == 11
    eager = _eager(root, "train")
    assert [_key(s) for s in lazy] == [_key(s) for s in eager]  # iteration
    assert [_key(lazy[i]) for i in range(11)] == [_key(s) for s in eager]  # indexing
    assert _key(lazy[-1]) == _key(eager[-1]) and _key(lazy[np.int64(3)]) == _key(eager[3])
    with pytest.raises(IndexError):
        lazy[11]
    # Slices (max_samples, a rank's validation part) and take (a grouped part) stay lazy.
    assert isinstance(lazy[:5], PackedSamples) and [s.id for s in lazy[:5]] == [s.id for s in eager[:5]]
    assert [s.id for s in lazy[1::3]] == [s.id for s in eager[1::3]]
    part = lazy.take([7, 2, 9], split="test")
    assert [(s.id, s.split) for s in part] == [("train7", "test"), ("train2", "test"), ("train9", "test")]
    assert [s.id for s in part[1:]] == ["train2", "train9"] and part[0].split == "test"
    # A task adding derived samples (`samples + extra`) gets a list, as it did.
    extra = [eager[0]]
    assert [s.id for s in lazy[:2] + extra] == ["train0", "train1", "train0"]
    assert [s.id for s in extra + lazy[:1]] == ["train0", "train0"]


def test_a_packed_sample_costs_twenty_bytes_of_memory(tmp_path):
    """The loaded split holds four numpy columns, not Samples: bytes per sample do not depend on
    the records' size (the records here carry a 300-character report)."""
    ss = [Sample(id=f"img{i:07d}", dataset="synthetic", split="train", images=[ImageRef(array=np.zeros((4, 4), np.uint8), modality="XR")],
                 text={"report": "x" * 300}, targets={"label": "bright" if i % 2 else "dark"}, patient_id=f"p{i // 2}") for i in range(3000)]
    pack_samples({"train": ss}, tmp_path, PackSettings(size=64, channels=1, shard_size=500), source={})
    gc.collect()
    tracemalloc.start()
    back = load_split(tmp_path, "train")
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert back.nbytes() == 20 * 3000
    assert held / len(back) < 25, f"{held / len(back):.1f} bytes per sample"
    # Built on demand, with the shared strings and shapes of sample_from_record.
    assert back[0].dataset is back[1].dataset and back[0].targets["label"] is back[2].targets["label"]
    assert back[0].images[0].array.shape is back[1].images[0].array.shape == (64, 64)


def test_concat_and_grouped_split_stay_lazy_and_match_lists(tmp_path):
    a = load_split(_pack(tmp_path / "a", 9, "train"), "train")
    b = load_split(_pack(tmp_path / "b", 5, "val", first=9), "val")
    pooled = PackedSamples.concat([a, b[1:]])
    assert [s.id for s in pooled] == [*(s.id for s in a), *(s.id for s in b)][:9] + ["val1", "val2", "val3", "val4"]
    as_list = list(pooled)
    for stratify in (None, "label"):
        lazy_parts = grouped_split(pooled, "patient", {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3, stratify=stratify)
        list_parts = grouped_split(as_list, "patient", {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3, stratify=stratify)
        for name in ("train", "val", "test"):
            assert isinstance(lazy_parts[name], PackedSamples) and isinstance(list_parts[name], list)
            assert [(s.id, s.split) for s in lazy_parts[name]] == [(s.id, s.split) for s in list_parts[name]]
            assert {s.split for s in list_parts[name]} <= {name}
    with pytest.raises(ValueError, match="relabelled"):
        PackedSamples.concat([lazy_parts["train"]])


def test_verify_headers_keeps_packed_splits_lazy(tmp_path):
    from medmm.data.io.verify import verify_headers

    lazy = load_split(_pack(tmp_path, 6), "train")
    policy = ErrorPolicy(skip_bad=True)
    assert verify_headers(lazy, policy) is lazy and not policy.skipped


def test_a_summary_changed_after_loading_is_an_error_not_other_samples(tmp_path):
    root = _pack(tmp_path, 8)
    lazy = load_split(root, "train")
    summary = root / "train-000001.json"
    summary.write_text(summary.read_text().replace('"train5"', '"trainX"'))  # same length, other bytes
    assert lazy[3].id == "train3"  # other shards are unaffected
    with pytest.raises(BadInputError, match="changed after the split was loaded"):
        lazy[5]
    with pytest.raises(BadInputError, match="changed after the split was loaded"):
        list(lazy)


def test_scan_summary_spans_are_bytes_and_malformed_summaries_are_named(tmp_path):
    recs = [{"id": "\u00e9t\u00e9", "text": {"r": "na\u00efve \u2014 x"}}, {"id": "b", "k": [1, {"x": "]}"}]}]
    data = json.dumps({"name": "s.tar", "records": recs, "bytes": 3}, ensure_ascii=False, indent=1).encode()
    fields, spans = scan_summary(data, tmp_path / "s.json")
    assert fields == {"name": "s.tar", "bytes": 3}
    assert [json.loads(data[a:b]) for a, b in spans] == recs
    assert scan_summary(b'{"records": []}', "x")[1] == []
    for bad, msg in [(b'{"records": [1]}', "not a JSON object"), (b'{"records": 3}', "not a list"),
                     (b'{"bytes": 3}', "no 'records' list"), (b'{"records": [{"a": 1}', "truncated"),
                     (b'{"records": [{"a": 1} {"b": 2}]}', "invalid JSON"), (b"[1, 2]", "invalid JSON"),
                     (b'{"records": []} x', "invalid JSON"), (b"\xff\xfe", "not valid UTF-8")]:
        with pytest.raises(BadInputError, match=msg):
            scan_summary(bad, tmp_path / "s.json")
