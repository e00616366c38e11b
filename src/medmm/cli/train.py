"""`medmm train | evaluate | predict | report`: thin wrappers over medmm.engine."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from medmm.cli.app import app
from medmm.cli.decoding_flags import DecodingFlag, decoding_flags, override_value


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
            n = m.get("n", m.get("selection_n"))  # selection_*: the split that chose the model
            shown = f"selection_{split}" if "selection_n" in m or any(str(k).startswith("selection_") for k in m) else split
            print_metrics(m, title=f"{shown}: n = {n}" if n is not None else f"{shown}:")
        typer.echo(f"run directory: {out}  (report: {Path(out) / 'report.html'})")


def print_metrics(metrics: dict, title: str, max_rows: int = 24) -> None:
    """A split's scalar metrics as a short table: 4 significant digits, its 95% CI when the task
    computed one; full precision stays in the metrics JSON.

    Top-level numbers come first, then one level of groups of numbers as "group/name" (retrieval's
    `image_to_text`, `text_to_image_random`, ...). A CI is read from metrics["ci"][name] or from a
    group's sibling `<group>_ci`; groups nested deeper (per-class tables) stay in the JSON only."""
    from rich.console import Console
    from rich.table import Table

    def is_number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    cis = dict(metrics["ci"]) if isinstance(metrics.get("ci"), dict) else {}
    rows = {k: v for k, v in metrics.items() if is_number(v)}
    for group, values in metrics.items():
        if (not isinstance(values, dict) or not values or group in ("ci", "undefined", "provenance")
                or group.endswith("_ci") or not all(is_number(v) for v in values.values())):
            continue
        group_ci = metrics.get(f"{group}_ci") if isinstance(metrics.get(f"{group}_ci"), dict) else {}
        for name, value in values.items():
            rows[f"{group}/{name}"] = value
            if name in group_ci:
                cis[f"{group}/{name}"] = group_ci[name]
    table = Table("metric", "value", "95% CI", title=title, title_justify="left")
    for name, value in list(rows.items())[:max_rows]:
        ci = cis.get(name)
        ci_text = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci else ""
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value), ci_text)
    if len(rows) > max_rows:
        table.caption = f"{len(rows) - max_rows} more in the metrics JSON"
    Console().print(table)


def _zero_shot_tasks() -> dict[str, str]:
    """Registered tasks that score an untrained pretrained model -> the dataset each reads by
    default (`Task.zero_shot_dataset`)."""
    from medmm import plugins
    from medmm.engine.task import get_task_class

    return {name: get_task_class(name).zero_shot_dataset for name in plugins.load()
            if get_task_class(name).zero_shot_dataset}


_SET_HELP = ("Override a model option of the run, e.g. --set mbr.candidates=8 (repeatable; decoding options only make sense; "
             "`medmm config show TASK` lists the keys).")
# The decoding flags of `evaluate` and `predict`, each a model.KEY=VALUE override: one per
# GenerationConfig field, generated with its help (`medmm.cli.decoding_flags`), plus report
# generation's consensus decoding (its `mbr:` section; any other key goes through --set).
_DECODING: tuple[DecodingFlag, ...] = (*decoding_flags(), DecodingFlag(
    "mbr_references", int, ("--mbr-references",),
    "Report generation: consensus decoding against this many nearest training reports (0 = off).", "mbr.references"))


def with_model_overrides(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command taking `model_overrides` the decoding flags and --set instead: the command
    receives them as one list of "model.KEY=VALUE" overrides of the saved run config (None when
    none is given), so `evaluate` and `predict` declare them once."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "model_overrides"]
    added = [inspect.Parameter(f.param, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, *f.decls, help=f.help),
                               annotation=f.type | None) for f in _DECODING]
    added.append(inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, annotation=list[str] | None,
                                   default=typer.Option(None, "--set", help=_SET_HELP)))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        overrides = [o if o.startswith("model.") else f"model.{o}" for o in kwargs.pop("set_") or []]
        for f in _DECODING:
            value = kwargs.pop(f.param)
            if value is not None:
                overrides.append(f"model.{f.model_key}={override_value(value)}")
        command(**kwargs, model_overrides=overrides or None)

    wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in kept + added}
    return wrapper


@app.command()
@with_model_overrides
def evaluate(
    run_dir: Path | None = typer.Argument(None, help="A run directory written by `medmm train` (or give --model)."),
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
    model: str | None = typer.Option(
        None, "--model", help="Zero-shot: a pretrained model (Hugging Face hub name or folder) scored without training; "
        "needs --task and --data."),
    task: str | None = typer.Option(None, "--task", help="Zero-shot: a registered task that scores pretrained models "
                                    "without training (e.g. vqa_vlm, report_vlm; diagnosis and retrieval with a CLIP-style model)."),
    config: Path | None = typer.Option(
        None, "--config", help="Zero-shot: take prompts, decoding and data settings from this run config (e.g. "
        "configs/vqa/vlm_lora.yaml); --model, --data and --dataset replace its model and data."),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="Zero-shot: a prompt-set YAML for tasks that classify by prompts (a CLIP-style model, "
        "--task diagnosis): class -> descriptions; default: medmm's set for the dataset."),
    model_overrides: list[str] | None = None,
) -> None:
    """Score a trained run on its own held-out part (--split val/test) or a split of any dataset root
    (another dataset = external validation); or, with --model, a pretrained model zero-shot."""
    import warnings

    from medmm.engine.api import evaluate as run_eval
    from medmm.engine.eval_split import TrainingDataWarning

    if model is not None:
        if run_dir is not None:
            raise typer.BadParameter("give a RUN_DIR or --model, not both")
        _evaluate_zero_shot(model, task, data, dataset, split, out, config, model_overrides, prompts)
        return
    if prompts is not None:
        raise typer.BadParameter("--prompts goes with --model (zero-shot)")
    if run_dir is None:
        raise typer.BadParameter("give a RUN_DIR (a trained run) or --model NAME_OR_FOLDER (zero-shot)")
    out = out or run_dir / "evaluations" / f"{split}.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDataWarning)  # printed below, louder
        result = run_eval(run_dir, data, dataset=dataset, split=split, out=out, label_map=label_map,
                          model_overrides=model_overrides)
    prov = result["provenance"]
    print_metrics(result["metrics"], title=f"{split}: n = {prov['n_samples']}; {prov.get('split_source', '')}")
    typer.echo(f"{prov['n_samples']} samples, {prov['n_skipped']} skipped -> {out}")
    if result.get("warning"):
        typer.secho(f"WARNING: {result['warning']} (also in {out})", fg="red", bold=True, err=True)
    if prov.get("external"):
        lm = prov.get("label_map") or {}
        typer.echo(f"EXTERNAL validation on {prov['dataset']} (trained on {prov['training_dataset']}); label map: {lm.get('name', 'none')}")


def _evaluate_zero_shot(model: str, task: str | None, data: Path | None, dataset: str | None, split: str,
                        out: Path | None, config: Path | None, sets: list[str] | None, prompts: Path | None = None) -> None:
    """`medmm evaluate --model`: the task's config with model.pretrained = MODEL and no adapters."""
    from medmm.engine import load_config
    from medmm.engine.config import DataConfig, RunConfig, apply_overrides, config_from_dict
    from medmm.engine.task import get_task_class
    from medmm.engine.zero_shot import evaluate_untrained

    if data is None or out is None:
        raise typer.BadParameter("--model needs --data ROOT and --out M.json")
    if config is not None:
        cfg = load_config(config)
        if task is not None and task != cfg.task:
            raise typer.BadParameter(f"--task {task} does not match the config's task {cfg.task!r}")
    else:
        tasks = _zero_shot_tasks()
        if task not in tasks:
            raise typer.BadParameter(f"--model needs --task, one of {', '.join(tasks)} (or a --config)")
        cfg = RunConfig(task=task, data=DataConfig(dataset=tasks[task], root=str(data), val_split=None, test_split=None))
        cfg.trainer.accelerator = "auto"  # a GPU when there is one: pretrained models are large
    cfg.data.root = str(data)
    cfg.data.dataset = dataset or cfg.data.dataset
    # the task says how a pretrained model enters its model section (default: model.pretrained, no adapters)
    cfg.model = get_task_class(cfg.task).zero_shot_section(dict(cfg.model), model, cfg.data.dataset,
                                                           str(prompts.resolve()) if prompts else None)
    # --set values arrive as model.KEY=VALUE; trainer.* and data.* settings of the config pass through as given
    overrides = [o.removeprefix("model.") if o.removeprefix("model.").startswith(("trainer.", "data.")) else o
                 for o in sets or []]
    cfg = config_from_dict(apply_overrides(cfg.to_dict(), overrides), where=config or "--model")
    result = evaluate_untrained(cfg, split, out)
    prov = result["provenance"]
    print_metrics(result["metrics"], title=f"{split}: n = {prov['n_samples']}; zero-shot {model}")
    typer.echo(f"{prov['n_samples']} samples, {prov['n_skipped']} skipped -> {out}")


@app.command()
@with_model_overrides
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `medmm train`."),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset root in its original layout. Default: the run's own data."
    ),
    dataset: str | None = typer.Option(None, "--dataset", help="Registered dataset name (default: the run's)."),
    split: str = typer.Option(
        "test", "--split",
        help="Split to predict: without --data a part of the run's own split (a grouped run: the keys of "
        "data.fractions, e.g. val, test); with --data the dataset's published split.",
    ),
    out: Path = typer.Option(..., "--out", help="Where to write predictions (JSON lines, one per sample)."),
    model_overrides: list[str] | None = None,
) -> None:
    """Write one prediction per sample (with its id) as JSON lines."""
    import warnings

    from medmm.engine.api import predict as run_predict
    from medmm.engine.eval_split import TrainingDataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrainingDataWarning)
        records = run_predict(run_dir, data, dataset=dataset, split=split, out=out, model_overrides=model_overrides)
    typer.echo(f"{len(records)} predictions -> {out}")
    for w in caught:  # the training-data warning louder; any other shown as Python would have
        if issubclass(w.category, TrainingDataWarning):
            typer.secho(f"WARNING: {w.message}", fg="red", bold=True, err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory written by `medmm train`.")) -> None:
    """(Re)write RUN_DIR/report.html and its plots from the run's logs and metrics."""
    from medmm.engine.report import write_report

    typer.echo(str(write_report(run_dir)))
