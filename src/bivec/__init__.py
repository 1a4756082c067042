"""bivec: turn a decoder-only language model into a text encoder, the LLM2Vec way.

Example:
    >>> import bivec
    >>> encoder = bivec.Encoder.from_pretrained()  # doctest: +SKIP
    >>> encoder.encode(["A man plays a guitar."]).shape  # doctest: +SKIP
    (1, 576)
"""

from bivec.attention import BidirectionalError, check_bidirectional, make_bidirectional
from bivec.compat import LLM2Vec
from bivec.encoder import Encoder
from bivec.vectors import QuantizedVectors, quantize

__version__ = "0.1.0"

__all__ = [
    "BidirectionalError",
    "Encoder",
    "LLM2Vec",
    "QuantizedVectors",
    "__version__",
    "check_bidirectional",
    "make_bidirectional",
    "quantize",
]
