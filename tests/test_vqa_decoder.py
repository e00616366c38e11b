"""VQA answer decoder: teacher-forcing targets, causal training and greedy decoding that stops at EOS."""

from __future__ import annotations

import pytest
import torch

from medmm.tasks.vqa.decoder import BOS, EOS, PAD, SPECIAL, UNK, AnswerDecoder, answer_token_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = SPECIAL + ["left", "lung", "liver"]
INDEX = {w: i for i, w in enumerate(WORDS)}


def test_answer_token_ids_pad_cut_and_unknown_words():
    ids = answer_token_ids(["left lung", "liver", "left spleen lung"], INDEX, max_length=3)
    assert ids.tolist() == [
        [BOS, INDEX["left"], INDEX["lung"], EOS],
        [BOS, INDEX["liver"], EOS, PAD],
        [BOS, INDEX["left"], UNK, EOS],  # cut to max_length - 1 words
    ]


def test_decoder_learns_an_answer_and_greedy_stops_at_eos():
    torch.manual_seed(0)
    dec = AnswerDecoder(len(WORDS), dim=16, layers=1, heads=2, max_length=6, dropout=0.0)
    memory = torch.randn(2, 3, 16)
    targets = answer_token_ids(["left lung", "liver"], INDEX, max_length=6)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    for _ in range(150):
        logits = dec(targets[:, :-1], memory, None)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(WORDS)), targets[:, 1:].reshape(-1), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dec.eval()
    assert dec.greedy(memory, None) == [[INDEX["left"], INDEX["lung"]], [INDEX["liver"]]]


def test_teacher_forcing_is_causal():
    torch.manual_seed(0)
    dec = AnswerDecoder(len(WORDS), dim=16, layers=1, heads=2, max_length=6, dropout=0.0).eval()
    memory = torch.randn(1, 3, 16)
    a = dec(torch.tensor([[BOS, INDEX["left"], INDEX["lung"]]]), memory, None)
    b = dec(torch.tensor([[BOS, INDEX["left"], INDEX["liver"]]]), memory, None)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6) and not torch.allclose(a[:, 2], b[:, 2])
