"""File scorers as task plug-ins: each task's `Task.file_scorer` hook is what `medmm score --task
NAME` runs, found without torch through the `medmm.scorers` entry points; a third-party scorer
plugs in the same way."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmm import plugins
from medmm.cli import app
from medmm.engine.task import get_task_class
from medmm.metrics import score as S

REPO = Path(__file__).resolve().parents[1]


def test_every_task_hook_is_the_scorer_medmm_score_runs() -> None:
    tasks = plugins.load()
    with_scorer = {n for n in tasks if get_task_class(n).file_scorer() is not None}
    assert with_scorer, "no task declares a file scorer"
    for name in with_scorer:
        scorer = get_task_class(name).file_scorer()
        assert isinstance(scorer, S.FileScorer)
        assert S.resolve_scorer(name) == (name, scorer), name
    assert set(S.known_scorers()) <= set(tasks), "a file scorer is registered under a name the engine does not know"


def test_pyproject_declares_every_builtin_scorer_under_its_task_name() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][plugins.SCORER_ENTRY_POINT_GROUP]
    builtin = {n for n in plugins.load() if get_task_class(n).__module__.startswith("medmm.tasks.")
               and get_task_class(n).file_scorer() is not None}
    assert set(declared) == builtin
    for name, value in declared.items():
        module, obj = value.split(":")
        assert getattr(sys.modules[module], obj) is get_task_class(name).file_scorer()


def test_medmm_score_finds_a_scorer_without_importing_torch(tmp_path: Path) -> None:
    """What `medmm score` does (stale metadata included): load the scorers, score; torch stays out."""
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prediction": "yes"}\n{"id": "b", "prediction": "no"}\n')
    (tmp_path / "r.jsonl").write_text('{"id": "a", "reference": "yes"}\n{"id": "b", "reference": "yes"}\n')
    code = ("import sys\nfrom medmm import plugins\nplugins.load_scorers()\nfrom medmm.metrics.score import score_files\n"
            f"m = score_files('vqa', {str(tmp_path / 'p.jsonl')!r}, {str(tmp_path / 'r.jsonl')!r})\n"
            "assert m['overall_accuracy'] == 0.5 and m['task'] == 'vqa', m\n"
            "assert 'torch' not in sys.modules, 'scoring imported torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


_SCORER_MODULE = '''
from medmm.metrics.score import FileScorer, Prepared, read_records

def prepare(pred_path, ref_path, *, group_by=None, **options):
    pred = read_records(pred_path, "prediction")
    ids = list(pred)
    n = sum(len(str(pred[i]["prediction"])) for i in ids)
    return Prepared(ids, {"chars": n, "options": options, "provenance": {"n_samples": len(ids)}}, [], lambda s: {}, None)

SCORER = FileScorer(prepare, needs_ref=False)
ODD = FileScorer(prepare, ("colour",), needs_ref=False)
'''


# more entry points for one test: a module object that is no FileScorer
_EXTRA_ENTRY_POINTS = {"test_a_plugin_that_is_no_scorer_is_named": "toy_bad = toy_scorer_mod:prepare\n"}


@pytest.fixture
def toy_scorer(tmp_path, monkeypatch, request):
    """An installed package declaring two `medmm.scorers` entry points (one asks for an option
    `medmm score` has no flag for)."""
    (tmp_path / "toy_scorer_mod.py").write_text(_SCORER_MODULE)
    info = tmp_path / "toy_scorer-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-scorer\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[medmm.scorers]\ntoy_chars = toy_scorer_mod:SCORER\ntoy_odd = toy_scorer_mod:ODD\n"
                                          + _EXTRA_ENTRY_POINTS.get(request.node.name, ""))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(S, "SCORERS", S.SCORERS.copy())  # the toy entries go with the copy
    yield tmp_path
    sys.modules.pop("toy_scorer_mod", None)


def test_a_third_party_scorer_is_found_through_its_entry_point(toy_scorer: Path) -> None:
    (toy_scorer / "p.jsonl").write_text('{"id": "a", "prediction": "abc"}\n{"id": "b", "prediction": "de"}\n')
    out = toy_scorer / "m.json"
    res = CliRunner().invoke(app, ["score", "--task", "toy_chars", "--pred", str(toy_scorer / "p.jsonl"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert m["chars"] == 5 and m["task"] == "toy_chars" and m["options"] == {}
    res = CliRunner().invoke(app, ["score", "--task", "toy_odd", "--pred", str(toy_scorer / "p.jsonl"), "--out", str(out)])
    assert res.exit_code != 0 and "no flag for" in res.output
    with pytest.raises(ValueError, match=r"unknown task 'toy_nope'; known: .*toy_chars.*entry points"):
        S.resolve_scorer("toy_nope")


def test_the_scorer_plugins_load_through_the_generic_registry(toy_scorer: Path) -> None:
    """One entry-point loader (medmm.registry.Registry): the toy scorers' module did not register
    them, so they are registered under their entry point names, once."""
    from medmm.registry import Registry

    assert isinstance(S.SCORERS, Registry) and S.SCORERS.entry_points == plugins.SCORER_ENTRY_POINT_GROUP
    assert not S.SCORERS.registered("toy_chars")
    assert {"toy_chars", "toy_odd", "vqa"} <= set(S.known_scorers())
    assert S.SCORERS["toy_chars"] is sys.modules["toy_scorer_mod"].SCORER
    assert S.SCORERS.load_entry_points() == []  # loaded once
    with pytest.raises(ValueError, match="registered twice"):
        S.register_scorer("toy_chars", S.SCORERS["toy_chars"])


def test_a_plugin_that_is_no_scorer_is_named(toy_scorer: Path) -> None:
    from medmm.errors import MedmmError

    with pytest.raises(MedmmError, match=r"file scorer plug-in 'toy_bad' \(toy_scorer_mod:prepare\): is a function, not a FileScorer"):
        S.known_scorers()
