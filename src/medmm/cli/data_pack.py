"""`medmm data pack NAME ROOT --out DIR`: a registered dataset written once into WebDataset shards.

A module of its own (the `data` command group is defined in cli/data.py) so that the pack
command and `data check` change independently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medmm.cli.data import data_app


@data_app.command("pack")
def pack_cmd(
    name: Annotated[str, typer.Argument(help="registered dataset name (see `medmm data list`); `manifest` packs a manifest")],
    root: Annotated[Path, typer.Argument(help="dataset folder in its original layout")],
    out: Annotated[Path, typer.Option(help="output folder; a killed pack resumes when run again with the same arguments")],
    size: Annotated[int, typer.Option(help="images are resized once to size x size")] = 224,
    channels: Annotated[int, typer.Option(help="1 (grey) or 3 (RGB)")] = 3,
    splits: Annotated[list[str] | None, typer.Option("--splits", help="splits to pack (repeat the option; default: all)")] = None,
    shard_size: Annotated[int, typer.Option(help="samples per shard")] = 1000,
    workers: Annotated[int, typer.Option(help="processes writing shards in parallel")] = 1,
) -> None:
    """Pack a dataset: images decoded and resized once, every Sample field, an index with sha256s."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from medmm.data.shards.pack import PackSettings, pack_dataset
    from medmm.errors import MedmmError

    if channels not in (1, 3) or size < 1 or shard_size < 1 or workers < 1:
        raise MedmmError("--channels must be 1 or 3; --size, --shard-size and --workers must be positive")
    console = Console()
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(f"listing {name}", total=None)
        index = pack_dataset(
            name,
            root,
            out,
            PackSettings(size=size, channels=channels, shard_size=shard_size),
            splits=splits,
            workers=workers,
            progress=lambda n: bar.advance(task, n),
            on_loaded=lambda total: bar.update(task, total=total, description=f"packing {name}"),
        )
    for split, d in index["splits"].items():
        console.print(
            f"{split}: {d['samples']} samples in {len(d['shards'])} shards; "
            f"bad: {d['bad']} unreadable, {d['bad_at_load']} rejected by the loader"
        )
    console.print(f"index: {out / 'index.json'}")
