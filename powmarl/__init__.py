"""powmarl: weighted value decomposition for cooperative MARL in JAX (POW and its baselines)."""

__version__ = "0.1.0"

from powmarl import algos, envs  # noqa: E402
from powmarl.api import TrainResult, train  # noqa: E402

__all__ = ["TrainResult", "algos", "envs", "train", "__version__"]
