"""Read a packed folder back as Samples whose pixels stay in the shards (`ShardImage`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medmm.data.schema import Sample
from medmm.data.shards.pack import FORMAT
from medmm.data.shards.records import sample_from_record
from medmm.errors import BadInputError


def read_index(root: str | Path) -> dict[str, Any]:
    """The finished pack's index.json; a folder without one is an unfinished (or no) pack."""
    path = Path(root) / "index.json"
    if not path.exists():
        hint = " (pack.json is there: the pack was not finished; run `medmm data pack` again to resume it)" if (Path(root) / "pack.json").exists() else ""
        raise BadInputError(path, f"no index of packed shards{hint}")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise BadInputError(path, f"format {index.get('format')!r} is not {FORMAT!r}")
    return index


def verify(root: str | Path) -> list[str]:
    """Shards whose size or sha256 differs from the index (empty list: all intact)."""
    from medmm.data.shards.pack import _sha256

    root = Path(root)
    bad = []
    for sh in read_index(root)["shards"]:
        p = root / sh["name"]
        if not p.exists() or p.stat().st_size != sh["bytes"] or _sha256(p) != sh["sha256"]:
            bad.append(sh["name"])
    return bad


def load_split(root: str | Path, split: str) -> list[Sample]:
    """The samples of `split` in packed order; a split the pack does not hold gives []."""
    root = Path(root)
    index = read_index(root)
    info = index["splits"].get(split)
    if info is None:
        return []
    out: list[Sample] = []
    for shard in info["shards"]:
        tar = root / shard
        summary_path = tar.with_suffix(".json")
        if not tar.exists() or not summary_path.exists():
            raise BadInputError(tar, "shard listed in index.json is missing")
        summary = json.loads(summary_path.read_text())
        if summary["bytes"] != tar.stat().st_size:
            raise BadInputError(tar, f"size {tar.stat().st_size} differs from the index ({summary['bytes']}): shard changed after packing")
        out.extend(sample_from_record(rec, str(tar)) for rec in summary["records"])
    if len(out) != info["samples"]:
        raise BadInputError(root / "index.json", f"split {split!r}: {len(out)} records in the shards, index says {info['samples']}")
    return out
