"""Counters and latency percentiles for ``GET /metrics`` (JSON, or Prometheus text format)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default); None for no values.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([10, 20, 30], 90)
    28.0
    """
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class Metrics:
    """Requests by endpoint and status, errors by code, latency of answered predictions over the
    last ``window`` requests, batch sizes."""

    def __init__(self, window: int = 4096):
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.clips = 0
        self.latency: deque[float] = deque(maxlen=window)
        self.batch_sizes: Counter[int] = Counter()
        self.batch_seconds = 0.0

    def request(self, endpoint: str, status: int, seconds: float, error: str | None = None, clips: int = 0) -> None:
        with self._lock:
            self.requests[endpoint] += 1
            self.statuses[status] += 1
            if error:
                self.errors[error] += 1
            self.clips += clips
            if status == 200 and endpoint.startswith("/v1/"):
                self.latency.append(seconds)

    def error(self, code: str) -> None:
        """An error inside a batch request (the request itself answered 200)."""
        with self._lock:
            self.errors[code] += 1

    def batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_sizes[size] += 1
            self.batch_seconds += seconds

    def snapshot(self, **gauges) -> dict:
        with self._lock:
            lat = list(self.latency)
            n_batches = sum(self.batch_sizes.values())
            return {
                "uptime_s": round(time.time() - self.started, 1),
                "requests": {
                    "total": sum(self.requests.values()),
                    "by_endpoint": dict(self.requests),
                    "by_status": {str(k): v for k, v in sorted(self.statuses.items())},
                },
                "clips": self.clips,
                "errors": dict(self.errors),
                "latency_ms": {
                    "n": len(lat),
                    "window": self.latency.maxlen,
                    **{
                        f"p{q}": (round(v * 1000, 1) if (v := percentile(lat, q)) is not None else None)
                        for q in (50, 90, 95, 99)
                    },
                    "mean": round(sum(lat) / len(lat) * 1000, 1) if lat else None,
                },
                "batches": {
                    "count": n_batches,
                    "mean_size": (sum(k * v for k, v in self.batch_sizes.items()) / n_batches) if n_batches else None,
                    "sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                    "model_seconds": round(self.batch_seconds, 3),
                },
                "queue": gauges,
            }


def prometheus(snap: dict) -> str:
    """The snapshot in Prometheus' text exposition format."""
    lines = ["# TYPE emorl_requests_total counter"]
    for ep, n in snap["requests"]["by_endpoint"].items():
        lines.append(f'emorl_requests_total{{endpoint="{ep}"}} {n}')
    lines.append("# TYPE emorl_responses_total counter")
    for st, n in snap["requests"]["by_status"].items():
        lines.append(f'emorl_responses_total{{status="{st}"}} {n}')
    lines.append("# TYPE emorl_errors_total counter")
    for code, n in snap["errors"].items():
        lines.append(f'emorl_errors_total{{code="{code}"}} {n}')
    lines.append("# TYPE emorl_latency_ms summary")
    for q in (50, 90, 95, 99):
        v = snap["latency_ms"][f"p{q}"]
        if v is not None:
            lines.append(f'emorl_latency_ms{{quantile="{q / 100}"}} {v}')
    lines.append(f"emorl_latency_ms_count {snap['latency_ms']['n']}")
    lines.append("# TYPE emorl_clips_total counter")
    lines.append(f"emorl_clips_total {snap['clips']}")
    lines.append("# TYPE emorl_batches_total counter")
    lines.append(f"emorl_batches_total {snap['batches']['count']}")
    for k, v in snap["queue"].items():
        lines.append(f"# TYPE emorl_queue_{k} gauge")
        lines.append(f"emorl_queue_{k} {v}")
    return "\n".join(lines) + "\n"
