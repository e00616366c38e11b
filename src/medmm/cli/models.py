"""`medmm models list` and `medmm models tiny FAMILY --out DIR`: pretrained model families."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medmm.cli.app import app

models_app = typer.Typer(name="models", help="Pretrained model families: list them, write tiny random stand-ins.", no_args_is_help=True)
app.add_typer(models_app, name="models")

_USE = {
    "image encoder": "model.image.encoder (retrieval: model.image_encoder): hf:<dir or hub name>",
    "text encoder": "model.text.encoder (retrieval: model.text_encoder): hf:<dir or hub name>",
    "dual encoder": "retrieval model.clip_model: hf:<dir or hub name> (open_clip format: open_clip:<dir>, hf-hub:<name>)",
    "generative VLM": "task vqa_vlm / report_vlm, model.pretrained: <dir or hub name>",
    "causal LM (report decoder)": "task report_generation, model.decoder.pretrained: <dir or hub name>",
}


@models_app.command("list")
def list_cmd() -> None:
    """List the supported model families, their role and how a config names them."""
    from rich.console import Console
    from rich.table import Table

    from medmm.models.families import FAMILIES

    table = Table("family", "role", "transformers class", "config key", "public checkpoints")
    for f in FAMILIES.values():
        table.add_row(f.name, f.role, f.model_class, _USE[f.role], f.examples)
    Console(width=200).print(table)


@models_app.command("tiny")
def tiny_cmd(
    family: Annotated[str, typer.Argument(help="family name (see `medmm models list`)")],
    out: Annotated[Path, typer.Option("--out", help="new folder for the model")],
    seed: Annotated[int, typer.Option(help="seed of the random initialisation")] = 0,
) -> None:
    """Write a tiny randomly initialised model of FAMILY (HF format, processor files included)."""
    from medmm.models.families import get_family, write_tiny

    path = write_tiny(family, out, seed=seed)
    print(f"wrote a tiny random {family} ({get_family(family).role}) to {path}")


@models_app.command("merge")
def merge_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a vqa_vlm / report_vlm run directory (LoRA adapters)")],
    out: Annotated[Path, typer.Option("--out", help="new folder for the merged Hugging Face model")],
) -> None:
    """Merge a run's LoRA adapters into its base model; write a plain Hugging Face folder."""
    from medmm.engine import load_run
    from medmm.engine import rundir as rd
    from medmm.errors import MedmmError
    from medmm.models.vlm import VisionLanguageModel, save_merged

    cfg, task = load_run(run_dir)
    vlm = getattr(task, "vlm", None)
    if not isinstance(vlm, VisionLanguageModel):
        raise MedmmError(f"{run_dir}: task {cfg.task!r} holds no generative VLM with adapters to merge")
    state = rd.read_json(Path(run_dir) / rd.TASK_STATE)
    save_merged(vlm, out, {"run_dir": str(Path(run_dir).resolve()), "task": cfg.task, "adapters_sha256": state.get("sha256")})
    print(f"merged {cfg.model.get('pretrained')} + the adapters of {run_dir} -> {out}")
