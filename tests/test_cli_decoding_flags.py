"""The decoding flags of `medmm predict` / `medmm evaluate` are generated from `GenerationConfig`:
every field has a flag with its type and documented help, and a value given on the command line
reaches the task's decoding config."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from medmm.cli import app
from medmm.engine.config import apply_overrides, build_dataclass
from medmm.engine.config_fields import attribute_docs
from medmm.generation_config import GenerationConfig

FIELDS = dataclasses.fields(GenerationConfig)
HINTS = typing.get_type_hints(GenerationConfig)


def _params(command: str) -> dict[str, typing.Any]:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_every_decoding_field_has_a_flag_with_its_type_and_help(command, field):
    params = _params(command)
    assert field.name in params, f"`medmm {command}` has no flag for GenerationConfig.{field.name}"
    opt = params[field.name]
    assert f"--{field.name.replace('_', '-')}" in opt.opts
    assert opt.default is None  # unset: the run's own value
    assert opt.is_flag == (HINTS[field.name] is bool)  # the value types are checked by test_values_are_typed
    doc = attribute_docs(GenerationConfig)[field.name]
    assert doc and doc in opt.help and f"model.decoding.{field.name}" in opt.help


def _changed(field: dataclasses.Field) -> object:
    """A value other than the field's default (and still a valid decoding)."""
    tp = HINTS[field.name]
    if tp is bool:
        return not field.default
    return field.default + (2 if tp is int else 0.5)


def _argv(values: dict[str, object]) -> list[str]:
    argv = []
    for name, value in values.items():
        kebab = name.replace("_", "-")
        if isinstance(value, bool):  # --x/--no-x, or --no-x/--x for a field named no_x
            off = kebab.removeprefix("no-") if name.startswith("no_") else f"no-{kebab}"
            argv.append(f"--{kebab}" if value else f"--{off}")
        else:
            argv += [f"--{kebab}", str(value)]
    return argv


def _invoke(argv: list[str], tmp_path: Path, monkeypatch) -> tuple[object, list[str]]:
    """`medmm predict` with these flags: the result, and the model overrides it hands to the engine."""
    from medmm.engine import api

    seen: dict[str, list[str] | None] = {}

    def fake_predict(run_dir, data, **kwargs):
        seen["overrides"] = kwargs["model_overrides"]
        return []

    monkeypatch.setattr(api, "predict", fake_predict)
    res = CliRunner().invoke(app, ["predict", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "p.jsonl"), *argv])
    return res, seen.get("overrides") or []


def _overrides_of(argv: list[str], tmp_path: Path, monkeypatch) -> list[str]:
    res, overrides = _invoke(argv, tmp_path, monkeypatch)
    assert res.exit_code == 0, res.output
    return overrides


@pytest.mark.parametrize("field", [f for f in FIELDS if HINTS[f.name] is not bool], ids=lambda f: f.name)
def test_values_are_typed(field, tmp_path, monkeypatch):
    flag = f"--{field.name.replace('_', '-')}"
    bad = "2.5" if HINTS[field.name] is int else "many"
    res, overrides = _invoke([flag, bad], tmp_path, monkeypatch)
    assert res.exit_code != 0 and not overrides, f"{flag} {bad} was accepted"


def test_a_cli_value_of_every_field_reaches_the_decoding_config(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from medmm.tasks.report.config import ReportGenerationConfig
    from medmm.tasks.report.decoding import generation_config

    values = {f.name: _changed(f) for f in FIELDS}
    overrides = _overrides_of(_argv(values), tmp_path, monkeypatch)
    assert len(overrides) == len(FIELDS) and all(o.startswith("model.decoding.") for o in overrides)
    model = apply_overrides({}, overrides)["model"]
    cfg = build_dataclass(ReportGenerationConfig, model, "cli", prefix="model.")
    assert generation_config(cfg) == GenerationConfig(**values)


def test_an_unset_flag_overrides_nothing_and_old_spellings_still_work(tmp_path, monkeypatch):
    assert _overrides_of([], tmp_path, monkeypatch) == []
    assert _overrides_of(["--no-repeat-ngram", "2", "--immediate-repeat", "--mbr-references", "3"], tmp_path, monkeypatch) == [
        "model.decoding.no_repeat_ngram_size=2", "model.decoding.no_immediate_repeat=false", "model.mbr.references=3"]
