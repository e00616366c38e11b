"""logs/metrics.csv that survives kills and resumes.

Lightning's CSVLogger deletes an existing metrics.csv when a run starts again, and rewrites the
file in place when a new column appears (a kill then loses rows). `RunCSVLogger` keeps every
row in memory and rewrites the whole file atomically at each flush. Each checkpoint records how
many rows were flushed when it was written (`TaskModule.on_save_checkpoint`); a resumed run
keeps exactly those rows and logs the rest again, so the log of a killed-and-resumed run holds
each step once, as an uninterrupted run's does.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from medmm.engine import rundir as rd

METRICS_FILE = "metrics.csv"


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv (an unreadable or absent file has none)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    return list(csv.DictReader(io.StringIO(text)))


class _AtomicWriter(ExperimentWriter):
    """An ExperimentWriter that keeps the first `keep_rows` rows of an earlier metrics.csv
    (0: starts a new file) and rewrites the file atomically at every save."""

    def __init__(self, log_dir: str, keep_rows: int):
        self._keep_rows = keep_rows
        self.rows: list[dict[str, Any]] = []
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__; replaces "delete the old file"
        kept = read_rows(self.metrics_file_path)[: self._keep_rows] if self._keep_rows else []
        self.rows = [{k: v for k, v in r.items() if v not in ("", None)} for r in kept]
        self.metrics_keys = sorted(set().union(*self.rows)) if self.rows else []
        if self.rows:
            self._write()
        else:
            Path(self.metrics_file_path).unlink(missing_ok=True)

    def save(self) -> None:
        if not self.metrics:
            return
        self._record_new_keys()
        self.rows.extend(self.metrics)
        self.metrics = []
        self._write()

    def _write(self) -> None:
        path = Path(self.metrics_file_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = rd.temp_path(path)
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, path)


class RunCSVLogger(CSVLogger):
    """CSV logger writing RUN_DIR/logs/metrics.csv; `keep_rows`: rows of an earlier run kept on resume."""

    def __init__(self, run_dir: str | Path, keep_rows: int = 0):
        super().__init__(save_dir=str(run_dir), name="logs", version="")
        self._keep_rows = keep_rows

    @property
    @rank_zero_experiment  # other DDP ranks get a no-op writer, as with CSVLogger
    def experiment(self) -> _AtomicWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AtomicWriter(self.log_dir, self._keep_rows)
        return self._experiment

    def flushed_rows(self) -> int:
        """Write every row logged so far; return how many rows the file holds (0 on other DDP ranks)."""
        if rank_zero_only.rank != 0:
            return 0
        writer = self.experiment
        writer.save()
        return len(writer.rows)
