"""Environments: ``make(env_id, **kwargs)``, ``check(env)``, ``checked(env)``, ``registered()``.

The JAX and host protocols and their optional hooks: :mod:`powmarl.envs.base`,
:mod:`powmarl.envs.host.base`, read through :mod:`powmarl.envs.contract`.
"""

from powmarl.envs.base import MultiAgentEnv
from powmarl.envs.conformance import ConformanceError, check
from powmarl.envs.contract import checked, env_kind, identity
from powmarl.envs.jaxmarl_adapter import from_jaxmarl, make_jaxmarl
from powmarl.envs.jumanji_envs import JumanjiLbf, JumanjiRware
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


def _smax(map_name: str = "3s_vs_5z", episode_limit: int | None = None, obs_dtype="float16"):
    # lazy: jaxmarl is optional (raises ImportError "smax: needs jaxmarl; ..." without it)
    from powmarl.envs.smax import SmaxEnv

    return SmaxEnv(map_name=map_name, episode_limit=episode_limit, obs_dtype=obs_dtype)


def _smacv2(race: str):
    def factory(episode_limit: int | None = None, obs_dtype="float16"):
        return _smax(f"smacv2_{race}_5v5", episode_limit, obs_dtype)

    return factory


register("matrix", _matrix, "one-step game with any payoff tensor U^n (default: POW payoff)")
register("matrix_pow", _matrix_pow, "the POW paper's 3x3 game: optimum 8, trap 7.9")
register("matrix_wqmix", _matrix_wqmix, "the classic WQMIX/QTRAN 3x3 game: optimum 8")
register(
    "stag_hunt",
    _stag_hunt,
    "predator-prey with mis-capture punishment p (10x10, 8 agents, 8 stags, 200 steps)",
)
register(
    "smax",
    _smax,
    "SMAC-like battle on JaxMARL's SMAX vs its heuristic AI (map_name: 3s_vs_5z, corridor, "
    "27m_vs_30m, ...; needs jaxmarl)",
)
for _race in ("protoss", "terran", "zerg"):
    register(
        f"smacv2_{_race}_5v5",
        _smacv2(_race),
        f"SMACv2-like 5v5 {_race} on SMAX: random unit types, surrounded/reflect starts "
        "(needs jaxmarl)",
    )


register(
    "jaxmarl",
    make_jaxmarl,
    "any JaxMARL env (name: MPE_simple_spread_v3, switch_riddle, ...; env_kwargs: its "
    "arguments as JSON; needs jaxmarl, see docs/envs/jaxmarl.md)",
)
register(
    "lbf",
    JumanjiLbf,
    "Level-Based Foraging on Jumanji (task: EPyMARL's Foraging-8x8-2p-2f-coop, ...; "
    "needs jumanji, see docs/envs/jumanji.md)",
)
register(
    "rware",
    JumanjiRware,
    "multi-robot warehouse on Jumanji (task: EPyMARL's rware-tiny-2ag, ...; needs jumanji, "
    "see docs/envs/jumanji.md)",
)


# host (Python) envs: trained on the host path (powmarl.runners.host_runner)
def _matrix_host(payoff=POW_PAYOFF):
    from powmarl.envs.host.matrix import HostMatrixGame

    return HostMatrixGame(payoff)


def _sc2_smac(map_name: str = "3s_vs_5z", obs_dtype="float32", seed: int | None = None):
    # lazy: needs StarCraft II and the smac package (the ImportError says how to install them)
    from powmarl.envs.host.smac import make_smac

    return make_smac(map_name=map_name, obs_dtype=obs_dtype, seed=seed)


def _sc2_smacv2(race: str):
    def factory(obs_dtype="float32", seed: int | None = None):
        from powmarl.envs.host.smac import make_smacv2

        return make_smacv2(race, obs_dtype=obs_dtype, seed=seed)

    return factory


register(
    "matrix_host",
    _matrix_host,
    "the matrix game (default: POW payoff) as a NumPy host env: tests the host path",
)
register(
    "sc2_smac",
    _sc2_smac,
    "real SMAC on StarCraft II (map_name: 3s_vs_5z, corridor, MMM2, ...; host path; "
    "needs StarCraft II and smac, see docs/envs/sc2.md)",
)
for _race in ("protoss", "terran", "zerg"):
    register(
        f"sc2_smacv2_{_race}_5v5",
        _sc2_smacv2(_race),
        f"real SMACv2 10gen_{_race}, 5 vs 5, on StarCraft II (host path; needs StarCraft II "
        "and smacv2, see docs/envs/sc2.md)",
    )

# Python suites through gymnasium/PettingZoo (host path; the packages load when an env is made)
from powmarl.envs.host.gymma import make_gymma
from powmarl.envs.host.pettingzoo import from_pettingzoo, make_pettingzoo

register(
    "pettingzoo",
    make_pettingzoo,
    "any PettingZoo ParallelEnv (env: module or module:function, default mpe2.simple_spread_v3; "
    "host path; needs powmarl[pettingzoo], see docs/envs/pettingzoo.md)",
)
register(
    "gymma",
    make_gymma,
    "a gymnasium multi-agent env with EPyMARL's gymma conventions (key: "
    "lbforaging:Foraging-8x8-2p-3f-v3, rware:rware-tiny-2ag-v2, ...; host path; needs "
    "powmarl[gymma], see docs/envs/gymma.md)",
)

__all__ = [
    "POW_PAYOFF",
    "WQMIX_PAYOFF",
    "ConformanceError",
    "MatrixGame",
    "MultiAgentEnv",
    "check",
    "checked",
    "env_kind",
    "env_kwargs",
    "from_jaxmarl",
    "from_pettingzoo",
    "identity",
    "make",
    "register",
    "registered",
]
