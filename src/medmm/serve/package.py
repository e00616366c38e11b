"""`make_package`: a trained run as a self-contained model package, and its integrity check.

    PACKAGE/
      model.safetensors      the run's best weights (safetensors: no pickle, loads anywhere)
      config.yaml            the run's resolved config
      task_state.json        task.state() (label order, thresholds, input spec, vocabularies, ...),
                             with "weights" naming model.safetensors and its sha256
      package.json           format, task, the Sample fields the task reads, labels, thresholds,
                             preprocessing spec, training data and its licence, evaluation protocol
      metrics/<split>.json   the run's evaluation files (metrics + provenance), when it has them
      MODEL_CARD.md          intended use, data, licence, evaluation, limits (for people)
      MANIFEST.json          sha256 of every other file; `verify_package` checks it before loading

Built on the engine's `load_run` (strict, sha256-checked loading of the run), so a package is
only ever made from weights that load exactly into the task the config builds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from medmm.engine import rundir as rd
from medmm.errors import BadInputError, MedmmError

FORMAT = "medmm-package/1"
WEIGHTS = "model.safetensors"
EXTRA = "weights_extra.json"  # non-tensor state_dict entries (e.g. a tokenizer) and tied-tensor aliases
MANIFEST = "MANIFEST.json"
INFO = "package.json"
CARD = "MODEL_CARD.md"


def make_package(run_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the package of trained run `run_dir` into the new folder `out`; return `out`."""
    from medmm.engine.api import load_run
    from medmm.errors import require

    require("safetensors", "train", "model packages")
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MedmmError(f"{out}: exists and is not empty (use a new folder, or --overwrite)")
        shutil.rmtree(out)
    cfg, task = load_run(run_dir)  # strict + sha256-checked: a package never holds unchecked weights
    state = rd.read_json(run_dir / rd.TASK_STATE)
    out.mkdir(parents=True, exist_ok=True)

    save_weights(task.state_dict(), out)
    shutil.copy2(run_dir / rd.CONFIG, out / rd.CONFIG)
    state = {**state, "weights": WEIGHTS, "sha256": rd.sha256_file(out / WEIGHTS)}
    rd.write_json(out / rd.TASK_STATE, state)

    evaluations: dict[str, Any] = {}
    for split in ("val", "test"):
        path = run_dir / "metrics" / f"{split}.json"
        if path.exists():
            (out / "metrics").mkdir(exist_ok=True)
            shutil.copy2(path, out / "metrics" / path.name)
            evaluations[split] = rd.read_json(path)
    env = run_dir / rd.ENVIRONMENT
    if env.exists():
        shutil.copy2(env, out / rd.ENVIRONMENT)

    info = {
        "format": FORMAT,
        "task": cfg.task,
        "inputs": task.serving_inputs(),
        "outputs": task.output_spec(),
        "training_dataset": cfg.data.dataset,
        "training_data_licences": state.get("training_data_licences") or [],
        "dataset_description": _dataset_description(cfg.data.dataset),
        "evaluations": {k: v.get("provenance", {}) for k, v in evaluations.items()},
        "source_run": str(run_dir.resolve()),
    }
    rd.write_json(out / INFO, info)
    (out / CARD).write_text(model_card(info, evaluations), encoding="utf-8")
    write_manifest(out)
    return out


def save_weights(state_dict: dict[str, Any], out: Path) -> None:
    """Tensors -> model.safetensors; JSON entries (module extra state) and aliases of tied
    tensors (safetensors stores each storage once) -> weights_extra.json."""
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            try:
                json.dumps(v)
            except TypeError as exc:
                raise MedmmError(f"state_dict entry {k!r} is neither a tensor nor JSON ({exc}); cannot package it") from None
            extra[k] = v
            continue
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()))
        if v.numel() and key in seen:
            aliases[k] = seen[key]
            continue
        seen[key] = k
        tensors[k] = v.detach().contiguous()
    save_file(tensors, str(out / WEIGHTS), metadata={"format": FORMAT})
    rd.write_json(out / EXTRA, {"extra_state": extra, "aliases": aliases})


def load_weights(root: Path) -> dict[str, Any]:
    """The state_dict saved by `save_weights` (tensors, tied aliases and extra state)."""
    from safetensors.torch import load_file

    sd: dict[str, Any] = load_file(str(root / WEIGHTS))
    extra = rd.read_json(root / EXTRA)
    for alias, name in extra["aliases"].items():
        sd[alias] = sd[name]
    sd.update(extra["extra_state"])
    return sd


def _dataset_description(name: str) -> str | None:
    from medmm.data.registry import dataset_info
    from medmm.registry import UnknownNameError

    try:
        return dataset_info(name).description
    except UnknownNameError:  # a dataset of a plug-in not installed here
        return None


def model_card(info: dict[str, Any], evaluations: dict[str, Any]) -> str:
    """The package's MODEL_CARD.md: what the model does, on what data, how it was evaluated."""
    outs = info["outputs"]
    lic = ", ".join(info["training_data_licences"]) or "not recorded by the dataset loader; check the dataset's own terms"
    lines = [
        f"# medmm model: {info['task']} trained on {info['training_dataset']}",
        "",
        "## Intended use",
        (f"Research use: a `{info['task']}` model for the image and text inputs listed below, on data like its "
        "training data. It is not a medical device, has not been validated for clinical decisions, and must not be "
        "used for diagnosis or treatment of patients."),
        "",
        "## Inputs",
        *(f"- `{k}`: {v}" for k, v in info["inputs"].items()),
        "",
        "## Outputs",
        f"- labels (in output order): {', '.join(map(str, outs.get('labels') or [])) or 'none (free text or maps)'}",
        f"- decision thresholds: {json.dumps(outs.get('thresholds'))}",
        "",
        "## Training data",
        f"- dataset: `{info['training_dataset']}` ({info.get('dataset_description') or 'no description'})",
        f"- licence of the training data: {lic}",
        "",
        "## Evaluation",
    ]
    if not evaluations:
        lines.append("The run has no evaluation files; no performance is claimed.")
    for split, ev in evaluations.items():
        prov = ev.get("provenance", {})
        lines.append(f"### split `{split}` (n = {prov.get('n_samples')}, skipped = {prov.get('n_skipped')}, seed = {prov.get('seed')})")
        if split == "val":
            lines.append("This split chose the checkpoint (and any thresholds): its numbers are optimistic, not a result.")
        lines += ["```json", json.dumps(_scalars(ev.get("metrics", {})), indent=1)[:4000], "```"]
    lines += ["", "## Files", "MANIFEST.json holds the sha256 of every file; `medmm.load_model` checks them before loading.", ""]
    return "\n".join(lines)


def _scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v
    return out


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(root: str | Path) -> None:
    """Write MANIFEST.json: the sha256 of every file of the package."""
    root = Path(root)
    rd.write_json(root / MANIFEST, {"format": FORMAT, "sha256": {p.relative_to(root).as_posix(): rd.sha256_file(p) for p in _files(root)}})


def verify_package(root: str | Path) -> dict[str, Any]:
    """Check every file against MANIFEST.json (missing, changed or extra files are errors); return package.json."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise BadInputError(root, "not a medmm model package (no MANIFEST.json); make one with `medmm package RUN --out DIR`")
    manifest = rd.read_json(root / MANIFEST)
    if manifest.get("format") != FORMAT:
        raise BadInputError(root / MANIFEST, f"unknown package format {manifest.get('format')!r}; expected {FORMAT!r}")
    listed = manifest.get("sha256", {})
    present = {p.relative_to(root).as_posix() for p in _files(root)}
    for name in sorted(set(listed) - present):
        raise BadInputError(root / name, "listed in MANIFEST.json but missing")
    for name in sorted(present - set(listed)):
        raise BadInputError(root / name, "not listed in MANIFEST.json (file added after packaging)")
    for name, sha in listed.items():
        if rd.sha256_file(root / name) != sha:
            raise BadInputError(root / name, "sha256 does not match MANIFEST.json (file changed or corrupt)")
    return rd.read_json(root / INFO)
