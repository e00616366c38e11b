"""Hugging Face causal LMs as report decoders (`medmm.models.prefix_lm`, `model.decoder.pretrained`):
tiny random GPT-2 / Llama / Qwen2 folders (`medmm.models.tiny_causal_lm`), the decoder interface
the report task's decoding relies on, and the report task through the engine: train 2 steps on the
IU X-ray fixture, crash and resume exactly, predict, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
import torch

from cli_run import run_cli as _cli
from medmm.models.decoders import BOS, EOS, PAD, UNK, GenerationConfig, generate, pad_batch, sequence_logprobs
from medmm.models.prefix_lm import OFFSET, HFPrefixDecoder, HFTokenizer, tokenizer_from_dict
from medmm.models.tiny_causal_lm import write_tiny_causal_lm

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "src" / "medmm" / "tasks" / "report" / "tiny.yaml"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lms(tmp_path_factory) -> dict[str, Path]:
    """Each causal LM family written once through `medmm models tiny`."""
    root = tmp_path_factory.mktemp("causal_lms")
    for f in ("gpt2", "llama", "qwen2"):
        assert "causal LM (report decoder)" in _cli("models", "tiny", f, "--out", str(root / f))
        assert json.loads((root / f / "config.json").read_text())["architectures"][0].endswith(("LMHeadModel", "ForCausalLM"))
    return {f: root / f for f in ("gpt2", "llama", "qwen2")}


def test_tiny_writer_is_seeded_and_refuses_a_used_folder(tmp_path, lms):
    from medmm.errors import MedmmError

    write_tiny_causal_lm("gpt2", tmp_path / "again", seed=0)
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (lms["gpt2"] / "model.safetensors").read_bytes()
    with pytest.raises(MedmmError, match="not empty"):
        write_tiny_causal_lm("gpt2", tmp_path / "again")
    with pytest.raises(MedmmError, match="known: gpt2"):
        write_tiny_causal_lm("gpt9", tmp_path / "x")


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_prefix_decoder_speaks_the_report_decoder_interface(lms, family):
    tok = HFTokenizer(str(lms[family]))
    assert tokenizer_from_dict(tok.to_dict()).source == tok.source
    ids = tok.encode("The heart is normal.")
    assert ids[0] == BOS and ids[-1] == EOS and min(ids[1:-1]) >= OFFSET
    assert tok.decode(ids) == "the heart is normal."  # lower-cased words, as the word decoder writes them
    assert len(tok.encode("the heart is normal and the lungs are clear", max_length=5)) == 5

    torch.manual_seed(0)
    dec = HFPrefixDecoder(str(lms[family]), 16, tok).eval()  # no dropout: outputs compared exactly
    memory = torch.randn(2, 5, 16)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True  # a study with fewer image tokens
    tgt = pad_batch([tok.encode("heart normal"), tok.encode("lungs clear.")])
    logits = dec(tgt[:, :-1], memory, pad)
    assert logits.shape == (2, tgt.shape[1] - 1, len(tok))
    probs = logits.detach().softmax(-1)
    assert float(probs[..., [PAD, BOS, UNK, OFFSET + tok.eos_id]].max()) == 0.0  # EOS only as medmm's EOS
    assert torch.allclose(dec(tgt, memory, pad, last_only=True)[:, -1], dec(tgt, memory, pad)[:, -1], atol=1e-5)
    # the prefix is read: other image tokens, other text distribution
    assert not torch.allclose(logits, dec(tgt[:, :-1], memory + 1, pad), atol=1e-4)

    # learnable: a few steps on one study make its report much more likely
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    before = float(sequence_logprobs(dec, memory[:1], pad[:1], [tgt[0, 1:-1].tolist()], 20)[0][0])
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(dec(tgt[:1, :-1], memory[:1], pad[:1]).flatten(0, 1), tgt[0, 1:], ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float(sequence_logprobs(dec, memory[:1], pad[:1], [tgt[0, 1:-1].tolist()], 20)[0][0])
    assert after > before + 5, (before, after)
    out = generate(dec.eval(), memory, pad, GenerationConfig(beam_size=2, max_length=6, no_repeat_ngram_size=3))
    assert len(out) == 2 and all(len(g) <= 6 and all(i >= OFFSET for i in g) for g in out)


class _Uncached(torch.nn.Module):
    """The same decoder without `step`: decoding re-runs memory + text at every position."""

    def __init__(self, decoder: torch.nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, *args, **kwargs):
        return self.decoder(*args, **kwargs)


@pytest.mark.parametrize("family,lora", [("gpt2", None), ("llama", {"r": 4, "alpha": 8}), ("qwen2", None)])
def test_kv_cached_decoding_equals_rerunning_the_prefix(lms, family, lora):
    """`step` with the LM's cache: the same next-token logits as `forward` on the whole prefix at
    every position (memory padding included), and greedy, beam (cache rows reordered) and sampled
    texts identical to decoding without the cache."""
    from medmm.models.decoders import _Stepper, sample_decode

    tok = HFTokenizer(str(lms[family]))
    torch.manual_seed(1)
    dec = HFPrefixDecoder(str(lms[family]), 16, tok, lora).eval()
    assert _Stepper(dec, torch.zeros(1, 1, 16), None).incremental and not _Stepper(_Uncached(dec), torch.zeros(1, 1, 16), None).incremental
    memory = torch.randn(3, 5, 16)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1, 2:] = True
    pad[2, 4:] = True
    seq = pad_batch([tok.encode("the heart is normal in size"), tok.encode("no focal consolidation or effusion"),
                     tok.encode("lungs are clear bilaterally .")])[:, :7]
    cache = None
    with torch.no_grad():
        for t in range(seq.shape[1]):
            step_logits, cache = dec.step(seq[:, t], t, memory, pad, cache)
            assert torch.allclose(step_logits, dec(seq[:, : t + 1], memory, pad)[:, -1], atol=1e-4), t
    for cfg in (GenerationConfig(max_length=8), GenerationConfig(beam_size=3, max_length=8, length_penalty=1.0),
                GenerationConfig(beam_size=2, max_length=6, no_repeat_ngram_size=2, repetition_penalty=1.3)):
        assert generate(dec, memory, pad, cfg) == generate(_Uncached(dec), memory, pad, cfg), cfg
    cached = sample_decode(dec, memory, pad, GenerationConfig(max_length=8), n_samples=2, generator=torch.Generator().manual_seed(0))
    plain = sample_decode(_Uncached(dec), memory, pad, GenerationConfig(max_length=8), n_samples=2,
                          generator=torch.Generator().manual_seed(0))
    assert cached == plain and any(cached)


def test_lora_decoder_state_holds_adapters_and_prefix_only_and_reloads_strictly(lms):
    tok = HFTokenizer(str(lms["llama"]))
    torch.manual_seed(0)
    dec = HFPrefixDecoder(str(lms["llama"]), 16, tok, {"r": 4, "alpha": 8})
    with torch.no_grad():
        for name, p in dec.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)  # as training would: a non-zero adapter
    sd = dec.state_dict()
    assert sd and all("lora_" in k or k.startswith("prefix.") for k in sd)
    fresh = HFPrefixDecoder(str(lms["llama"]), 16, tok, {"r": 4, "alpha": 8})
    fresh.load_state_dict(sd, strict=True)
    memory, tgt = torch.randn(1, 3, 16), pad_batch([tok.encode("no effusion")])
    assert torch.allclose(fresh.eval()(tgt, memory), dec.eval()(tgt, memory), atol=1e-5)
    with pytest.raises(RuntimeError, match="lora_A"):
        fresh.load_state_dict({k: v for k, v in sd.items() if "lora_A" not in k}, strict=True)
    gpt2 = HFPrefixDecoder(str(lms["gpt2"]), 16, HFTokenizer(str(lms["gpt2"])), {"r": 4})  # Conv1D c_attn
    assert any("c_attn.lora_A" in k for k in gpt2.state_dict())


@pytest.mark.parametrize("family,lora", [("gpt2", None), pytest.param("llama", "{r: 4, alpha: 8}", marks=pytest.mark.slow)])
def test_report_task_trains_resumes_predicts_and_evaluates_with_a_causal_lm(lms, family, lora, tmp_path, monkeypatch):
    from medmm.engine import load_config
    from medmm.engine.api import train
    from medmm.tasks.report.task import ReportGenerationTask

    over = [f"model.decoder.pretrained={lms[family]}", f"model.decoder.lora={lora or 'null'}",
            "trainer.checkpoint_every_n_steps=1", "model.decoding.beam_size=2", "model.decoding.max_length=6"]
    straight = tmp_path / "straight"
    train(load_config(TINY_CONFIG, over), straight)
    calls = [0]
    original = ReportGenerationTask.training_step

    def crashing(self, batch):
        if self.training:
            calls[0] += 1
            if calls[0] == 2:
                raise RuntimeError("simulated crash")
        return original(self, batch)

    with monkeypatch.context() as m:
        m.setattr(ReportGenerationTask, "training_step", crashing)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(load_config(TINY_CONFIG, over), tmp_path / "crashed")
    train(load_config(TINY_CONFIG, over), tmp_path / "crashed")  # resumes from step 1
    a, b = (torch.load(r / "model.pt", weights_only=True) for r in (straight, tmp_path / "crashed"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a), "a resumed run must end like an uninterrupted one"
    lm_keys = [k for k in a if k.startswith("decoder.lm.")]
    assert lm_keys and (all("lora_" in k for k in lm_keys) if lora else any("embed" in k or "wte" in k for k in lm_keys))

    preds = tmp_path / "preds.jsonl"
    _cli("predict", str(straight), "--data", str(REPO / "tests/fixtures/iu_xray_tiny"), "--split", "test", "--out", str(preds))
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert rows and all(isinstance(r["prediction"], str) and r["prediction"] for r in rows)
    ev = tmp_path / "eval.json"
    _cli("evaluate", str(straight), "--split", "test", "--out", str(ev))
    m = json.loads(ev.read_text())
    assert {"bleu_4", "cider_d"} <= set(m["metrics"])
    src = m["provenance"]["pretrained"][0]
    assert src["path"] == str(lms[family].resolve()) and src["weights_sha256"]["model.safetensors"]

    # no cross-attention to map sentences: the generated report by the image regions behind it, per view
    from medmm.explain_run import explain_run

    out = explain_run(straight, REPO / "tests/fixtures/iu_xray_tiny", [rows[0]["id"]], tmp_path / "explain",
                      methods=("occlusion",), faithfulness_steps=4, n_random=1)
    rec = out["samples"][0]
    assert set(rec["heatmaps"]) == {"view1_occlusion", "view2_occlusion"} and rec["output"] and rec["reference"]
    assert rec["output"] == rows[0]["prediction"] and rec["log_prob"] < 0  # the text `predict` wrote
    assert "view 2 input" in (tmp_path / "explain" / "index.html").read_text()


def test_self_critical_training_and_consensus_decoding_run_with_a_causal_lm(lms, tmp_path, monkeypatch):
    """SCST (sampled reports through the LM's cache, rewarded by CIDEr-D) trains the LM, and
    consensus decoding re-ranks its n-best list: two steps on the IU X-ray fixture."""
    from medmm.engine import load_config
    from medmm.engine.api import train
    from medmm.tasks.report import scst

    rewards = []
    original = scst.self_critical_loss

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        rewards.append(out)
        return out

    monkeypatch.setattr("medmm.tasks.report.task.self_critical_loss", spy)
    over = [f"model.decoder.pretrained={lms['gpt2']}", "model.scst.samples=2", "model.decoding.beam_size=2",
            "model.decoding.max_length=6", "model.mbr.references=4", "model.mbr.candidates=2", "model.mbr.typical=0"]
    run = tmp_path / "scst"
    before = HFPrefixDecoder(str(lms["gpt2"]), 16, HFTokenizer(str(lms["gpt2"]))).lm.state_dict()
    metrics = train(load_config(TINY_CONFIG, over), run)
    assert rewards and all(bool(torch.isfinite(r)) for r in rewards)
    after = torch.load(run / "model.pt", weights_only=True)
    changed = [k for k, v in after.items() if k.startswith("decoder.lm.") and not torch.equal(v, before[k.removeprefix("decoder.lm.")])]
    assert changed, "self-critical steps left the LM unchanged"
    split = next(iter(metrics))
    assert {"bleu_4", "cider_d"} & {k.removeprefix("selection_") for k in metrics[split]}
    rows = [json.loads(line) for line in (run / "predictions" / f"{split}.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(r["prediction"], str) and "beam_prediction" in r for r in rows)
    assert {r["decoding"]["method"] for r in rows} == {"consensus"}


def test_what_a_causal_lm_decoder_cannot_do_is_refused_up_front(lms):
    from medmm.errors import MedmmError
    from medmm.tasks.report.task import ReportGenerationTask

    with pytest.raises(MedmmError, match="rag_k: 0"):
        ReportGenerationTask.from_config({"decoder": {"pretrained": str(lms["gpt2"])}, "retrieval": {"rag_k": 2}})
    with pytest.raises(MedmmError, match="set model.decoder.pretrained"):
        ReportGenerationTask.from_config({"decoder": {"lora": {"r": 4}}})
