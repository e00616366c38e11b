"""Report decoder: tokenizer, teacher-forced decoder, greedy and beam search, no-repeat-n-gram,
repetition penalty and no immediate repeat."""

from __future__ import annotations

from itertools import pairwise

import pytest

torch = pytest.importorskip("torch")

from medmm.errors import MedmmError  # noqa: E402
from medmm.models.decoders import (  # noqa: E402
    BOS,
    EOS,
    GenerationConfig,
    TransformerReportDecoder,
    WordTokenizer,
    banned_next_tokens,
    beam_search,
    beam_search_nbest,
    generate,
    greedy_decode,
    join_tokens,
    sample_decode,
    sequence_logprobs,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on the shared, loaded CPU two spinning OpenMP threads are ~50x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class BigramDecoder(torch.nn.Module):
    """A decoder whose next-token logits depend only on the last token (a fixed table)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, tokens, memory, pad=None):
        return self.table[tokens]


def test_tokenizer_round_trip_and_unknown_words():
    tok = WordTokenizer.fit(["The heart is normal.", "The lungs are clear, no effusion."], min_freq=1)
    ids = tok.encode("The heart is clear.")
    assert ids[0] == BOS and ids[-1] == EOS
    assert tok.decode(ids) == "the heart is clear."
    assert tok.decode(tok.encode("the spleen")) == "the <unk>"
    assert WordTokenizer.from_dict(tok.to_dict()).words == tok.words
    assert len(tok.encode("a b c d e f", max_length=4)) == 4
    assert join_tokens(["no", "effusion", ",", "clear", "."]) == "no effusion, clear."
    with pytest.raises(MedmmError):
        WordTokenizer(["x", "y"])


def test_min_freq_drops_rare_words():
    tok = WordTokenizer.fit(["lung lung heart"], min_freq=2)
    assert "lung" in tok.words and "heart" not in tok.words


def test_banned_next_tokens():
    assert banned_next_tokens([5, 6, 5], 2) == [6]  # "5 6" exists, last token 5 -> 6 banned
    assert sorted(banned_next_tokens([5, 6, 7, 5, 6], 3)) == [7]
    assert banned_next_tokens([5, 6], 3) == []
    assert sorted(banned_next_tokens([4, 4, 9], 1)) == [4, 9]
    assert banned_next_tokens([5, 6, 5], 0) == []


def _random_decoder(seed: int = 0, vocab: int = 30):
    torch.manual_seed(seed)
    dec = TransformerReportDecoder(vocab, dim=32, layers=2, heads=4, max_length=40, dropout=0.0).eval()
    mem = torch.randn(3, 5, 32)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1, 3:] = True
    return dec, mem, pad


@pytest.mark.parametrize("ngram", [0, 2])
def test_beam_one_equals_greedy(ngram):
    dec, mem, pad = _random_decoder()
    cfg = GenerationConfig(beam_size=1, max_length=20, no_repeat_ngram_size=ngram)
    g = greedy_decode(dec, mem, pad, cfg)
    b = beam_search(dec, mem, pad, cfg)
    assert g == b
    assert any(len(x) > 0 for x in g)


def test_no_repeat_ngram_forbids_repeats():
    v = 8
    table = torch.full((v, v), -5.0)
    table[:, 5] = 5.0  # always prefers token 5, then 6
    table[:, 6] = 4.0
    table[:, EOS] = -10.0
    dec = BigramDecoder(table)
    mem = torch.zeros(2, 1, 4)
    free = greedy_decode(dec, mem, None, GenerationConfig(max_length=10))
    assert free[0] == [5] * 10  # without the rule it repeats
    for beam in (1, 3):
        for n in (1, 2, 3):
            out = generate(dec, mem, None, GenerationConfig(beam_size=beam, max_length=10, no_repeat_ngram_size=n))
            for seq in out:
                grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
                assert len(grams) == len(set(grams)), (beam, n, seq)


def test_beam_search_beats_greedy_trap_and_length_penalty():
    # Greedy takes token 4 (p=0.6) whose continuation is poor; beam finds 5 -> EOS.
    v = 7
    table = torch.full((v, v), -30.0)
    table[BOS, 4], table[BOS, 5] = 0.0, -0.4055  # p(4)=0.6, p(5)=0.4
    table[4, 6] = table[4, 5] = 0.0  # after 4: two equal choices (p = 0.5 each)
    table[5, EOS] = 0.0
    table[6, EOS] = 0.0
    dec = BigramDecoder(torch.log_softmax(table, -1))
    mem = torch.zeros(1, 1, 4)
    assert greedy_decode(dec, mem, None, GenerationConfig(max_length=5))[0][0] == 4
    best = beam_search(dec, mem, None, GenerationConfig(beam_size=3, max_length=5, length_penalty=0.0))
    assert best[0] == [5]
    # a strong length penalty (> 1) prefers the longer hypothesis 4 6
    longer = beam_search(dec, mem, None, GenerationConfig(beam_size=3, max_length=5, length_penalty=3.0))
    assert len(longer[0]) == 2


def test_nbest_is_sorted_and_led_by_the_beam_search_result():
    # the trap table above: three finished hypotheses [5], [4, 6], [4, 5] with known scores
    v = 7
    table = torch.full((v, v), -30.0)
    table[BOS, 4], table[BOS, 5] = 0.0, -0.4055
    table[4, 6] = table[4, 5] = 0.0
    table[5, EOS] = table[6, EOS] = 0.0
    dec = BigramDecoder(torch.log_softmax(table, -1))
    mem = torch.zeros(1, 1, 4)
    cfg = GenerationConfig(beam_size=3, max_length=5, length_penalty=0.0)
    hyps = beam_search_nbest(dec, mem, None, cfg)[0]
    assert [h for _, h in hyps][:1] == beam_search(dec, mem, None, cfg)
    # early stopping: the sample ends once it holds beam_size (3) finished hypotheses
    assert len(hyps) == 3 and hyps[0][1] == [5] and [4, 5] in [h for _, h in hyps]
    scores = [s for s, _ in hyps]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(-0.9163, abs=1e-3)  # log 0.4 (+ log 1 for EOS)
    # on a real decoder too: N-best lists are sorted, distinct, and the first equals beam search
    rdec, rmem, rpad = _random_decoder(2)
    cfg = GenerationConfig(beam_size=4, max_length=8, no_repeat_ngram_size=2)
    nb = beam_search_nbest(rdec, rmem, rpad, cfg)
    assert [h[0][1] for h in nb] == beam_search(rdec, rmem, rpad, cfg)
    for h in nb:
        assert 1 <= len(h) <= 4 + 4 and len({tuple(x) for _, x in h}) == len(h)
        assert [s for s, _ in h] == sorted((s for s, _ in h), reverse=True)


def test_min_and_max_length():
    dec, mem, pad = _random_decoder(1)
    for beam in (1, 2):
        out = generate(dec, mem, pad, GenerationConfig(beam_size=beam, min_length=4, max_length=6))
        assert all(4 <= len(x) <= 6 for x in out)
    with pytest.raises(MedmmError):
        GenerationConfig(min_length=5, max_length=2).check()


def test_decoder_teacher_forcing_shapes_and_causality():
    dec, mem, pad = _random_decoder()
    x = torch.randint(4, 30, (3, 7))
    a = dec(x, mem, pad)
    assert a.shape == (3, 7, 30)
    x2 = x.clone()
    x2[:, 5:] = 9  # changing later tokens must not change earlier outputs
    assert torch.allclose(a[:, :5], dec(x2, mem, pad)[:, :5], atol=1e-5)


class FullRerun(torch.nn.Module):
    """Wraps a decoder so that generation re-runs the whole prefix (no KV cache): the reference."""

    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, tokens, memory, pad=None):
        return self.dec(tokens, memory, pad)


def test_incremental_step_matches_full_forward():
    dec, mem, pad = _random_decoder(3)
    tokens = torch.tensor([[BOS, 5, 9, 7, 11], [BOS, 6, 6, 8, 4], [BOS, 12, 13, 14, 15]])
    full = dec(tokens, mem, pad)
    cache = None
    for t in range(tokens.shape[1]):
        logits, cache = dec.step(tokens[:, t], t, mem, pad, cache)
        assert torch.allclose(logits, full[:, t], atol=1e-5), t
    with pytest.raises(MedmmError):
        dec.step(tokens[:, 0], 40, mem, pad, cache)


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_cached_generation_equals_full_rerun(beam):
    dec, mem, pad = _random_decoder(4)
    for cfg in (GenerationConfig(beam_size=beam, max_length=12, no_repeat_ngram_size=2),
                GenerationConfig(beam_size=beam, max_length=9, min_length=4, length_penalty=1.5),
                GenerationConfig(beam_size=beam, max_length=12, repetition_penalty=1.7, no_immediate_repeat=True)):
        assert generate(dec, mem, pad, cfg) == generate(FullRerun(dec), mem, pad, cfg)
        if beam > 1:
            a, b = beam_search_nbest(dec, mem, pad, cfg), beam_search_nbest(FullRerun(dec), mem, pad, cfg)
            assert [[h for _, h in x] for x in a] == [[h for _, h in x] for x in b]
            assert [s for x in a for s, _ in x] == pytest.approx([s for x in b for s, _ in x], abs=1e-4)


def test_sampling_follows_rules_and_sequence_logprobs_scores_it():
    dec, mem, pad = _random_decoder(5)
    g = torch.Generator().manual_seed(0)
    cfg = GenerationConfig(max_length=10, min_length=3, no_repeat_ngram_size=2)
    texts = sample_decode(dec, mem, pad, cfg, n_samples=4, generator=g)
    assert len(texts) == 12
    for t in texts:
        assert 3 <= len(t) <= 10 and 3 not in t  # min length, never <unk>
        grams = [tuple(t[i : i + 2]) for i in range(len(t) - 1)]
        assert len(grams) == len(set(grams))
    # same seed -> same samples (cached) as the full re-run reference
    again = sample_decode(FullRerun(dec), mem, pad, cfg, n_samples=4, generator=torch.Generator().manual_seed(0))
    assert again == texts
    # the log-probability of a text equals the sum of the per-step log-probs of its tokens (+ EOS)
    rows = mem.repeat_interleave(4, 0)
    rpad = pad.repeat_interleave(4, 0)
    lp, n = sequence_logprobs(dec, rows, rpad, texts, 10)
    i = 0
    seq = torch.tensor([[BOS] + texts[i] + ([EOS] if len(texts[i]) < 10 else [])])
    full = torch.log_softmax(dec(seq[:, :-1], rows[i : i + 1], rpad[i : i + 1]), -1)[0].detach()
    want = sum(float(full[j, seq[0, j + 1]]) for j in range(seq.shape[1] - 1))
    assert float(lp[i]) == pytest.approx(want, abs=1e-4) and int(n[i]) == seq.shape[1] - 1
    lp.sum().backward()  # with gradients (self-critical training)
    assert dec.embed.weight.grad is not None
    with pytest.raises(MedmmError):
        sample_decode(dec, mem, pad, cfg, n_samples=0)


def _stutter_table(v: int = 9) -> torch.Tensor:
    """Bigram logits whose argmax after token 5 is 5 again and after 6 is 6 again: a stutterer.
    Second choice after 5 is 6, after 6 it is 5; EOS is never likely."""
    table = torch.full((v, v), -4.0)
    table[:, EOS] = -10.0
    table[BOS, 5] = 3.0
    table[5, 5], table[5, 6] = 3.0, 2.0
    table[6, 6], table[6, 5] = 3.0, 2.0
    return table


def _has_immediate_repeat(seq: list[int]) -> bool:
    return any(a == b for a, b in pairwise(seq))


def test_no_immediate_repeat_stops_stutter_but_lets_tokens_recur():
    dec = BigramDecoder(_stutter_table())
    mem = torch.zeros(2, 1, 4)
    assert greedy_decode(dec, mem, None, GenerationConfig(max_length=8))[0] == [5] * 8  # the stutter
    # no_repeat_ngram_size 3 lets "5 5" through (only the 3-gram "5 5 5" is banned)
    assert _has_immediate_repeat(greedy_decode(dec, mem, None, GenerationConfig(max_length=8, no_repeat_ngram_size=3))[0])
    for beam in (1, 3):
        out = generate(dec, mem, None, GenerationConfig(beam_size=beam, max_length=8, no_immediate_repeat=True))
        # 5 and 6 each recur (not banned in general), never twice in a row
        assert out[0] == [5, 6, 5, 6, 5, 6, 5, 6], beam
    texts = sample_decode(dec, mem, None, GenerationConfig(max_length=8, no_immediate_repeat=True), n_samples=5,
                          generator=torch.Generator().manual_seed(0))
    assert not any(_has_immediate_repeat(t) for t in texts)


def test_repetition_penalty_is_ctrl_on_logits_and_changes_the_argmax():
    from medmm.models.decoders import _penalise_repeats

    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 2.0, -1.0, 3.0], [0.0, 0.0, 0.0, 0.0, 2.0, -1.0, 3.0]])
    out = _penalise_repeats(logits, [[4, 5, 4], []], 2.0)
    # seen positive logit divided (once, though seen twice), seen negative multiplied, unseen kept
    assert out[0].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, -2.0, 3.0]
    assert out[1].tolist() == logits[1].tolist()  # nothing generated yet: nothing penalised
    assert _penalise_repeats(logits, [[4, 5]], 1.0) is logits  # 1 = off
    dec = BigramDecoder(_stutter_table())
    mem = torch.zeros(1, 1, 4)
    for beam in (1, 3):
        free = generate(dec, mem, None, GenerationConfig(beam_size=beam, max_length=6))[0]
        pen = generate(dec, mem, None, GenerationConfig(beam_size=beam, max_length=6, repetition_penalty=2.0))[0]
        assert free == [5] * 6
        # after 5, its logit 3 becomes 1.5 < 2 for token 6: the penalty takes the next word
        assert pen[:2] == [5, 6], (beam, pen)


def test_repeat_options_are_validated():
    for bad in (0.5, 0.0, -1.0, float("nan"), float("inf"), "1.2", True):
        with pytest.raises(MedmmError, match="repetition_penalty"):
            GenerationConfig(repetition_penalty=bad).check()
    with pytest.raises(MedmmError, match="no_immediate_repeat"):
        GenerationConfig(no_immediate_repeat="yes").check()
    GenerationConfig(repetition_penalty=1, no_immediate_repeat=True).check()
