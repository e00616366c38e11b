"""`medmm score` and `medmm label-reports`: thin wrappers over medmm.metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from medmm.cli.app import app


def _floats(text: str | None) -> list[float] | None:
    return [float(x) for x in text.split(",")] if text else None


@app.command("score")
def score(
    task: str = typer.Option(..., help="report_generation, vqa, retrieval, diagnosis or segmentation "
                                       "(the engine's task names; 'report' and 'classification' are deprecated aliases)"),
    pred: Path = typer.Option(..., help="predictions: .jsonl {id, prediction}; retrieval: .npy/.npz"),
    out: Path = typer.Option(..., help="metrics JSON to write (with provenance)"),
    ref: Path | None = typer.Option(None, help="references: .jsonl {id, reference, ...}"),
    group_by: str | None = typer.Option(None, help="reference field to resample by (e.g. patient_id)"),
    bootstrap: int = typer.Option(0, help="bootstrap resamples for 95% CIs (0 = none; 1000 is usual)"),
    seed: int = typer.Option(0, help="bootstrap seed (recorded)"),
    observations: str = typer.Option("14", help="report: clinical efficacy over '14' or '5' observations"),
    uncertain: str = typer.Option("ignore", help="report: uncertain labels as positive, negative or ignore"),
    missing: str = typer.Option("negative", help="report: unmentioned observations as negative or ignore"),
    kind: str | None = typer.Option(None, help="diagnosis: binary, multiclass or multilabel (default: inferred)"),
    threshold: float = typer.Option(0.5, help="diagnosis: decision threshold (binary, multilabel)"),
    labels: str | None = typer.Option(None, help="diagnosis: comma-separated class/label names"),
    classes: str | None = typer.Option(None, help="segmentation: comma-separated label ids (default: nonzero = 1 class)"),
    spacing: str | None = typer.Option(None, help="segmentation: pixel spacing for HD95, e.g. 0.5,0.5"),
    compare: Path | None = typer.Option(
        None, help="second system's predictions: paired test of --pred (A) vs this (B) on every metric "
                   "(uses --bootstrap resamples, 1000 if 0)"),
) -> None:
    """Score predictions against references and write metrics JSON with provenance."""
    from medmm.metrics.provenance import write_metrics
    from medmm.metrics.score import compare_files, deprecation_message, resolve_scorer, score_files

    message = deprecation_message(task)
    if message:
        typer.echo(f"warning: {message}", err=True)
    try:
        task, scorer = resolve_scorer(task)  # the current name from here on
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--task") from exc
    # every option parsed; the task's scorer declares which of them it takes
    parsed = {"observations": observations, "uncertain": uncertain, "missing": missing, "kind": kind,
              "threshold": threshold, "labels": labels.split(",") if labels else None,
              "classes": [int(c) for c in classes.split(",")] if classes else None, "spacing": _floats(spacing)}
    opts: dict = {"group_by": group_by, **{k: parsed[k] for k in scorer.options}}
    if task == "report_generation":
        _one_time_report_setup()
    try:
        if compare is not None:
            result = compare_files(task, pred, compare, ref, n_resamples=bootstrap or 1000, seed=seed, **opts)
        else:
            result = score_files(task, pred, ref, bootstrap=bootstrap, seed=seed, **opts)
    except ValueError as exc:  # option values (e.g. --uncertain maybe) that the library rejects
        raise typer.BadParameter(str(exc)) from exc
    write_metrics(out, result)
    typer.echo(f"wrote {out} ({result['provenance']['n_samples']} samples)")


def _one_time_report_setup() -> None:
    """Build what report scoring caches on first use, saying so: the compiled NLG kernels (C, a
    few seconds) and METEOR's paraphrase index (5.3 M pairs, ~30 s on 2 CPU cores). Later calls
    find both in the cache folder and print nothing."""
    import os

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from medmm.errors import MedmmError
    from medmm.metrics.nlg import _native, meteor_data

    if not os.environ.get("MEDMM_NO_NATIVE") and not _native.library_path().is_file():
        typer.echo(f"one-time setup: compiling the NLG metric kernels into {_native.library_path().parent} ...", err=True)
        _native.load()
    try:
        gz = meteor_data.resource_paths()[1]
    except MedmmError:
        return  # METEOR's data is not installed: scoring names what is missing
    state: dict = {}

    def show(done: int, total: int) -> None:
        if "bar" not in state:
            typer.echo("one-time setup: indexing METEOR's 5.3 M English paraphrases (about 30 s; later calls reuse the index)",
                       err=True)
            state["bar"] = Progress(TextColumn("reading paraphrase-en.gz"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                                    console=Console(stderr=True))
            state["bar"].start()
            state["job"] = state["bar"].add_task("index", total=total)
        state["bar"].update(state["job"], completed=done)

    try:
        meteor_data.ensure_paraphrase_index(gz, progress=show)
    finally:
        if "bar" in state:
            state["bar"].stop()


@app.command("label-reports")
def label_reports_cmd(
    input_csv: Path = typer.Argument(..., help="CSV with one report per row"),
    text_column: str = typer.Option(..., help="column holding the report text"),
    out: Path = typer.Option(..., help="output CSV: id + 14 CheXpert observations (1, 0, -1, blank)"),
    id_column: str | None = typer.Option(None, help="column with report ids (default: row number)"),
    all_text: bool = typer.Option(False, help="label the whole text, not only findings + impression"),
) -> None:
    """Label free-text reports with the 14 CheXpert observations (rule-based, CPU)."""
    import csv

    from medmm.data.io import read_csv_rows
    from medmm.errors import BadInputError
    from medmm.metrics.clinical import OBSERVATIONS, label_report

    rows = read_csv_rows(input_csv)
    if not rows:
        raise BadInputError(input_csv, "no rows")
    for col in filter(None, (text_column, id_column)):
        if col not in rows[0]:
            raise BadInputError(input_csv, f"no column {col!r}; columns are {list(rows[0])}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *OBSERVATIONS])
        for n, row in enumerate(rows, start=1):
            labels = label_report(row[text_column], select_sections=not all_text)
            w.writerow([row[id_column] if id_column else n,
                        *(int(labels[o]) if o in labels else "" for o in OBSERVATIONS)])
    typer.echo(f"wrote {out} ({len(rows)} reports)")
