"""powmarl: weighted value decomposition for cooperative MARL in JAX (POW and its baselines)."""

__version__ = "0.1.0"

from powmarl import algos, envs
from powmarl.api import TrainResult, train

__all__ = ["TrainResult", "__version__", "algos", "envs", "train"]
