"""Load test of `medmm serve` on loopback: concurrent clients, latency, throughput, memory.

    python benchmarks/serve_load.py --out benchmarks/serve_results.json            # 20 clients x 500 requests
    python benchmarks/serve_load.py --clients 20 --requests 100 --max-seconds 120  # a smaller bounded run

Makes two packages from shipped configs on the bundled CC0 VQA-RAD sample (diagnosis:
configs/diagnosis/vqa_rad_organ.yaml, VQA: configs/vqa/vqa_rad_sample.yaml) with their initial
weights (no training: latency depends on the architecture, not on the weights; predictions are
not meaningful), starts `medmm serve` on 127.0.0.1 for each max-batch setting, and has `clients`
threads send `requests` each (a bundled JPEG + its question) to each model. Every run is bounded
by --max-seconds: clients stop when it has passed and the completed count is reported. The
server's resident memory is sampled every 0.25 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"diagnosis": "configs/diagnosis/vqa_rad_organ.yaml", "vqa": "configs/vqa/vqa_rad_sample.yaml"}


def make_packages(base: Path) -> dict[str, Path]:
    """name -> package of the config's model with its initial weights (task state fitted on the train split)."""
    import torch

    from medmm.data.bundled import vqa_rad_sample_root
    from medmm.engine import load_config
    from medmm.engine import rundir as rd
    from medmm.engine.api import build_task
    from medmm.engine.config import dump_config
    from medmm.engine.data import load_splits
    from medmm.engine.provenance import task_state_record
    from medmm.serve import make_package

    out = {}
    for name, cfg_file in MODELS.items():
        cfg = load_config(ROOT / cfg_file, [f"data.root={vqa_rad_sample_root()}"])
        torch.manual_seed(cfg.seed)
        train = load_splits(cfg.data, cfg.seed)["train"].samples
        task = build_task(cfg)
        task.setup(task.training_samples(train))
        run = base / f"run_{name}"
        run.mkdir()
        dump_config(cfg, run / rd.CONFIG)
        torch.save(task.state_dict(), run / rd.WEIGHTS)
        rd.write_json(run / rd.TASK_STATE, task_state_record(task, cfg, train, rd.sha256_file(run / rd.WEIGHTS)))
        out[name] = make_package(run, base / name)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def multipart(image: bytes, question: str) -> tuple[bytes, str]:
    """A multipart/form-data body with the `image` file and the `question` field."""
    b = "medmmloadtestboundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"img.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + (
            f"\r\n--{b}\r\nContent-Disposition: form-data; name=\"question\"\r\n\r\n{question}\r\n--{b}--\r\n").encode()
    return body, f"multipart/form-data; boundary={b}"


def get(port: int, path: str) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("GET", path)
        return c.getresponse().status
    finally:
        c.close()


def run_load(port: int, model: str, payload: tuple[bytes, str], clients: int, requests: int, deadline: float) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    body, ctype = multipart(*payload)

    def client() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # one keep-alive connection per client
        try:
            for _ in range(requests):
                if time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    c.request("POST", f"/v1/models/{model}/predict", body=body, headers={"Content-Type": ctype})
                    r = c.getresponse()
                    text = r.read()
                    err = None if r.status == 200 else f"{r.status}: {text[:200]!r}"
                except (OSError, http.client.HTTPException) as exc:
                    err = f"{type(exc).__name__}: {exc}"
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    if err is None:
                        lat.append(time.perf_counter() - t0)
                    else:
                        errors.append(err)
        finally:
            c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    return {"model": model, "clients": clients, "requests_per_client": requests, "completed": len(lat), "errors": len(errors),
            "first_errors": errors[:3], "wall_s": round(wall, 2), "throughput_rps": round(len(lat) / wall, 1),
            "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1),
            "bounded_by_time": len(lat) + len(errors) < clients * requests}


def serve_and_load(packages: dict[str, Path], max_batch: int, args, payload) -> list[dict]:
    port = free_port()
    cmd = [sys.executable, "-c", "from medmm.cli import main; main()", "serve", *map(str, packages.values()), "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(args.threads), "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    log = open(Path(tempfile.gettempdir()) / f"serve_load_{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MEDMM_SERVE_TOKEN": ""})
    try:
        for _ in range(600):
            try:
                if get(port, "/readyz") == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: see {log.name}")
            time.sleep(0.2)
        results = []
        for model in packages:
            time.sleep(0.2)
            run_load(port, model, payload, 4, 10, time.monotonic() + 30)  # warm-up, not counted
            mem: list[float] = []
            stop = threading.Event()

            def sample_mem(mem: list[float] = mem, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    mem.append(rss_mb(proc.pid))
                    time.sleep(0.25)

            sampler = threading.Thread(target=sample_mem)
            sampler.start()
            res = run_load(port, model, payload, args.clients, args.requests, time.monotonic() + args.max_seconds)
            stop.set()
            sampler.join()
            tenth = max(1, len(mem) // 10)
            deciles = [round(statistics.mean(mem[i * tenth:(i + 1) * tenth] or mem[-1:]), 1) for i in range(10)]
            res.update({"max_batch": max_batch, "threads": args.threads, "rss_mb_by_tenth_of_run": deciles,
                        "rss_mb_max": round(max(mem), 1)})
            results.append(res)
            print(json.dumps(res), flush=True)
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=500, help="requests per client")
    ap.add_argument("--max-seconds", type=float, default=300, help="bound on each run's duration")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="max-batch settings to compare (1 = one at a time)")
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    load_start = os.getloadavg()[0]

    from medmm.data import load_dataset
    from medmm.data.bundled import vqa_rad_sample_root

    s = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples[0]
    payload = (Path(s.images[0].path).read_bytes(), s.text["question"])
    with tempfile.TemporaryDirectory() as tmp:
        packages = make_packages(Path(tmp))
        results = [r for b in args.batches for r in serve_and_load(packages, b, args, payload)]
    summary = {"machine": f"{os.cpu_count()}-core x86_64 CPU, shared with other users (1-min load average at start "
                          f"{load_start:.1f}, at the end {os.getloadavg()[0]:.1f})", "args": vars(args) | {"out": str(args.out)},
               "results": results}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
