"""Image-encoder throughput on this machine: images/s and achieved GFLOP/s vs the fp32 matmul peak.

    python benchmarks/encoder_throughput.py                    # all default encoders, ~15-25 min on 2 cores
    python benchmarks/encoder_throughput.py --models resnet18 --iters 2 --json out.json

For each encoder at 224 px, batch 16: inference (no_grad, eval) and one training step (forward,
cross-entropy on a linear head, backward, SGD step), in three modes: fp32, bf16 autocast, and
fp32 with channels_last memory format. FLOPs come from torch.utils.flop_counter.FlopCounterMode
(matmul/conv FLOPs, 2 per multiply-add), counted once per model in fp32. The peak is the best of
a few 4096^3 fp32 torch.matmul calls on the same threads. Results: encoder_throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from medmm.models import create_image_encoder

DEFAULT_MODELS = ["resnet18", "resnet50", "densenet121", "vit_small", "vit_base"]
MODES = ["fp32", "bf16_autocast", "channels_last"]


def matmul_peak_gflops(n: int = 4096, reps: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-`reps` GFLOP/s of an n x n x n matmul (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


class WithHead(torch.nn.Module):
    """Encoder + linear head, so a training step has a loss like a real task."""

    def __init__(self, enc: torch.nn.Module, classes: int = 14):
        super().__init__()
        self.enc, self.head = enc, torch.nn.Linear(enc.out_dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(x).pooled)


def count_flops(model: torch.nn.Module, x: torch.Tensor, train: bool) -> int:
    """FLOPs of one inference forward, or of forward + backward for a training step."""
    with FlopCounterMode(display=False) as counter:
        if train:
            torch.nn.functional.cross_entropy(model(x), torch.zeros(x.shape[0], dtype=torch.long)).backward()
        else:
            with torch.no_grad():
                model(x)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_step(model: torch.nn.Module, x: torch.Tensor, mode: str, train: bool, iters: int) -> float:
    """Median seconds per step after one warm-up step."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4) if train else None
    y = torch.zeros(x.shape[0], dtype=torch.long)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16_autocast"):
            if train:
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    model(x)

    step()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def run(models: list[str], batch: int, size: int, iters: int, modes: list[str], jsonl: str | None = None) -> dict:
    """Measure every (model, mode, inference/train) cell; returns a JSON-able dict."""
    torch.manual_seed(0)
    load_before = os.getloadavg()
    peak = matmul_peak_gflops()
    peak_bf16 = matmul_peak_gflops(dtype=torch.bfloat16)
    print(json.dumps({"fp32_matmul_peak_gflops": round(peak, 1), "bf16_matmul_peak_gflops": round(peak_bf16, 1), "loadavg_1min": load_before[0]}), flush=True)
    rows = []
    for name in models:
        model = WithHead(create_image_encoder(name, image_size=size))
        x = torch.randn(batch, 3, size, size)
        flops = {t: count_flops(model.train(t), x, t) for t in (False, True)}
        for mode in modes:
            m, xi = model, x
            if mode == "channels_last":
                m, xi = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            for train in (False, True):
                m.train(train)
                sec = time_step(m, xi, mode, train, iters)
                gflops = flops[train] / sec / 1e9
                rows.append(
                    {
                        "model": name,
                        "mode": mode,
                        "step": "train" if train else "inference",
                        "images_per_s": round(batch / sec, 2),
                        "sec_per_batch": round(sec, 3),
                        "gflop_per_batch": round(flops[train] / 1e9, 1),
                        "achieved_gflops": round(gflops, 1),
                        "fraction_of_fp32_peak": round(gflops / peak, 3),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
                if jsonl:  # partial results survive an interrupted run
                    with open(jsonl, "a") as f:
                        f.write(json.dumps(rows[-1] | {"loadavg_1min": round(os.getloadavg()[0], 2)}) + "\n")
            if mode == "channels_last":
                model = model.to(memory_format=torch.contiguous_format)
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": batch,
        "image_size": size,
        "iters": iters,
        "fp32_matmul_peak_gflops": round(peak, 1),
        "bf16_matmul_peak_gflops": round(peak_bf16, 1),
        "fp32_matmul_peak_gflops_after": round(matmul_peak_gflops(), 1),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
    }


def to_markdown(res: dict) -> str:
    """A markdown table of the results."""
    lines = [
        (f"fp32 matmul peak: {res['fp32_matmul_peak_gflops']} GFLOP/s before, {res['fp32_matmul_peak_gflops_after']} after; "
         f"bf16 matmul peak: {res['bf16_matmul_peak_gflops']} GFLOP/s ({res['threads']} threads, torch {res['torch']}, "
         f"batch {res['batch']}, {res['image_size']} px, median of {res['iters']}; 1-min load average before/after: "
         f"{res['loadavg_1min_before_after']})."),
        "",
        "| model | mode | step | images/s | s/batch | GFLOP/batch | GFLOP/s | / fp32 peak |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['step']} | {r['images_per_s']} | {r['sec_per_batch']} | "
            f"{r['gflop_per_batch']} | {r['achieved_gflops']} | {r['fraction_of_fp32_peak']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--jsonl", help="append each row here as soon as it is measured")
    args = ap.parse_args()
    res = run(args.models, args.batch, args.size, args.iters, args.modes, args.jsonl)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(to_markdown(res))


if __name__ == "__main__":
    main()
