"""VQA answer-text head: the text term ranks answers by meaning, vectors are filled at setup from
the text encoder, saved with the weights, and late fusion gets one per modality head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.tasks.vqa import VQATask
from medmm.tasks.vqa_answer_text import AnswerTextHead, embed_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _ZeroHead(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.n)


def test_text_term_prefers_the_answer_whose_vector_matches_the_query():
    head = AnswerTextHead(_ZeroHead(3), in_dim=4, text_dim=4, n_answers=3, proj_dim=4)
    with torch.no_grad():  # identity projections: the text term is scale * cosine(layer-normed x, vector)
        head.query[1].weight.copy_(torch.eye(4))
        head.query[1].bias.zero_()
        head.key.weight.copy_(torch.eye(4))
        head.key.bias.zero_()
    head.set_answer_vectors(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
    logits = head(torch.tensor([[0.0, 5.0, -1.0, -1.0]]))
    assert logits.argmax(-1).item() == 1
    x = nn.functional.layer_norm(torch.tensor([[0.0, 5.0, -1.0, -1.0]]), (4,))
    expected = head.log_scale.exp() * nn.functional.normalize(x, dim=-1) @ head.answer_vectors.T
    assert torch.allclose(logits, expected, atol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        head.set_answer_vectors(torch.zeros(2, 4))


def test_embed_texts_keeps_order_across_batches():
    seen: list[list[str]] = []

    def encode(texts: list[str]) -> torch.Tensor:
        seen.append(texts)
        return torch.tensor([[float(len(t))] for t in texts])

    out = embed_texts(["a", "bb", "ccc", "dddd", "e"], encode, batch_size=2)
    assert out[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 1.0] and len(seen) == 3
    with pytest.raises(ValueError):
        embed_texts([], encode)


def _task(**kw) -> VQATask:
    torch.manual_seed(0)
    return VQATask.from_config({
        "image_encoder": "small_cnn", "image_encoder_kwargs": {"in_channels": 1, "image_size": 32, "widths": [8, 16]},
        "text_encoder": "scratch",
        "text_encoder_kwargs": {"vocab_size": 600, "dim": 32, "num_layers": 1, "num_heads": 2, "max_length": 64},
        "fusion": "gated", "dim": 32, "decoder_layers": 1, "decoder_heads": 2, "max_text_length": 64,
        "bootstrap_resamples": 0, "freeze_text": True, "answer_text": True, **kw})


@pytest.mark.parametrize("fusion", ["gated", "late"])
def test_setup_embeds_every_answer_and_the_state_round_trips(fusion):
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[:40]
    task = _task(fusion=fusion)
    task.setup(samples)
    heads = list(task.classifier.values()) if fusion == "late" else [task.classifier]
    expected = task._pooled_text(task.answers)
    for head in heads:
        assert isinstance(head, AnswerTextHead)
        assert torch.allclose(head.answer_vectors, expected)
        assert head.answer_vectors.abs().sum(-1).gt(0).all()  # no row left at the zero init
    task.eval()
    batch = task.collate(samples[:8])
    loss = task.training_step(batch)["loss"]
    assert torch.isfinite(loss)
    before = [r["prediction"] for r in task.answer(batch)]

    loaded = _task(fusion=fusion)
    loaded.load_state(task.state())
    loaded.load_state_dict(task.state_dict())  # answer vectors come back with the weights
    loaded.text_encoder.load_state_dict(task.text_encoder.state_dict())
    loaded.eval()
    assert [r["prediction"] for r in loaded.answer(loaded.collate(samples[:8]))] == before
