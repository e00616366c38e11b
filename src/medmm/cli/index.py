"""`medmm index build | search`: vector indexes of a dataset embedded by a trained retrieval run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medmm.cli.app import app

index_app = typer.Typer(name="index", help="Cross-modal search: build a vector index with a retrieval run, query it.", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command("build")
def build(
    run_dir: Path = typer.Argument(..., help="A retrieval run directory written by `medmm train`."),
    data: Path = typer.Option(..., "--data", help="Dataset root in its original layout."),
    out: Path = typer.Option(..., "--out", help="Index folder to write (replaced atomically if it exists)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Registered dataset name (default: the run's)."),
    split: str = typer.Option("train", "--split", help="Split whose images and texts are indexed."),
    kind: str = typer.Option("auto", "--kind", help="auto, exact, hnsw or ivf (auto: by collection size)."),
) -> None:
    """Embed every image and text of a split and store them with ids and metadata."""
    from medmm.tasks.retrieval_index import build_index

    s = build_index(run_dir, data, out, dataset=dataset, split=split, kind=kind)
    typer.echo(f"indexed {s.n_images} images and {s.n_texts} texts from {s.n_samples} samples ({s.n_skipped} skipped; {s.kind} index) -> {s.path}")


@index_app.command("search")
def search(
    index: Path = typer.Argument(..., help="An index folder written by `medmm index build`."),
    text: str | None = typer.Option(None, "--text", help="Text query (searches images by default)."),
    image: Path | None = typer.Option(None, "--image", help="Image file query (searches texts by default)."),
    k: int = typer.Option(10, "-k", "--k", help="Number of hits."),
    target: str | None = typer.Option(None, "--target", help="Search 'image' or 'text' entries (default: the other modality)."),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON lines instead of a table."),
    run_dir: Path | None = typer.Option(None, "--run", help="Run directory (default: the one the index was built with)."),
) -> None:
    """Print the top-k hits of one query, each with the sample ids it leads back to."""
    from medmm.tasks.retrieval_index import RetrievalSearcher

    searcher = RetrievalSearcher(index, run_dir)
    hits = searcher.search(text=text, image=image, k=k, target=target)
    if as_json:
        for h in hits:
            typer.echo(json.dumps({"rank": h.rank, "score": round(h.score, 4), "id": h.id, **h.metadata}))
        return
    from rich.console import Console
    from rich.table import Table

    query = f"text {text!r}" if text is not None else f"image {image}"
    table = Table("rank", "score", "sample ids", "case", "text", "image", title=f"{query} -> {target or ('image' if text is not None else 'text')}s")
    for h in hits:
        m = h.metadata
        caption = (m.get("text") or "").replace("\n", " ")
        table.add_row(
            str(h.rank),
            f"{h.score:.3f}",
            ", ".join(m.get("sample_ids", [h.id])[:3]) + (" ..." if len(m.get("sample_ids", [])) > 3 else ""),
            str(m.get("case_id") or ""),
            caption[:80] + ("..." if len(caption) > 80 else ""),
            str(m.get("image_path") or ""),
        )
    Console(width=200).print(table)
