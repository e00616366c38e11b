"""Dynamic micro-batching: one inference thread per model, fed by a queue.

Requests arrive concurrently; the thread takes the first waiting request, then keeps taking
more until it holds `max_batch` of them or `max_wait_ms` has passed since the first, and runs
them as one batch (one forward pass instead of many). With max_batch=1 it is plain
one-at-a-time inference, which the load benchmark compares against.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

from medmm.data.schema import Sample
from medmm.serve.predictor import Predictor

Result = tuple[Any, tuple[int, str] | None]


class MicroBatcher:
    """Queue + worker thread around one `Predictor`. `submit(sample)` -> Future of a `Result`."""

    def __init__(self, predictor: Predictor, max_batch: int = 8, max_wait_ms: float = 5.0, on_batch=None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.predictor, self.max_batch, self.max_wait = predictor, max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch  # callback(batch_size, seconds) for metrics
        self._queue: queue.Queue[tuple[Sample, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"medmm-infer-{predictor.root.name}", daemon=True)
        self._thread.start()

    def submit(self, sample: Sample) -> Future:
        """Queue one sample; the future resolves to (record, None) or (None, (http status, message))."""
        fut: Future = Future()
        self._queue.put((sample, fut))
        return fut

    def depth(self) -> int:
        """Requests waiting in the queue."""
        return self._queue.qsize()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _take(self) -> list[tuple[Sample, Future]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            samples = [s for s, _ in batch]
            t0 = time.perf_counter()
            try:
                results = self._predict(samples)
            except Exception:  # noqa: BLE001 - one odd input must not fail its batch-mates: retry one by one
                results = [self._one(s) for s in samples]
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - t0)
            for (_, fut), result in zip(batch, results, strict=True):
                fut.set_result(result)

    def _predict(self, samples: list[Sample]) -> list[Result]:
        records, errors = self.predictor.predict_samples(samples)
        it = iter(records)
        return [(None, (422, errors[s.id])) if s.id in errors else (next(it), None) for s in samples]

    def _one(self, sample: Sample) -> Result:
        try:
            return self._predict([sample])[0]
        except Exception as exc:  # noqa: BLE001 - reported to the client as a 500, the thread goes on
            return None, (500, f"inference failed ({type(exc).__name__})")
