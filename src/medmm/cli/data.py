"""`medmm data list` and `medmm data check NAME ROOT`: registered datasets and their health."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medmm.cli.app import app
from medmm.errors import MedmmError

data_app = typer.Typer(name="data", help="Datasets: list the registered ones, check a dataset root.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def parse_fractions(text: str) -> dict[str, float]:
    """'train=0.8,val=0.1,test=0.1' -> {'train': 0.8, 'val': 0.1, 'test': 0.1}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise MedmmError(f"--split-fractions: expected name=fraction pairs like train=0.8,test=0.2, got {part!r}") from None
    return out


@data_app.command("list")
def list_cmd() -> None:
    """List registered datasets with their splits and grouping key."""
    from rich.console import Console
    from rich.table import Table

    from medmm.data.registry import list_datasets

    table = Table("name", "splits", "group by", "description")
    for info in list_datasets():
        table.add_row(info.name, ", ".join(info.splits), info.group_by, info.description)
    Console().print(table)
    from medmm.data.bundled import vqa_rad_sample_root

    print(f"bundled sample (vqa_rad, CC0, 102 images, 602 questions, split 'train' only): {vqa_rad_sample_root()}")


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() else f"{x:.2f}"
    return str(x)


def render(result: dict[str, Any]) -> list[Any]:
    """Rich renderables (tables, text) for a `check_dataset` result."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    splits = list(result["counts"])
    head = f"{result['dataset']} at {result['root']}: {result['mode']} split"
    if result["mode"] == "grouped":
        head += f" {result['split_fractions']} by {result['group_by']}, seed {result['seed']}"
    out.append(Text(head, style="bold"))  # not a table title: titles wrap to the table's width
    t = Table()
    t.add_column("")
    for s in splits:
        t.add_column(s, justify="right")
    t.add_row("samples", *(_fmt(result["counts"][s]) for s in splits))
    t.add_row(f"{result['group_by']} groups", *(_fmt(result["n_groups"][s]) for s in splits))
    t.add_row("images", *(_fmt(result["images"]["per_split"][s]) for s in splits))
    t.add_row("samples w/o image", *(_fmt(result["images"]["samples_without_image"][s]) for s in splits))
    out.append(t)

    if result["labels"]:
        t = Table(title="labels (targets)", title_justify="left")
        for col in ("target", "classes", "imbalance max/min", "top classes (all splits)"):
            t.add_column(col)
        for key, d in result["labels"].items():
            top = ", ".join(f"{k}: {n}" for k, n in list(d["all"].items())[:6])
            t.add_row(key, str(d["n_classes"]), _fmt(d["imbalance_ratio"]) if d["imbalance_ratio"] else "-", top)
        out.append(t)
    if result["findings"]:
        t = Table("finding", "positive", "negative", "uncertain", title="findings (multi-label)", title_justify="left")
        for key, d in result["findings"].items():
            t.add_row(key, *(str(d.get(k, 0)) for k in ("positive", "negative", "uncertain")))
        out.append(t)
    if result["text"]:
        t = Table("field", "n", "min", "median", "max", "empty", title="text length (words)", title_justify="left")
        for key, d in result["text"].items():
            t.add_row(key, *(_fmt(d[k]) for k in ("n", "min_words", "median_words", "max_words", "empty")))
        out.append(t)
    if result["skipped"]:
        out.append(Text(f"skipped {len(result['skipped'])} bad samples, e.g. {result['skipped'][0]['error']}", style="yellow"))
    if "decode" in result:
        d = result["decode"]
        style = "red" if d["undecodable"] else ""
        out.append(Text(f"decoded {d['decoded']} images, {len(d['undecodable'])} undecodable", style=style))
    leak = result["leakage"]
    out.append(Text(result["leakage_summary"], style="bold red" if leak["has_leakage"] else "green"))
    return out


@data_app.command("check")
def check_cmd(
    name: Annotated[str, typer.Argument(help="registered dataset name (see `medmm data list`)")],
    root: Annotated[Path, typer.Argument(help="dataset folder in its original layout")],
    group_by: Annotated[str | None, typer.Option(help="patient, case, study, image, question or id (default: the dataset's)")] = None,
    split_fractions: Annotated[
        str | None, typer.Option(help="re-split by group first, e.g. train=0.8,val=0.1,test=0.1")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the re-split")] = 0,
    stratify: Annotated[str | None, typer.Option(help="target key to stratify the re-split by")] = None,
    hash_images: Annotated[bool, typer.Option("--hash/--no-hash", help="sha1 images to find identical files")] = True,
    decode: Annotated[bool, typer.Option(help="decode every image to find corrupt files (slow)")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the full report as JSON here")] = None,
    fail_on_leak: Annotated[bool, typer.Option(help="exit with status 1 when leakage is found")] = False,
) -> None:
    """Counts, label balance, text lengths, bad samples and split leakage of a dataset."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medmm.data.check import check_dataset

    fractions = parse_fractions(split_fractions) if split_fractions else None
    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = check_dataset(
            name, root, group_by, fractions,
            seed=seed, stratify=stratify, hash_images=hash_images, decode=decode, progress=progress,
        )
    for item in render(result):
        console.print(item)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2, default=str))
        console.print(f"report written to {json_out}")
    if fail_on_leak and result["leakage"]["has_leakage"]:
        raise typer.Exit(1)
