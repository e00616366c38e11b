"""Selection-split naming: every number computed on the split that chose the model is `selection_*`.

The split that chose the checkpoint's epoch, the task's fitted state (e.g. decision thresholds)
or settings gives optimistic numbers: they were, in effect, maximised on it. A metrics file
reported on that split (its `protocol.reported_is_selection_split` is true) therefore names
every number it holds ``selection_<key>``: the model's metrics (their CIs and breakdowns too)
and the floors' values and model - floor differences, so no number of it can be read as a
result. Keys whose value holds no number (the task kind, class labels, a CI method) and the
metrics' own `provenance` (how they were computed) keep their names. Files written before this rule hold plain names; `plain_names` reads both the same way.
"""

from __future__ import annotations

from typing import Any

SELECTION_PREFIX = "selection_"
# How the numbers were computed (metric implementation, versions, seed, n): never renamed.
DESCRIPTIVE_KEYS = frozenset({"provenance"})


def holds_number(value: Any) -> bool:
    """True when `value` is a number or a dict/list holding one at any depth (bools are not numbers)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, dict):
        return any(holds_number(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_number(v) for v in value)
    return False


def _prefixed(key: str) -> str:
    return key if key.startswith(SELECTION_PREFIX) else SELECTION_PREFIX + key


def selection_names(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` with every key holding a number renamed ``selection_<key>``; the CI dicts
    (``"ci"``: metric -> interval) keep their name and rename the metrics inside."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if k == "ci" and isinstance(v, dict):
            out[k] = {_prefixed(m): iv for m, iv in v.items()}
        else:
            out[_prefixed(k) if k not in DESCRIPTIVE_KEYS and holds_number(v) else k] = v
    return out


def selection_floors(floors: dict[str, Any]) -> dict[str, Any]:
    """`floors` with each floor's `metrics` and `model_minus_floor` keys renamed as `selection_names`
    does: on the selection split the model side of every difference is a selection number."""
    out: dict[str, Any] = {}
    for name, entry in floors.items():
        if isinstance(entry, dict) and ("metrics" in entry or "model_minus_floor" in entry):
            entry = dict(entry)
            for part in ("metrics", "model_minus_floor"):
                if isinstance(entry.get(part), dict):
                    entry[part] = selection_names(entry[part])
        out[name] = entry
    return out


def apply_selection_names(result: dict[str, Any]) -> dict[str, Any]:
    """A metrics document (`metrics`, `protocol`, `floors`) renamed in place when its protocol says
    the reported split is the selection split; `protocol.selection_metrics_renamed` lists the
    renamed metric keys. Returns `result`."""
    protocol = result.get("protocol") or {}
    if not protocol.get("reported_is_selection_split"):
        return result
    before = result.get("metrics") or {}
    result["metrics"] = selection_names(before)
    protocol["selection_metrics_renamed"] = [k for k in result["metrics"] if k.startswith(SELECTION_PREFIX)]
    if isinstance(result.get("floors"), dict):
        result["floors"] = selection_floors(result["floors"])
    return result


def plain_names(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` with the ``selection_`` prefix removed (CIs included): reads a selection-split file,
    new or written before the prefix rule, by the task's own metric names."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if k == "ci" and isinstance(v, dict):
            out[k] = {m.removeprefix(SELECTION_PREFIX): iv for m, iv in v.items()}
        else:
            out[k.removeprefix(SELECTION_PREFIX)] = v
    return out


def is_selection_file(doc: dict[str, Any]) -> bool:
    """True when a metrics document was reported on the split that chose the model."""
    return bool((doc.get("protocol") or {}).get("reported_is_selection_split"))
