"""Score a task built from a config WITHOUT training it: a pretrained model zero-shot.

`medmm evaluate --model NAME_OR_FOLDER --task vqa_vlm ...` builds the config (the task named by the
CLI, `model.pretrained` set, no adapters) and calls `evaluate_untrained`, which runs the same
inference, metrics, protocol, floors and provenance as `evaluate` does for a trained run; the
protocol says "zero-shot".

Which samples: with a grouped data section (a fine-tuning config, `--config`) and `split` one of
its parts (train/val/test), that part exactly as `medmm train` builds it, so a zero-shot number
and a fine-tuned one come from the same questions; otherwise `split` of the root as published.
The floors are fit on the matching training samples (the grouped training part, or the published
training split), and skipped with the reason when there are none or they are the scored split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmm.data.schema import Sample
from medmm.engine import rundir as rd
from medmm.engine.config import RunConfig
from medmm.errors import BadInputError, MedmmError


@dataclass
class _Scored:
    """The samples scored, where they came from, and the training samples the floors are fit on."""

    dataset: str
    samples: list[Sample]
    skipped: list[BadInputError]
    source: str
    floor_samples: list[Sample] | None = None
    floor_source: str | None = None
    no_floors: str | None = None  # why there are no training samples for the floors


def evaluate_untrained(cfg: RunConfig, split: str, out: str | Path | None = None) -> dict[str, Any]:
    """Metrics of cfg's task, untrained, on `split` (a part of cfg's grouped split, or the split of
    cfg.data.root as published). Returns {"metrics", "protocol", "floors", "provenance"}; also
    written to `out` if given."""
    from medmm.engine.inference import restoring_torch_state, run_inference, set_threads
    from medmm.engine.loading import build_task
    from medmm.engine.protocol import floors_record, protocol_record
    from medmm.engine.provenance import pretrained_sources, provenance_record, skip_list

    @restoring_torch_state
    def run() -> dict[str, Any]:
        zcfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, max_steps=0))  # protocol: zero-shot
        set_threads(zcfg)
        task = build_task(zcfg)
        scored = _scored_samples(zcfg, split)
        records, skipped = run_inference(task, scored.samples, zcfg)
        if not records:  # an empty metrics file would read as a result; say why nothing was scored
            reasons = [*scored.skipped, *skipped]
            why = f"; first reason: {reasons[0]}" if reasons else ""
            raise MedmmError(f"zero-shot {zcfg.task}: no sample of {scored.dataset}:{split} could be scored "
                             f"({len(scored.samples)} samples, {len(reasons)} skipped){why}")
        metrics = task.compute_metrics(records)
        protocol = protocol_record(
            task, zcfg, reported_split=f"{scored.dataset}:{split}", selection_split=None, checkpoint_chosen=False,
            reported_is_selection=False,
            extra={"selected_on_selection_split": ["nothing: zero-shot, the pretrained weights as published"],
                   "floors_fit_on": scored.floor_source})
        result = {
            "metrics": metrics,
            "protocol": protocol,
            "floors": floors_record(task, scored.floor_samples, scored.samples, records, scored.no_floors),
            "provenance": provenance_record(zcfg, scored.dataset, str(Path(zcfg.data.root).resolve()), split, len(records),
                                      skip_list(scored.skipped, skipped), None),
        }
        result["provenance"].update(split_source=scored.source, pretrained=pretrained_sources(task), config=zcfg.to_dict())
        if out is not None:
            rd.write_json(out, result)
        return result

    return run()


def _scored_samples(cfg: RunConfig, split: str) -> _Scored:
    from medmm.engine.data import load_splits
    from medmm.engine.eval_split import dataset_split_names, samples_for

    name, train = cfg.data.dataset, cfg.data.train_split
    if cfg.data.split == "grouped" and split in cfg.data.fractions:
        parts = {sd.name: sd for sd in load_splits(cfg.data, cfg.seed).values()}
        if split not in parts:
            raise MedmmError(f"split {split!r} is not a part of the config's grouped split ({', '.join(parts)})")
        seed = cfg.seed if cfg.data.split_seed is None else cfg.data.split_seed
        how = f"grouped by {cfg.data.group_by}, seed {seed}"
        out = _Scored(name, parts[split].samples, list(parts[split].skipped), f"the config's grouped {split!r} part ({how})")
        if split == train:
            out.no_floors = "the scored part is the training part the floors would be fit on"
        else:
            out.floor_samples, out.floor_source = parts[train].samples, f"the config's grouped {train!r} part ({how})"
    else:
        samples, skipped, name = samples_for(cfg, cfg.data.root, name, split)
        out = _Scored(name, samples, skipped, f"dataset {name!r} split {split!r} as published")
        if not train or train not in dataset_split_names(name):
            out.no_floors = f"dataset {name!r} has no split {train!r} to fit the floors on"
        elif train == split:
            out.no_floors = f"the scored split {split!r} is the training split the floors would be fit on"
        else:
            fit, _, _ = samples_for(cfg, cfg.data.root, name, train)
            if fit:
                out.floor_samples, out.floor_source = fit, f"dataset {name!r} split {train!r} as published"
            else:
                out.no_floors = f"split {train!r} of {cfg.data.root} holds no samples"
    if not out.samples:
        raise MedmmError(f"{cfg.data.root}: no samples in split {split!r} of dataset {name!r}")
    return out
