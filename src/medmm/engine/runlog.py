"""logs/metrics.csv that survives kills and resumes.

Lightning's CSVLogger deletes an existing metrics.csv when a run starts again, holds rows in
memory until a flush, and rewrites the file in place when a new column appears (a kill then
loses rows). `RunCSVLogger` appends each row as soon as it is logged (rewriting the whole file
atomically only when the columns change) and counts the rows the file holds. Each checkpoint
records that count (LOG_ROWS_KEY), written only once the rows of the work it covers are logged
(medmm.engine.checkpoints says why and how). A resumed run keeps exactly that many rows and logs
the rest again: the log of a killed-and-resumed run holds each row once, as an uninterrupted
run's does.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from medmm.fileio import atomic_open

METRICS_FILE = "metrics.csv"
LOG_ROWS_KEY = "medmm_log_rows"  # checkpoint key: rows of metrics.csv that the checkpoint's work logged

log = logging.getLogger("medmm.engine")


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The complete rows of a metrics.csv (a last line cut by a kill is left out)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    return read_rows_text(text)


def read_rows_text(text: str) -> list[dict[str, str]]:
    """`read_rows` of a metrics.csv's text: non-empty cells of each complete row."""
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return [{k: v for k, v in r.items() if k and v not in ("", None)} for r in csv.DictReader(io.StringIO(text))]


def rows_before(rows: list[dict[str, str]], step: int) -> list[dict[str, str]]:
    """The rows whose step is below `step`: what a resume keeps from a checkpoint written before
    checkpoints recorded their row count (it can miss a row logged just after that checkpoint)."""
    out = []
    for r in rows:
        try:
            if int(float(r["step"])) < step:
                out.append(r)
        except (KeyError, ValueError):
            continue
    return out


class _AppendingWriter(ExperimentWriter):
    """An ExperimentWriter that starts from `kept` rows and writes each row as it is logged.

    `rows`: how many rows the file holds (complete, on disk)."""

    def __init__(self, log_dir: str, kept: list[dict[str, Any]]):
        self._kept = kept
        self.rows = len(kept)
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
        self.rows += len(self.metrics)
        self.metrics = []

    def sync(self) -> int:
        """fsync the file (a checkpoint that counts its rows must not outlive them in a power cut); `rows`."""
        with contextlib.suppress(FileNotFoundError), open(self.metrics_file_path, "rb") as f:
            os.fsync(f.fileno())
        return self.rows

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

    For a new run (`keep_rows` and `before_step` None) an old metrics.csv is replaced. A resumed
    run keeps the first `keep_rows` rows (its checkpoint's LOG_ROWS_KEY); for a checkpoint older
    than that key, `keep_rows` is None and the rows of steps below `before_step` (its global step)
    are kept (-1: every row).
    """

    def __init__(self, run_dir: str | Path, keep_rows: int | None = None, before_step: int | None = None):
        super().__init__(save_dir=str(run_dir), name="logs", version="")
        self._keep_rows = keep_rows
        self._before_step = before_step

    def rows_on_disk(self) -> int | None:
        """How many rows metrics.csv holds, synced to disk; None on DDP ranks other than 0 (no file)."""
        writer = self.experiment
        return writer.sync() if isinstance(writer, _AppendingWriter) else None

    def _kept_rows(self) -> list[dict[str, Any]]:
        path = Path(self.log_dir) / METRICS_FILE
        if self._keep_rows is not None:
            rows = read_rows(path)
            if len(rows) < self._keep_rows:
                log.warning("%s holds %d complete rows, the checkpoint expects %d: the rows missing from it stay "
                            "missing", path, len(rows), self._keep_rows)
            return rows[: self._keep_rows]
        if self._before_step is not None:
            rows = read_rows(path)
            return rows if self._before_step < 0 else rows_before(rows, self._before_step)
        return []

    @property
    @rank_zero_experiment  # other DDP ranks get a no-op writer, as with CSVLogger
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            kept = self._kept_rows()
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, kept)
        return self._experiment


def run_loggers(run_dir: str | Path, keep_rows: int | None = None, before_step: int | None = None) -> list:
    """RunCSVLogger first and always (see it for the arguments); TensorBoard and MLflow when installed."""
    import importlib.util

    from medmm.engine.quiet import quiet_lightning

    quiet_lightning()  # no litlogger advert next to the loggers we chose, no LeafSpec FutureWarning
    loggers: list = [RunCSVLogger(run_dir, keep_rows, before_step)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(_tensorboard_logger(run_dir, before_step))
    if importlib.util.find_spec("mlflow"):
        from lightning.pytorch.loggers import MLFlowLogger

        loggers.append(MLFlowLogger(experiment_name="medmm", tracking_uri=Path(run_dir, "mlruns").as_uri()))
    return loggers


def _tensorboard_logger(run_dir: str | Path, before_step: int | None) -> Any:
    """TensorBoard's logger under RUN_DIR/logs/tensorboard. On resume from a checkpoint at step N,
    the steps logged after the checkpoint and before the stop are logged again, so the writer hides
    the earlier events from step N on (`purge_step`). The rows of the checkpoint's own work all sit
    below N (an epoch's validation and means are logged at its last batch's step, before its
    end-of-epoch checkpoint at N), so nothing it covers is hidden (tests/test_engine_resume.py)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    purge = {"purge_step": before_step} if before_step is not None and before_step > 0 else {}
    return TensorBoardLogger(save_dir=str(run_dir), name="logs", version="tensorboard", **purge)
