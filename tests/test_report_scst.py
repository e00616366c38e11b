"""Self-critical sequence training: the loss on its own (leave-one-out baseline, attribute reward,
sampling rules) and inside the report task (rewards, gradients, learning)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from medmm.data import load_dataset  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402
from medmm.models.decoders import GenerationConfig, TransformerReportDecoder, WordTokenizer  # noqa: E402
from medmm.tasks.report import scst as report_scst  # noqa: E402
from medmm.tasks.report.mbr import CiderConsensus  # noqa: E402
from medmm.tasks.report.scst import reference_probs, self_critical_loss  # noqa: E402
from medmm.tasks.report.task import ReportGenerationTask  # noqa: E402
from tests.conftest import merged  # noqa: E402
from tests.test_report_generation import FIXTURE  # noqa: E402
from tests.test_report_generation import SMALL as TINY_REPORT  # noqa: E402
from tests.test_report_grounding import _task  # noqa: E402

# the tiny model of test_report_generation
SMALL = merged(TINY_REPORT, image={"encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]}},
               decoding={"max_length": 12})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def train():
    return load_dataset("iu_xray", FIXTURE, "train").samples


def test_self_critical_step_rewards_and_gradients(train):
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config(merged(SMALL, scst={"samples": 4}))
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
        ReportGenerationTask.from_config(merged(SMALL, scst={"samples": 1}))


def test_self_critical_training_raises_the_reward(train):
    """On a tiny set, REINFORCE with the other-samples baseline raises the mean CIDEr-D reward."""
    torch.manual_seed(0)
    task = ReportGenerationTask.from_config(merged(SMALL, scst={"samples": 4}, decoding={"max_length": 8}))
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


def test_reference_probs_are_smoothed_one_hot_and_skip_unknown_classes():
    classes = {"modality": ["CT", "MR"], "plane": ["Axial", "Sagittal", "Coronal", "<other>"]}
    p = reference_probs(classes, [1, -1])
    assert set(p) == {"modality"} and p["modality"].tolist() == pytest.approx([0.05, 0.95])
    q = reference_probs(classes, [0, 2], smoothing=0.3)
    assert q["plane"].tolist() == pytest.approx([0.1, 0.1, 0.7, 0.1]) and q["plane"].sum() == pytest.approx(1.0)
    assert reference_probs({"single": ["only"]}, [0])["single"].tolist() == pytest.approx([0.95])


REPORTS = ["small right pleural effusion", "the heart is enlarged", "no acute fracture", "clear lungs"]


def _policy():
    torch.manual_seed(0)
    tok = WordTokenizer.fit(REPORTS)
    decoder = TransformerReportDecoder(len(tok), dim=16, layers=1, heads=2, max_length=10, dropout=0.0)
    memory = torch.randn(2, 3, 16, requires_grad=True)
    return decoder, memory, torch.zeros(2, 3, dtype=torch.bool), tok


class _Constant:
    """A reward that does not depend on the text: every advantage is zero."""

    def similarity(self, hypothesis, reference):
        return 2.0


def test_equal_rewards_give_zero_loss_and_the_attribute_term_shifts_the_reward():
    decoder, memory, pad, tok = _policy()
    gen = GenerationConfig(max_length=6)
    out = {}
    loss = self_critical_loss(decoder, memory, pad, REPORTS[:2], tok, _Constant(), gen, 3, out)
    assert float(loss.detach()) == 0.0 and float(out["reward"]) == 2.0 and "attribute_consistency" not in out
    assert 1.0 <= float(out["sample_length"]) <= 7.0
    lexicon = SimpleNamespace(consistency=lambda text, probs: -1.0 if probs else 0.0)
    attrs, refs = {"plane": ["Axial", "Sagittal"]}, torch.tensor([[0], [1]])
    out = {}
    self_critical_loss(decoder, memory, pad, REPORTS[:2], tok, _Constant(), gen, 3, out, lexicon, attrs, refs, 0.5)
    assert float(out["attribute_consistency"]) == -1.0 and float(out["reward"]) == pytest.approx(1.5)
    out = {}  # unknown reference classes: nothing to be consistent with
    self_critical_loss(decoder, memory, pad, REPORTS[:2], tok, _Constant(), gen, 3, out, lexicon, attrs, refs * 0 - 1, 0.5)
    assert float(out["attribute_consistency"]) == 0.0


@pytest.fixture()
def sampled_configs(spy_sample_decode) -> list[GenerationConfig]:
    """The GenerationConfig of every self-critical sampling call, in order."""
    return spy_sample_decode(report_scst)


def test_cider_rewards_push_the_policy_and_sampling_ignores_the_repeat_rules(sampled_configs):
    decoder, memory, pad, tok = _policy()
    gen = GenerationConfig(beam_size=3, max_length=6, repetition_penalty=1.3, no_immediate_repeat=True)
    out = {}
    loss = self_critical_loss(decoder, memory, pad, REPORTS[:2], tok, CiderConsensus(REPORTS), gen, 4, out)
    # the policy is sampled as the decoder's own distribution: no beam, no inference-only rules
    assert [(c.beam_size, c.repetition_penalty, c.no_immediate_repeat) for c in sampled_configs] == [(1, 1.0, False)]
    assert torch.isfinite(loss) and 0.0 <= float(out["reward"]) <= 10.0
    loss.backward()
    assert decoder.embed.weight.grad is not None and memory.grad is not None


def test_task_samples_under_its_decoding_without_the_repeat_rules(train, sampled_configs):
    seen = sampled_configs
    task = ReportGenerationTask.from_config(merged(SMALL, scst={"samples": 2}, decoding={"no_immediate_repeat": True, "repetition_penalty": 1.3}))
    task.setup(train)
    task.train()
    task.training_step(task.collate(train[:2]))
    assert task.generation.no_immediate_repeat and task.generation.repetition_penalty == 1.3
    assert seen and seen[-1].repetition_penalty == 1.0 and not seen[-1].no_immediate_repeat
    assert seen[-1].max_length == task.generation.max_length


def test_self_critical_reward_includes_attribute_consistency():
    task, train = _task(scst={"samples": 3, "attribute_weight": 1.0})
    task.train()
    batch = task.collate(train[:4])
    probs = reference_probs(task.attributes, batch["attributes"][0].tolist())
    assert set(probs) == {"modality", "plane"} and probs["modality"].sum() == pytest.approx(1.0)
    out = task.training_step(batch)
    assert "attribute_consistency" in out and float(out["attribute_consistency"]) <= 0.0
    out["loss"].backward()
    plain, _ = _task(scst={"samples": 3})
    plain.train()
    assert "attribute_consistency" not in plain.training_step(plain.collate(train[:4]))
