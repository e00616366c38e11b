"""A toy dataset + Task for the engine tests (not a test module itself).

The dataset `toy_engine` reads ROOT/<split>.npz (arrays x: (N, 8, 8) float32, y: (N,) int,
optional bad: ids whose image is a missing file). Two classes: bright vs dark images, so a
tiny CNN learns them in a few steps. The task `toy_engine` is a 1-conv CNN.

Run as a script it trains a config (used by the SIGKILL-resume and DDP tests, which need a
separate process):  python tests/engine_toy.py CONFIG RUN_DIR [overrides...]
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medmm.data.registry import _REGISTRY as _DATASETS
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.engine.task import _TASKS, Task, register_task
from medmm.errors import BadInputError

NAME = "toy_engine"


def make_toy_root(root: Path, sizes: dict[str, int], seed: int = 0, bad: dict[str, int] | None = None) -> Path:
    """Write ROOT/<split>.npz files of separable two-class 8x8 images."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in sizes.items():
        y = np.arange(n) % 2
        x = rng.normal(0.0, 1.0, size=(n, 8, 8)).astype(np.float32) + np.where(y == 1, 0.3, -0.3)[:, None, None]
        n_bad = (bad or {}).get(split, 0)
        np.savez(root / f"{split}.npz", x=x.astype(np.float32), y=y, bad=np.array([f"{split}-{i}" for i in range(n_bad)]))
    return root


def _load(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    path = Path(root) / f"{split}.npz"
    if not path.exists():
        return []  # a root may hold only some splits
    data = np.load(path)
    bad = set(data["bad"].tolist())
    out = []
    for i, (x, y) in enumerate(zip(data["x"], data["y"], strict=True)):
        sid = f"{split}-{i}"
        image = ImageRef(path=str(Path(root) / "missing" / f"{sid}.png")) if sid in bad else ImageRef(array=x)
        out.append(Sample(id=sid, dataset=NAME, split=split, images=[image], targets={"label": "bright" if y else "dark"}, patient_id=f"p{i // 2}"))
    return out


if NAME not in _DATASETS:
    register_dataset(NAME, splits=("train", "val", "test"), description="toy engine test data")(_load)


class ToyTask(Task):
    """Tiny CNN classifying bright vs dark 8x8 images."""

    @dataclass
    class Config:
        hidden: int = 8
        dropout: float = 0.0
        step_sleep: float = 0.0  # seconds per training step (lets a test kill a run mid-epoch)

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        self.labels: list[str] = []
        self.net: nn.Module | None = None

    def _build(self) -> None:
        h = self.config.hidden
        self.net = nn.Sequential(
            nn.Conv2d(1, h, 3, padding=1),
            nn.ReLU(),
            nn.Dropout(self.config.dropout),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(h, len(self.labels)),
        )

    def setup(self, train_samples: list[Sample]) -> None:
        self.labels = sorted({s.targets["label"] for s in train_samples})
        self._build()

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "input_size": [8, 8]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = list(state["labels"])
        self._build()

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        xs = []
        for s in samples:
            im = s.images[0]
            if im.array is None:
                raise BadInputError(im.path, "image file not found")
            xs.append(torch.as_tensor(im.array, dtype=torch.float32))
        return {
            "x": torch.stack(xs)[:, None],
            "y": torch.tensor([self.labels.index(s.targets["label"]) for s in samples]),
            "ids": [s.id for s in samples],
        }

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.training:
            self._calls = getattr(self, "_calls", 0) + 1
            # Simulated crash for the in-process resume test (the config must stay identical).
            if self._calls == int(os.environ.get("MEDMM_TOY_CRASH_AT_CALL", "0")):
                raise RuntimeError("simulated crash")
            if self.config.step_sleep:
                time.sleep(self.config.step_sleep)
        logits = self.net(batch["x"])
        return {"loss": F.cross_entropy(logits.float(), batch["y"])}

    def evaluation_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        probs = self.net(batch["x"]).float().softmax(-1)
        out = []
        for sid, p, y in zip(batch["ids"], probs, batch["y"], strict=True):
            out.append({"id": sid, "prediction": self.labels[int(p.argmax())], "reference": self.labels[int(y)], "prob": p.tolist()})
        return out

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        idx = {lab: i for i, lab in enumerate(self.labels)}
        cm = [[0] * len(self.labels) for _ in self.labels]
        for r in records:
            cm[idx[r["reference"]]][idx[r["prediction"]]] += 1
        n = len(records)
        correct = sum(cm[i][i] for i in range(len(cm)))
        # log-loss of the reference class: a continuous number, so tiny weight changes show.
        nll = -float(np.mean([np.log(max(r["prob"][idx[r["reference"]]], 1e-12)) for r in records]))
        per_class = {lab: {"recall": cm[i][i] / max(1, sum(cm[i]))} for lab, i in idx.items()}
        return {"accuracy": correct / n, "nll": nll, "n": n, "labels": self.labels, "confusion_matrix": cm, "per_class": per_class}


if NAME not in _TASKS:
    register_task(NAME)(ToyTask)

TOY_CONFIG = """\
# python tests/engine_toy.py THIS RUN_DIR   (a few seconds on 2 CPU cores; test accuracy 1.0)
task: toy_engine
seed: 0
data:
  dataset: toy_engine
  root: {root}
model:
  hidden: 8
trainer:
  max_epochs: 3
  batch_size: 8
  lr: 0.02
  warmup_steps: 2
  monitor: val/nll
  monitor_mode: min
  progress_bar: false
  log_every_n_steps: 1
  num_threads: 1
"""


if __name__ == "__main__":
    from medmm.engine import load_config, train

    cfg = load_config(sys.argv[1], sys.argv[3:])
    metrics = train(cfg, sys.argv[2])
    if metrics:
        print("FINAL", metrics["test"]["nll"])
