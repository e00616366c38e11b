"""Tiny trained runs and their packages for the serve tests (a helper, not a test module).

Each run is a small model on the bundled CC0 VQA-RAD sample, made once per test session (cached
by task) and shared by the test modules. `trained=True`: 2 training steps through the engine
(Lightning, about 45 s per task on the loaded 2-core CPU: slow tests). `trained=False`: the
run directory the engine writes before training (config, task state fitted on the training
split, initial weights with their sha256), without Lightning: seconds, for the default tests.
"""

from __future__ import annotations

from pathlib import Path

from conftest import SHARED_DATA
from medmm.data.bundled import vqa_rad_sample_root

CONFIGS = Path(__file__).parents[1] / "configs"
_FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.batch_size=8", "trainer.num_threads=1", "trainer.progress_bar=false"]
IU_XRAY_TINY = Path(__file__).parent / "fixtures" / "iu_xray_tiny"
COVID_CXR = SHARED_DATA / "covid_cxr"  # real data: the segmentation tests skip when it is absent
# task -> (config file, overrides): small encoders so two steps take seconds on a loaded CPU.
# Data: the bundled VQA-RAD sample unless data.root says otherwise.
TASK_RUNS: dict[str, tuple[str, list[str]]] = {
    "segmentation": ("segmentation/covid_cxr_seg.yaml", [
        f"data.root={COVID_CXR}", "model.text.encoder=scratch",
        "model.text.encoder_kwargs={dim: 16, num_layers: 1, num_heads: 2, vocab_size: 100}",
        "model.unet.channels=[4, 8]", "model.unet.attention_levels=1", "model.unet.heads=2", "model.image.size=32",
        "model.bootstrap_resamples=10",
        "trainer.batch_size=2", "trainer.val_every_n_epochs=1"]),
    "report_generation": ("report/iu_xray.yaml", [
        f"data.root={IU_XRAY_TINY}", "trainer.batch_size=4", "model.dim=32", "model.decoder.layers=1", "model.decoder.heads=2",
        "model.image.encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}", "model.bootstrap_resamples=10",
        "model.decoder.min_word_freq=1", "model.findings.min_positive=1", "model.decoding.max_length=12"]),
    "diagnosis": ("diagnosis/vqa_rad_organ.yaml", [
        "model.image.size=32", "model.text.encoder_kwargs={dim: 32, num_layers: 1, num_heads: 2, vocab_size: 300}", "model.dim=32"]),
    "vqa": ("vqa/vqa_rad_sample.yaml", [
        "model.image.encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}",
        "model.text.encoder_kwargs={vocab_size: 300, dim: 32, num_layers: 1, num_heads: 2, max_length: 24}",
        "model.fusion_kwargs={heads: 2, layers: 1}", "model.dim=32", "model.bootstrap_resamples=10"]),
    "retrieval": ("retrieval/vqa_rad.yaml", [
        "model.image_encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}", "model.text_encoder=scratch",
        "model.text_lora=null", "model.embed_dim=32", "trainer.num_threads=1"]),
}


def data_of(task: str) -> tuple[str, Path, str]:
    """(dataset, root, split) the tests predict on for `task`."""
    if task == "report_generation":
        return "iu_xray", IU_XRAY_TINY, "test"
    if task == "segmentation":
        return "covid_cxr_seg", COVID_CXR, "all"
    return "vqa_rad", vqa_rad_sample_root(), "train"


_CACHE: dict[tuple[str, bool], tuple[Path, Path]] = {}


def trained_package(task: str, base: Path, trained: bool = False) -> tuple[Path, Path]:
    """(run dir, package dir) of a run of `task` on the bundled sample (made once per session)."""
    if (task, trained) in _CACHE:
        return _CACHE[task, trained]
    from medmm.engine import load_config, train
    from medmm.serve import make_package

    cfg_file, overrides = TASK_RUNS[task]
    cfg = load_config(CONFIGS / cfg_file, [f"data.root={vqa_rad_sample_root()}", *_FAST, *overrides])
    run = base / f"run_{task}_{'trained' if trained else 'init'}"
    if trained:
        train(cfg, run)
    else:
        _initial_run(cfg, run)
    pkg = make_package(run, base / f"{task}_{'trained' if trained else 'init'}")
    _CACHE[task, trained] = (run, pkg)
    return run, pkg


def _initial_run(cfg, run: Path) -> None:
    """The run directory as `medmm.engine.train` writes it before its first step, with model.pt."""
    import torch

    from medmm.engine import rundir as rd
    from medmm.engine.api import build_task
    from medmm.engine.config import dump_config
    from medmm.engine.data import load_splits
    from medmm.engine.provenance import task_state_record

    torch.manual_seed(cfg.seed)
    train_samples = load_splits(cfg.data, cfg.seed)["train"].samples
    task = build_task(cfg)
    train_samples = task.training_samples(train_samples)
    task.setup(train_samples)
    run.mkdir(parents=True)
    dump_config(cfg, run / rd.CONFIG)
    torch.save(task.state_dict(), run / rd.WEIGHTS)
    rd.write_json(run / rd.TASK_STATE, task_state_record(task, cfg, train_samples, rd.sha256_file(run / rd.WEIGHTS)))
