"""The engine toy task over packed shards (not a test module itself).

`shards_toy` is engine_toy's tiny CNN reading images with ``np.asarray`` (packed images are lazy
`ShardImage`s) and appending the ids of every training batch to ``$MEDMM_SEEN_DIR/rank<r>.txt``,
so a test can check which samples each DDP rank trained on.

Run as a script: python tests/shards_toy.py CONFIG RUN_DIR [overrides...]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine_toy import ToyTask
from medmm.data.schema import Sample
from medmm.engine.task import _TASKS, register_task
from medmm.errors import BadInputError

NAME = "shards_toy"

SHARDS_CONFIG = """\
task: shards_toy
seed: 0
data:
  dataset: shards
  root: {root}
  split: official
  group_by: patient
model:
  hidden: 8
trainer:
  max_epochs: 2
  batch_size: 8
  lr: 0.02
  warmup_steps: 2
  monitor: val/nll
  monitor_mode: min
  progress_bar: false
  log_every_n_steps: 1
  num_threads: 1
"""


class ShardsToyTask(ToyTask):
    """ToyTask that reads lazy packed images and records the training ids per rank."""

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        xs = []
        for s in samples:
            im = s.images[0]
            if im.array is None:
                raise BadInputError(im.path, "image file not found")
            xs.append(torch.from_numpy(np.asarray(im.array, dtype=np.float32) / 255.0))
        return {
            "x": torch.stack(xs)[:, None],
            "y": torch.tensor([self.labels.index(s.targets["label"]) for s in samples]),
            "ids": [s.id for s in samples],
        }

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        seen = os.environ.get("MEDMM_SEEN_DIR")
        if seen and self.training:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            with open(Path(seen) / f"rank{rank}.txt", "a") as f:
                f.write("".join(f"{i}\n" for i in batch["ids"]))
        return super().training_step(batch)


if NAME not in _TASKS:
    register_task(NAME)(ShardsToyTask)


if __name__ == "__main__":
    from medmm.engine import load_config, train

    cfg = load_config(sys.argv[1], sys.argv[3:])
    metrics = train(cfg, sys.argv[2])
    if metrics:
        print("FINAL", metrics["test"]["nll"])
