"""Starting or resuming a run in its directory: which checkpoint, which config, what to clean.

`train` calls `prepare_run_dir` before anything else touches the folder. A run dir resumes from
checkpoints/last.ckpt; when that file cannot be read (truncated, corrupt) it falls back to
best.ckpt (a full Lightning checkpoint too, from an earlier epoch: the epochs after it are
trained again, with the same result), or stops with one line. The config a run was trained
with travels inside every checkpoint, so a deleted or edited config.yaml cannot make a run
resume under another config.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medmm.engine import rundir as rd
from medmm.engine.config import RunConfig, config_from_dict
from medmm.engine.config_fields import saved_run_config
from medmm.engine.runlog import LOG_ROWS_KEY
from medmm.errors import MedmmError

log = logging.getLogger("medmm.engine")

# Keys a resumed run may change: how long to train and how to show/feed it, not what is learnt.
# (A longer max_epochs also stretches the remaining cosine/linear LR schedule.)
RESUME_MAY_CHANGE = frozenset(
    f"trainer.{k}"
    for k in ("max_epochs", "max_steps", "early_stopping_patience", "progress_bar", "num_workers", "num_threads", "log_every_n_steps")
)


@dataclass
class Resume:
    """Where a run starts: `ckpt` is None for a new run."""

    ckpt: Path | None = None
    log_rows: int | None = None  # rows of logs/metrics.csv the checkpoint's work logged: they are kept
    step: int | None = None  # the checkpoint's step (kept rows for checkpoints without log_rows)
    write_config: bool = True  # (re)write config.yaml
    # (epoch, batches of it done) where the resumed run's training starts: the training sampler
    # starts there. Lightning creates the loader iterator (and workers prefetch) before it
    # restores its own progress counters, so the sampler cannot read the position from the
    # trainer in time.
    start_position: tuple[int, int] | None = None


def changed_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(changed_keys(va, vb, f"{prefix}{k}."))
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def _with_current_defaults(saved: dict[str, Any], where: Path) -> dict[str, Any]:
    """A saved config with the fields this medmm added since it was written at their defaults.

    A run saved by an earlier version lacks the engine's newer fields (say a new scheduler
    option); left absent they would read as "changed" and block every resume, although the
    run trained exactly as their defaults say. A saved config that no longer builds is compared
    as it is (the comparison then names what differs)."""
    try:
        return config_from_dict(saved, where).to_dict()
    except MedmmError:
        return saved


def _read_checkpoint(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(checkpoint, "") or (None, why it cannot be used)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch reports truncation/corruption with many types
        return None, (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "loops" not in ckpt:
        return None, "not a full training checkpoint"
    return ckpt, ""


def _pick_checkpoint(ckpt_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from, or None for a new run; MedmmError when none is readable."""
    last, best = ckpt_dir / rd.LAST_CKPT, ckpt_dir / rd.BEST_CKPT
    if not last.exists():
        return None  # new run (deleting last.ckpt is the documented way to start over)
    ckpt, why = _read_checkpoint(last)
    if ckpt is not None:
        return last, ckpt
    if best.exists():
        fallback, why_best = _read_checkpoint(best)
        if fallback is not None:
            log.warning(
                "%s is unreadable (%s); resuming from %s (epoch %s) and training the later epochs again",
                last, why, best.name, fallback.get("epoch"),
            )
            return best, fallback
        why += f"; {best.name} is unreadable too ({why_best})"
    raise MedmmError(f"{last}: cannot resume, the checkpoint is unreadable ({why}); delete {ckpt_dir} to start over")


def prepare_run_dir(cfg: RunConfig, run_dir: Path, rank0: bool) -> Resume:
    """Clean temporary files of killed writes, pick the checkpoint, check the config.

    Refuses (MedmmError) to resume under a config that differs from the checkpoint's (except
    RESUME_MAY_CHANGE), and when neither the checkpoint nor config.yaml records the config.
    """
    if rank0:
        for f in rd.remove_temp_files(run_dir):
            log.info("removed %s (a write interrupted by a kill)", f)
    picked = _pick_checkpoint(run_dir / rd.CHECKPOINTS)
    if picked is None:
        return Resume()
    path, ckpt = picked
    on_disk = rd.read_yaml_config(run_dir)
    saved = ckpt.get("medmm_config") or (on_disk.to_dict() if on_disk is not None else None)
    if saved is not None:  # a checkpoint of an earlier medmm: its model keys in their current places
        saved = saved_run_config(saved, path)
    if saved is None:
        raise MedmmError(
            f"{run_dir}: holds {path.name} but no config.yaml, and the checkpoint does not record its config; "
            f"use a new --out, or delete {path.parent} to start over"
        )
    changed = changed_keys(_with_current_defaults(saved, path), cfg.to_dict())
    blocking = [k for k in changed if k not in RESUME_MAY_CHANGE]
    if blocking:
        raise MedmmError(
            f"{run_dir}: holds a run with a different config ({', '.join(blocking)}); "
            f"use a new --out, or delete {path.parent} to start over"
        )
    if on_disk is None:
        log.warning("%s was missing; writing it again from the config saved in %s", run_dir / rd.CONFIG, path.name)
    elif changed:
        log.warning("resuming with %s changed; %s is updated", ", ".join(changed), rd.CONFIG)
    log.info("resuming from %s", path)
    rows = ckpt.get(LOG_ROWS_KEY)
    if rows is None:
        log.info("%s does not record its rows of logs/metrics.csv (an older medmm): keeping the rows of the steps "
                 "before it, which can miss the row of its last step", path.name)
    return Resume(ckpt=path, log_rows=None if rows is None else int(rows), step=int(ckpt.get("global_step", -1)),
                  write_config=on_disk is None or bool(changed), start_position=_start_position(ckpt))


def _start_position(ckpt: dict[str, Any]) -> tuple[int, int] | None:
    """(epoch, batches of it done) where training resumes from `ckpt`, or None when not known.

    Inside an epoch: that epoch and its batches done. At an epoch's end (after its last batch,
    the epoch counted as processed, not yet completed): the next epoch, from its start.
    """
    try:
        loop = ckpt["loops"]["fit_loop"]
        batches = loop["epoch_loop.batch_progress"]
        # "processed": a checkpoint saved in on_train_batch_end counts its batch as processed,
        # not yet as completed
        done = int(batches["current"]["processed"])
        epochs = loop["epoch_progress"]["current"]
        epoch, completed = int(epochs["processed"]), int(epochs["completed"])
    except (KeyError, TypeError, ValueError):
        return None
    if batches.get("is_last_batch"):
        # on_train_epoch_end counts the epoch as processed before the hooks; a checkpoint taken
        # between the last batch and that point (e.g. at validation end) is left to Lightning.
        return (epoch, 0) if epoch == completed + 1 else None
    return (epoch, done) if done else None

def seed_generators(task, seed: int) -> None:
    """Seed each of the task's own generators from the run seed and the generator's name."""
    for name, gen in sorted(task.random_generators().items()):
        digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
        gen.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def remove_failed_run_dir(run_dir: Path) -> None:
    """After a failed start: remove `run_dir` (created by this call) unless it holds a checkpoint."""
    if not run_dir.is_dir() or any((run_dir / rd.CHECKPOINTS).glob("*.ckpt")):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
