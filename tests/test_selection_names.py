"""Every number computed on the split that chose the model is named `selection_*` (issue 26, item 3).

`check_selection_names` is what tests/test_every_task.py applies to the metrics files of a trained
tiny run of every shipped task (and to `evaluate` of its validation part); the tests here check it
and the renaming of `medmm.engine.selection` on hand-written documents, and that report.html
and old run directories (plain names under a selection protocol) are read the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medmm.engine.selection import apply_selection_names, plain_names

PREFIX = "selection_"


def numeric_leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The key paths of every number (bools excluded) in a JSON value; list items add no key."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in numeric_leaves(v, (*path, str(k)))]
    if isinstance(value, list):
        return [p for v in value for p in numeric_leaves(v, path)]
    return []


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value] + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def check_selection_names(doc: dict[str, Any], role: str | None = None) -> list[str]:
    """Problems of one metrics document: its protocol inconsistent (`role`: the run part a training
    run wrote it for, "val"/"test"; None for `evaluate`), or on the selection split a number in
    `metrics` or `floors` whose key path holds no `selection_` key, or elsewhere a `selection_` key."""
    problems = []
    protocol = doc.get("protocol")
    if not isinstance(protocol, dict):
        return ["no protocol record"]
    selection, reported = protocol.get("selection_split"), protocol.get("reported_split")
    is_selection = protocol.get("reported_is_selection_split")
    if selection not in (None, "val"):
        problems.append(f"selection_split {selection!r}: a run selects on its validation part or nothing")
    if role is not None:
        if reported != role:
            problems.append(f"reported_split {reported!r} in the file of the run's {role!r} part")
        expected = selection is not None and reported == selection
    else:  # evaluate: a selection number when any evaluated sample was in the run's selection split
        expected = selection is not None and protocol.get("evaluated_samples_in_run_selection_split", 0) > 0
    if is_selection is not expected:
        problems.append(f"reported_is_selection_split {is_selection!r} with selection_split {selection!r}, "
                        f"reported_split {reported!r}")
    # the metrics' own provenance says how they were computed (versions, seed): not a metric
    part = {"metrics": {k: v for k, v in (doc.get("metrics") or {}).items() if k != "provenance"}, "floors": doc.get("floors")}
    if is_selection:
        problems += [f"unprefixed number {'.'.join(p)}" for p in numeric_leaves(part)
                     if not any(k.startswith(PREFIX) for k in p)]
        renamed = protocol.get("selection_metrics_renamed")
        if renamed != [k for k in doc.get("metrics", {}) if k.startswith(PREFIX)]:
            problems.append(f"selection_metrics_renamed {renamed!r} is not the list of renamed metric keys")
    else:
        problems += [f"{k}: a selection name outside the selection split" for k in _keys(part) if k.startswith(PREFIX)]
    return problems


def _doc(selection: bool) -> dict[str, Any]:
    metrics = {"task": "multiclass", "labels": ["a", "b"], "accuracy": 0.75, "threshold": None, "n_scored": 4,
               "per_class": {"a": {"auroc": 0.5, "n": 2}}, "by_question_type": {"ABN": {"accuracy": 1.0}},
               "confusion_matrix": [[1, 0], [1, 2]], "ci": {"accuracy": [0.5, 1.0]}, "ci_method": "bootstrap",
               "image_to_text": {"R@1": 25.0}, "image_to_text_ci": {"R@1": [0.0, 50.0]},
               "provenance": {"metric": "classification", "seed": 0}}
    floors = {"prior": {"description": "class frequencies", "metrics": {"accuracy": 0.5},
                        "model_minus_floor": {"accuracy": {"difference": 0.25, "ci": [0.0, 0.5], "p_value": 0.3}},
                        "method": "paired bootstrap"},
              "otsu": {"skipped": "no training masks"}}
    protocol = {"selection_split": "val", "reported_split": "val" if selection else "test",
                "reported_is_selection_split": selection, "selection_metrics_renamed": []}
    return {"metrics": metrics, "protocol": protocol, "floors": floors, "provenance": {"n_samples": 4, "seed": 0}}


def test_every_number_of_the_selection_split_is_renamed_and_nothing_else():
    val = apply_selection_names(_doc(selection=True))
    assert check_selection_names(val, role="val") == []
    m = val["metrics"]
    assert m["task"] == "multiclass" and m["labels"] == ["a", "b"] and m["threshold"] is None  # no number: kept
    assert m["provenance"] == {"metric": "classification", "seed": 0}  # how it was computed: kept
    assert m["selection_accuracy"] == 0.75 and m["ci"] == {"selection_accuracy": [0.5, 1.0]}
    assert {"selection_per_class", "selection_by_question_type", "selection_image_to_text_ci"} <= set(m)
    assert val["floors"]["prior"]["metrics"] == {"selection_accuracy": 0.5}
    assert "selection_accuracy" in val["floors"]["prior"]["model_minus_floor"]
    assert val["provenance"] == {"n_samples": 4, "seed": 0}  # what and when, not a metric
    assert plain_names(m)["accuracy"] == 0.75 and plain_names(m)["ci"] == {"accuracy": [0.5, 1.0]}

    test = apply_selection_names(_doc(selection=False))
    assert test == _doc(selection=False) and check_selection_names(test, role="test") == []


def test_the_check_finds_what_is_left_unprefixed():
    """The check fails an old-style file (only threshold-dependent keys renamed), a leftover CI key,
    a floor, and a protocol that contradicts itself."""
    old = _doc(selection=True)
    old["metrics"]["selection_accuracy"] = old["metrics"].pop("accuracy")
    problems = check_selection_names(old, role="val")
    assert any("metrics.ci.accuracy" in p for p in problems) and any("metrics.n_scored" in p for p in problems)
    assert any("floors.prior.metrics.accuracy" in p for p in problems)

    wrong = apply_selection_names(_doc(selection=True))
    wrong["protocol"]["reported_split"] = "test"
    assert any("reported_is_selection_split" in p for p in check_selection_names(wrong, role="test"))
    labelled = _doc(selection=False)
    labelled["metrics"]["selection_accuracy"] = 0.5
    assert check_selection_names(labelled, role="test") == ["selection_accuracy: a selection name outside the selection split"]


def test_report_names_the_selection_split_for_old_and_new_files(tmp_path: Path):
    """report.html shows a selection split as selection_val in its heading and figure titles, and draws
    its confusion matrix, whether the file's keys are prefixed (new) or plain under a selection
    protocol (written before the rule)."""
    from medmm.engine import rundir as rd
    from medmm.engine.report import write_report

    for name, doc in (("new", apply_selection_names(_doc(selection=True))), ("old", _doc(selection=True))):
        run = tmp_path / name
        (run / "metrics").mkdir(parents=True)
        rd.write_json(run / "metrics" / "val.json", doc)
        rd.write_json(run / "metrics" / "test.json", apply_selection_names(_doc(selection=False)))
        page = write_report(run).read_text(encoding="utf-8")
        assert "<h2>selection_val (n = 4): the split that chose the model" in page and "<h2>test (n = 4)</h2>" in page
        assert "selection_val: confusion matrix" in page and (run / "plots" / "confusion_val.png").exists()
        assert "selection_val: question type" in page
        assert "<th>selection_accuracy</th>" in page and "<th>accuracy</th>" in page  # val renamed, test not

