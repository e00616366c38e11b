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
    out.extend(_problems(result))
    leak = result["leakage"]
    out.append(Text(result["leakage_summary"], style="bold red" if leak["has_leakage"] else "green"))
    return out


# Bad records and files are listed on the terminal up to this many each (all of them in --json).
MAX_LISTED = 50


def _problems(result: dict[str, Any]) -> list[Any]:
    """Lines naming every skipped record and every bad file (up to MAX_LISTED of each kind)."""
    from rich.text import Text

    out: list[Any] = []
    skipped = result["skipped"]
    if skipped:
        per_split = ", ".join(f"{k}: {n}" for k, n in result.get("skipped_per_split", {}).items() if n)
        out.append(Text(f"skipped {len(skipped)} bad samples ({per_split}):", style="yellow"))
        out.extend(Text(f"  [{e['split']}] {e['error']}", style="yellow") for e in skipped[:MAX_LISTED])
        if len(skipped) > MAX_LISTED:
            out.append(Text(f"  ... and {len(skipped) - MAX_LISTED} more (see --json)", style="yellow"))
    files = result.get("files")
    if files is not None and "decode" not in result:  # the decode list below supersedes the header check
        bad = files["bad"]
        out.append(Text(f"checked {files['checked']} image/mask file headers, {len(bad)} bad", style="red" if bad else ""))
        out.extend(Text(f"  {b['path']}: {b['problem']}", style="red") for b in bad[:MAX_LISTED])
        if len(bad) > MAX_LISTED:
            out.append(Text(f"  ... and {len(bad) - MAX_LISTED} more (see --json)", style="red"))
    if "decode" in result:
        d = result["decode"]
        bad = d["bad"]
        out.append(Text(f"decoded {d['decoded']} images and masks, {len(bad)} undecodable", style="red" if bad else ""))
        out.extend(Text(f"  {b['path']}: {b['problem']}", style="red") for b in bad[:MAX_LISTED])
        if len(bad) > MAX_LISTED:
            out.append(Text(f"  ... and {len(bad) - MAX_LISTED} more (see --json)", style="red"))
    return out


def n_problems(result: dict[str, Any]) -> int:
    """Skipped records + bad files (decode failures when decoded, else header failures)."""
    bad_files = result["decode"]["bad"] if "decode" in result else result.get("files", {}).get("bad", [])
    return len(result["skipped"]) + len(bad_files)


@data_app.command("check", epilog=(
    "Exit status: 0 = checked (problems are listed but do not fail the command); "
    "1 = --strict and at least one bad record or file, or --fail-on-leak and a leak; "
    "2 = usage error or the dataset could not be read at all."
))
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
    decode: Annotated[
        bool, typer.Option(help="decode every image and mask to find truncated/corrupt files (slow); without it only file headers are checked")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the full report as JSON here")] = None,
    fail_on_leak: Annotated[bool, typer.Option(help="exit with status 1 when leakage is found")] = False,
    strict: Annotated[
        bool, typer.Option(help="exit with status 1 when any record was skipped or any file is bad (for CI)")
    ] = False,
) -> None:
    """Counts, label balance, text lengths, bad samples, bad files and split leakage of a dataset.

    Every skipped record and bad file is named on the terminal. Exit status: 0 checked; 1 with
    --strict and a problem, or --fail-on-leak and a leak; 2 usage error or unreadable dataset.
    """
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
    problems = n_problems(result)
    if strict and problems:
        console.print(f"[red]--strict: {problems} problem(s) found[/red]")
        raise typer.Exit(1)
    if fail_on_leak and result["leakage"]["has_leakage"]:
        raise typer.Exit(1)
