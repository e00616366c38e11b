"""train / evaluate / predict / load_run: the engine's public functions."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from medmm.data.registry import load_dataset
from medmm.data.schema import Sample
from medmm.engine import rundir as rd
from medmm.engine.config import RunConfig, dump_config, load_config, validate_model_section
from medmm.engine.data import SplitData, load_splits, make_loader
from medmm.engine.resume import prepare_run_dir, remove_failed_run_dir, seed_generators
from medmm.engine.task import Task, get_task_class
from medmm.errors import BadInputError, MedmmError

log = logging.getLogger("medmm.engine")


def import_plugins() -> None:
    """Import the modules listed in $MEDMM_PLUGINS (comma-separated), e.g. out-of-tree tasks.

    Their @register_task / @register_dataset decorators then make them usable by name.
    """
    import importlib

    for name in filter(None, (m.strip() for m in os.environ.get("MEDMM_PLUGINS", "").split(","))):
        importlib.import_module(name)


def build_task(cfg: RunConfig, where: str | Path | None = None) -> Task:
    """The task named by cfg.task, built from cfg.model (checked against its Config)."""
    import_plugins()
    validate_model_section(cfg, where)
    try:
        return get_task_class(cfg.task).from_config(cfg.model)
    except TypeError as exc:
        raise _kwargs_error(exc, cfg, where) from None


def _kwargs_error(exc: TypeError, cfg: RunConfig, where: str | Path | None) -> Exception:
    """A ConfigError naming the model.*_kwargs key whose argument the constructor rejected
    (Python checks the call against the target's signature); other TypeErrors unchanged."""
    import re

    from medmm.engine.config import ConfigError
    from medmm.engine.config_fields import mapping_holding

    m = re.search(r"(\S+)\(\) got an unexpected keyword argument '(\w+)'", str(exc))
    if m:
        target, arg = m.groups()
        key = mapping_holding(cfg.model, arg, "model")  # e.g. model.image.encoder_kwargs
        if key is not None:
            return ConfigError(where, f"{key}.{arg}", f"not an argument of {target.removesuffix('.__init__')}")
    return exc


def _restoring_threads(fn):
    """Run fn, then put back torch's global settings a run changes (threads, deterministic mode),
    so calling the engine from a larger program (or a test session) leaves it as it was."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = torch.get_num_threads()
        det = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(n)
            torch.use_deterministic_algorithms(det, warn_only=warn_only)

    return wrapper


def _set_threads(cfg: RunConfig) -> None:
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)


def _autocast(precision: str, device: torch.device):
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inference_device(cfg: RunConfig) -> torch.device:
    """CUDA when the config asks for a GPU (or "auto") and one is present, else CPU."""
    if cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run_inference(
    task: Task, samples: list[Sample], cfg: RunConfig, *, with_references: bool = True
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Records for `samples` (evaluation_step, or predict_step without references).

    Returns (records, skipped) where skipped maps a bad sample's id to its error message.
    Runs in this process (no Lightning), in eval mode, under no_grad and the run's precision.
    """
    from medmm.engine.module import to_channels_last

    tc = cfg.trainer
    loader = make_loader(
        samples,
        task.collate if with_references else task.predict_collate,
        batch_size=tc.eval_batch_size or tc.batch_size,
        num_workers=tc.num_workers,
        seed=cfg.seed,
        shuffle=False,
        skip_bad=cfg.data.skip_bad,
    )
    from lightning.fabric.utilities.apply_func import move_data_to_device

    device = inference_device(cfg)
    task.to(device)
    was_training = task.training
    task.eval()
    records: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    try:
        with torch.no_grad(), _autocast(tc.precision, device):
            for sb in loader:
                for sid, msg in sb.skipped:
                    log.warning("skipped bad sample %s: %s", sid, msg)
                    skipped[sid] = msg
                if sb.batch is None:
                    continue
                batch = move_data_to_device(sb.batch, device)
                batch = to_channels_last(batch) if tc.channels_last else batch
                step = task.evaluation_step if with_references else task.predict_step
                records.extend(step(batch))
    finally:
        task.train(was_training)
    return records, skipped


def _skip_list(load: list[BadInputError], runtime: dict[str, str]) -> list[str]:
    """One line per skipped record of one split: load-time errors, then samples dropped while
    reading (keyed by sample id, so an epoch that meets a sample twice counts it once)."""
    return [str(e) for e in load] + [f"{sid}: {msg}" for sid, msg in runtime.items()]


def _provenance(
    cfg: RunConfig,
    dataset: str,
    root: str,
    split: str,
    n: int,
    skipped: list[str],
    run_dir: Path | None,
    skipped_before_split: list[BadInputError] | None = None,
) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "task": cfg.task,
        "dataset": dataset,
        "root": str(root),
        "split": split,
        "n_samples": n,
        "n_skipped": len(skipped),  # bad records of this split only, one per record
        "skipped": skipped[:50],
        "seed": cfg.seed,
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if skipped_before_split:
        # Grouped split: bad records of the pooled source splits, dropped before splitting.
        prov["n_skipped_before_split"] = len(skipped_before_split)
        prov["skipped_before_split"] = [str(e) for e in skipped_before_split[:50]]
    if run_dir is not None:
        prov["run_dir"] = str(run_dir)
        w = run_dir / rd.WEIGHTS
        if w.exists():
            prov["weights_sha256"] = rd.sha256_file(w)
    return prov


def pretrained_sources(task: Task) -> list[dict[str, Any]]:
    """Hugging Face models inside the task (source, folder, weights sha256); see hf_loading."""
    from medmm.models.encoders.hf_loading import pretrained_sources as sources

    return sources(task)


def _score_split(
    task: Task, cfg: RunConfig, split: SplitData, run_dir: Path, role: str,
    train_samples: list[Sample], checkpoint_chosen: bool, has_validation: bool,
) -> dict[str, Any]:
    from medmm.engine.protocol import floors_record, protocol_record, rename_selection_metrics, selection_split_of

    selection_split = selection_split_of(task, has_validation, checkpoint_chosen)

    records, skipped = run_inference(task, split.samples, cfg)
    metrics = task.compute_metrics(records) if records else {}
    is_selection = role == selection_split
    if is_selection:
        metrics = rename_selection_metrics(task, metrics)
    result = {
        "metrics": metrics,
        "protocol": protocol_record(task, cfg, reported_split=role, selection_split=selection_split,
                                    checkpoint_chosen=checkpoint_chosen, reported_is_selection=is_selection),
        "floors": floors_record(task, train_samples, split.samples, records),
        "provenance": _provenance(
            cfg, cfg.data.dataset, cfg.data.root, split.name, len(records),
            _skip_list(split.skipped, skipped), run_dir, split.skipped_before_split,
        ),
    }
    result["provenance"]["role"] = role
    result["provenance"]["pretrained"] = pretrained_sources(task)  # HF weights used, with their sha256
    rd.write_json(run_dir / "metrics" / f"{role}.json", result)
    rd.write_jsonl(run_dir / "predictions" / f"{role}.jsonl", records)
    return result


def _loggers(run_dir: Path, resume_step: int | None) -> list:
    """CSV always (a resume keeps the rows before `resume_step`); TensorBoard and MLflow when installed."""
    import importlib.util

    from medmm.engine.quiet import quiet_lightning
    from medmm.engine.runlog import RunCSVLogger

    quiet_lightning()  # no litlogger advert next to the loggers we chose, no LeafSpec FutureWarning

    loggers: list = [RunCSVLogger(run_dir, resume_step)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="logs", version="tensorboard"))
    if importlib.util.find_spec("mlflow"):
        from lightning.pytorch.loggers import MLFlowLogger

        loggers.append(MLFlowLogger(experiment_name="medmm", tracking_uri=(run_dir / "mlruns").as_uri()))
    return loggers




@_restoring_threads
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
    from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar

    from medmm.engine.module import AtomicCheckpointIO, LastCheckpoint, RunModelCheckpoint, TaskModule

    import_plugins()
    tc = cfg.trainer
    _set_threads(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    rank0 = _is_rank0()
    ckpt_dir = run_dir / rd.CHECKPOINTS
    last = ckpt_dir / rd.LAST_CKPT
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
        _check_writable(run_dir)
        if start.write_config:
            dump_config(cfg, run_dir / rd.CONFIG)
        rd.write_json(run_dir / rd.ENVIRONMENT, rd.environment(cfg.seed))
        rd.write_json(state_path, _task_state(task, cfg, train_split.samples, weights_sha256=None))

    monitor = tc.monitor if val_samples else None
    if not val_samples:
        log.warning("no validation samples: no best checkpoint or early stopping; model.pt = the last weights")
    if monitor and not resume:
        _check_monitor(task, val_samples, cfg)
    mode = tc.resolved_monitor_mode()
    callbacks: list = []
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
    callbacks.append(LastCheckpoint(last, tc.checkpoint_every_n_steps))
    module = TaskModule(task, tc, cfg.seed, train_split.samples, val_samples, skip_bad=cfg.data.skip_bad,
                        run_config=cfg.to_dict())
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
        limit_val_batches=tc.limit_val_batches if val_samples else 0,
        check_val_every_n_epoch=tc.val_every_n_epochs,
        deterministic="warn" if tc.deterministic else False,
        logger=_loggers(run_dir, start.step),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=True,
        enable_progress_bar=tc.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,  # sanity batches would shift the RNG stream between runs
        log_every_n_steps=tc.log_every_n_steps,
        use_distributed_sampler=False,  # ResumableSampler shards per global batch itself
        default_root_dir=str(run_dir),
    )
    if resume:
        module.resume_mid_epoch = start.mid_epoch
    trainer.fit(module, ckpt_path=str(start.ckpt) if resume else None)

    skipped_train = dict(module.skipped)
    if trainer.global_rank != 0:
        return {}

    # The best checkpoint's weights become model.pt; without validation, the last weights do.
    # (Read from this run dir, not best_cb.best_model_path: a copied run dir keeps the old path.)
    best_path = ckpt_dir / rd.BEST_CKPT
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
    _atomic_torch_save(task.state_dict(), weights)
    rd.write_json(state_path, _task_state(task, cfg, train_split.samples, weights_sha256=rd.sha256_file(weights)))

    results: dict[str, Any] = {}
    train_skipped = _skip_list(train_split.skipped, skipped_train)
    rd.write_json(
        run_dir / "metrics" / "train.json",
        {
            "metrics": dict(_last_logged(trainer, "train/")),
            "provenance": _provenance(
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


def _check_monitor(task: Task, val_samples: list[Sample], cfg: RunConfig) -> None:
    """Fail before training, not after the first epoch, when trainer.monitor is never logged.

    Scores up to 32 validation samples once; the RNG states are restored afterwards so the
    check does not change the run.
    """
    import random

    import numpy as np

    from medmm.engine.config import ConfigError

    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        records, _ = run_inference(task, val_samples[:32], cfg)
        if not records:
            return
        try:
            metrics = task.compute_metrics(records)
        except Exception as exc:  # noqa: BLE001 - tiny subsets may break some metrics; checked later
            log.warning("could not pre-check trainer.monitor on 32 samples: %s", exc)
            return
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
    names = sorted({"val/loss", *(f"val/{k}" for k in _flat_keys(metrics))})
    if cfg.trainer.monitor not in names:
        raise ConfigError(None, "trainer.monitor", f"{cfg.trainer.monitor!r} is never logged; logged values: {', '.join(names)}")


def _flat_keys(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Numeric leaves of nested metrics (NaN included: a metric can be NaN on a tiny subset)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flat_keys(v, f"{prefix}{k}/"))
        elif (isinstance(v, (int, float)) and not isinstance(v, bool)) or hasattr(v, "dtype"):
            out[f"{prefix}{k}"] = v
    return out


def _last_logged(trainer, prefix: str) -> dict[str, float]:
    return {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix) and v.numel() == 1
    }


def _check_writable(run_dir: Path) -> None:
    """Fail before training, naming the folder, when run_dir cannot take files."""
    probe = rd.temp_path(run_dir / "write-check")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
    except OSError as exc:
        raise rd.write_error(run_dir / rd.CONFIG, exc) from None
    finally:
        probe.unlink(missing_ok=True)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = rd.temp_path(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except RuntimeError as exc:  # torch's writer reports a full disk as "file write failed"
        if "write" not in str(exc):
            raise
        raise rd.write_error(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def _task_state(task: Task, cfg: RunConfig, train_samples: list[Sample], weights_sha256: str | None) -> dict[str, Any]:
    licences = sorted({str(s.meta["licence"]) for s in train_samples if s.meta.get("licence")})
    return {
        "task": cfg.task,
        "state": task.state(),
        "weights": rd.WEIGHTS,
        "sha256": weights_sha256,
        "dataset": cfg.data.dataset,
        "training_data_licences": licences,
        "precision": cfg.trainer.precision,
    }


def load_run(run_dir: str | Path, model_overrides: list[str] | None = None) -> tuple[RunConfig, Task]:
    """The run's resolved config and its task with the best weights loaded (eval mode).

    The weights' sha256 is checked against task_state.json; loading is strict (a missing or
    unexpected weight is an error, never silently dropped). `model_overrides` ("model.KEY=VALUE",
    e.g. decoding options such as model.decoding.beam_size=3) change the saved `model:` section before the
    task is built; an override that changes the architecture fails the strict load.
    """
    run_dir = Path(run_dir)
    cfg = rd.read_yaml_config(run_dir)
    if cfg is None:
        raise BadInputError(run_dir / rd.CONFIG, "not a medmm run directory (no config.yaml)")
    if model_overrides:
        from medmm.engine.config import ConfigError, apply_overrides, config_from_dict

        bad = [o for o in model_overrides if not o.strip().startswith("model.")]
        if bad:
            raise ConfigError("override", bad[0], "only model.* keys may be overridden for a trained run")
        cfg = config_from_dict(apply_overrides(cfg.to_dict(), list(model_overrides)), where=run_dir / rd.CONFIG)
    state = rd.read_json(run_dir / rd.TASK_STATE)
    weights = run_dir / state.get("weights", rd.WEIGHTS)
    if not weights.exists():
        raise BadInputError(weights, "no trained weights; did training finish?")
    if state.get("sha256") and rd.sha256_file(weights) != state["sha256"]:
        raise BadInputError(weights, "sha256 does not match task_state.json (file changed or corrupt)")
    task = build_task(cfg, run_dir / rd.CONFIG)
    task.load_state(state["state"])
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    task.load_state_dict(sd, strict=True)
    if cfg.trainer.channels_last:
        task.to(memory_format=torch.channels_last)
    task.eval()
    return cfg, task


def _samples_for(
    cfg: RunConfig, data_root: str | Path, dataset: str | None, split: str
) -> tuple[Sequence[Sample], list[BadInputError], str]:
    from medmm.data.io.verify import verify_headers
    from medmm.data.registry import ErrorPolicy

    import_plugins()
    name = dataset or cfg.data.dataset
    ss = load_dataset(name, data_root, split, skip_bad=cfg.data.skip_bad)
    policy = ErrorPolicy(skip_bad=cfg.data.skip_bad)
    samples = verify_headers(ss.samples, policy)  # a list gives a new list; packed shards stay lazy
    return samples, [*ss.skipped, *policy.skipped], name


@_restoring_threads
def evaluate(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    dataset: str | None = None,
    split: str = "test",
    out: str | Path | None = None,
    label_map: str | None = None,
    model_overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Score a trained run on exactly the records of `split` (no re-splitting of a given root).

    `data_root=None` scores the run's own data: `split` then names a part of the run's split as
    `train` built it ("val", "test" of a grouped split), so a run's held-out part is evaluable
    by name. `data_root` may also be any folder in the dataset's layout, e.g. one holding only
    the official test split. Scoring samples the run trained on warns (TrainingDataWarning)
    and says so in the result ("warning", provenance "n_trained_on").
    Returns {"metrics": ..., "provenance": ...}; also written to `out` if given.
    External validation: when `dataset` differs from the training dataset (or `label_map`
    names a mapping), the task's `prepare_external` maps its label space onto the other
    dataset's; provenance then holds "external": true and the mapping used.
    `model_overrides`: see `load_run` (recorded in the provenance).
    """
    import warnings

    from medmm.engine.eval_split import TrainingDataWarning, eval_samples
    from medmm.engine.protocol import rename_selection_metrics

    cfg, task = load_run(run_dir, model_overrides)
    _set_threads(cfg)
    samples, load_skipped, name, root, extras = eval_samples(cfg, data_root, dataset, split)
    external = name != cfg.data.dataset or label_map is not None
    mapping = task.prepare_external(name, label_map) if external else None
    records, skipped = run_inference(task, samples, cfg)
    metrics = task.compute_metrics(records) if records else {}
    result: dict[str, Any] = {
        "metrics": metrics,
        **_evaluation_protocol(task, cfg, Path(run_dir), name, split, samples, records, external),
        "provenance": _provenance(
            cfg, name, str(root.resolve()), split, len(records), _skip_list(load_skipped, skipped), Path(run_dir).resolve()
        ),
    }
    if result["protocol"]["reported_is_selection_split"]:
        result["metrics"] = rename_selection_metrics(task, metrics)
    warning = extras.pop("warning", None)
    result["provenance"].update(extras)
    if warning:
        result["warning"] = warning
        warnings.warn(f"{run_dir}: {warning}", TrainingDataWarning, stacklevel=2)
    result["provenance"]["external"] = external
    result["provenance"]["pretrained"] = pretrained_sources(task)
    if model_overrides:
        result["provenance"]["model_overrides"] = list(model_overrides)
    result["provenance"]["training_dataset"] = cfg.data.dataset
    if mapping is not None:
        result["provenance"]["label_map"] = mapping
    if out is not None:
        rd.write_json(out, result)
    return result


def _evaluation_protocol(task: Task, cfg: RunConfig, run_dir: Path, dataset: str, split: str, samples: list[Sample],
                         records: list[dict[str, Any]], external: bool) -> dict[str, Any]:
    """`protocol` and `floors` of an evaluation: the run's own splits are rebuilt from its config
    (same seed) to fit the floors on its training part and to count how many evaluated samples the
    run trained on or selected with (an evaluation of its validation samples is a selection number)."""
    from medmm.engine.protocol import floors_record, protocol_record, selection_split_of

    chosen = (run_dir / rd.CHECKPOINTS / rd.BEST_CKPT).exists()
    train_samples, unavailable, overlap, has_val = None, None, {"training": 0, "selection": 0}, chosen
    try:
        run_splits = load_splits(cfg.data, cfg.seed)
    except (MedmmError, OSError) as exc:
        unavailable = f"the run's training data could not be loaded ({cfg.data.root}): {exc}"
    else:
        train_samples = run_splits["train"].samples
        val = run_splits.get("val")
        has_val = bool(val is not None and val.samples)
        if not external:
            ids = {s.id for s in samples}
            overlap["training"] = sum(s.id in ids for s in train_samples)
            overlap["selection"] = sum(s.id in ids for s in val.samples) if has_val else 0
    selection = selection_split_of(task, has_val, chosen)
    is_selection = selection is not None and overlap["selection"] > 0
    protocol = protocol_record(task, cfg, reported_split=f"{dataset}:{split}", selection_split=selection,
                               checkpoint_chosen=chosen, reported_is_selection=is_selection,
                               extra={"evaluated_samples_in_run_training_split": overlap["training"],
                                      "evaluated_samples_in_run_selection_split": overlap["selection"]})
    return {"protocol": protocol, "floors": floors_record(task, train_samples, samples, records, unavailable)}


@_restoring_threads
def predict(
    run_dir: str | Path,
    data_root: str | Path,
    dataset: str | None = None,
    split: str = "test",
    out: str | Path | None = None,
    model_overrides: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Predictions (predict_step records, one per sample with its id) for a split of any root.

    Written as JSON lines to `out` if given; bad samples are skipped and logged.
    `model_overrides`: see `load_run` (e.g. decoding options).
    """
    cfg, task = load_run(run_dir, model_overrides)
    _set_threads(cfg)
    samples, _, name = _samples_for(cfg, data_root, dataset, split)
    if not samples:
        raise MedmmError(f"{data_root}: no samples in split {split!r} of dataset {name!r}")
    records, _ = run_inference(task, samples, cfg, with_references=False)
    if out is not None:
        rd.write_jsonl(out, records)
    return records


__all__ = ["train", "evaluate", "predict", "load_run", "build_task", "run_inference", "load_config"]
