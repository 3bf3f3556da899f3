"""Dynamic batching across clients: one model thread takes clips from a bounded queue.

Admission: a request is admitted while fewer than ``capacity`` requests are in the server (being
decoded, queued or answered); one more is refused at once (the app answers 503 with
Retry-After), so memory and waiting time stay bounded under any load.

Batching: the model thread waits for a first clip, then up to ``wait_s`` for more, and runs at
most ``max_batch`` clips in one call (``max_batch=1``: no batching, one clip a call). Clips that
arrive while a batch runs wait in the queue and form the next batch at once. A clip whose request
has given up (its timeout passed) is dropped before the model sees it.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from emorl.data.media import Clip
from emorl.serve.settings import ServeError


@dataclass
class Job:
    """One clip waiting for the model; ``future`` gets its result dict or a ServeError."""

    name: str
    clip: Clip
    kind: str  # video | audio (the file's kind)
    ablation: bool
    deadline: float  # time.monotonic() past which nobody waits for the answer
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    queued_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    media_notes: list[str] = field(default_factory=list)


def settle(job: Job, result) -> None:
    """Give ``job`` its result or error unless its waiter already gave up (a cancelled future)."""
    try:
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


class Batcher:
    """``run_batch(jobs) -> [result | ServeError]`` runs on one thread; results go to job futures."""

    def __init__(
        self,
        run_batch: Callable[[list[Job]], list],
        *,
        max_batch: int,
        wait_s: float,
        capacity: int,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.capacity = capacity
        self.on_batch = on_batch
        self.admitted = 0
        self.running = 0
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="emorl-model", daemon=True)
        self._batch_seconds = 0.0  # moving average, for Retry-After

    # ------------------------------------------------------------ admission
    def admit(self, n: int = 1) -> bool:
        with self._cv:
            if self.admitted + n > self.capacity:
                return False
            self.admitted += n
            return True

    def release(self, n: int = 1) -> None:
        with self._cv:
            self.admitted -= n

    @property
    def depth(self) -> int:
        """Clips waiting for the model (not counting the batch running)."""
        return len(self._queue)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue's batches at the recent batch time."""
        batches = self.depth / self.max_batch + 1
        return int(min(60, max(1, round(batches * (self._batch_seconds or 1.0)))))

    # ------------------------------------------------------------ work
    def submit(self, job: Job) -> None:
        with self._cv:
            if self._stop:
                raise ServeError(503, "shutting_down", "the server is shutting down")
            self._queue.append(job)
            self._cv.notify()

    def _take(self) -> list[Job] | None:
        with self._cv:
            while not self._queue and not self._stop:
                self._cv.wait()
            if self._stop:
                return None
            batch = [self._queue.popleft()]
            until = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            now = time.monotonic()
            live = []
            for j in batch:
                if j.cancelled or now > j.deadline:
                    settle(j, ServeError(504, "timeout", f"{j.name}: the request timed out in the queue"))
                else:
                    live.append(j)
            if not live:
                continue
            self.running = len(live)
            t0 = time.perf_counter()
            try:
                results = self.run_batch(live)
            except Exception as e:  # noqa: BLE001 - one failing batch must not stop the server
                results = [
                    ServeError(500, "inference_failed", f"the model failed on this batch: {type(e).__name__}: {e}")
                    for _ in live
                ]
            dt = time.perf_counter() - t0
            self.running = 0
            self._batch_seconds = dt if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * dt
            if self.on_batch:
                self.on_batch(len(live), dt)
            for j, r in zip(live, results, strict=True):
                if not isinstance(r, BaseException):
                    r["timings"] = {"batch_size": len(live), "inference_ms": round(dt * 1000, 1)}
                settle(j, r)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            pending = list(self._queue)
            self._queue.clear()
            self._cv.notify_all()
        for j in pending:
            settle(j, ServeError(503, "shutting_down", "the server is shutting down"))
        self._thread.join(timeout=30)
