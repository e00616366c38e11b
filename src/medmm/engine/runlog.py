"""logs/metrics.csv that survives kills and resumes.

Lightning's CSVLogger deletes an existing metrics.csv when a run starts again, holds rows in
memory until a flush, and rewrites the file in place when a new column appears (a kill then
loses rows). `RunCSVLogger` appends each row as soon as it is logged (rewriting the whole file
atomically only when the columns change). A resumed run keeps the rows logged before its
checkpoint, i.e. those whose step is below the checkpoint's step (the last step's row and the
epoch-end row are logged just after a checkpoint is written, and a resume does not log them
again), and then logs the rest again: the log of a killed-and-resumed run holds each row once,
as an uninterrupted run's does.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from medmm.fileio import atomic_open

METRICS_FILE = "metrics.csv"


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The complete rows of a metrics.csv (a last line cut by a kill is left out)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return [{k: v for k, v in r.items() if k and v not in ("", None)} for r in csv.DictReader(io.StringIO(text))]


def rows_before(rows: list[dict[str, str]], step: int) -> list[dict[str, str]]:
    """The rows logged before a checkpoint written at `step` (rows of later steps are logged again)."""
    out = []
    for r in rows:
        try:
            if int(float(r["step"])) < step:
                out.append(r)
        except (KeyError, ValueError):
            continue
    return out


class _AppendingWriter(ExperimentWriter):
    """An ExperimentWriter that starts from `kept` rows and writes each row as it is logged."""

    def __init__(self, log_dir: str, kept: list[dict[str, Any]]):
        self._kept = kept
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__; replaces "delete the old file"
        self.metrics_keys = sorted(set().union(*self._kept)) if self._kept else []
        self._rewrite(self._kept)

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics_dict, step)
        self.save()

    def save(self) -> None:
        if not self.metrics:
            return
        if self._record_new_keys():
            self._rewrite(read_rows(self.metrics_file_path) + self.metrics)
        else:
            with open(self.metrics_file_path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self.metrics_keys).writerows(self.metrics)
        self.metrics = []

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        path = Path(self.metrics_file_path)
        if not rows:
            path.unlink(missing_ok=True)
            return
        with atomic_open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class RunCSVLogger(CSVLogger):
    """CSV logger writing RUN_DIR/logs/metrics.csv.

    `resume_step`: None for a new run (an old metrics.csv is replaced); for a resumed run, the
    step of its checkpoint: earlier rows are kept. -1 keeps every row (an old checkpoint that
    does not record its step).
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        super().__init__(save_dir=str(run_dir), name="logs", version="")
        self._resume_step = resume_step

    @property
    @rank_zero_experiment  # other DDP ranks get a no-op writer, as with CSVLogger
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            kept: list[dict[str, Any]] = []
            if self._resume_step is not None:
                rows = read_rows(Path(self.log_dir) / METRICS_FILE)
                kept = rows if self._resume_step < 0 else rows_before(rows, self._resume_step)
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, kept)
        return self._experiment
