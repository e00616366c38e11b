"""`medmm config show | migrate`: every config key with its help, and old configs rewritten.

The help is the dataclasses' own documentation (`medmm.engine.config_fields`), so it cannot
drift from the keys `medmm train` accepts.
"""

from __future__ import annotations

from pathlib import Path

import typer

from medmm.cli.app import app

config_app = typer.Typer(help="Config keys of a task with their help (show), old configs rewritten (migrate).",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    task: str = typer.Argument(..., help="A registered task name (diagnosis, vqa, report_generation, ...)."),
    all_sections: bool = typer.Option(False, "--all", help="Also the data: and trainer: sections every task shares."),
    moved: bool = typer.Option(False, "--moved", help="Only the old flat keys of earlier versions and their new places."),
) -> None:
    """Print every key of TASK's `model:` section (nested keys dotted, e.g. model.decoding.beam_size)
    with its type, default and documented help; set one with `medmm train CONFIG model.KEY=VALUE`."""
    from medmm.engine.config import DataConfig, TrainerConfig
    from medmm.engine.config_fields import describe, moved_keys, task_config

    cls = task_config(task)
    if moved:
        for old, new in (moved_keys(cls) if cls is not None else {}).items():
            typer.echo(f"model.{old} -> model.{new}")
        return
    if cls is None:
        typer.echo(f"{task}: this task declares no model: section")
    else:
        typer.echo(f"# model: the {task} task's section ({cls.__name__})")
        typer.echo(describe(cls, prefix="model."))
    if all_sections:
        for name, section in (("data", DataConfig), ("trainer", TrainerConfig)):
            typer.echo(f"\n# {name}: {section.__doc__.splitlines()[0]}")
            typer.echo(describe(section, prefix=f"{name}."))


@config_app.command("migrate")
def migrate(
    config: Path = typer.Argument(..., help="A YAML run config (or a run directory's config.yaml) with old flat model keys."),
    in_place: bool = typer.Option(False, "--in-place", help="Rewrite CONFIG (its old text kept as CONFIG.bak) instead of printing."),
) -> None:
    """Move the old flat `model:` keys of CONFIG to their nested places (e.g. model.beam_size ->
    model.decoding.beam_size) and check the result; prints the new YAML (comments are not kept)."""
    import yaml

    from medmm.engine.config import config_from_dict, read_yaml, validate_model_section
    from medmm.engine.config_fields import migrate_run_config

    raw, moves = migrate_run_config(read_yaml(config))
    validate_model_section(config_from_dict(raw, where=config), where=config)  # a still-unknown key fails here
    text = yaml.safe_dump(raw, sort_keys=False)
    for old, new in moves:
        typer.echo(f"{old} -> {new}", err=True)
    if not in_place:
        typer.echo(text, nl=False)
        return
    if moves:
        backup = config.with_name(config.name + ".bak")
        backup.write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
        config.write_text(text, encoding="utf-8")
        typer.echo(f"{config}: {len(moves)} keys moved (old text in {backup})", err=True)
    else:
        typer.echo(f"{config}: nothing to move", err=True)
