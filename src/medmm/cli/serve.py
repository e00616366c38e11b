"""`medmm package` and `medmm serve`: trained runs as model packages and as a web service."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from medmm.cli.app import app


@app.command("package")
def package(
    run: Path = typer.Argument(..., help="A trained run directory (from `medmm train`)."),
    out: Path = typer.Option(..., "--out", help="The package folder to write (new or empty)."),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty --out folder."),
) -> None:
    """Write a self-contained model package: safetensors weights, config, labels, thresholds,
    evaluation, model card and a sha256 manifest."""
    from medmm.serve.package import make_package

    path = make_package(run, out, overwrite=overwrite)
    typer.echo(f"package written: {path}  (load with medmm.load_model({str(path)!r}) or `medmm serve {path}`)")


@app.command("serve")
def serve(
    packages: list[Path] = typer.Argument(..., help="One or more package folders (from `medmm package`)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on; beyond loopback a token is required."),
    port: int = typer.Option(8080, help="TCP port."),
    name: list[str] = typer.Option(None, "--name", help="Served name of each package, in order (default: folder name)."),
    token: str | None = typer.Option(None, help="Bearer token clients must send (default: $MEDMM_SERVE_TOKEN)."),
    threads: int = typer.Option(1, help="torch intra-op threads for inference."),
    max_batch: int = typer.Option(8, help="Most requests run together in one micro-batch (1: one at a time)."),
    max_wait_ms: float = typer.Option(5.0, help="How long the first queued request waits for others to join its batch."),
    max_body_mb: float = typer.Option(32.0, help="Largest accepted request body (MiB); larger ones get 413."),
    max_pixels: int = typer.Option(50_000_000, help="Largest accepted image (pixels); larger ones get 413."),
) -> None:
    """Serve model packages over HTTP (FastAPI): predict, batch predict, health, metrics."""
    from medmm.serve.server import run_server

    run_server(packages, host=host, port=port, names=name or None, token=token or os.environ.get("MEDMM_SERVE_TOKEN") or None,
               threads=threads, max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_mb=max_body_mb, max_pixels=max_pixels)
