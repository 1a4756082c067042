"""Server settings."""

from __future__ import annotations

from dataclasses import dataclass

from bivec.encoder import DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class ServerConfig:
    """Limits, batching and authentication of the embeddings server.

    Example:
        >>> ServerConfig(max_wait_ms=2.0, max_queue_texts=512, api_key="secret").truncate
        True
    """

    model_name: str = "bivec"
    """The id clients pass as ``model``; requests naming another model get 404."""
    normalize: bool = True
    """Return unit-length vectors, as the OpenAI API does."""
    max_inputs: int = 2048
    """Texts per request; more gets 413."""
    truncate: bool = True
    """Cut texts longer than the encoder's ``max_length`` tokens; False answers them with 413."""
    max_merged_tokens: int = 16384
    """Tokens (unpadded) of the requests merged into one batch; the encoder then cuts the batch into
    forward passes under its own padded-token budget (``Encoder.encode``'s ``max_batch_tokens``)."""
    max_batch_size: int = DEFAULT_BATCH_SIZE
    """Texts per model call (encode's default: at 16 clients x 16 texts, 128 served 8-16% more texts/s
    than 64, with a lower median latency)."""
    max_wait_ms: float = 5.0
    """How long the first request of a batch waits for others to join it."""
    max_queue_texts: int = 4096
    """Texts waiting to be encoded; a request that would exceed it gets 429 with Retry-After."""
    retry_after_s: int = 1
    """Retry-After sent with 429 and 503 answers."""
    api_key: str | None = None
    """When set, /v1/* requires ``Authorization: Bearer <api_key>``."""

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_merged_tokens", "max_batch_size", "max_queue_texts", "retry_after_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty")
