"""Prompt sets of zero-shot diagnosis: what text describes each class to a CLIP-style model.

A prompt set is a YAML file (medmm ships one per dataset in ``prompts/``; `--prompts FILE.yaml`
gives another):

    datasets: [pneumoniamnist]          # the datasets it is the default for (optional in a user file)
    target: label                       # the Sample.targets key its classes are values of
    templates: ["a chest x-ray showing {}."]   # optional: each applied to every description
    classes:                            # class (as the dataset spells it) -> descriptions
      normal: [clear lungs, no pneumonia]
      pneumonia: [pneumonia]

A class's prompts are its descriptions put into every template (CLIP's prompt ensembling), or the
descriptions as written when there are no templates. Torch-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medmm.data import label_maps as lm
from medmm.errors import BadInputError, MedmmError

SHIPPED = Path(__file__).resolve().parent / "prompts"
_KEYS = {"datasets", "target", "templates", "classes"}


@dataclass(frozen=True)
class PromptSet:
    """A loaded prompt set: where it came from (path, sha256), its target and its prompts per class."""

    source: str
    sha256: str
    shipped: bool
    datasets: tuple[str, ...]
    target: str | None
    templates: tuple[str, ...]
    descriptions: dict[str, tuple[str, ...]]

    def prompts(self) -> dict[str, list[str]]:
        """class -> the texts embedded for it (every template x every description)."""
        if not self.templates:
            return {k: list(v) for k, v in self.descriptions.items()}
        return {k: [t.replace("{}", d) for d in v for t in self.templates] for k, v in self.descriptions.items()}

    def record(self, classes: list[str]) -> dict[str, Any]:
        """JSON description for the metrics protocol: the file, its checksum and every prompt used."""
        prompts = self.prompts()
        return {"source": self.source, "sha256": self.sha256,
                "origin": "medmm default for the dataset" if self.shipped else "user file (--prompts / model.zero_shot.prompts)",
                "target": self.target, "templates": list(self.templates),
                "prompts": {k: prompts[k] for k in classes}}


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x.strip() for x in items):
        raise BadInputError(where, f"{key}: expected a non-empty string or list of non-empty strings, got {value!r}")
    return tuple(x.strip() for x in items)


def load_prompt_set(path: str | Path, shipped: bool = False) -> PromptSet:
    """Read and check a prompt-set YAML file (see the module docstring); BadInputError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "prompt-set file not found")
    raw = path.read_bytes()
    where = str(path)
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise BadInputError(path, f"not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict) or len(data["classes"]) < 2:
        raise BadInputError(path, "expected a mapping with `classes:` (class -> descriptions), at least two classes")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise BadInputError(path, f"unknown key(s) {unknown}; a prompt set has {sorted(_KEYS)}")
    templates = _strings(data["templates"], where, "templates") if data.get("templates") is not None else ()
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise BadInputError(path, f"template {bad[0]!r} has no {{}} where the class description goes")
    target = data.get("target")
    if target is not None and not isinstance(target, str):
        raise BadInputError(path, f"target: expected a Sample.targets key, got {target!r}")
    descriptions = {str(k): _strings(v, where, f"classes.{k}") for k, v in data["classes"].items()}
    datasets = _strings(data["datasets"], where, "datasets") if data.get("datasets") is not None else ()
    return PromptSet(str(path), hashlib.sha256(raw).hexdigest(), shipped, datasets, target, templates, descriptions)


def shipped_prompt_sets() -> dict[str, PromptSet]:
    """dataset -> medmm's default prompt set for it (from ``prompts/*.yaml``)."""
    out: dict[str, PromptSet] = {}
    for path in sorted(SHIPPED.glob("*.yaml")):
        ps = load_prompt_set(path, shipped=True)
        out.update(dict.fromkeys(ps.datasets, ps))
    return out


def prompt_set_for(dataset: str | None, path: str | Path | None = None) -> PromptSet:
    """The prompt set of `path`, else medmm's default for `dataset` (an error naming the datasets
    that have one, and how to give a file, when it has none)."""
    if path is not None:
        return load_prompt_set(path)
    shipped = shipped_prompt_sets()
    if dataset not in shipped:
        raise MedmmError(f"no default zero-shot prompt set for dataset {dataset!r} (medmm ships them for "
                         f"{', '.join(sorted(shipped))}); write one (docs/models.md) and pass --prompts FILE.yaml")
    return shipped[dataset]


def resolve_classes(ps: PromptSet, dataset: str | None, target: str, fixed: list[str] | None) -> list[str]:
    """The class order of zero-shot diagnosis: the dataset's label space (`medmm.data.label_maps.
    LABEL_SPACES`) when it has one for `target`, else `fixed` (model.classes), else the prompt set's
    order. The prompt set must name exactly those classes (a missing one could never be predicted)."""
    if ps.target is not None and ps.target != target:
        raise MedmmError(f"prompt set {ps.source} describes target {ps.target!r}, the config predicts {target!r} "
                         f"(set model.target: {ps.target})")
    space = lm.LABEL_SPACES.get((dataset, target)) if dataset else None
    order = list(space or fixed or ps.descriptions)
    missing, extra = [c for c in order if c not in ps.descriptions], [c for c in ps.descriptions if c not in order]
    if missing or extra:
        of = f"the label space of {dataset!r} {target!r}" if space else "model.classes"
        raise MedmmError(f"prompt set {ps.source} does not match {of} {order}: "
                         f"{'no prompts for ' + str(missing) if missing else ''}{'; ' if missing and extra else ''}"
                         f"{'classes not in it: ' + str(extra) if extra else ''}")
    return order
