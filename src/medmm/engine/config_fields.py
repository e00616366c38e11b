"""What a config dataclass documents about itself: per-field help, and where old keys moved.

A config dataclass documents its fields in a Google-style ``Attributes:`` section of its
docstring (one entry per field, or ``a, b: text`` for fields that share a sentence); nested
sections are dataclass-typed fields and document their own fields. `field_help` walks a
config into dotted keys with type, default and that help, so `medmm config show TASK` prints
text written once, next to the fields, instead of a hand-written copy.

A config whose keys were reorganised declares ``moved_keys: ClassVar[dict[str, str]]`` (old key
-> new dotted key, relative to the section; an old key may name a section now, e.g. ``loss:
dice_ce`` -> ``loss.name``, and then moves only when its value is not a mapping). `build_dataclass`
turns an old key into a one-line error naming the new one, and `migrate` rewrites an old section
(`medmm config migrate`).
This module is torch-free.

    for f in field_help(ReportGenerationConfig, prefix="model."):
        print(f.key, f.type, f.default, f.help)
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmm.docstrings import attribute_docs


@dataclass(frozen=True)
class FieldHelp:
    """One (possibly nested) field of a config: dotted key, type, default and documented help."""

    key: str
    type: str
    default: Any
    help: str


def _type_text(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def section_types(cls: type) -> dict[str, type]:
    """Field name -> dataclass type, for the fields of `cls` that are nested sections."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def field_help(cls: type, prefix: str = "") -> list[FieldHelp]:
    """Every field of config dataclass `cls` in declaration order, nested sections expanded to
    dotted keys (``prefix`` + ``decoding.beam_size``); help "" where a field is undocumented."""
    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    sections = section_types(cls)
    out: list[FieldHelp] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in sections:
            out.extend(field_help(sections[f.name], prefix=f"{prefix}{f.name}."))
        else:
            out.append(FieldHelp(f"{prefix}{f.name}", _type_text(hints[f.name]), _default(f), docs.get(f.name, "")))
    return out


def section_help(cls: type) -> dict[str, str]:
    """Nested section name -> the first line of its docstring (what the section is for)."""
    docs = attribute_docs(cls)
    return {name: docs.get(name) or inspect.cleandoc(tp.__doc__ or "").split("\n", 1)[0]
            for name, tp in section_types(cls).items()}


def mapping_holding(section: dict[str, Any], name: str, prefix: str) -> str | None:
    """Dotted key of the first mapping under `section` (nested ones too, breadth first) that has
    key `name`, e.g. "model.image.encoder_kwargs" for a rejected constructor argument; or None."""
    queue = [(prefix, section)]
    while queue:
        where, node = queue.pop(0)
        for key, value in node.items():
            if isinstance(value, dict) and name in value:
                return f"{where}.{key}"
        queue += [(f"{where}.{k}", v) for k, v in node.items() if isinstance(v, dict)]
    return None


def moved_keys(cls: type) -> dict[str, str]:
    """Old key -> new dotted key (relative to `cls`'s section) declared by `cls` ({} if none)."""
    return dict(getattr(cls, "moved_keys", None) or {})


def moved_key_problem(cls: type, key: str, prefix: str = "") -> str | None:
    """The one-line problem of an old, moved key ("moved to model.decoding.beam_size ..."), or None."""
    new = moved_keys(cls).get(key)
    if new is None:
        return None
    return f"moved to {prefix}{new} (config sections are nested now; `medmm config migrate FILE` rewrites an old config)"


def migrate(cls: type, values: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """An old config section rewritten to `cls`'s current keys, and the (old, new) keys moved.

    Keys that did not move are kept as they are (so an unknown key still fails when the result
    is built); a key given both in its old and its new place is a ConfigError.
    """
    from medmm.engine.config import ConfigError

    table = moved_keys(cls)
    out: dict[str, Any] = {}
    moves: list[tuple[str, str]] = []
    sections = section_types(cls)
    for key, value in values.items():
        # an old scalar key that names a section now (`loss: NAME` -> `loss.name`) moves only when flat
        if key not in table or (key in sections and isinstance(value, dict)):
            if key in sections and isinstance(value, dict):
                value, inner = migrate(sections[key], value, prefix=f"{prefix}{key}.")
                moves.extend(inner)
            if key in out and isinstance(out[key], dict) and isinstance(value, dict):
                _merge(out[key], value, f"{prefix}{key}")
            else:
                out[key] = value
            continue
        node = out
        parts = table[key].split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(None, f"{prefix}{part}", f"is {node!r}, not a section")
        if parts[-1] in node:
            raise ConfigError(None, f"{prefix}{key}", f"given twice: also as {prefix}{table[key]}")
        node[parts[-1]] = value
        moves.append((f"{prefix}{key}", f"{prefix}{table[key]}"))
    return out, moves


def _merge(into: dict[str, Any], extra: dict[str, Any], where: str) -> None:
    from medmm.engine.config import ConfigError

    for k, v in extra.items():
        if k in into:
            raise ConfigError(None, f"{where}.{k}", "given twice: in the old and in the new layout")
        into[k] = v


def describe(cls: type, prefix: str = "", width: int = 100) -> str:
    """Plain-text listing of every key of config dataclass `cls`: ``key: type = default`` and its
    help below, wrapped to `width`; the section's own keys first, then each nested section after
    a line saying what it is for."""
    import json
    import textwrap

    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    sections = section_types(cls)
    lines: list[str] = []
    fields = [f for f in dataclasses.fields(cls) if f.init]
    for f in [f for f in fields if f.name not in sections] + [f for f in fields if f.name in sections]:
        if f.name in sections:
            about = docs.get(f.name) or inspect.cleandoc(sections[f.name].__doc__ or "").split("\n", 1)[0]
            lines += ["", f"# {prefix}{f.name}: {about}", describe(sections[f.name], f"{prefix}{f.name}.", width)]
            continue
        default = _default(f)
        shown = "(required)" if default is dataclasses.MISSING else json.dumps(default, default=str)
        lines.append(f"{prefix}{f.name}: {_type_text(hints[f.name])} = {shown}")
        help_text = docs.get(f.name) or "(undocumented)"
        lines += textwrap.wrap(help_text, width=width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)


def task_config(task: str) -> type | None:
    """The `Config` dataclass of registered task `task` (None when it declares none)."""
    from medmm.engine.api import import_plugins
    from medmm.engine.task import get_task_class

    import_plugins()
    cls = getattr(get_task_class(task), "Config", None)
    return cls if cls is not None and dataclasses.is_dataclass(cls) else None


def migrate_run_config(raw: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A run config (the dict of a YAML file) with its `model:` section moved to the task's
    current keys (`migrate`), and the (old, new) keys moved; other sections are unchanged."""
    from medmm.engine.config import ConfigError

    task = raw.get("task")
    if not isinstance(task, str) or not task:
        raise ConfigError(None, "task", "must name a registered task")
    cls = task_config(task)
    model = raw.get("model") or {}
    if cls is None or not isinstance(model, dict):
        return dict(raw), []
    new_model, moves = migrate(cls, model, prefix="model.")
    return {**raw, "model": new_model}, moves


def saved_run_config(raw: dict[str, Any], where: str | Path) -> dict[str, Any]:
    """A run config that medmm itself saved (a run directory's config.yaml, a checkpoint's copy)
    read in the current layout: keys an earlier version wrote flat are moved to their nested
    places, with a warning naming them. A run trained before the move thus still evaluates,
    predicts, serves and resumes; a config a user writes gets the one-line error instead.
    """
    import logging

    from medmm.errors import MedmmError

    try:
        new, moves = migrate_run_config(raw)
    except MedmmError:  # unknown task: building the task reports it
        return raw
    if moves:
        logging.getLogger(__name__).warning(
            "%s: read keys of an earlier medmm in their new places (%s); `medmm config migrate --in-place` rewrites it",
            where, ", ".join(f"{o} -> {n}" for o, n in moves))
    return new
