"""The LightningModule that wraps any Task (checkpoint plumbing: medmm.engine.checkpoints)."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch

from medmm.data.schema import Sample
from medmm.engine.config import TrainerConfig
from medmm.engine.data import SafeBatch, make_loader
from medmm.engine.optim import epoch_scheduler, onecycle_schedule, parameter_groups
from medmm.engine.task import Task

log = logging.getLogger("medmm.engine")


def to_channels_last(obj: Any) -> Any:
    """Convert every 4-D float tensor in a (nested) batch to channels_last memory format."""
    if isinstance(obj, torch.Tensor):
        if obj.dim() == 4 and obj.is_floating_point():
            return obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, dict):
        return {k: to_channels_last(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_channels_last(v) for v in obj)
    return obj


def _is_dist() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def gather_objects(obj: Any) -> list[Any]:
    """All ranks' `obj` (a one-element list when not distributed)."""
    if not _is_dist():
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def warmup_schedule(kind: str, warmup: int, total: int):
    """LR multiplier per optimizer step: linear warmup, then cosine/linear decay or constant."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if kind == "constant" or total <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return f


class TaskModule(L.LightningModule):
    """Runs a Task under Lightning: training, validation with records + metrics, logging."""

    def __init__(
        self,
        task: Task,
        trainer_cfg: TrainerConfig,
        seed: int,
        train_samples: list[Sample],
        val_samples: list[Sample],
        skip_bad: bool = True,
        run_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.skip_bad = skip_bad  # data.skip_bad: False stops at the first bad sample
        self.task = task
        self.cfg = trainer_cfg
        self.run_config = run_config  # saved in every checkpoint: a run dir can always tell its config
        self.resume_position: tuple[int, int] | None = None  # (epoch, batches done): set by train() on resume
        self.seed = seed
        self.train_samples = train_samples
        self.val_samples = val_samples
        self.skipped: dict[str, str] = {}  # training sample id -> message, unique over epochs
        self.val_skipped: dict[str, str] = {}  # validation skips: counted by the val split, not train
        self._epoch_sums: dict[str, list[float]] = {}  # train scalar -> [sum * n, n] of epoch _sums_epoch
        self._sums_epoch: int | None = None
        self._val_records: list[dict[str, Any]] = []
        self._val_loss = [0.0, 0]
        self.last_val_metrics: dict[str, Any] = {}
        self._sample_weights = task.sample_weights(train_samples)
        if trainer_cfg.channels_last:
            self.task.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ data
    def _batches_done_this_epoch(self) -> int:
        """Batches of the current epoch already trained (non-zero only after a mid-epoch resume).

        A pending resume position (`resume_position`) is used once, by the sampler's first
        iteration, which Lightning starts before it restores its own counters."""
        if self.resume_position is not None:
            done, self.resume_position = self.resume_position[1], None
            return done
        try:
            return int(self.trainer.fit_loop.epoch_loop.batch_progress.current.completed)
        except (AttributeError, RuntimeError):
            return 0

    def _current_epoch(self) -> int | None:
        """The epoch being trained: a pending resume position's, else the trainer's."""
        if self.resume_position is not None:
            return self.resume_position[0]
        try:
            return int(self.trainer.fit_loop.epoch_progress.current.processed)
        except (AttributeError, RuntimeError):
            return None

    def train_dataloader(self):
        return make_loader(
            self.train_samples,
            self.task.collate,
            batch_size=self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            seed=self.seed,
            shuffle=True,
            rank=self.global_rank,
            world_size=self.trainer.world_size,
            skip_batches=self._batches_done_this_epoch,
            current_epoch=self._current_epoch,
            weights=self._sample_weights,
            skip_bad=self.skip_bad,
        )

    def val_dataloader(self):
        world, rank = self.trainer.world_size, self.global_rank
        return make_loader(
            self.val_samples[rank::world],
            self.task.collate,
            batch_size=self.cfg.eval_batch_size or self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            seed=self.seed,
            shuffle=False,
            skip_bad=self.skip_bad,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.cfg.channels_last and isinstance(batch, SafeBatch):
            batch.batch = to_channels_last(batch.batch)
        return batch

    def _note_skipped(self, batch: SafeBatch, into: dict[str, str] | None = None) -> None:
        into = self.skipped if into is None else into
        for sid, msg in batch.skipped:
            if sid not in into:
                log.warning("skipped bad sample %s: %s", sid, msg)
            into[sid] = msg

    # ------------------------------------------------------------------ training
    def training_step(self, batch: SafeBatch, batch_idx: int):
        self._note_skipped(batch)
        if batch.batch is None:  # every sample of this batch was bad
            return None
        out = self.task.training_step(batch.batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {self.global_step}")
        if self._sums_epoch != self.current_epoch:  # the first step of an epoch
            self._epoch_sums, self._sums_epoch = {}, self.current_epoch
        for k, v in out.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                value = v.detach().float()
                self.log(f"train/{k}_step", value, on_step=True, on_epoch=False, batch_size=batch.n)
                total = self._epoch_sums.setdefault(k, [0.0, 0])
                total[0] += float(value) * batch.n
                total[1] += batch.n
        group = self.trainer.optimizers[0].param_groups[0]
        self.log("lr", group["lr"] / group.get("lr_scale", 1.0), on_step=True, batch_size=batch.n)
        return loss

    def on_train_epoch_end(self) -> None:
        # Epoch means from our own sums, which travel in checkpoints: Lightning's on_epoch
        # aggregation restarts empty after a mid-epoch resume and would average only the
        # batches trained after it. The sums carry their epoch, so they restart at the first
        # step of each epoch whether or not Lightning calls on_train_epoch_start (it does not
        # after a mid-epoch resume, and its batch counters still hold the previous epoch there).
        if self._sums_epoch != self.current_epoch:
            return  # no step of this epoch trained (every batch bad)
        for k, (total, n) in sorted(self._epoch_sums.items()):
            if n:
                self.log(f"train/{k}_epoch", total / n, on_step=False, on_epoch=True)

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_records = []
        self._val_loss = [0.0, 0]

    def validation_step(self, batch: SafeBatch, batch_idx: int) -> None:
        self._note_skipped(batch, self.val_skipped)
        if batch.batch is None:
            return
        records = self.task.evaluation_step(batch.batch)
        out = self.task.training_step(batch.batch)
        self._val_loss[0] += float(out["loss"].detach().float()) * batch.n
        self._val_loss[1] += batch.n
        self._val_records.extend(records)

    def on_validation_epoch_end(self) -> None:
        # One collective per epoch: ranks may hold different numbers of val batches.
        parts = gather_objects((self._val_records, self._val_loss))
        records, seen = [], set()
        loss_sum, n = 0.0, 0
        for recs, (ls, ln) in parts:
            loss_sum += ls
            n += ln
            for r in recs:
                if r["id"] not in seen:
                    seen.add(r["id"])
                    records.append(r)
        if not records:
            return
        metrics = self.task.compute_metrics(records)
        metrics["loss"] = loss_sum / max(1, n)
        self.last_val_metrics = metrics
        scalars = {f"val/{k}": float(v) for k, v in flatten_scalars(metrics).items()}
        # Values are already identical on every rank (gathered), so no sync_dist needed.
        self.log_dict(scalars, on_epoch=True, sync_dist=False, rank_zero_only=False)

    def on_train_end(self) -> None:
        # Gather while the process group still exists: rank 0 reports every rank's skips.
        merged: dict[str, str] = {}
        for part in gather_objects(self.skipped):
            merged.update(part)
        self.skipped = merged

    # ------------------------------------------------------------------ optimizer
    def configure_optimizers(self):
        groups = parameter_groups(
            self.task.named_parameters(), self.cfg.lr, self.cfg.weight_decay, self.cfg.lr_multipliers
        )
        if len({g["lr_scale"] for g in groups}) > 1:
            log.info("learning rate per parameter group: %s", [(g["lr"], len(g["params"])) for g in groups])
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr)
        per_epoch = epoch_scheduler(opt, self.cfg)  # "multistep" / "cosine_restarts"; None otherwise
        if per_epoch is not None:
            return {"optimizer": opt, "lr_scheduler": per_epoch}
        total = int(self.trainer.estimated_stepping_batches)
        factor = (onecycle_schedule(self.cfg, total) if self.cfg.scheduler == "onecycle"
                  else warmup_schedule(self.cfg.scheduler, self.cfg.warmup_steps, total))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ RNG in checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning does not save RNG states; without them a resumed run's dropout differs.
        # Plain types only, so the checkpoint still loads with torch.load(weights_only=True).
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["medmm_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": random.getstate(),
            "task": {name: g.get_state() for name, g in self.task.random_generators().items()},
        }
        checkpoint["medmm_skipped"] = dict(self.skipped)
        checkpoint["medmm_epoch_sums"] = {k: list(v) for k, v in self._epoch_sums.items()}
        checkpoint["medmm_epoch_sums_epoch"] = self._sums_epoch
        if self.run_config is not None:
            checkpoint["medmm_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("medmm_rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            kind, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
            version, internal, gauss_next = rng["python"]
            random.setstate((version, tuple(internal), gauss_next))
            gens = self.task.random_generators()
            for name, state in rng.get("task", {}).items():
                if name in gens:
                    gens[name].set_state(state)
        self.skipped.update(checkpoint.get("medmm_skipped", {}))
        self._epoch_sums = {k: list(v) for k, v in checkpoint.get("medmm_epoch_sums", {}).items()}
        # Older checkpoints: their sums are of the epoch they were taken in (Lightning's "epoch").
        self._sums_epoch = checkpoint.get("medmm_epoch_sums_epoch", checkpoint.get("epoch"))


def flatten_scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics dict, keys joined with '/'."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_scalars(v, f"{key}/"))
        elif isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[key] = float(v)
    return out
