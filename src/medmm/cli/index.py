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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from medmm.tasks.retrieval.index import build_index

    columns = (TextColumn("embedding samples"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        job = bar.add_task("embed", total=None)
        s = build_index(run_dir, data, out, dataset=dataset, split=split, kind=kind,
                        progress=lambda done, total: bar.update(job, completed=done, total=total))
    typer.echo(f"indexed {s.n_images} images and {s.n_texts} texts from {s.n_samples} samples ({s.n_skipped} skipped; {s.kind} index) -> {s.path}")


@index_app.command("search")
def search(
    index: Path = typer.Argument(..., help="An index folder written by `medmm index build`."),
    text: str | None = typer.Option(None, "--text", help="Text query (searches images by default)."),
    image: Path | None = typer.Option(None, "--image", help="Image file query (searches texts by default)."),
    queries: Path | None = typer.Option(
        None, "--queries", help="A file of queries, one per line: a text, or image:PATH. The model loads once for all of them."
    ),
    k: int = typer.Option(10, "-k", "--k", help="Number of hits."),
    target: str | None = typer.Option(None, "--target", help="Search 'image' or 'text' entries (default: the other modality)."),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON lines instead of a table."),
    run_dir: Path | None = typer.Option(None, "--run", help="Run directory (default: the one the index was built with)."),
) -> None:
    """Print the top-k hits of a query (or of every query in --queries), each with the sample ids it leads back to.

    From Python, keep one `medmm.tasks.retrieval.index.RetrievalSearcher(INDEX)` and call its
    `search(text=...)` / `search_many(...)` as often as needed: the model loads once.
    """
    from medmm.errors import MedmmError
    from medmm.tasks.retrieval.index import RetrievalSearcher, read_queries

    if sum(x is not None for x in (text, image, queries)) != 1:
        raise MedmmError("give exactly one of --text, --image or --queries FILE")
    asked = read_queries(queries) if queries is not None else [{"text": text} if text is not None else {"image": str(image)}]
    searcher = RetrievalSearcher(index, run_dir)
    results = searcher.search_many(asked, k=k, target=target)
    for q, hits in zip(asked, results, strict=True):
        if as_json:
            for h in hits:
                typer.echo(json.dumps({"query": q, "rank": h.rank, "score": round(h.score, 4), "id": h.id, **h.metadata}))
        else:
            _print_hits(q, hits, target)


def _print_hits(query: dict[str, str], hits: list, target: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from medmm.tasks.retrieval.index import case_label

    label = f"text {query['text']!r}" if "text" in query else f"image {query['image']}"
    table = Table("rank", "score", "sample ids", "case", "text", "image",
                  title=f"{label} -> {target or ('image' if 'text' in query else 'text')}s")
    for h in hits:
        m = h.metadata
        caption = (m.get("text") or "").replace("\n", " ")
        table.add_row(
            str(h.rank),
            f"{h.score:.3f}",
            ", ".join(m.get("sample_ids", [h.id])[:3]) + (" ..." if len(m.get("sample_ids", [])) > 3 else ""),
            case_label(m),
            caption[:80] + ("..." if len(caption) > 80 else ""),
            str(m.get("image_path") or ""),
        )
    Console(width=200).print(table)
