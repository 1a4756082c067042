"""Prometheus metrics of the embeddings server, in a registry of its own per app."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServerMetrics:
    """Requests, batch sizes, queue depth and latencies, exposed at ``/metrics``.

    Example:
        >>> metrics = ServerMetrics()
        >>> metrics.observe_batch(requests=3, texts=5, tokens=80, seconds=0.02)
        >>> b"bivec_batch_requests_count 1.0" in metrics.render()
        True
    """

    def __init__(self) -> None:
        # A registry per app: several apps (tests, benchmarks) can live in one process.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bivec_requests", "HTTP requests by route and status code.", ["path", "status"], registry=self.registry
        )
        self.request_latency = Histogram(
            "bivec_request_latency_seconds", "Time from request to response.", ["path"],
            buckets=_SECONDS, registry=self.registry,
        )
        self.batch_requests = Histogram(
            "bivec_batch_requests", "Requests merged into one batch.", buckets=_SIZES, registry=self.registry
        )
        self.batch_texts = Histogram("bivec_batch_texts", "Texts per batch.", buckets=_SIZES, registry=self.registry)
        self.batch_tokens = Histogram(
            "bivec_batch_tokens", "Tokens per batch.", buckets=tuple(16 * s for s in _SIZES), registry=self.registry
        )
        self.batch_latency = Histogram(
            "bivec_batch_latency_seconds", "Model time per batch.", buckets=_SECONDS, registry=self.registry
        )
        self.texts = Counter("bivec_texts", "Texts embedded.", registry=self.registry)
        self.tokens = Counter("bivec_prompt_tokens", "Tokens embedded.", registry=self.registry)
        self.queue_texts = Gauge("bivec_queue_texts", "Texts waiting for the model.", registry=self.registry)
        self.queue_requests = Gauge("bivec_queue_requests", "Requests waiting for the model.", registry=self.registry)

    def watch_queue(self, texts: Callable[[], float], requests: Callable[[], float]) -> None:
        """Read the queue depth from the batcher at scrape time."""
        self.queue_texts.set_function(texts)
        self.queue_requests.set_function(requests)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path=path, status=str(status)).inc()
        self.request_latency.labels(path=path).observe(seconds)

    def observe_batch(self, *, requests: int, texts: int, tokens: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(tokens)
        self.batch_latency.observe(seconds)
        self.texts.inc(texts)
        self.tokens.inc(tokens)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
