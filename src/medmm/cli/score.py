"""`medmm score` and `medmm label-reports`: thin wrappers over medmm.metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from medmm.cli.app import app


def _floats(text: str | None) -> list[float] | None:
    return [float(x) for x in text.split(",")] if text else None


@app.command("score")
def score(
    task: str = typer.Option(..., help="the engine's name of the task whose predictions these are (each task "
                                       "declares its file scorer; an unknown name lists the known ones)"),
    pred: Path = typer.Option(..., help="predictions: .jsonl {id, prediction} (or the task's own format, e.g. a .npy matrix)"),
    out: Path = typer.Option(..., help="metrics JSON to write (with provenance)"),
    ref: Path | None = typer.Option(None, help="references: .jsonl {id, reference, ...}"),
    group_by: str | None = typer.Option(None, help="reference field to resample by (e.g. patient_id)"),
    bootstrap: int = typer.Option(0, help="bootstrap resamples for 95% CIs (0 = none; 1000 is usual)"),
    seed: int = typer.Option(0, help="bootstrap seed (recorded)"),
    observations: str = typer.Option("14", help="generated reports: clinical efficacy over '14' or '5' observations"),
    uncertain: str = typer.Option("ignore", help="generated reports: uncertain labels as positive, negative or ignore"),
    missing: str = typer.Option("negative", help="generated reports: unmentioned observations as negative or ignore"),
    kind: str | None = typer.Option(None, help="class scores: binary, multiclass or multilabel (default: inferred)"),
    threshold: float = typer.Option(0.5, help="class scores: decision threshold (binary, multilabel)"),
    labels: str | None = typer.Option(None, help="class scores: comma-separated class/label names"),
    classes: str | None = typer.Option(None, help="masks: comma-separated label ids (default: nonzero = 1 class)"),
    spacing: str | None = typer.Option(None, help="masks: pixel spacing for HD95, e.g. 0.5,0.5"),
    compare: Path | None = typer.Option(
        None, help="second system's predictions: paired test of --pred (A) vs this (B) on every metric "
                   "(uses --bootstrap resamples, 1000 if 0)"),
    model_metrics: list[str] | None = typer.Option(
        None, help="generated reports: optional model-based metric NAME=WEIGHTS (repeatable; off by default), "
                   "e.g. chexbert=/models/chexbert.pth or radgraph=/models/radgraph.tar.gz or ratescore=NER,ENCODER (a file, a folder "
                   "holding it, or a Hub repo id; append #sha256=HEX to pin it)"),
) -> None:
    """Score predictions against references and write metrics JSON with provenance."""
    from medmm.metrics.model_based import parse_specs
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
    try:
        parsed["model_metrics"] = parse_specs(model_metrics)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model-metrics") from exc
    if parsed["model_metrics"] and "model_metrics" not in scorer.options:
        raise typer.BadParameter(f"the {task} file scorer takes no model-based metrics", param_hint="--model-metrics")
    unknown = [k for k in scorer.options if k not in parsed]
    if unknown:  # a plug-in scorer with options this command does not offer: say so, do not drop them
        raise typer.BadParameter(f"the {task} file scorer takes options {unknown} that `medmm score` has no flag for",
                                 param_hint="--task")
    opts: dict = {"group_by": group_by, **{k: parsed[k] for k in scorer.options}}
    if scorer.setup is not None:
        scorer.setup()  # one-time caches, with progress on stderr
    try:
        if compare is not None:
            result = compare_files(task, pred, compare, ref, n_resamples=bootstrap or 1000, seed=seed, **opts)
        else:
            result = score_files(task, pred, ref, bootstrap=bootstrap, seed=seed, **opts)
    except ValueError as exc:  # option values (e.g. --uncertain maybe) that the library rejects
        raise typer.BadParameter(str(exc)) from exc
    write_metrics(out, result)
    typer.echo(f"wrote {out} ({result['provenance']['n_samples']} samples)")


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
