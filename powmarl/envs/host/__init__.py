"""Host (Python / NumPy) environments: the protocol, lockstep copies, a matrix game, SMAC.

``powmarl.envs.make("matrix_host")``, ``make("sc2_smac", map_name=...)`` and
``make("sc2_smacv2_{protoss,terran,zerg}_5v5")`` build them; ``powmarl.train`` runs them
on the host path (:mod:`powmarl.runners.host_runner`).
"""

from powmarl.envs.host.base import HostEnv, is_host_env
from powmarl.envs.host.matrix import HostMatrixGame
from powmarl.envs.host.vector import HostVectorEnv, make_copies

__all__ = ["HostEnv", "HostMatrixGame", "HostVectorEnv", "is_host_env", "make_copies"]
