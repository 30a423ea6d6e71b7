"""The server's Prometheus metrics, in a registry of its own (several apps in one process, as in
tests, never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServeMetrics:
    """Requests and errors by kind, queue depth, batch sizes and latencies."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "roadscene_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "roadscene_errors",
            "Requests answered with an error, by error code.",
            ["error"],
            registry=registry,
        )
        self.queue = Gauge(
            "roadscene_queue_depth", "Frames waiting for the model.", registry=registry
        )
        self.batch_size = Histogram(
            "roadscene_batch_size", "Frames per model batch.", buckets=BATCH_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "roadscene_batch_seconds", "Time of one model batch.", buckets=LATENCY_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.batch_retries = Counter(
            "roadscene_batch_retries",
            "Batches that failed and were answered frame by frame.",
            registry=registry,
        )
        self.latency = Histogram(
            "roadscene_describe_latency_seconds",
            "Time to answer one describe request (upload read to answer).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.unclear = Counter(
            "roadscene_unclear_frames",
            "Frames answered 'camera view unclear', by problem.",
            ["problem"],
            registry=registry,
        )
        self.sessions = Gauge("roadscene_sessions", "Live sessions.", registry=registry)

    # the batcher's observer interface
    def batch_done(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def batch_retried(self, size: int) -> None:
        self.batch_retries.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
