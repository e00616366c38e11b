"""Kept for old command lines: the VQA image-encoder pretraining is now `medmm pretrain-image`
(library: `medmm.tasks.pretrain.image_pretrain`; docs/pretraining.md). This runs that command:

    python benchmarks/vqa_pretrain_image.py --out runs/vqa_image_encoder/small_cnn96.pt [medmm pretrain-image options]

This file used to be the training script itself (last version: commit 60beea7). Differences of the library
version: held-out images are whole MedPix cases / COVID patients (was: 10% of images), label spaces
come from the training images only, the loss of a batch without any label is skipped, `--widths`
is comma-separated and `--shared` is now `--data-root`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Re-exported for tests/test_vqa_benchmarks.py, which tests these pieces through this file.
from medmm.tasks.pretrain.image_pretrain import Pretrainer, batches, label_space  # noqa: F401

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def main() -> None:
    """Run `medmm pretrain-image` with these arguments (data root: ../shared/data beside the repo)."""
    from medmm.cli import main as medmm_main

    args = sys.argv[1:]
    if "--data-root" not in args:
        args = ["--data-root", str(SHARED), *args]
    sys.argv = ["medmm", "pretrain-image", *args]
    medmm_main()


if __name__ == "__main__":
    main()
