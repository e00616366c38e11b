"""Self-critical sequence training (CIDEr-D reward) and initialising a run from another's weights."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from medmm.data import load_dataset  # noqa: E402
from medmm.engine import rundir as rd  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402
from medmm.tasks.report_generation import ReportGenerationTask  # noqa: E402

from tests.test_report_generation import FIXTURE, SMALL as TINY_REPORT  # noqa: E402

SMALL = {**TINY_REPORT, "image_encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]}, "max_length": 12}  # the tiny model of test_report_generation


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def train():
    return load_dataset("iu_xray", FIXTURE, "train").samples


def test_self_critical_step_rewards_and_gradients(train):
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config({**SMALL, "scst_samples": 4})
    task.setup(train)
    batch = task.collate(train[:4])
    task.train()
    out = task.training_step(batch)
    assert {"loss", "reward", "sample_length"} <= set(out) and "loss_report" not in out
    assert torch.isfinite(out["loss"]) and 0.0 <= float(out["reward"]) <= 10.0
    out["loss"].backward()
    assert task.decoder.embed.weight.grad is not None and task.image_encoder.parameters().__next__().grad is not None
    # validation (eval mode) keeps the cross-entropy loss, comparable across runs
    task.eval()
    with torch.no_grad():
        ev = task.training_step(batch)
    assert "loss_report" in ev and "reward" not in ev
    with pytest.raises(MedmmError):
        ReportGenerationTask.from_config({**SMALL, "scst_samples": 1})


def test_self_critical_training_raises_the_reward(train):
    """On a tiny set, REINFORCE with the other-samples baseline raises the mean CIDEr-D reward."""
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config({**SMALL, "scst_samples": 4, "max_length": 8})
    task.setup(train)
    batch = task.collate(train)
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    task.train()
    rewards = []
    for _ in range(30):
        opt.zero_grad()
        out = task.training_step(batch)
        out["loss"].backward()
        opt.step()
        rewards.append(float(out["reward"]))
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.1, rewards


def test_init_run_copies_weights_and_checks_the_data(tmp_path, train):
    torch.manual_seed(0)
    src = ReportGenerationTask.from_config(dict(SMALL))
    src.setup(train)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(src.state_dict(), run / rd.WEIGHTS)
    rd.write_json(run / rd.TASK_STATE, {"state": src.state(), "weights": rd.WEIGHTS})
    torch.manual_seed(1)
    dst = ReportGenerationTask.from_config({**SMALL, "init_run": str(run), "scst_samples": 2})
    dst.setup(train)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    # other training reports (here: one sample fewer) -> refused, never a silent partial load
    other = ReportGenerationTask.from_config({**SMALL, "init_run": str(run)})
    with pytest.raises(MedmmError, match="init_run"):
        other.setup(train[:-1])
