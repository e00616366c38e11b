"""Kept for old command lines: the VQA image-encoder pretraining is now the engine task
`pretrain_image` (`medmm.tasks.pretrain`; docs/pretraining.md), run by `medmm pretrain-image`
with configs/pretrain/image_encoder.yaml. This runs that command from the repository root:

    python benchmarks/vqa_pretrain_image.py --out runs/vqa_image_encoder [KEY=VALUE overrides]

--out is now the run directory; the encoder goes to RUN/export/image_encoder.pt (or --encoder FILE).
The options of the old command (--source, --epochs, ...) are config keys now (data.source_splits,
trainer.max_epochs, ...). This file used to be the training script itself (last version: commit 60beea7).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    """Run `medmm pretrain-image configs/pretrain/image_encoder.yaml` with these arguments."""
    from medmm.cli import main as medmm_main

    os.chdir(REPO)  # the config's data.root (../shared/data) is relative to the repository root
    sys.argv = ["medmm", "pretrain-image", "configs/pretrain/image_encoder.yaml", *sys.argv[1:]]
    medmm_main()


if __name__ == "__main__":
    main()
