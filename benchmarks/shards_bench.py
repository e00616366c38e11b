"""Packing speed, loader throughput vs ResNet-18 training throughput, and flat memory over shards.

    nice -n 10 python benchmarks/shards_bench.py --sizes 10000 100000 --work /tmp/medmm_shards_bench

For each size N: writes `--distinct` seeded synthetic grey 256x256 JPEGs (smooth blobs, two
classes; sample i reads file i mod distinct, so generating them does not dominate), packs
them with `pack_samples` (2 processes, 224 px, 1 channel), measures the data loader over the
packed `shards` split (2 workers, batch 32, the diagnosis task's own preprocessing cache), then
runs the shipped diagnosis config (ResNet-18, configs/diagnosis/breastmnist.yaml) on the packed
data for a bounded number of steps with `medmm train`, sampling the RSS of its whole process tree
(main + loader workers). ResNet-18's own training speed is measured on random tensors with the
same 2 threads. Throughputs are given as wall-clock images/s (depends on what else runs on the
machine) and as CPU-seconds per image (process + worker CPU time; does not). Results: JSON to
stdout and --json. Generated data is deleted unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _write_jpegs(args: tuple[Path, int, int, int]) -> None:
    from PIL import Image

    folder, start, stop, seed = args
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        small = rng.normal(0.0, 1.0, (16, 16)) + (0.6 if i % 2 else -0.6)
        img = Image.fromarray(np.clip(small * 40 + 128, 0, 255).astype(np.uint8)).resize((256, 256), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:07d}.jpg", quality=90)


class SyntheticSamples:
    """N Samples over the JPEG files, made on demand (the list itself would be the memory we test)."""

    def __init__(self, folder: Path, n: int, distinct: int):
        self.folder, self.n, self.distinct = folder, n, distinct

    def __len__(self) -> int:
        return self.n

    def _one(self, i: int):
        from medmm.data.schema import ImageRef, Sample

        return Sample(id=f"img{i:07d}", dataset="synthetic", split="train", images=[ImageRef(path=str(self.folder / f"{i % self.distinct:07d}.jpg"), modality="XR")],
                      targets={"label": "bright" if i % 2 else "dark"}, patient_id=f"p{i // 2}")

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self._one(i) for i in range(*key.indices(self.n))]
        return self._one(key)

    def __iter__(self):
        return (self._one(i) for i in range(self.n))


def _cpu(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system + sum(c.cpu_times().user + c.cpu_times().system for c in proc.children(recursive=True))


def loader_throughput(root: Path, batches: int, workers: int = 2, batch_size: int = 32) -> tuple[float, float]:
    """(images/s, CPU-s per image) of the training DataLoader over the packed split (what the diagnosis task reads)."""
    import psutil
    import torch

    from medmm.data.image_cache import PreprocessedImages
    from medmm.data.shards.read import load_split
    from medmm.data.transforms import ImageInputSpec
    from medmm.engine.data import make_loader

    samples = load_split(root, "train")
    cache = PreprocessedImages(ImageInputSpec(size=224, in_channels=1, mean=(0.5,), std=(0.5,)))

    def collate(batch):
        return torch.stack([torch.from_numpy(cache.get(s.images[0], key=s.id)) for s in batch])

    loader = make_loader(samples, collate, batch_size=batch_size, num_workers=workers, seed=0, shuffle=True)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    me = psutil.Process()
    t0, c0, n = time.perf_counter(), _cpu(me), 0
    for _ in range(batches):
        n += next(it).n
    wall, cpu = time.perf_counter() - t0, _cpu(me) - c0
    return n / wall, cpu / n


def model_throughput(steps: int, batch_size: int = 32, threads: int = 2) -> tuple[float, float]:
    """Images/s of ResNet-18 (medmm's MONAI encoder, 1 x 224 x 224) forward + backward + SGD step."""
    import torch

    from medmm.models.registry import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    enc = create_model("resnet18", in_channels=1, image_size=224)
    head = torch.nn.Linear(enc.out_dim, 2)
    opt = torch.optim.SGD([*enc.parameters(), *head.parameters()], lr=0.01)
    x, y = torch.randn(batch_size, 1, 224, 224), torch.randint(0, 2, (batch_size,))

    def step():
        loss = torch.nn.functional.cross_entropy(head(enc(x).pooled), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    n = steps * batch_size
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n


def bounded_training(root: Path, run: Path, steps: int) -> dict:
    """`medmm train` of the shipped ResNet-18 diagnosis config on the packed data for `steps` steps;
    peak RSS of the main process and of the whole tree (main + 2 loader workers), sampled every 0.2 s."""
    import psutil

    cmd = [str(Path(sys.executable).parent / "medmm"), "train", str(REPO / "configs/diagnosis/breastmnist.yaml"), "--out", str(run),
           "data.dataset=shards", f"data.root={root}", "data.val_split=null", "model.image.size=224",
           f"trainer.max_steps={steps}", "trainer.max_epochs=1", "trainer.num_workers=2", "trainer.num_threads=2",
           "trainer.batch_size=32",
           # The config has since moved to MedMNIST v2's 28 px protocol (3x3 stride-1 stem, epoch
           # milestones of 100 epochs); at 224 px the benchmark keeps the standard ResNet-18 it measured.
           "model.image.stem=default", "trainer.scheduler=cosine", "trainer.lr_milestones=[]"]
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak_main = peak_tree = peak_pss = 0
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
            main = ps.memory_info().rss
            tree = sum(p.memory_info().rss for p in procs)
            # PSS counts a page shared by n processes (forked workers) as 1/n in each: the tree's
            # real footprint, where the RSS sum counts fork-shared pages once per process.
            pss = sum(p.memory_full_info().pss for p in procs)
        except psutil.Error:
            time.sleep(0.2)  # a worker exited between listing and reading it
            continue
        peak_main, peak_tree, peak_pss = max(peak_main, main), max(peak_tree, tree), max(peak_pss, pss)
        time.sleep(0.2)
    out = proc.communicate()[0]
    if proc.returncode != 0:
        raise RuntimeError(out[-3000:])
    return {"steps": steps, "wall_s": round(time.perf_counter() - t0, 1), "peak_rss_main_mb": round(peak_main / 2**20),
            "peak_rss_tree_mb": round(peak_tree / 2**20), "peak_pss_tree_mb": round(peak_pss / 2**20),
            "load_avg_1min": [round(load0, 1), round(os.getloadavg()[0], 1)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/medmm_shards_bench"))
    ap.add_argument("--loader-batches", type=int, default=60)
    ap.add_argument("--model-steps", type=int, default=5)
    ap.add_argument("--distinct", type=int, default=1000)
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from medmm.data.shards.pack import PackSettings, pack_samples

    results: dict = {"machine": "2-core x86_64 CPU shared with other engineers' jobs", "sizes": {}}
    ips, cpi = model_throughput(args.model_steps)
    results["model_train"] = {"images_per_s": round(ips, 2), "cpu_s_per_image": round(cpi, 4)}
    print(json.dumps(results), flush=True)
    for n in args.sizes:
        src, packed = args.work / f"jpeg_{n}", args.work / f"packed_{n}"
        src.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        m = min(n, args.distinct)
        chunks = [(src, a, min(m, a + 500), 0) for a in range(0, m, 500)]
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_write_jpegs, chunks))
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = pack_samples({"train": SyntheticSamples(src, n, args.distinct)}, packed, PackSettings(size=224, channels=1, shard_size=1000),
                             source={"dataset": "synthetic", "n": n}, workers=2)
        pack_s = time.perf_counter() - t0
        shutil.rmtree(src)
        r = {"generate_jpeg_s": round(gen_s, 1), "pack_s": round(pack_s, 1), "pack_images_per_s": round(n / pack_s, 1),
             "packed_samples": index["splits"]["train"]["samples"], "shards": len(index["shards"]),
             "packed_gb": round(sum(s["bytes"] for s in index["shards"]) / 1e9, 2)}
        r["pack_load_avg_1min_end"] = round(os.getloadavg()[0], 1)
        ips, cpi = loader_throughput(packed, args.loader_batches)
        r["loader"] = {"images_per_s": round(ips, 1), "cpu_s_per_image": round(cpi, 4)}
        r["training"] = bounded_training(packed, args.work / f"run_{n}", args.train_steps)
        results["sizes"][str(n)] = r
        print(json.dumps({n: r}), flush=True)
        if not args.keep:
            shutil.rmtree(packed)
            shutil.rmtree(args.work / f"run_{n}", ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
