"""Getting models out of bivec: sentence-transformers directories and merged checkpoints."""
