"""`train`: one run of any task through Lightning, from a config to a complete run directory."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import torch

from medmm.data.schema import Sample
from medmm.engine import rundir as rd
from medmm.engine.config import RunConfig, dump_config
from medmm.engine.data import SplitData, load_splits
from medmm.engine.inference import restoring_torch_state, run_inference, set_threads
from medmm.engine.loading import build_task, import_plugins
from medmm.engine.preflight import check_monitor, check_writable
from medmm.engine.provenance import pretrained_sources, provenance_record, skip_list, task_state_record
from medmm.engine.resume import Resume, prepare_run_dir, remove_failed_run_dir, seed_generators
from medmm.engine.task import Task

log = logging.getLogger("medmm.engine")


@restoring_torch_state
def train(cfg: RunConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train cfg's task on cfg's data; write the run directory; return the final metrics.

    Rerunning with a run_dir that holds checkpoints/last.ckpt resumes from it; the config must
    be the same except for the keys in medmm.engine.resume.RESUME_MAY_CHANGE (e.g. a larger trainer.max_epochs).
    Returns {"val": {...}, "test": {...}} (the metrics of the best checkpoint); on DDP ranks
    other than 0 it returns {} after training. A run_dir this call created is removed again
    when the run fails before its first checkpoint. A full disk or an unwritable run_dir ends
    in a MedmmError naming the folder.
    """
    run_dir = Path(run_dir).resolve()
    created = not run_dir.exists()
    try:
        return _train(cfg, run_dir)
    except BaseException as exc:
        if created and _is_rank0():
            remove_failed_run_dir(run_dir)
        if isinstance(exc, OSError) and exc.errno in rd.WRITE_ERRNOS:
            where = exc.filename or run_dir
            # EACCES/EPERM elsewhere (e.g. an unreadable data file) is not about the output folder.
            if exc.errno not in (errno.EACCES, errno.EPERM) or str(where).startswith(str(run_dir)):
                raise rd.write_error(where, exc) from None
        raise


def _is_rank0() -> bool:
    """Rank 0 writes the run files; with DDP every rank runs `train`."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def _train(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    import lightning as L

    from medmm.engine.module import TaskModule

    import_plugins()
    tc = cfg.trainer
    set_threads(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    rank0 = _is_rank0()
    start = prepare_run_dir(cfg, run_dir, rank0)
    resume = start.ckpt is not None

    splits = load_splits(cfg.data, cfg.seed)
    train_split = splits["train"]
    val_split = splits.get("val")
    test_split = splits.get("test")
    val_samples = val_split.samples if val_split else []

    task = build_task(cfg)
    # the floors are fit on these (no task-derived extras); a lazy packed sequence is immutable, no copy
    original_train = list(train_split.samples) if isinstance(train_split.samples, list) else train_split.samples
    train_split.samples = task.training_samples(train_split.samples)
    state_path = run_dir / rd.TASK_STATE
    if resume and state_path.exists():
        task.load_state(rd.read_json(state_path)["state"])
    else:
        task.setup(train_split.samples)
    seed_generators(task, cfg.seed)  # a resume then restores their states from the checkpoint

    if rank0:
        check_writable(run_dir)
        if start.write_config:
            dump_config(cfg, run_dir / rd.CONFIG)
        rd.write_json(run_dir / rd.ENVIRONMENT, rd.environment(cfg.seed))
        rd.write_json(state_path, task_state_record(task, cfg, train_split.samples, weights_sha256=None))

    if not val_samples:
        log.warning("no validation samples: no best checkpoint or early stopping; model.pt = the last weights")
    if val_samples and tc.monitor and not resume:
        check_monitor(task, val_samples, cfg)
    module = TaskModule(task, tc, cfg.seed, train_split.samples, val_samples, skip_bad=cfg.data.skip_bad,
                        run_config=cfg.to_dict())
    trainer, best_cb = _make_trainer(cfg, run_dir, start, has_validation=bool(val_samples))
    if resume:
        module.resume_position = start.start_position
    trainer.fit(module, ckpt_path=str(start.ckpt) if resume else None)

    skipped_train = dict(module.skipped)
    if trainer.global_rank != 0:
        return {}

    # The best checkpoint's weights become model.pt; without validation, the last weights do.
    # (Read from this run dir, not best_cb.best_model_path: a copied run dir keeps the old path.)
    best_path = run_dir / rd.CHECKPOINTS / rd.BEST_CKPT
    if best_cb is not None and best_path.exists():
        ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])
    task = module.task.to("cpu")
    if val_split is not None and val_split.samples and type(task).calibrate is not Task.calibrate:
        # Post-training fitting on validation (e.g. decision thresholds) uses the best weights
        # and is saved in task_state.json before val/test are scored.
        val_records, _ = run_inference(task, val_split.samples, cfg)
        if val_records and task.calibrate(val_records):
            log.info("task calibrated on %d validation records", len(val_records))
    weights = run_dir / rd.WEIGHTS
    rd.write_torch(task.state_dict(), weights)
    rd.write_json(state_path, task_state_record(task, cfg, train_split.samples, weights_sha256=rd.sha256_file(weights)))

    results: dict[str, Any] = {}
    train_skipped = skip_list(train_split.skipped, skipped_train)
    rd.write_json(
        run_dir / "metrics" / "train.json",
        {
            "metrics": dict(_last_logged(trainer, "train/")),
            "provenance": provenance_record(
                cfg, cfg.data.dataset, cfg.data.root, train_split.name, len(train_split.samples), train_skipped, run_dir,
                train_split.skipped_before_split,
            ),
        },
    )
    for role, split in (("val", val_split), ("test", test_split)):
        if split is not None and split.samples:
            results[role] = _score_split(task, cfg, split, run_dir, role, original_train,
                                         best_cb is not None and best_path.exists(), bool(val_samples))["metrics"]
    try:
        from medmm.engine.report import write_report

        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - a plotting failure must not lose a finished run
        log.warning("report.html not written: %s", exc)
    return results


def _make_trainer(cfg: RunConfig, run_dir: Path, start: Resume, has_validation: bool):
    """Lightning's Trainer for the run, with its callbacks; returns (trainer, best-checkpoint callback or None)."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar

    from medmm.engine.checkpoints import AtomicCheckpointIO, LastCheckpoint, ReleaseCheckpoints, RunModelCheckpoint
    from medmm.engine.runlog import run_loggers

    tc = cfg.trainer
    ckpt_dir = run_dir / rd.CHECKPOINTS
    monitor = tc.monitor if has_validation else None
    mode = tc.resolved_monitor_mode()
    loggers = run_loggers(run_dir, keep_rows=start.log_rows, before_step=start.step)
    checkpoint_io = AtomicCheckpointIO()
    # First: it writes the checkpoints of a hook at the next hook, once their log rows are written.
    callbacks: list = [ReleaseCheckpoints(checkpoint_io, loggers[0].rows_on_disk)]
    best_cb = None
    if monitor:
        best_cb = RunModelCheckpoint(
            dirpath=str(ckpt_dir),
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            save_last=False,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
        callbacks.append(best_cb)
        if tc.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=tc.early_stopping_patience))
    if tc.progress_bar:
        callbacks.append(RichProgressBar())

    # After ModelCheckpoint/EarlyStopping: last.ckpt must carry this epoch's best score.
    callbacks.append(LastCheckpoint(ckpt_dir / rd.LAST_CKPT, tc.checkpoint_every_n_steps))
    trainer = L.Trainer(
        accelerator=tc.accelerator,
        devices=tc.devices,
        num_nodes=tc.num_nodes,
        strategy=tc.strategy,
        precision=tc.precision,
        max_epochs=tc.max_epochs,
        max_steps=tc.max_steps,
        accumulate_grad_batches=tc.accumulate_grad_batches,
        gradient_clip_val=tc.gradient_clip_val,
        limit_train_batches=tc.limit_train_batches,
        limit_val_batches=tc.limit_val_batches if has_validation else 0,
        check_val_every_n_epoch=tc.val_every_n_epochs,
        deterministic="warn" if tc.deterministic else False,
        logger=loggers,
        callbacks=callbacks,
        plugins=[checkpoint_io],
        enable_checkpointing=True,
        enable_progress_bar=tc.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,  # sanity batches would shift the RNG stream between runs
        log_every_n_steps=tc.log_every_n_steps,
        use_distributed_sampler=False,  # ResumableSampler shards per global batch itself
        default_root_dir=str(run_dir),
    )
    return trainer, best_cb


def _last_logged(trainer, prefix: str) -> dict[str, float]:
    return {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix) and v.numel() == 1
    }


def _score_split(
    task: Task, cfg: RunConfig, split: SplitData, run_dir: Path, role: str,
    train_samples: list[Sample], checkpoint_chosen: bool, has_validation: bool,
) -> dict[str, Any]:
    """Score the trained task on the run's `role` part ("val", "test"); writes metrics/ and predictions/."""
    from medmm.engine.protocol import floors_record, protocol_record, selection_split_of
    from medmm.engine.selection import apply_selection_names

    selection_split = selection_split_of(task, has_validation, checkpoint_chosen)

    records, skipped = run_inference(task, split.samples, cfg)
    metrics = task.compute_metrics(records) if records else {}
    is_selection = role == selection_split
    result = {
        "metrics": metrics,
        "protocol": protocol_record(task, cfg, reported_split=role, selection_split=selection_split,
                                    checkpoint_chosen=checkpoint_chosen, reported_is_selection=is_selection),
        "floors": floors_record(task, train_samples, split.samples, records),
        "provenance": provenance_record(
            cfg, cfg.data.dataset, cfg.data.root, split.name, len(records),
            skip_list(split.skipped, skipped), run_dir, split.skipped_before_split,
        ),
    }
    apply_selection_names(result)  # every number of the selection split is `selection_*`
    result["provenance"]["role"] = role
    result["provenance"]["pretrained"] = pretrained_sources(task)  # HF weights used, with their sha256
    rd.write_json(run_dir / "metrics" / f"{role}.json", result)
    rd.write_jsonl(run_dir / "predictions" / f"{role}.jsonl", records)
    return result
