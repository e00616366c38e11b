"""medmm's overhead over plain transformers for a generative VLM: greedy generation and one LoRA training step.

    OMP_NUM_THREADS=1 python benchmarks/vlm_overhead.py --out benchmarks/vlm_overhead_results.json
        [--size small|tiny] [--threads 1] [--new-tokens 16] [--gen-reps 3] [--train-reps 3]

A randomly initialised Gemma 3 (`Gemma3ForConditionalGeneration`) is built in code and saved as a
Hugging Face folder (no download): "small" (279M parameters) is a SigLIP-B/16 vision tower at
224 px (12 layers, width 768) pooled to 49 soft tokens per image, and a 10-layer Gemma 3 text model
of width 1024 (16 heads of 64, 4 KV heads, MLP 4096, 32768-row embedding / tied LM head); "tiny" is the 2-layer width-32
model of `medmm models tiny gemma3` (for the smoke test). The tokenizer is the tiny family's
(trained here on a fixed word list) with Gemma 3's special tokens and chat template.

Two paths run on their own copies of the same weights, timed in alternation (ABAB...) after one
warm-up each, medians reported:
- generation: medmm `VisionLanguageModel` (lora off): `chat_prompt` -> `encode` -> `generate`,
  against `AutoProcessor` (apply_chat_template, processor(...)) -> `model.generate` -> batch_decode.
  Greedy, batch 1, eos switched off in both generation configs so both make exactly --new-tokens
  tokens (checked on the plain path; the two paths' texts must be equal).
- training step: medmm `VisionLanguageModel` with LoRA (r 8, alpha 16, its default targets):
  `encode(prompts, images, completions)` -> `loss` -> backward -> AdamW step, against
  peft.get_peft_model on the plain model with the same LoRA config: processor(prompt + answer)
  -> labels (input_ids with padding and image tokens at -100) -> model(**batch).loss -> backward ->
  AdamW step. Batch 2 image + question + answer. Loss values differ slightly (plain trains on the
  prompt tokens too, medmm on the answer only); the compute is the same model call.
Preparation alone (chat template, processor, labels; no model call) is also timed, --prep-reps
times per path, since it is where the two paths' code differs. Peak RSS (VmHWM) of each path is
measured in a child process of its own (load with LoRA, 1 generation, 1 training step).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

QUESTIONS = ["is there a pleural effusion on the left side?", "what organ is enlarged in this image?"]
ANSWERS = ["yes", "the heart"]
LORA = {"r": 8, "alpha": 16, "dropout": 0.05}


def build_small_gemma3(out: Path, seed: int = 0) -> Path:
    """Write the "small" random Gemma 3 (SigLIP-B/16 224 px + 10-layer width-1024 text model) to `out`."""
    import transformers as tf

    from medmm.models.vlm import chat_templates
    from medmm.models.vlm.tiny import train_tokenizer

    torch.manual_seed(seed)
    tok = train_tokenizer("GemmaTokenizer", [], extra_special_tokens={
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tokens_per_image = 49  # 14 x 14 patches average-pooled 2 x 2 to 7 x 7
    proc = tf.Gemma3Processor(image_processor=tf.Gemma3ImageProcessor(size={"height": 224, "width": 224}),
                              tokenizer=tok, chat_template=chat_templates.GEMMA3, image_seq_length=tokens_per_image)
    vision = tf.SiglipVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                   image_size=224, patch_size=16)
    text = tf.Gemma3TextConfig(vocab_size=32768, hidden_size=1024, intermediate_size=4096, num_hidden_layers=10,
                               num_attention_heads=16, num_key_value_heads=4, head_dim=64, sliding_window=512,
                               max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    cfg = tf.Gemma3Config(vision_config=vision, text_config=text, mm_tokens_per_image=tokens_per_image,
                          boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
                          eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"), image_token_index=tok.image_token_id)
    if len(tok) > text.vocab_size:
        raise ValueError(f"tokenizer has {len(tok)} tokens, more than the embedding's {text.vocab_size}")
    model = tf.Gemma3ForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def write_model(size: str, out: Path) -> Path:
    if size == "small":
        return build_small_gemma3(out)
    from medmm.models.vlm.tiny import write_tiny_vlm

    return write_tiny_vlm("gemma3", out)


def images_for(proc, n: int, seed: int = 0) -> list[list[Any]]:
    from PIL import Image

    size = proc.image_processor.size["height"]
    rng = np.random.default_rng(seed)
    return [[Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))] for _ in range(n)]


def no_eos(model) -> None:
    """Switch generation stopping off, so every call makes exactly max_new_tokens tokens."""
    model.generation_config.eos_token_id = None


class MedmmPath:
    """The medmm side: `VisionLanguageModel` encode / generate / loss."""

    def __init__(self, folder: Path, lora: bool):
        from medmm.models.vlm import VisionLanguageModel

        torch.manual_seed(1)  # same LoRA initialisation as the plain path
        self.vlm = VisionLanguageModel(str(folder), lora=dict(LORA) if lora else None)
        no_eos(self.vlm.base_model)
        if lora:
            self.opt = torch.optim.AdamW([p for p in self.vlm.parameters() if p.requires_grad], lr=1e-4)
        else:
            self.vlm.eval()

    def generate(self, question: str, image: list[Any], new_tokens: int) -> str:
        batch = self.vlm.encode([self.vlm.chat_prompt(question)], [image])
        return self.vlm.generate(batch, max_new_tokens=new_tokens)[0]

    def prepare(self, questions: list[str], images: list[list[Any]], answers: list[str]) -> dict[str, torch.Tensor]:
        prompts = [self.vlm.chat_prompt(q) for q in questions]
        completions = [self.vlm.completion(q, a) for q, a in zip(questions, answers, strict=True)]
        return self.vlm.encode(prompts, images, completions)

    def train_step(self, questions: list[str], images: list[list[Any]], answers: list[str]) -> float:
        loss = self.vlm.loss(self.prepare(questions, images, answers))
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


class PlainPath:
    """The plain side: AutoProcessor + AutoModelForImageTextToText (+ peft LoRA), as a user would write it."""

    def __init__(self, folder: Path, lora: bool):
        import transformers as tf

        self.proc = tf.AutoProcessor.from_pretrained(folder)
        self.proc.tokenizer.padding_side = "left"
        self.model = tf.AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
        no_eos(self.model)
        if lora:
            import peft

            from medmm.models.vlm.model import LANGUAGE_LORA_TARGETS

            torch.manual_seed(1)
            cfg = peft.LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], bias="none",
                                  target_modules=LANGUAGE_LORA_TARGETS)
            self.model = peft.get_peft_model(self.model, cfg)
            self.model.train()
            self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-4)
        else:
            self.model.eval()

    def _prompt(self, question: str, answer: str | None = None) -> str:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        if answer is not None:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return self.proc.apply_chat_template(msgs, add_generation_prompt=answer is None, tokenize=False)

    @torch.no_grad()
    def generate(self, question: str, image: list[Any], new_tokens: int) -> str:
        batch = self.proc(text=[self._prompt(question)], images=[image], padding=True, return_tensors="pt")
        out = self.model.generate(**batch, max_new_tokens=new_tokens, do_sample=False,
                                  pad_token_id=self.proc.tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        if new.shape[1] != new_tokens:
            raise RuntimeError(f"plain generate made {new.shape[1]} tokens, not {new_tokens}: eos not switched off")
        return self.proc.batch_decode(new, skip_special_tokens=True)[0].strip()

    def prepare(self, questions: list[str], images: list[list[Any]], answers: list[str]) -> dict[str, torch.Tensor]:
        texts = [self._prompt(q, a) for q, a in zip(questions, answers, strict=True)]
        batch = dict(self.proc(text=texts, images=images, padding=True, return_tensors="pt"))
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        labels[labels == self.proc.tokenizer.image_token_id] = -100
        return {**batch, "labels": labels}

    def train_step(self, questions: list[str], images: list[list[Any]], answers: list[str]) -> float:
        loss = self.model(**self.prepare(questions, images, answers)).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


def timed(fn, *args) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def interleaved(paths: dict[str, Any], method: str, args: tuple, reps: int) -> dict[str, list[float]]:
    """One untimed warm-up per path, then `reps` timed calls per path in alternation (ABAB...)."""
    for p in paths.values():
        getattr(p, method)(*args)
    times: dict[str, list[float]] = {k: [] for k in paths}
    outs: dict[str, list[Any]] = {k: [] for k in paths}
    for r in range(reps):
        order = list(paths) if r % 2 == 0 else list(paths)[::-1]  # alternate who goes first
        for k in order:
            dt, out = timed(getattr(paths[k], method), *args)
            times[k].append(dt)
            outs[k].append(out)
    return {"times": times, "outputs": outs}


def summary(times: dict[str, list[float]], per: float) -> dict[str, Any]:
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
            "median_s": {k: round(v, 4) for k, v in med.items()},
            "per_second": {k: round(per / v, 3) for k, v in med.items()},
            "overhead_pct": round(100 * (med["medmm"] / med["plain"] - 1), 2),
            # each repetition's medmm / plain ratio (the two ran back to back): robust to load that
            # drifts during the run, which can move the two medians apart on a shared machine
            "paired_overhead_pct": round(100 * (statistics.median(
                m / p for m, p in zip(times["medmm"], times["plain"], strict=True)) - 1), 2)}


def peak_rss_child(path: str, folder: Path, args: argparse.Namespace) -> float:
    """Peak RSS (MiB) of a fresh process that loads `path`'s model (LoRA on) and runs 1 generation + 1 step."""
    cmd = [sys.executable, __file__, "--rss-child", path, "--folder", str(folder), "--threads", str(args.threads),
           "--new-tokens", str(args.new_tokens)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"RSS child for {path} failed:\n{res.stderr[-3000:]}")
    return float(json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_mib"])


def rss_child(path: str, folder: Path, new_tokens: int) -> None:
    cls = MedmmPath if path == "medmm" else PlainPath
    p = cls(folder, lora=True)
    imgs = images_for(p.vlm.processor if path == "medmm" else p.proc, 2)
    if path == "medmm":
        p.vlm.eval()
    else:
        p.model.eval()
    p.generate(QUESTIONS[0], imgs[0], new_tokens)
    (p.vlm if path == "medmm" else p.model).train()
    p.train_step(QUESTIONS, imgs, ANSWERS)
    print(json.dumps({"peak_rss_mib": vm_hwm_mib()}))


def vm_hwm_mib() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that across
    fork + exec, so a child started by a large parent reports the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM line in /proc/self/status (peak RSS is read from Linux procfs)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_model(args.size, Path(tmp) / "model")
        gen = {"medmm": MedmmPath(folder, lora=False), "plain": PlainPath(folder, lora=False)}
        model = gen["plain"].model
        n_params = sum(p.numel() for p in model.parameters())
        n_vision = sum(p.numel() for p in model.model.vision_tower.parameters())
        img = images_for(gen["plain"].proc, 1)[0]
        g = interleaved(gen, "generate", (QUESTIONS[0], img, args.new_tokens), args.gen_reps)
        texts = {k: set(v) for k, v in g["outputs"].items()}
        if texts["medmm"] != texts["plain"]:
            raise RuntimeError(f"the two paths generated different text: {texts}")
        del gen, model
        train = {"medmm": MedmmPath(folder, lora=True), "plain": PlainPath(folder, lora=True)}
        n_lora = sum(p.numel() for p in train["plain"].model.parameters() if p.requires_grad)
        imgs = images_for(train["plain"].proc, 2)
        t = interleaved(train, "train_step", (QUESTIONS, imgs, ANSWERS), args.train_reps)
        prep = interleaved(train, "prepare", (QUESTIONS, imgs, ANSWERS), args.prep_reps)
        del train
        rss = {k: round(peak_rss_child(k, folder, args), 1) for k in ("medmm", "plain")} if args.rss else None
    return {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "loadavg_start": [round(x, 2) for x in load],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "model": {"size": args.size, "class": "Gemma3ForConditionalGeneration", "parameters": n_params,
                  "vision_parameters": n_vision, "lora_trainable_parameters": n_lora, "dtype": "float32"},
        "generation": {"new_tokens": args.new_tokens, "batch": 1, "reps": args.gen_reps, "text_equal": True,
                       **summary(g["times"], args.new_tokens)},
        "train_step": {"batch": 2, "reps": args.train_reps, "losses": t["outputs"], **summary(t["times"], 1.0)},
        "train_batch_preparation": {"batch": 2, "reps": args.prep_reps, **summary(prep["times"], 1.0)},
        "peak_rss_mib": rss,
    }


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=["small", "tiny"], default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--gen-reps", type=int, default=3)
    ap.add_argument("--train-reps", type=int, default=3)
    ap.add_argument("--prep-reps", type=int, default=20, help="repetitions of the batch preparation alone (chat template, processor, labels)")
    ap.add_argument("--no-rss", dest="rss", action="store_false", help="skip the peak-RSS child processes")
    ap.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    ap.add_argument("--rss-child", choices=["medmm", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child, args.folder, args.new_tokens)
        return None
    res = run(args)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
