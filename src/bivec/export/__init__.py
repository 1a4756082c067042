"""Getting embeddings and models out of bivec: quantised vectors, sentence-transformers directories."""

from bivec.export.quantization import QuantizedVectors, quantize

__all__ = ["QuantizedVectors", "quantize"]
