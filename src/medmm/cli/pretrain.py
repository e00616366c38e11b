"""`medmm pretrain-image`: pretrain a small image encoder on MedPix 2.0 / COVID CXR images
(thin wrapper over `medmm.tasks.pretrain.image_pretrain`; docs/pretraining.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medmm.cli.app import app
from medmm.errors import MedmmError

DEFAULT_DATA_ROOT = Path("../shared/data")  # as in configs/: run from the project root
_SOURCE_HELP = (
    "NAME[:SPLIT][=ROOT], repeatable. NAME: medpix2 (splits train, dev, test, all) or covid_cxr (all, or "
    "train/val/test of the diagnosis config's patient split). ROOT defaults to DATA_ROOT/medpix2/MedPix-2-0 "
    "or DATA_ROOT/covid_cxr. Default: medpix2:all and covid_cxr:all."
)


def parse_source(spec: str, data_root: Path):
    """'medpix2:train=/data/MedPix-2-0' -> Source; the split defaults to all, the root to its
    folder under data_root. Raises MedmmError naming the value when it cannot be parsed."""
    from medmm.tasks.pretrain.image_pretrain import DEFAULT_FOLDERS, Source

    head, _, root = spec.partition("=")
    name, _, split = head.partition(":")
    name, split = name.strip(), (split.strip() or "all")
    if name not in DEFAULT_FOLDERS:
        raise MedmmError(f"--source {spec!r}: unknown source {name!r}; known: {', '.join(DEFAULT_FOLDERS)}")
    if "=" in spec and not root.strip():
        raise MedmmError(f"--source {spec!r}: empty ROOT after '='")
    return Source(name, Path(root.strip()) if root.strip() else data_root / DEFAULT_FOLDERS[name], split)


def parse_widths(text: str) -> tuple[int, ...]:
    """'32,64,128' -> (32, 64, 128); MedmmError on anything but positive integers."""
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise MedmmError(f"--widths {text!r}: expected comma-separated positive integers, e.g. 32,64,128,256")
    return widths


@app.command("pretrain-image")
def pretrain_image(
    out: Path = typer.Option(..., "--out", help="Weights file to write (medmm weights format); a JSON summary goes beside it."),
    source: list[str] | None = typer.Option(None, "--source", help=_SOURCE_HELP),
    data_root: Path = typer.Option(DEFAULT_DATA_ROOT, "--data-root", help="Folder holding the datasets (../shared/data)."),
    exclude_vqa_rad: Path | None = typer.Option(
        None, "--exclude-vqa-rad", help="VQA-RAD root whose images (synpic ids) are left out. Default: DATA_ROOT/vqa_rad."
    ),
    no_exclude: bool = typer.Option(False, "--no-exclude-vqa-rad", help="Keep MedPix images that are also VQA-RAD images."),
    image_size: int = typer.Option(96, "--image-size", help="Input side in pixels (grayscale)."),
    widths: str = typer.Option("32,64,128,256", "--widths", help="small_cnn channel widths per stage, comma-separated."),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW, one-cycle)."),
    caption_weight: float = typer.Option(1.0, "--caption-weight", help="Caption InfoNCE weight (0: labels only, no MiniLM)."),
    reconstruction_weight: float = typer.Option(
        0.0, "--reconstruction-weight", help="Denoising reconstruction loss weight (0: off; MEVF-style auto-encoder)."
    ),
    noise_std: float = typer.Option(0.4, "--noise-std", help="Input noise of the denoising loss (normalised units)."),
    min_label_count: int = typer.Option(10, "--min-label-count", help="Rarer training labels are ignored in the loss."),
    held_out: float = typer.Option(0.1, "--held-out", help="Fraction of cases/patients kept aside for the held-out accuracies."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch intra-op threads."),
    progress_bar: bool = typer.Option(True, "--progress/--no-progress", help="Show a rich progress bar."),
) -> None:
    """Pretrain a small CNN image encoder (modality/plane/location + caption matching) for VQA or report generation."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medmm.tasks.pretrain.image_pretrain import (
        PretrainConfig,
        default_sources,
        pretrain_image_encoder,
        summary_path,
    )

    sources = [parse_source(s, data_root) for s in source] if source else default_sources(data_root)
    if no_exclude and exclude_vqa_rad is not None:
        raise MedmmError("--exclude-vqa-rad and --no-exclude-vqa-rad contradict each other")
    exclude = None if no_exclude else (exclude_vqa_rad or data_root / "vqa_rad")
    config = PretrainConfig(
        sources=sources, exclude_vqa_rad=exclude, image_size=image_size, widths=parse_widths(widths), epochs=epochs,
        batch_size=batch_size, lr=lr, caption_weight=caption_weight, reconstruction_weight=reconstruction_weight,
        noise_std=noise_std, min_label_count=min_label_count,
        held_out_fraction=held_out, seed=seed, num_threads=threads,
    )
    console = Console()

    def say(text: str) -> None:  # plain lines (JSON, paths): no rich markup, no wrapping in log files
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    def on_epoch(rec: dict) -> None:
        say(json.dumps(rec))

    if progress_bar:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            summary = pretrain_image_encoder(config, out, progress=progress, on_epoch=on_epoch)
    else:
        summary = pretrain_image_encoder(config, out, on_epoch=on_epoch)
    counts = ", ".join(f"{s['name']}:{s['split']} {s['n_images']}" for s in summary["sources"])
    say(f"{summary['n_images']} images ({counts}); held out {summary['n_held_out_images']} images of "
                  f"{summary['n_held_out_groups']} cases/patients: {json.dumps(summary['held_out'])} "
                  f"(majority baseline {json.dumps(summary['held_out_majority_baseline'])})")
    say(f"wrote {out} (sha256 {summary['sha256'][:12]}) and {summary_path(out)}; CPU {summary['cpu_s']:.0f} s")
