"""`medmm ablate`: the fusion ablation (thin wrapper over medmm.ablation.run_ablation)."""

from __future__ import annotations

from pathlib import Path

import typer

from medmm.cli.app import app


@app.command(context_settings={"allow_interspersed_args": True})
def ablate(
    config: Path = typer.Argument(..., help="A run config of a task with a headline metric (diagnosis, VQA, retrieval)."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted overrides for every variant, e.g. trainer.max_epochs=3"),
    fusion: str | None = typer.Option(
        None, "--fusion", help="Comma-separated variants: values of --vary (default: every registered fusion, unimodal ones first)."
    ),
    vary: str = typer.Option("model.fusion", "--vary", help="The model.* config key the variants set (baseline: the first "
                             "variant unless it is model.fusion, whose baseline is the best unimodal fusion)."),
    seeds: int = typer.Option(1, "--seeds", help="Training seeds per variant (0..N-1); the data split stays fixed."),
    out: Path = typer.Option(..., "--out", help="Output folder: runs/, table.md, table.csv, ablation.png, ablation.json."),
    metric: str | None = typer.Option(None, "--metric", help="Primary metric (default: the task's headline, e.g. "
                                      "auroc_macro_ovr, overall_accuracy, image_to_text/mrr)."),
    mode: str | None = typer.Option(None, "--mode", help="max | min: which is better for --metric (default: the headline's)."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap / randomisation resamples."),
) -> None:
    """Train each variant with the same data, budget and seeds; table + plot with CIs and paired tests."""
    from medmm.ablation import run_ablation

    variants = [f.strip() for f in fusion.split(",") if f.strip()] if fusion else None
    table = run_ablation(config, variants, seeds, out, list(overrides or []), primary=metric, mode=mode,
                         n_resamples=resamples, vary=vary)
    typer.echo(table.markdown)
    for kind, path in table.files.items():
        typer.echo(f"{kind}: {path}")
