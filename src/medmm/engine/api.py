"""The engine's public functions, in one place to import them from.

    from medmm.engine.api import train, evaluate, predict, load_run, build_task, run_inference

Each lives in a module of one purpose:
    training.py     train (Lightning, checkpoints, resume, the run directory's metrics)
    evaluation.py   evaluate, predict (a trained run on any split; the evaluation protocol)
    eval_split.py   which samples evaluate/predict score, and how many the run trained on
    loading.py      build_task (config -> task), load_run (run directory -> trained task), import_plugins
    inference.py    run_inference (records of a task over samples, in this process)
    provenance.py   the provenance and task_state records written beside the numbers
    preflight.py    checks that fail a run before training (writable run dir, trainer.monitor)
"""

from __future__ import annotations

from medmm.engine.config import load_config
from medmm.engine.evaluation import evaluate, predict
from medmm.engine.inference import inference_device, run_inference
from medmm.engine.loading import build_task, import_plugins, load_run
from medmm.engine.provenance import pretrained_sources
from medmm.engine.training import train

__all__ = ["train", "evaluate", "predict", "load_run", "build_task", "run_inference", "load_config", "import_plugins",
           "inference_device", "pretrained_sources"]
