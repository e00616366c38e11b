"""`medmm ablate`: the fusion ablation (thin wrapper over medmm.ablation.run_ablation)."""

from __future__ import annotations

from pathlib import Path

import typer

from medmm.cli.app import app


@app.command(context_settings={"allow_interspersed_args": True})
def ablate(
    config: Path = typer.Argument(..., help="A run config of a task whose predictions are class probabilities (Task.class_headline), e.g. configs/diagnosis/<dataset>.yaml."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted overrides for every variant, e.g. trainer.max_epochs=3"),
    fusion: str | None = typer.Option(
        None, "--fusion", help="Comma-separated fusion variants (default: every registered fusion, unimodal ones first)."
    ),
    seeds: int = typer.Option(1, "--seeds", help="Training seeds per variant (0..N-1); the data split stays fixed."),
    out: Path = typer.Option(..., "--out", help="Output folder: runs/, table.md, table.csv, ablation.png, ablation.json."),
    metric: str = typer.Option("auroc_macro", "--metric", help="Primary metric: auroc_macro | f1_macro | balanced_accuracy | accuracy."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap / randomisation resamples."),
) -> None:
    """Train each fusion variant with the same data, budget and seeds; table + plot with CIs and paired tests."""
    from medmm.ablation import run_ablation

    fusions = [f.strip() for f in fusion.split(",") if f.strip()] if fusion else None
    table = run_ablation(config, fusions, seeds, out, list(overrides or []), primary=metric, n_resamples=resamples)
    typer.echo(table.markdown)
    for kind, path in table.files.items():
        typer.echo(f"{kind}: {path}")
