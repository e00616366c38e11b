"""`shards`: a folder written by `medmm data pack` (WebDataset tar shards + index.json).

Any config trains on packed data with ``data.dataset=shards data.root=DIR``; the samples are the
packed dataset's own (same ids, fields and split names), with images already decoded and resized.
"""

from __future__ import annotations

from pathlib import Path

from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import Sample


@register_dataset(
    "shards",
    splits=("train", "val", "validation", "validate", "valid", "dev", "test", "all"),
    description="A dataset packed by `medmm data pack` into WebDataset tar shards (pixels read lazily).",
    group_by="patient",
)
def load_shards(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    from medmm.data.shards.read import load_split

    # Bad samples were counted (and left out) when packing: see index.json.
    return load_split(root, split)
