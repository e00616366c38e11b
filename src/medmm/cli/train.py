"""`medmm train | evaluate | predict | report`: thin wrappers over medmm.engine."""

from __future__ import annotations

from pathlib import Path

import typer

from medmm.cli.app import app


@app.command(context_settings={"allow_interspersed_args": True})
def train(
    config: Path = typer.Argument(..., help="YAML run config (configs/<task>/<dataset>.yaml)."),
    overrides: list[str] | None = typer.Argument(
        None, help="Dotted overrides, e.g. trainer.max_epochs=3 data.root=PATH model.decoding.beam_size=3 "
        "(every key with its help: `medmm config show TASK --all`)."),
    out: Path = typer.Option(..., "--out", help="Run directory; rerunning with the same one resumes from its last.ckpt."),
) -> None:
    """Train a task from a config; writes the run directory (checkpoints, metrics, report.html)."""
    from medmm.engine import load_config
    from medmm.engine.api import train as run_train

    cfg = load_config(config, list(overrides or []), validate_model=True)
    metrics = run_train(cfg, out)
    if metrics:
        for split, m in metrics.items():
            print_metrics(m, title=f"{split}: n = {m['n']}" if "n" in m else f"{split}:")
        typer.echo(f"run directory: {out}  (report: {Path(out) / 'report.html'})")


def print_metrics(metrics: dict, title: str, max_rows: int = 16) -> None:
    """A split's scalar metrics as a short table: 4 significant digits, its 95% CI when the task
    computed one (metrics["ci"][name] = [low, high]); full precision stays in the metrics JSON."""
    from rich.console import Console
    from rich.table import Table

    cis = metrics.get("ci") if isinstance(metrics.get("ci"), dict) else {}
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    table = Table("metric", "value", "95% CI", title=title, title_justify="left")
    for name, value in list(scalars.items())[:max_rows]:
        ci = cis.get(name)
        ci_text = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci else ""
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value), ci_text)
    if len(scalars) > max_rows:
        table.caption = f"{len(scalars) - max_rows} more in the metrics JSON"
    Console().print(table)


def _model_overrides(
    overrides: list[str] | None, beam_size: int | None, length_penalty: float | None, no_repeat_ngram: int | None,
    max_length: int | None, mbr_references: int | None,
) -> list[str]:
    """Decoding flags and --set values as "model.KEY=VALUE" overrides of the saved run config."""
    out = [o if o.startswith("model.") else f"model.{o}" for o in overrides or []]
    for key, value in (("decoding.beam_size", beam_size), ("decoding.length_penalty", length_penalty),
                       ("decoding.no_repeat_ngram_size", no_repeat_ngram), ("decoding.max_length", max_length),
                       ("mbr.references", mbr_references)):
        if value is not None:
            out.append(f"model.{key}={value}")
    return out


_SET_HELP = ("Override a model option of the run, e.g. --set mbr.candidates=8 (repeatable; decoding options only make sense; "
             "`medmm config show TASK` lists the keys).")
_BEAM = typer.Option(None, "--beam-size", help="Generation: beam width (1 = greedy).")
_LP = typer.Option(None, "--length-penalty", help="Generation: beams ranked by sum log p / length**lp.")
_NRN = typer.Option(None, "--no-repeat-ngram", help="Generation: an n-gram of this size occurs at most once (0 = off).")
_MAXLEN = typer.Option(None, "--max-length", help="Generation: most generated tokens.")
_MBR = typer.Option(None, "--mbr-references", help="Report generation: consensus decoding against this many nearest training reports (0 = off).")


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `medmm train`."),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset root in its original layout (may hold only the test split). Default: the run's own data."
    ),
    dataset: str | None = typer.Option(None, "--dataset", help="Registered dataset name (default: the run's)."),
    split: str = typer.Option(
        "test", "--split",
        help="Split to score, exactly its records. On the run's own data, a part of the run's split as train made it "
        "(a grouped run: the keys of data.fractions, e.g. val, test); otherwise the dataset's published split.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write metrics JSON (metrics + provenance); default RUN_DIR/evaluations/SPLIT.json."
    ),
    label_map: str | None = typer.Option(
        None, "--label-map", help="External validation: a label map name (medmm.data.label_maps); default: found from the datasets."
    ),
    beam_size: int | None = _BEAM,
    length_penalty: float | None = _LP,
    no_repeat_ngram: int | None = _NRN,
    max_length: int | None = _MAXLEN,
    mbr_references: int | None = _MBR,
    set_: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
) -> None:
    """Score a trained run on its own held-out part (--split val/test) or a split of any dataset root
    (another dataset = external validation)."""
    import warnings

    from medmm.engine.api import evaluate as run_eval
    from medmm.engine.eval_split import TrainingDataWarning

    mo = _model_overrides(set_, beam_size, length_penalty, no_repeat_ngram, max_length, mbr_references)
    out = out or run_dir / "evaluations" / f"{split}.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDataWarning)  # printed below, louder
        result = run_eval(run_dir, data, dataset=dataset, split=split, out=out, label_map=label_map, model_overrides=mo or None)
    prov = result["provenance"]
    print_metrics(result["metrics"], title=f"{split}: n = {prov['n_samples']}; {prov.get('split_source', '')}")
    typer.echo(f"{prov['n_samples']} samples, {prov['n_skipped']} skipped -> {out}")
    if result.get("warning"):
        typer.secho(f"WARNING: {result['warning']} (also in {out})", fg="red", bold=True, err=True)
    if prov.get("external"):
        lm = prov.get("label_map") or {}
        typer.echo(f"EXTERNAL validation on {prov['dataset']} (trained on {prov['training_dataset']}); label map: {lm.get('name', 'none')}")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `medmm train`."),
    data: Path = typer.Option(..., "--data", help="Dataset root in its original layout."),
    dataset: str | None = typer.Option(None, "--dataset", help="Registered dataset name (default: the run's)."),
    split: str = typer.Option("test", "--split", help="Split to predict."),
    out: Path = typer.Option(..., "--out", help="Where to write predictions (JSON lines, one per sample)."),
    beam_size: int | None = _BEAM,
    length_penalty: float | None = _LP,
    no_repeat_ngram: int | None = _NRN,
    max_length: int | None = _MAXLEN,
    mbr_references: int | None = _MBR,
    set_: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
) -> None:
    """Write one prediction per sample (with its id) as JSON lines."""
    from medmm.engine.api import predict as run_predict

    mo = _model_overrides(set_, beam_size, length_penalty, no_repeat_ngram, max_length, mbr_references)
    records = run_predict(run_dir, data, dataset=dataset, split=split, out=out, model_overrides=mo or None)
    typer.echo(f"{len(records)} predictions -> {out}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory written by `medmm train`.")) -> None:
    """(Re)write RUN_DIR/report.html and its plots from the run's logs and metrics."""
    from medmm.engine.report import write_report

    typer.echo(str(write_report(run_dir)))
