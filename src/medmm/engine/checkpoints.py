"""Checkpoints of a training run: atomic writes, last.ckpt every N steps, best.ckpt that survives
a moved run dir, and checkpoints that appear on disk only after the log rows of their work.

Why the last part. Lightning (2.6) takes checkpoints inside hooks and writes the log rows of the
same work after the hook has returned:

    on_train_batch_end   last.ckpt (mid-epoch)      then the step's row
    on_train_epoch_end   best.ckpt, last.ckpt       then the epoch-mean row

and a resume from such a checkpoint does not run that work again, so it does not log those
rows again. Written at once, a checkpoint followed by a kill before the row lost the row
(issue 24: a 20-epoch run with random kills lost step 20's row). So `AtomicCheckpointIO` holds
the checkpoints taken during training in memory, and `ReleaseCheckpoints` writes them at the
next hook where new work starts (the next batch, epoch, validation or epoch end, or the end of
training). By then Lightning has logged every row of the work they cover and no row of later
work, and each checkpoint records how many rows logs/metrics.csv holds (runlog.LOG_ROWS_KEY):
a resume keeps exactly those rows and logs the rest again. A kill before the write leaves the
previous checkpoint, whose row count is just as exact.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from medmm.engine import rundir as rd
from medmm.engine.runlog import LOG_ROWS_KEY

log = logging.getLogger("medmm.engine")


def _own_containers(obj: Any) -> Any:
    """`obj` with its dicts, lists and tuples copied; tensors and other leaves are shared.

    A held checkpoint shares its tensors with the live model and optimizer: no optimizer step
    runs before it is written (it is written at the next hook). Its containers are copied so
    that state objects a callback updates in place cannot change it meanwhile.
    """
    if isinstance(obj, dict):
        out = copy.copy(obj)  # keeps the dict's type (OrderedDict, AttributeDict, ...)
        for k, v in obj.items():
            out[k] = _own_containers(v)
        return out
    if isinstance(obj, list):
        return [_own_containers(v) for v in obj]
    if type(obj) is tuple:
        return tuple(_own_containers(v) for v in obj)
    return obj


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file in the same folder, fsync, then rename (`rundir.write_torch`).

    Lightning's own writer goes through an fsspec transaction whose temporary file lives in
    the system temp dir; moving it across file systems is a copy, so a kill mid-write could
    leave a truncated last.ckpt. os.replace within one folder is atomic on POSIX. The temporary
    file has one fixed name per checkpoint (`.last.ckpt.tmp`): a kill mid-write leaves at most
    one, overwritten by the next save and deleted when the run starts again.
    A full disk or a read-only folder ends the run with one line naming the folder.

    While `hold` is set, saves are kept in memory until `release` (see the module docstring).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self._held: dict[str, dict[str, Any]] = {}  # path -> checkpoint, in the order taken

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if self.hold:
            self._held.pop(str(path), None)  # a newer save of the same file replaces the held one
            self._held[str(path)] = _own_containers(checkpoint)
            return
        self._write(checkpoint, Path(path))

    def remove_checkpoint(self, path) -> None:
        self._held.pop(str(path), None)
        super().remove_checkpoint(path)

    def held(self) -> list[str]:
        """Paths of the checkpoints taken but not written yet."""
        return list(self._held)

    def release(self, extra: dict[str, Any]) -> None:
        """Write the held checkpoints, each with `extra`'s keys added."""
        held, self._held = self._held, {}
        for path, checkpoint in held.items():
            checkpoint.update(extra)
            self._write(checkpoint, Path(path))

    def drop(self) -> None:
        """Forget the held checkpoints: the files on disk keep the previous ones."""
        self._held = {}

    def _write(self, checkpoint: dict[str, Any], path: Path) -> None:
        rd.write_torch(checkpoint, path)


class ReleaseCheckpoints(Callback):
    """Holds the checkpoints taken while training and writes them at the next hook where new work
    starts, each stamped with the number of rows logs/metrics.csv holds then (`rows()`).

    A plain Callback placed before the others: Lightning runs it before the checkpoint callbacks
    of the same hook (those run last), so a checkpoint taken in a hook waits for the next one.
    """

    def __init__(self, io: AtomicCheckpointIO, rows: Callable[[], int | None]):
        self.io = io
        self.rows = rows

    def _release(self) -> None:
        if not self.io.held():
            return
        n = self.rows()
        self.io.release({} if n is None else {LOG_ROWS_KEY: n})

    def on_train_start(self, trainer, pl_module) -> None:
        self.io.hold = True

    # The hooks where new work starts: the rows of the work before them are logged.
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._release()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._release()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._release()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._release()

    def on_train_end(self, trainer, pl_module) -> None:
        self._release()
        self.io.hold = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # The work since the held checkpoints may not have logged its rows; the checkpoints on
        # disk are consistent with the log, and a resume redoes the rest.
        if self.io.held():
            log.info("not written after the error: %s (a resume starts from the previous ones)", ", ".join(
                Path(p).name for p in self.io.held()))
        self.io.drop()
        self.io.hold = False


class RunModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (best.ckpt) that keeps its state when the run dir was moved or copied.

    Lightning drops the best score when the checkpoint's folder differs from the current one,
    so the next epoch would count as "best" whatever its score; and the old paths it keeps
    would make it delete best.ckpt in the ORIGINAL folder. Paths are moved to this folder.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:
            def here(p):
                return str(Path(self.dirpath) / Path(p).name) if p else p

            state_dict = {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": here(state_dict.get("best_model_path")),
                "kth_best_model_path": here(state_dict.get("kth_best_model_path")),
                "last_model_path": here(state_dict.get("last_model_path")),
                "best_k_models": {here(k): v for k, v in state_dict.get("best_k_models", {}).items()},
            }
        super().load_state_dict(state_dict)


class LastCheckpoint(Checkpoint):
    """Keep checkpoints/last.ckpt current: every N optimizer steps and at each epoch end.

    A `Checkpoint` subclass on purpose: Lightning calls checkpoint callbacks last, in the order
    given, so passing this one after ModelCheckpoint/EarlyStopping writes last.ckpt only once
    they have recorded this epoch's score. (As a plain Callback it ran first, and a resume
    restored a best score one epoch old, then overwrote best.ckpt with worse weights.)
    """

    def __init__(self, path: Path, every_n_steps: int | None):
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._last_saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resume needs it
        self._last_saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_steps
        step = trainer.global_step
        # Not after the epoch's last batch: the epoch-end save follows, and a resume from "every
        # batch done, epoch not ended" skips the epoch's validation and end (Lightning 2.6).
        if getattr(trainer.fit_loop.epoch_loop.batch_progress, "is_last_batch", False):
            return
        if n and step > 0 and step % n == 0 and step != self._last_saved_step:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save(trainer)
