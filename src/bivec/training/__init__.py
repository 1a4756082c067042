"""LLM2Vec training: MNTP, unsupervised SimCSE and supervised contrastive, resumable.

Example:
    >>> from bivec.training import MNTPConfig, SimCSEConfig, train_mntp, train_simcse
    >>> train_mntp(MNTPConfig(data=["wiki.txt"], output_dir="out/mntp"))  # doctest: +SKIP
    >>> train_simcse(SimCSEConfig(data=["sentences.txt"], adapters=["out/mntp"], output_dir="out/simcse"))  # doctest: +SKIP
"""

from bivec.training.config import ContrastiveConfig, MNTPConfig, SimCSEConfig, SupervisedConfig, TrainConfig
from bivec.training.stages import train_mntp, train_simcse, train_supervised

__all__ = [
    "ContrastiveConfig",
    "MNTPConfig",
    "SimCSEConfig",
    "SupervisedConfig",
    "TrainConfig",
    "train_mntp",
    "train_simcse",
    "train_supervised",
]
