"""Causal-LM report decoding with and without the LM's key/value cache, at GPT-2 (124M) size.

    python benchmarks/prefix_lm_decoding.py [--tokens 90] [--memory 49] [--threads 1] [--out benchmarks/prefix_lm_decoding.json]

No weights can be downloaded here, so the LM is GPT-2's architecture at its published size (12
layers, width 768, 12 heads, 1,024 positions, vocabulary 50,257) with random weights, and the
tokenizer of `medmm models tiny gpt2`; the cost of a decoding step depends on the sizes, not on
the weight values. `HFPrefixDecoder` reads `--memory` image tokens as its prefix (49 = a 7x7 grid)
and generates exactly `--tokens` tokens (min_length = max_length, so both paths do the same
number of steps, as `configs/report/gpt2_prefix.yaml`'s max_length 90 would at worst). Timed:
greedy and beam 3, batch 1, with the cache (`HFPrefixDecoder.step`) and without (the decoder
wrapped so that every step re-runs memory + text); the generated ids are checked identical.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


class Uncached(torch.nn.Module):
    """The decoder without `step`: `medmm.models.decoders` then re-runs the whole prefix each step."""

    def __init__(self, decoder: torch.nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, *args, **kwargs):
        return self.decoder(*args, **kwargs)


def gpt2_sized_folder(root: Path) -> Path:
    """A folder with GPT-2 small's architecture (random weights) and the tiny GPT-2 tokenizer."""
    import transformers

    from medmm.models.tiny_causal_lm import write_tiny_causal_lm

    folder = write_tiny_causal_lm("gpt2", root / "gpt2_124m")
    tiny = transformers.GPT2Config.from_pretrained(folder)
    cfg = transformers.GPT2Config(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024,
                                  bos_token_id=tiny.bos_token_id, eos_token_id=tiny.eos_token_id)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=90)
    ap.add_argument("--memory", type=int, default=49)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from medmm.models.decoders import GenerationConfig, generate
    from medmm.models.prefix_lm import HFPrefixDecoder, HFTokenizer

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = gpt2_sized_folder(Path(tmp))
        dec = HFPrefixDecoder(str(folder), 512, HFTokenizer(str(folder))).eval()
    n_params = sum(p.numel() for p in dec.lm.parameters())
    memory = torch.randn(1, args.memory, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # warm-up: first calls allocate
        generate(dec, memory, None, GenerationConfig(min_length=2, max_length=2))
    rows = []
    for beam in (1, 3):
        cfg = GenerationConfig(beam_size=beam, min_length=args.tokens, max_length=args.tokens)
        out = {}
        for name, module in (("cached", dec), ("uncached", Uncached(dec))):
            with torch.no_grad():
                t0 = time.perf_counter()
                out[name] = generate(module, memory, None, cfg)
                out[f"{name}_s"] = time.perf_counter() - t0
        assert out["cached"] == out["uncached"], f"beam {beam}: cached and uncached decoding differ"
        assert len(out["cached"][0]) == args.tokens
        rows.append({"decoding": "greedy" if beam == 1 else f"beam {beam}", "cached_s": round(out["cached_s"], 2),
                     "uncached_s": round(out["uncached_s"], 2), "speedup": round(out["uncached_s"] / out["cached_s"], 1),
                     "identical_ids": True})
    result = {"lm": f"GPT-2 architecture, {n_params / 1e6:.0f} M parameters, random weights", "memory_tokens": args.memory,
              "generated_tokens": args.tokens, "batch": 1, "torch_threads": args.threads, "torch": torch.__version__,
              "rows": rows}
    print(f"{result['lm']}; {args.memory} memory tokens, {args.tokens} generated tokens, batch 1, {args.threads} thread(s)\n")
    print("| decoding | with cache (s) | without (s) | speed-up | same ids |\n|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['decoding']} | {r['cached_s']} | {r['uncached_s']} | {r['speedup']}x | yes |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
