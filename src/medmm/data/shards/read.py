"""Read a packed folder back as Samples whose pixels stay in the shards (`ShardImage`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medmm.data.io.text import read_json
from medmm.data.schema import Sample
from medmm.data.shards.pack import FORMAT
from medmm.data.shards.samples import PackedSamples, scan_summary
from medmm.errors import BadInputError


def read_index(root: str | Path) -> dict[str, Any]:
    """The finished pack's index.json; a folder without one is an unfinished (or no) pack."""
    path = Path(root) / "index.json"
    if not path.exists():
        hint = " (pack.json is there: the pack was not finished; run `medmm data pack` again to resume it)" if (Path(root) / "pack.json").exists() else ""
        raise BadInputError(path, f"no index of packed shards{hint}")
    index = read_json(path)  # empty, truncated or non-UTF-8: BadInputError naming index.json
    if not isinstance(index, dict) or not isinstance(index.get("splits"), dict) or not isinstance(index.get("shards"), list):
        raise BadInputError(path, "not an index of packed shards (no 'splits' and 'shards')")
    if index.get("format") != FORMAT:
        raise BadInputError(path, f"format {index.get('format')!r} is not {FORMAT!r}")
    return index


def verify(root: str | Path) -> list[str]:
    """Shards whose size or sha256 differs from the index (empty list: all intact)."""
    from medmm.fileio import sha256_file

    root = Path(root)
    bad = []
    for sh in read_index(root)["shards"]:
        p = root / sh["name"]
        if not p.exists() or p.stat().st_size != sh["bytes"] or sha256_file(p) != sh["sha256"]:
            bad.append(sh["name"])
    return bad


def load_split(root: str | Path, split: str) -> PackedSamples | list[Sample]:
    """The samples of `split` in packed order, as a lazy `PackedSamples` (20 bytes per sample in
    memory; each Sample is built from its shard summary when indexed); a split the pack does not
    hold gives [].

    Each shard's size and sha256 are checked against index.json before its records are used:
    pixels are read raw at recorded offsets, so a changed byte would otherwise pass silently.
    """
    root = Path(root)
    index = read_index(root)
    info = index["splits"].get(split)
    if info is None:
        return []
    listed = {sh.get("name"): sh for sh in index["shards"] if isinstance(sh, dict)}

    def shards():
        for shard in info["shards"]:
            tar = root / shard
            summary_path = tar.with_suffix(".json")
            if not tar.exists() or not summary_path.exists() or shard not in listed:
                raise BadInputError(tar, "shard listed in index.json is missing")
            data = summary_path.read_bytes()
            if not data.strip():
                raise BadInputError(summary_path, "file is empty (0 bytes)" if not data else "file holds only whitespace")
            summary, spans = scan_summary(data, summary_path)
            _check_shard(tar, listed[shard], summary)
            yield str(tar), str(summary_path), data, spans

    out = PackedSamples.build(shards())
    if len(out) != info["samples"]:
        raise BadInputError(root / "index.json", f"split {split!r}: {len(out)} records in the shards, index says {info['samples']}")
    return out


def _check_shard(tar: Path, entry: dict[str, Any], summary: Any) -> None:
    """The shard on disk is the one index.json describes (size, then sha256); else BadInputError.

    `summary`: the shard summary's fields but its records (see `scan_summary`)."""
    from medmm.fileio import sha256_file

    size = tar.stat().st_size
    if size != entry.get("bytes") or summary.get("bytes") != entry.get("bytes"):
        raise BadInputError(tar, f"size {size} differs from the index ({entry.get('bytes')}): shard truncated or changed after packing")
    digest = sha256_file(tar)
    if digest != entry.get("sha256") or summary.get("sha256") != entry.get("sha256"):
        raise BadInputError(tar, f"sha256 {digest[:12]}... differs from the index ({str(entry.get('sha256'))[:12]}...): shard corrupted or changed after packing")
