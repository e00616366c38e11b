"""`explain_run`: explanations for chosen samples of a trained run directory.

This is where the engine (loading a run), the data (finding the samples) and interpret
(explaining them through the task's `Task.explainable` hook) meet, so that interpret itself
imports no engine (shared/DESIGN.md: interpret -> models). `medmm explain` and the demo call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medmm.errors import BadInputError, MedmmError
from medmm.interpret.explain import ALL_METHODS, explain_samples


def explain_run(run_dir: str | Path, data_root: str | Path, ids: list[str], out_dir: str | Path, dataset: str | None = None,
                split: str | None = None, methods: tuple[str, ...] = ALL_METHODS, threads: int | None = 1,
                model_overrides: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    """Explain samples `ids` of a trained run (any task with an explainer); writes out_dir/index.html.

    The samples are read from `data_root` (dataset = the run's unless given) in `split`, or in
    every split of the dataset when split is None. Keyword arguments go to `explain_samples`
    (ig_steps, faithfulness_steps, n_random, occlusion_window, scale). `threads`: torch
    intra-op threads during the call (restored after; None = leave as is): the models are
    small, and on a shared CPU extra spinning threads make them many times slower.
    `model_overrides` ("model.KEY=VALUE", e.g. model.chain_of_thought=true for a VLM run) change
    the run's `model:` section before it is loaded (`medmm.engine.load_run`). Returns the
    summary dict written to explanations.json, plus "index" (the page's path).
    """
    from medmm import plugins
    from medmm.data import load_dataset
    from medmm.data.registry import dataset_info
    from medmm.engine import load_run

    if not ids:
        raise MedmmError("no sample ids given")
    plugins.load_if_stale()
    cfg, task = load_run(run_dir, model_overrides)
    name = dataset or cfg.data.dataset
    splits = [split] if split else list(dataset_info(name).splits)
    found: dict[str, Any] = {}
    for sp in splits:
        for s in load_dataset(name, data_root, sp, skip_bad=True).samples:
            if str(s.id) in ids and str(s.id) not in found:
                found[str(s.id)] = s
    missing = [i for i in ids if i not in found]
    if missing:
        raise BadInputError(data_root, f"sample id(s) not found in {name} ({', '.join(splits)}): {', '.join(missing[:5])}")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        summary = explain_samples(task, [found[i] for i in ids], out_dir, methods, **kw)
    finally:
        torch.set_num_threads(before)
    summary["run_dir"] = str(run_dir)
    summary["dataset"] = name
    return summary
