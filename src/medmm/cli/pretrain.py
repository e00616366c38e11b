"""`medmm pretrain-image`: image-encoder pretraining through the engine, then the export that
vqa / report_generation configs load (`medmm.tasks.pretrain`; docs/pretraining.md).

Same as ``medmm train CONFIG --out RUN`` followed by ``medmm export-image-encoder RUN``: the
recipe (sources, image size, losses, optimizer) is the config file's, e.g.
configs/pretrain/image_encoder.yaml; this command holds no defaults of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medmm.cli.app import app
from medmm.errors import MedmmError


def _say_export(summary: dict) -> None:
    typer.echo(f"val: {json.dumps(summary['val'])} (majority floor {json.dumps(summary['val_majority_baseline'])})")
    typer.echo(f"wrote {summary['weights']} (sha256 {summary['sha256'][:12]}), {summary['heads']} "
               f"and {Path(summary['weights']).with_suffix('.json')}")


@app.command("pretrain-image", context_settings={"allow_interspersed_args": True})
def pretrain_image(
    config: Path = typer.Argument(..., help="A pretrain_image run config, e.g. configs/pretrain/image_encoder.yaml."),
    overrides: list[str] | None = typer.Argument(
        None, help="Dotted overrides, e.g. trainer.max_epochs=3 model.encoder.size=64 "
        "(every key: `medmm config show pretrain_image --all`)."),
    out: Path = typer.Option(..., "--out", help="Run directory; rerunning with the same one resumes from its last.ckpt."),
    encoder: Path | None = typer.Option(
        None, "--encoder", help="Where the exported encoder goes (default RUN/export/image_encoder.pt); "
        "its label heads and a JSON summary go beside it."),
) -> None:
    """Pretrain an image encoder (`medmm train CONFIG`), then export it for vqa / report_generation configs."""
    from medmm.engine import load_config
    from medmm.engine.api import train
    from medmm.tasks.pretrain.export import export_encoder
    from medmm.tasks.pretrain.task import PretrainImageTask

    cfg = load_config(config, list(overrides or []), validate_model=True)
    if cfg.task != PretrainImageTask.name:
        raise MedmmError(f"{config}: task {cfg.task!r}; medmm pretrain-image runs {PretrainImageTask.name} configs "
                         "(use `medmm train` for the others)")
    if train(cfg, out):  # {} on DDP ranks other than 0: rank 0 exports
        _say_export(export_encoder(out, encoder))


@app.command("export-image-encoder")
def export_image_encoder(
    run: Path = typer.Argument(..., help="A finished pretrain_image run directory."),
    encoder: Path | None = typer.Option(None, "--out", help="Weights file to write (default RUN/export/image_encoder.pt)."),
) -> None:
    """Write a pretrain_image run's encoder (+ label heads, summary) as `model.image.pretrained` loads it."""
    from medmm.tasks.pretrain.export import export_encoder

    _say_export(export_encoder(run, encoder))
