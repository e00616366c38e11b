"""`medmm demo`: the whole pipeline on the bundled CC0 VQA-RAD sample."""

from pathlib import Path

import typer

from medmm.cli.app import app


@app.command()
def demo(
    out: Path = typer.Option(Path("medmm_demo"), "--out", help="Output folder (replaced if it exists)."),
    quick: bool = typer.Option(False, "--quick", help="Train a few batches only (a smoke test of every part)."),
    keep_checkpoints: bool = typer.Option(
        False, "--keep-checkpoints", help="Keep each run's checkpoints/ (best.ckpt, last.ckpt); by default only model.pt stays."
    ),
) -> None:
    """Check data, train VQA / retrieval / fused and unimodal classifiers, explain, set up human evaluation, write one HTML report."""
    from medmm.demo import run_demo

    result = run_demo(out, quick=quick, keep_checkpoints=keep_checkpoints)
    print(f"report: {result.report}")
