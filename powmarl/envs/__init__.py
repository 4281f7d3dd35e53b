"""JAX environments: ``make(env_id, **kwargs)``, ``check(env)``, ``registered()``."""

from powmarl.envs.base import MultiAgentEnv
from powmarl.envs.conformance import ConformanceError, check
from powmarl.envs.matrix import POW_PAYOFF, WQMIX_PAYOFF, MatrixGame
from powmarl.envs.registry import env_kwargs, make, register, registered


def _matrix(payoff=POW_PAYOFF):
    return MatrixGame(payoff)


def _matrix_pow():
    return MatrixGame(POW_PAYOFF)


def _matrix_wqmix():
    return MatrixGame(WQMIX_PAYOFF)


def _stag_hunt(
    grid_size: int = 10,
    num_agents: int = 8,
    num_stags: int = 8,
    punishment: float = 0.0,
    episode_limit: int = 200,
):
    from powmarl.envs.stag_hunt import StagHunt

    return StagHunt(
        grid_size=grid_size,
        num_agents=num_agents,
        num_stags=num_stags,
        punishment=punishment,
        episode_limit=episode_limit,
    )


register("matrix", _matrix, "one-step game with any payoff tensor U^n (default: POW payoff)")
register("matrix_pow", _matrix_pow, "the POW paper's 3x3 game: optimum 8, trap 7.9")
register("matrix_wqmix", _matrix_wqmix, "the classic WQMIX/QTRAN 3x3 game: optimum 8")
register(
    "stag_hunt",
    _stag_hunt,
    "predator-prey with mis-capture punishment p (10x10, 8 agents, 8 stags, 200 steps)",
)

__all__ = [
    "POW_PAYOFF",
    "WQMIX_PAYOFF",
    "ConformanceError",
    "MatrixGame",
    "MultiAgentEnv",
    "check",
    "env_kwargs",
    "make",
    "register",
    "registered",
]
