"""Two messages of Lightning/torch that say nothing about a medmm run, dropped where they arise.

* Lightning's "Tip: ... try installing litlogger" advert, logged at INFO by every Trainer
  (six times in `medmm demo`). Only that record is dropped, by a filter on the exact logger
  that emits it; "GPU available", checkpoint and stop messages stay.
* torch 2.10+'s FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated", raised from
  Lightning's own pytree helper on every fit (Lightning's code, nothing a user can change).
  Only that message, attributed to that module, is ignored.
"""

from __future__ import annotations

import logging
import warnings

RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_lightning() -> None:
    """Install both filters (idempotent; cheap enough to call before every Trainer)."""
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    if not any(isinstance(f, _DropLitLoggerTip) for f in logger.filters):
        logger.addFilter(_DropLitLoggerTip())
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
