"""logs/metrics.csv of a run stopped at a chosen moment and resumed equals an uninterrupted run's.

A `Killed` exception stands for SIGKILL at an exact point of Lightning's order (2.6): just after
a checkpoint file appears (mid-epoch, at epoch end, best.ckpt), while one is being written,
just after a log row is written (a step's, validation's, an epoch mean's), and with
last.ckpt unreadable afterwards (resume from best.ckpt); with and without loader workers.
The toy run: 24 training samples in batches of 8 (3 steps per epoch), 2 epochs, last.ckpt
after every step, one row per step, one validation row and one epoch-mean row per epoch
(10 rows in all).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from engine_toy import TOY_CONFIG, make_toy_root  # noqa: E402
from medmm.engine import load_config, runlog  # noqa: E402
from medmm.engine.api import train  # noqa: E402
from medmm.engine.checkpoints import AtomicCheckpointIO, _own_containers  # noqa: E402

LOG = Path("logs") / "metrics.csv"


class Killed(BaseException):
    """Stands for a SIGKILL: nothing of the run after this point happens."""


def _overrides(workers: int) -> list[str]:
    return ["trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=1", "model.dropout=0.2",
            f"trainer.num_workers={workers}"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The config file and, per number of loader workers, an uninterrupted run (made once)."""
    tmp = tmp_path_factory.mktemp("runlog")
    root = make_toy_root(tmp / "data", {"train": 24, "val": 8, "test": 8})
    cfg_path = tmp / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    straight: dict[int, tuple[dict, str]] = {}

    def run(workers: int) -> tuple[dict, str]:
        if workers not in straight:
            out = tmp / f"straight{workers}"
            metrics = train(load_config(cfg_path, _overrides(workers)), out)
            straight[workers] = metrics["test"], (out / LOG).read_text()
        return straight[workers]

    return cfg_path, run


def _arm(monkeypatch, point: str, n: int) -> None:
    """Raise Killed at the n-th occurrence of `point`:
    "written:NAME" just after checkpoints/NAME appears on disk (os.replace done);
    "writing:NAME" with its temporary file complete but not renamed yet;
    "row" just after the n-th row of metrics.csv is written.
    """
    seen = [0]
    kind, _, name = point.partition(":")
    if kind in ("written", "writing"):
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name == name and Path(dst).parent.name == "checkpoints":
                seen[0] += 1
                if seen[0] == n:
                    if kind == "written":
                        real_replace(src, dst, *args, **kwargs)
                    raise Killed(point)
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
    else:
        real_save = runlog._AppendingWriter.save

        def save(self):
            before = seen[0]
            seen[0] += len(self.metrics)
            real_save(self)
            if before < n <= seen[0]:
                raise Killed(point)

        monkeypatch.setattr(runlog._AppendingWriter, "save", save)


# (where the kill lands, its n-th occurrence, loader workers)
ORDERINGS = [
    pytest.param("written:last.ckpt", 2, 0, id="mid-epoch-last.ckpt-written"),
    pytest.param("written:last.ckpt", 3, 0, id="epoch-end-last.ckpt-written"),
    pytest.param("written:best.ckpt", 1, 0, id="epoch-end-best.ckpt-written"),
    pytest.param("written:last.ckpt", 6, 0, id="final-last.ckpt-written"),
    pytest.param("writing:last.ckpt", 4, 0, id="during-mid-epoch-last.ckpt-write"),
    pytest.param("writing:last.ckpt", 3, 0, id="during-epoch-end-last.ckpt-write"),
    pytest.param("row", 2, 0, id="step-row-written"),
    pytest.param("row", 4, 0, id="validation-row-written"),
    pytest.param("row", 5, 0, id="epoch-row-written"),
    pytest.param("written:last.ckpt", 4, 1, id="mid-epoch-last.ckpt-written-workers"),
    pytest.param("written:last.ckpt", 3, 1, id="epoch-end-last.ckpt-written-workers"),
]


@pytest.mark.parametrize(("point", "n", "workers"), ORDERINGS)
def test_log_of_a_stopped_and_resumed_run_equals_the_uninterrupted_one(toy, tmp_path, monkeypatch, point, n, workers):
    cfg_path, straight = toy
    metrics, log = straight(workers)
    run = tmp_path / "run"
    _arm(monkeypatch, point, n)
    with pytest.raises(Killed):
        train(load_config(cfg_path, _overrides(workers)), run)
    monkeypatch.undo()
    if point.startswith("writing:"):  # what SIGKILL mid-write leaves beside the old checkpoint
        (run / "checkpoints" / f".{point.partition(':')[2]}.tmp").write_bytes(b"PK\x03\x04 partial")
    resumed = train(load_config(cfg_path, _overrides(workers)), run)
    assert (run / LOG).read_text() == log
    assert resumed["test"] == metrics
    assert not [p.name for p in run.rglob("*.tmp")]


def test_resume_from_best_ckpt_when_last_ckpt_is_unreadable(toy, tmp_path, monkeypatch):
    """Stopped in epoch 1 with last.ckpt then corrupted: the run restarts from epoch 0's best.ckpt,
    and the rows logged after it (epoch 1's) are written again, once."""
    cfg_path, straight = toy
    metrics, log = straight(0)
    run = tmp_path / "run"
    _arm(monkeypatch, "row", 7)  # the row of epoch 1's second step
    with pytest.raises(Killed):
        train(load_config(cfg_path, _overrides(0)), run)
    monkeypatch.undo()
    assert len(runlog.read_rows(run / LOG)) == 7
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    resumed = train(load_config(cfg_path, _overrides(0)), run)
    assert (run / LOG).read_text() == log
    assert resumed["test"] == metrics


def test_checkpoints_record_the_rows_logged_by_their_work(toy, tmp_path):
    """Each checkpoint on disk counts the rows of the work it covers: last.ckpt after the run
    counts all 10 rows (epoch-mean row included), best.ckpt of the last epoch too."""
    cfg_path, _ = toy
    run = tmp_path / "run"
    train(load_config(cfg_path, _overrides(0)), run)
    rows = runlog.read_rows(run / LOG)
    assert len(rows) == 10
    for name in ("last.ckpt", "best.ckpt"):
        ckpt = torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)
        if ckpt["epoch"] == 1:
            assert ckpt[runlog.LOG_ROWS_KEY] == 10, name


def test_held_checkpoints_are_written_on_release_with_the_row_count(tmp_path):
    io = AtomicCheckpointIO()
    path, other = tmp_path / "ck" / "last.ckpt", tmp_path / "ck" / "old.ckpt"
    io.hold = True
    io.save_checkpoint({"global_step": 1, "loops": {"a": [1]}}, path)
    io.save_checkpoint({"global_step": 2, "loops": {"a": [2]}}, path)  # replaces the held one
    io.save_checkpoint({"global_step": 2}, other)
    io.remove_checkpoint(other)  # a removed checkpoint is not written later
    assert not path.parent.exists() and io.held() == [str(path)]
    io.release({runlog.LOG_ROWS_KEY: 7})
    assert torch.load(path, weights_only=True) == {"global_step": 2, "loops": {"a": [2]}, runlog.LOG_ROWS_KEY: 7}
    assert not other.exists() and io.held() == []
    io.save_checkpoint({"global_step": 3}, path)
    io.drop()
    io.release({})
    assert torch.load(path, weights_only=True)["global_step"] == 2  # dropped: the old file stays
    io.hold = False
    io.save_checkpoint({"global_step": 4}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 4


def test_held_checkpoint_owns_its_containers_and_shares_its_tensors():
    t = torch.zeros(2)
    state = {"best_k_models": {"a": 1.0}, "rng": [t, (1, [2])]}
    held = _own_containers(state)
    state["best_k_models"]["b"] = 2.0
    state["rng"][1][1].append(3)
    assert held == {"best_k_models": {"a": 1.0}, "rng": [t, (1, [2])]}
    assert held["rng"][0] is t


def test_csv_logger_keeps_the_counted_rows_and_says_when_some_are_missing(tmp_path, caplog):
    from medmm.engine.runlog import RunCSVLogger

    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    (log_dir / "metrics.csv").write_text("a,step\n1,0\n2,1\n3,2\n4,3\n5")  # last line cut by a kill
    logger = RunCSVLogger(tmp_path, keep_rows=3)
    assert logger.rows_on_disk() == 3
    assert [r["a"] for r in runlog.read_rows(log_dir / "metrics.csv")] == ["1", "2", "3"]
    logger.log_metrics({"a": 9.0}, step=5)
    assert logger.rows_on_disk() == 4
    with caplog.at_level("WARNING", logger="medmm.engine"):
        assert RunCSVLogger(tmp_path, keep_rows=6).rows_on_disk() == 4
    assert "holds 4 complete rows, the checkpoint expects 6" in caplog.text
    # A checkpoint without a row count (older medmm): rows of the steps before its step.
    assert RunCSVLogger(tmp_path, before_step=2).rows_on_disk() == 2


def test_epoch_mean_row_averages_that_epochs_steps_only(toy):
    """train/loss_epoch of each epoch is the mean of that epoch's step losses (equal batches of
    8), not a running mean over every epoch so far."""
    _, straight = toy
    _, log = straight(0)
    rows = runlog.read_rows_text(log)
    for epoch in ("0", "1"):
        steps = [float(r["train/loss_step"]) for r in rows if r["epoch"] == epoch and "train/loss_step" in r]
        (mean,) = [float(r["train/loss_epoch"]) for r in rows if r["epoch"] == epoch and "train/loss_epoch" in r]
        assert len(steps) == 3
        assert mean == pytest.approx(sum(steps) / 3, rel=1e-6), epoch
