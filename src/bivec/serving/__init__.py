"""OpenAI-compatible embeddings server with dynamic batching.

Example:
    >>> from bivec import Encoder
    >>> from bivec.serving import ServerConfig, create_app
    >>> app = create_app(Encoder.from_pretrained(), ServerConfig(model_name="smollm2"))  # doctest: +SKIP
"""

from bivec.serving.app import create_app
from bivec.serving.batcher import BatcherClosedError, DynamicBatcher, QueueFullError
from bivec.serving.config import ServerConfig
from bivec.serving.metrics import ServerMetrics

__all__ = ["BatcherClosedError", "DynamicBatcher", "QueueFullError", "ServerConfig", "ServerMetrics", "create_app"]
