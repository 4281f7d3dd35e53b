"""Maps for the SMAX adapter: SMAC unit compositions and episode limits, SMACv2-like races.

Pure data plus the SMACv2 start-position generator; nothing here imports jaxmarl, so
listing maps and raising "unsupported map" errors works without it.

Unit-type ids are SMAX's (``jaxmarl.environments.smax.SMAX`` defaults): 0 marine,
1 marauder, 2 stalker, 3 zealot, 4 zergling, 5 hydralisk.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

import jax
import jax.numpy as jnp

UNIT_TYPES = ("marine", "marauder", "stalker", "zealot", "zergling", "hydralisk")
MARINE, MARAUDER, STALKER, ZEALOT, ZERGLING, HYDRALISK = range(len(UNIT_TYPES))


class MapInfo(NamedTuple):
    """One map: fixed teams (SMAC) or a race whose units are drawn each episode (SMACv2)."""

    allies: tuple[int, ...]  # unit type per ally (for a race: placeholder, only the count)
    enemies: tuple[int, ...]  # unit type per enemy
    episode_limit: int  # SMAC's / SMACv2's ``limit``
    race: tuple[int, ...] = ()  # SMACv2: the unit types drawn from (empty for SMAC maps)
    race_weights: tuple[float, ...] = ()  # SMACv2: their probabilities (renormalised)


def _team(*groups: tuple[int, int]) -> tuple[int, ...]:
    return tuple(unit for count, unit in groups for _ in range(count))


#: SMAC maps SMAX's units can express; limits from SMAC's ``smac_maps.py``.
SMAC_MAPS: dict[str, MapInfo] = {
    "3m": MapInfo(_team((3, MARINE)), _team((3, MARINE)), 60),
    "8m": MapInfo(_team((8, MARINE)), _team((8, MARINE)), 120),
    "25m": MapInfo(_team((25, MARINE)), _team((25, MARINE)), 150),
    "5m_vs_6m": MapInfo(_team((5, MARINE)), _team((6, MARINE)), 70),
    "8m_vs_9m": MapInfo(_team((8, MARINE)), _team((9, MARINE)), 120),
    "10m_vs_11m": MapInfo(_team((10, MARINE)), _team((11, MARINE)), 150),
    "27m_vs_30m": MapInfo(_team((27, MARINE)), _team((30, MARINE)), 180),
    "2s3z": MapInfo(_team((2, STALKER), (3, ZEALOT)), _team((2, STALKER), (3, ZEALOT)), 120),
    "3s5z": MapInfo(_team((3, STALKER), (5, ZEALOT)), _team((3, STALKER), (5, ZEALOT)), 150),
    "3s5z_vs_3s6z": MapInfo(
        _team((3, STALKER), (5, ZEALOT)), _team((3, STALKER), (6, ZEALOT)), 170
    ),
    "3s_vs_3z": MapInfo(_team((3, STALKER)), _team((3, ZEALOT)), 150),
    "3s_vs_4z": MapInfo(_team((3, STALKER)), _team((4, ZEALOT)), 200),
    "3s_vs_5z": MapInfo(_team((3, STALKER)), _team((5, ZEALOT)), 250),
    "2m_vs_1z": MapInfo(_team((2, MARINE)), _team((1, ZEALOT)), 150),
    "6h_vs_8z": MapInfo(_team((6, HYDRALISK)), _team((8, ZEALOT)), 150),
    # custom scenario: SMAC's corridor units on SMAX's open 32x32 map (no corridor terrain)
    "corridor": MapInfo(_team((6, ZEALOT)), _team((24, ZERGLING)), 400),
}

#: SMACv2 5v5 races (notes sec. 5.4). SMACv2 draws stalker/zealot/colossus,
#: marine/marauder/medivac and zergling/hydralisk/baneling with weights 0.45/0.45/0.1;
#: SMAX has no colossus, medivac or baneling, so the 0.1 unit is dropped and the two
#: others get 0.5 each (the renormalised 0.45/0.45). Limit 200 as SMACv2's ``10gen_*``.
SMACV2_MAPS: dict[str, MapInfo] = {
    f"smacv2_{race}_5v5": MapInfo((units[0],) * 5, (units[0],) * 5, 200, units, (0.5, 0.5))
    for race, units in (
        ("protoss", (STALKER, ZEALOT)),
        ("terran", (MARINE, MARAUDER)),
        ("zerg", (ZERGLING, HYDRALISK)),
    )
}

#: SMACv2's 0.1-weight units SMAX lacks, per race (for docs and error messages).
SMACV2_MISSING_UNIT = {"protoss": "colossus", "terran": "medivac", "zerg": "baneling"}

_NO_UNIT = "SMAX has only marines, marauders, stalkers, zealots, zerglings and hydralisks"
#: SMAC maps SMAX cannot express, with the reason.
UNSUPPORTED_MAPS: dict[str, str] = {
    "MMM": f"needs medivacs (healing units); {_NO_UNIT}",
    "MMM2": f"needs medivacs (healing units); {_NO_UNIT}",
    "1c3s5z": f"needs a colossus; {_NO_UNIT}",
    "2c_vs_64zg": f"needs colossi; {_NO_UNIT}",
    "bane_vs_bane": f"needs banelings (suicide splash units); {_NO_UNIT}",
    "so_many_baneling": f"needs banelings (suicide splash units); {_NO_UNIT}",
    "2s_vs_1sc": f"needs a spine crawler (a static building); {_NO_UNIT}",
}

ALL_MAPS: dict[str, MapInfo] = {**SMAC_MAPS, **SMACV2_MAPS}


def lookup(map_name: str) -> MapInfo:
    """The map's info, or ValueError naming why it is unsupported and what is supported."""
    supported = ", ".join(ALL_MAPS)
    if map_name in UNSUPPORTED_MAPS:
        raise ValueError(
            f"map_name: {map_name!r} is not supported: it {UNSUPPORTED_MAPS[map_name]}. "
            f"Supported maps: {supported}"
        )
    if map_name not in ALL_MAPS:
        raise ValueError(f"map_name: unknown map {map_name!r}; supported maps: {supported}")
    return ALL_MAPS[map_name]


# --------------------------------------------------------------------- SMACv2 start positions

#: Spread of the random offset added to every spawn point: SC2 places units that spawn on
#: one point around it; SMAX's collision push cannot separate units at identical positions.
SPAWN_JITTER = 1.0
#: Spawn points are kept this far from the edges: SMAX kills units that touch a wall.
EDGE_MARGIN = 1.0
#: SMACv2's ``surrounded`` puts enemy groups between a corner and a point this far
#: (along both axes) from the centre.
SURROUND_OFFSET = 2.0


def _surrounded(key, n_allies: int, n_enemies: int, width: float, height: float):
    """SMACv2 ``surrounded``: allies at the centre; 1-4 enemy groups, each on its own
    diagonal at a uniform fraction t of the way from a corner to near the centre."""
    key_groups, key_members, key_diag, key_t = jax.random.split(key, 4)
    centre = jnp.array([width / 2, height / 2])
    signs = jnp.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    corners = jnp.array([[0.0, 0.0], [0.0, height], [width, height], [width, 0.0]])
    near_centre = centre + SURROUND_OFFSET * signs
    n_groups = jax.random.randint(key_groups, (), 1, 5)
    # a uniform group per enemy gives SMACv2's multinomial group sizes
    logits = jnp.where(jnp.arange(4) < n_groups, 0.0, -jnp.inf)
    group = jax.random.categorical(key_members, logits, shape=(n_enemies,))
    diagonal = jax.random.permutation(key_diag, 4)  # distinct diagonals per group
    t = jax.random.uniform(key_t, (4,))
    group_pos = near_centre[diagonal] * t[:, None] + corners[diagonal] * (1 - t[:, None])
    allies = jnp.broadcast_to(centre, (n_allies, 2))
    return jnp.concatenate([allies, group_pos[group]], axis=0)


def _reflect(key, n_allies: int, n_enemies: int, width: float, height: float):
    """SMACv2 ``reflect``: allies uniform in the left half (less a 1-unit buffer), enemies
    mirrored in the vertical centre line; extra enemies uniform in the right half."""
    key_allies, key_extra = jax.random.split(key)
    allies = jax.random.uniform(
        key_allies,
        (n_allies, 2),
        minval=jnp.array([0.0, 0.0]),
        maxval=jnp.array([width / 2 - 1, height]),
    )
    mirrored = jnp.stack([width - allies[:, 0], allies[:, 1]], axis=-1)
    extra = jax.random.uniform(
        key_extra,
        (max(n_enemies - n_allies, 0), 2),
        minval=jnp.array([width / 2, 0.0]),
        maxval=jnp.array([width, height]),
    )
    enemies = jnp.concatenate([mirrored, extra], axis=0)[:n_enemies]
    return jnp.concatenate([allies, enemies], axis=0)


def smacv2_positions(
    key, n_allies: int, n_enemies: int, width: float, height: float, p: float = 0.5
):
    """SMACv2 ``surrounded_and_reflect``: surrounded with probability 1 - p (SMACv2 draws
    u ~ U(0,1) and picks surrounded when u > p), else reflect; then a small jitter and
    an edge margin (see SPAWN_JITTER, EDGE_MARGIN). Returns [n_allies + n_enemies, 2]."""
    key_draw, key_surround, key_reflect, key_jitter = jax.random.split(key, 4)
    surrounded = jax.random.uniform(key_draw) > p
    pos = jnp.where(
        surrounded,
        _surrounded(key_surround, n_allies, n_enemies, width, height),
        _reflect(key_reflect, n_allies, n_enemies, width, height),
    )
    jitter = jax.random.uniform(key_jitter, pos.shape, minval=-SPAWN_JITTER, maxval=SPAWN_JITTER)
    upper = jnp.array([width, height]) - EDGE_MARGIN
    return jnp.clip(pos + jitter, EDGE_MARGIN, upper)


def draw_unit_types(key, info: MapInfo):
    """SMACv2 ``weighted_teams``: each ally type drawn i.i.d. from the race's weights; the
    enemy team mirrors the allies (extra enemies drawn the same way). uint8 [N]."""
    n_allies, n_enemies = len(info.allies), len(info.enemies)
    key_allies, key_extra = jax.random.split(key)
    race = jnp.asarray(info.race, jnp.uint8)
    probs = jnp.asarray(info.race_weights, jnp.float32)
    allies = jax.random.choice(key_allies, race, (n_allies,), p=probs)
    extra = jax.random.choice(key_extra, race, (max(n_enemies - n_allies, 0),), p=probs)
    enemies = jnp.concatenate([allies, extra])[:n_enemies]
    return jnp.concatenate([allies, enemies]).astype(jnp.uint8)


#: The paper's run settings on SMAC (notes sec. 4.4), for SMAX and StarCraft II alike:
#: 10.05M steps, 32 test episodes every 30k (epsilon 1 -> 0.05 over 500k, C = 0.1, buffer
#: 5000, batch 128 are library defaults). The buffer is GiBs per seed (docs/envs/smax.md):
#: a checkpoint every 500k steps; the learner's scratch memory, not the buffer, limits seeds
#: per machine: build agent inputs per step and rematerialise the GRU (27m_vs_30m: 5.5 ->
#: 1.3 GiB per seed).
SMAC_RUN = MappingProxyType(
    {
        "remat_agent": True,
        "t_max": 10_050_000,
        "test_interval": 30_000,
        "test_nepisode": 32,
        "checkpoint_interval": 500_000,
    }
)
#: SMACv2 5v5: as SMAC but 32 test episodes every 10k; its metric is the mean test return.
SMACV2_RUN = MappingProxyType({**SMAC_RUN, "test_interval": 10_000})
