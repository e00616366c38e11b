"""Runs that can be trusted after kills, moves, damage and mistakes (issue 24 items 1 and 5,
issue 31 item 4): the checkpoint order, the config a checkpoint carries, the fallback from an
unreadable last.ckpt, write errors and failed starts."""

from __future__ import annotations

import csv
import errno
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from engine_toy import TOY_CONFIG, make_toy_root  # noqa: E402
from medmm.engine import load_config  # noqa: E402
from medmm.engine import rundir as rd  # noqa: E402
from medmm.engine.api import train  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trust")
    root = make_toy_root(tmp / "data", {"train": 48, "val": 16, "test": 16})
    (tmp / "toy.yaml").write_text(TOY_CONFIG.format(root=root))
    metrics = train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2"]), tmp / "run")
    return tmp, metrics


def _val_nll(run_dir) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [float(r["val/nll"]) for r in csv.DictReader(f) if r.get("val/nll")]


def _best_score(ckpt_path) -> float:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    states = [v for k, v in ckpt["callbacks"].items() if k.startswith("RunModelCheckpoint")]
    assert len(states) == 1
    return float(states[0]["best_model_score"])


def test_last_ckpt_carries_this_epochs_best_score_even_in_a_copied_run_dir(run, tmp_path):
    tmp, _ = run
    # last.ckpt is written after ModelCheckpoint has scored the epoch: its best score is the
    # best of ALL epochs so far (written before, it was one epoch old).
    assert _best_score(tmp / "run/checkpoints/last.ckpt") == pytest.approx(min(_val_nll(tmp / "run")))
    copy = tmp_path / "copy"
    shutil.copytree(tmp / "run", copy)
    train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=3"]), copy)
    # The copy kept its best score on resume (Lightning drops it when the folder changed) ...
    assert _best_score(copy / "checkpoints/last.ckpt") == pytest.approx(min(_val_nll(copy)))
    assert len(_val_nll(copy)) == 3  # ... and its log kept the two epochs before the resume
    assert (tmp / "run/checkpoints/best.ckpt").exists()  # the original's best.ckpt untouched


def test_unreadable_last_ckpt_falls_back_to_best_ckpt(run, tmp_path, caplog):
    tmp, metrics = run
    copy = tmp_path / "copy"
    shutil.copytree(tmp / "run", copy)
    last = copy / "checkpoints/last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    best_epoch = torch.load(copy / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)["epoch"]
    again = train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2"]), copy)
    assert f"resuming from best.ckpt (epoch {best_epoch})" in caplog.text
    assert again["test"] == metrics["test"]  # the later epochs trained again, same result
    (copy / "checkpoints/best.ckpt").write_bytes(b"")
    last.write_bytes(b"garbage")
    with pytest.raises(MedmmError, match=r"last.ckpt: cannot resume, the checkpoint is unreadable .*best.ckpt is unreadable too"):
        train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2"]), copy)


def test_deleted_config_yaml_cannot_change_the_config(run, tmp_path, caplog):
    tmp, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(tmp / "run", copy)
    (copy / "config.yaml").unlink()
    with pytest.raises(MedmmError, match=r"different config \(trainer.lr\)"):
        train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2", "trainer.lr=0.5"]), copy)
    assert not (copy / "config.yaml").exists()  # refused: nothing rewritten
    train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2"]), copy)  # the same config resumes
    assert "config.yaml was missing; writing it again" in caplog.text
    assert load_config(copy / "config.yaml").trainer.lr == 0.02


def test_run_of_an_earlier_medmm_without_a_newer_field_resumes(run, tmp_path):
    """A field added to the engine since a run was saved reads as its default, not as a change."""
    import yaml

    tmp, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(tmp / "run", copy)
    ckpt_path = copy / "checkpoints/last.ckpt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    del ckpt["medmm_config"]["trainer"]["onecycle_pct_start"]  # as written before that option existed
    torch.save(ckpt, ckpt_path)
    raw = yaml.safe_load((copy / "config.yaml").read_text())
    del raw["trainer"]["onecycle_pct_start"]
    (copy / "config.yaml").write_text(yaml.safe_dump(raw))
    train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2"]), copy)  # resumes
    with pytest.raises(MedmmError, match=r"different config \(trainer.onecycle_pct_start\)"):
        train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2", "trainer.onecycle_pct_start=0.5"]), copy)


def test_stale_temp_files_are_removed_on_start(run, tmp_path):
    tmp, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(tmp / "run", copy)
    stale = [copy / "checkpoints/.last.ckpt.tmp-12345", copy / "checkpoints/.best.ckpt.tmp", copy / "metrics/.val.json.tmp-7",
             copy / "logs/.metrics.csv.tmp"]
    for f in stale:
        f.write_bytes(b"x" * 100)
    keep = copy / "checkpoints/.notes.txt"
    keep.write_text("not ours")
    train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2"]), copy)
    assert not any(f.exists() for f in stale) and keep.exists()
    assert not list(copy.rglob("*.tmp")) and not list(copy.rglob("*.tmp-*"))


def test_failed_start_leaves_no_folder_but_keeps_an_earlier_run(run, tmp_path):
    tmp, _ = run
    new = tmp_path / "new"
    with pytest.raises(MedmmError, match=r"data.root .* does not exist; pass .* data.root=PATH"):
        train(load_config(tmp / "toy.yaml", ["data.root=/no/such/folder"]), new)
    assert not new.exists()
    copy = tmp_path / "copy"
    shutil.copytree(tmp / "run", copy)
    with pytest.raises(MedmmError):
        train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=2", "trainer.lr=0.5"]), copy)
    assert (copy / "model.pt").exists() and (copy / "checkpoints/last.ckpt").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_disk_or_read_only_folder_is_one_line_naming_it(run, tmp_path, monkeypatch, code):
    tmp, _ = run
    out = tmp_path / "out"

    def refuse(path, *a, **k):
        raise OSError(code, errno.errorcode[code], str(path))

    # As root the test cannot make a real read-only folder; the write that fails is simulated.
    monkeypatch.setattr(rd, "write_json", refuse)
    with pytest.raises(MedmmError) as info:
        train(load_config(tmp / "toy.yaml", ["trainer.max_epochs=1"]), out)
    msg = str(info.value)
    assert msg.startswith(f"{out}: cannot write") and "\n" not in msg
    assert not out.exists()  # created by the failed call, no checkpoint: removed


def test_crash_between_the_last_batch_and_validation_resumes_the_whole_epoch_end(run, tmp_path, monkeypatch):
    from medmm.engine.module import TaskModule

    tmp, metrics = run
    crashed = tmp_path / "crashed"
    overrides = ["trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=1"]

    def killed_before_validation(self):
        raise RuntimeError("simulated kill before validation")

    with monkeypatch.context() as m:
        m.setattr(TaskModule, "on_validation_epoch_start", killed_before_validation)
        with pytest.raises(RuntimeError, match="simulated kill"):
            train(load_config(tmp / "toy.yaml", overrides), crashed)
    # No step checkpoint after the epoch's last batch (6 per epoch): resuming from "every batch
    # done, epoch not ended" skipped that epoch's validation and end.
    assert torch.load(crashed / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 5
    resumed = train(load_config(tmp / "toy.yaml", overrides), crashed)
    assert resumed["test"] == metrics["test"]
    log = "logs/metrics.csv"
    assert (crashed / log).read_text() == (tmp / "run" / log).read_text()
