"""SMAX (JaxMARL's JAX re-implementation of StarCraft micromanagement) as a powmarl env.

SMAC-like maps and SMACv2-like 5v5 races (``powmarl.envs.smax_maps``) played by our
agents against SMAX's heuristic AI (``HeuristicEnemySMAX``: attack the closest enemy in
range, else walk towards a seen enemy or across the map), as SMAC's built-in AI plays.
``docs/envs/smax.md`` lists every difference from SMAC and SMACv2.

Actions (SMAX's order): 0-3 move north/east/south/west, 4 stop, 5+j attack enemy j.
A dead agent may only stop. The enemy team is not controlled.

Observation of ally i: SMAX's ``unit_list`` features, with the six unit-type bits cut to
the types the map uses (none on a one-type map, as SMAC does): for each other unit (allies
first, then enemies) health fraction, position relative to i over i's sight range, last
movement (x, y), last attack target (normalised), weapon cooldown fraction, type bits
(zeros when not visible or dead); then i's own health, position over map size, cooldown,
type bits. ``(N - 1) * (7 + K) + 4 + K`` values for N units and K type bits.

State: per unit (allies then enemies) health fraction, position over map size, weapon
cooldown fraction, type bits; zeros for dead units; ``N * (4 + K)`` values. This is SMAX's
world state with positions and cooldowns normalised as in its observations and its
constant team / type-id tail dropped.

Reward: SMAC's shaped team reward (:func:`shaped_reward`), not SMAX's. ``info`` holds, per
step, ``battle_won`` (1 on the step the battle is won), ``dead_allies`` and
``dead_enemies`` (units that died this step); the runner sums them over an episode, so
``eval/battle_won_mean`` is the test win rate.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from powmarl.envs import smax_maps
from powmarl.envs.base import JaxEnvDefaults
from powmarl.envs.jaxmarl_adapter import (
    agent_dict,
    check_episode_limit,
    end_flags,
    make_timestep,
    stack_agents,
)
from powmarl.types import Array, EnvSpec, TimeStep

MISSING_JAXMARL = "smax: needs jaxmarl; install with pip install 'powmarl[smax]'"

try:
    from jaxmarl.environments.smax import HeuristicEnemySMAX, Scenario
    from jaxmarl.environments.smax.heuristic_enemy_smax_env import State as WrappedState
    from jaxmarl.environments.smax.smax_env import State as UnitState
except ImportError as err:  # pragma: no cover - exercised only without jaxmarl
    raise ImportError(MISSING_JAXMARL) from err

NUM_MOVE_ACTIONS = 5  # north, east, south, west, stop
STOP = 4
UNIT_FEATURES = 7  # SMAX's per-unit features before the type bits
OWN_FEATURES = 4  # SMAX's own features before the type bits
INFO_KEYS = ("battle_won", "dead_allies", "dead_enemies")
OBS_DTYPES = {"float16": jnp.float16, "float32": jnp.float32}
#: Steps decoded at once from compact replay records (bounds the decoder's scratch memory).
#: 32 rather than 512: the same speed with one seed, 20% faster training with five vmapped
#: seeds on 27m_vs_30m, where the seeds multiply each chunk's working set
#: (docs/benchmarks.md); the decoded values do not depend on it.
REPLAY_DECODE_CHUNK = 32


@flax.struct.dataclass
class SmaxParams:
    """SMAC's reward settings (``sc2.yaml``; notes sec. 5.3). float32 / bool scalars."""

    reward_death_value: Array  # per enemy killed (10)
    reward_win: Array  # on winning (200)
    reward_defeat: Array  # on losing (0)
    reward_negative_scale: Array  # weight of own losses when not positive-only (0.5)
    reward_scale_rate: Array  # the maximum episode return after scaling (20)
    reward_only_positive: Array  # bool: drop own losses, take |gain| (True)
    reward_scale: Array  # bool: divide by max_reward / reward_scale_rate (True)


def default_reward_params() -> SmaxParams:
    return SmaxParams(
        reward_death_value=jnp.float32(10.0),
        reward_win=jnp.float32(200.0),
        reward_defeat=jnp.float32(0.0),
        reward_negative_scale=jnp.float32(0.5),
        reward_scale_rate=jnp.float32(20.0),
        reward_only_positive=jnp.asarray(True),
        reward_scale=jnp.asarray(True),
    )


def shaped_reward(params: SmaxParams, before, after, num_allies: int, max_health: Array):
    """SMAC's dense shaped team reward for one step (``StarCraft2Env.reward_battle`` plus
    the win/defeat terms and scaling of ``step``), from SMAX unit states.

    For enemies alive before the step: gain = damage dealt + death_value per kill. For
    allies (only when not positive-only): loss = neg_scale * (damage taken + death_value
    per death). reward = |gain| if positive-only else gain - loss; + reward_win on a win,
    + reward_defeat on a loss; divided by max_reward / reward_scale_rate, where max_reward
    = n_enemies * death_value + reward_win + the enemies' total max health, so the best
    episode returns reward_scale_rate. SMAX has no shields (protoss health includes them)
    and no regeneration, so damage is never negative.

    Args: ``before``/``after`` SMAX unit states (allies first); ``max_health`` [U] per type.
    Returns: (reward, won, lost, dead_allies, dead_enemies), float32 scalars / bools.
    """
    ally = jnp.arange(before.unit_health.shape[0]) < num_allies
    was_alive = before.unit_alive
    died = was_alive & ~after.unit_alive
    damage = jnp.where(was_alive, before.unit_health - after.unit_health, 0.0)
    dead_enemies = jnp.sum(died & ~ally).astype(jnp.float32)
    dead_allies = jnp.sum(died & ally).astype(jnp.float32)
    neg = params.reward_negative_scale
    gain = jnp.sum(jnp.where(ally, 0.0, damage)) + params.reward_death_value * dead_enemies
    loss = neg * (jnp.sum(jnp.where(ally, damage, 0.0)) + params.reward_death_value * dead_allies)
    reward = jnp.where(params.reward_only_positive, jnp.abs(gain), gain - loss)
    allies_alive = jnp.any(after.unit_alive & ally)
    enemies_alive = jnp.any(after.unit_alive & ~ally)
    won = allies_alive & ~enemies_alive
    lost = ~allies_alive & enemies_alive
    reward = reward + jnp.where(won, params.reward_win, 0.0)
    reward = reward + jnp.where(lost, params.reward_defeat, 0.0)
    enemy_health = jnp.sum(jnp.where(ally, 0.0, max_health[before.unit_types]))
    num_enemies = jnp.sum(~ally).astype(jnp.float32)
    max_reward = num_enemies * params.reward_death_value + params.reward_win + enemy_health
    scaled = reward / (max_reward / params.reward_scale_rate)
    reward = jnp.where(params.reward_scale, scaled, reward)
    return reward.astype(jnp.float32), won, lost, dead_allies, dead_enemies


def _decode_chunk(count: int) -> int:
    """Records decoded at once: the largest divisor of ``count`` up to REPLAY_DECODE_CHUNK
    (e.g. 32 for 128 episodes x 181 slots), the whole count when it is that small, or 0
    when every such divisor is below an eighth of the chunk (then lax.map's batch_size)."""
    if count <= REPLAY_DECODE_CHUNK:
        return max(count, 1)
    best = max(d for d in range(1, REPLAY_DECODE_CHUNK + 1) if count % d == 0)
    return best if best >= REPLAY_DECODE_CHUNK // 8 else 0


def _type_bit_columns(num_units: int, type_ids: tuple[int, ...], num_types: int) -> np.ndarray:
    """Indices of SMAX ``unit_list`` observation columns kept (type bits cut to type_ids)."""
    per_unit = UNIT_FEATURES + num_types
    unit_cols = list(range(UNIT_FEATURES)) + [UNIT_FEATURES + t for t in type_ids]
    cols = [u * per_unit + c for u in range(num_units - 1) for c in unit_cols]
    own = (num_units - 1) * per_unit
    cols += [own + c for c in range(OWN_FEATURES)] + [own + OWN_FEATURES + t for t in type_ids]
    return np.asarray(cols, np.int32)


class SmaxEnv(JaxEnvDefaults):
    """A SMAC-like battle on SMAX: ``map_name`` from ``smax_maps.ALL_MAPS``.

    ``episode_limit`` overrides the map's limit (SMAC's / SMACv2's by default);
    ``obs_dtype`` is the dtype of observations and states ("float16" halves the replay
    buffer; the networks cast to float32).
    """

    obs_last_action = True  # PyMARL's agent input for SMAC (notes sec. 4.1)
    obs_agent_id = True

    @property
    def run_defaults(self) -> dict:
        """The paper's run settings of SMACv2 (a race map) or SMAC (notes sec. 4.4)."""
        return dict(smax_maps.SMACV2_RUN if self.random_units else smax_maps.SMAC_RUN)

    @property
    def main_metric(self) -> str:
        """The paper reports test returns on SMACv2, win rates on SMAC (notes sec. 10)."""
        return "return" if self.random_units else "battle_won"

    def __init__(
        self, map_name: str = "3s_vs_5z", episode_limit: int | None = None, obs_dtype="float16"
    ):
        info = smax_maps.lookup(map_name)
        if obs_dtype not in OBS_DTYPES:
            raise ValueError(f"obs_dtype: must be one of {sorted(OBS_DTYPES)}, got {obs_dtype!r}")
        limit = check_episode_limit(info.episode_limit if episode_limit is None else episode_limit)
        self.map_name, self.map_info, self.episode_limit = map_name, info, limit
        self.obs_dtype = OBS_DTYPES[obs_dtype]
        self.num_allies, self.num_enemies = len(info.allies), len(info.enemies)
        self.random_units = bool(info.race)
        scenario = Scenario(
            unit_types=jnp.asarray(info.allies + info.enemies, jnp.uint8),
            num_allies=self.num_allies,
            num_enemies=self.num_enemies,
            smacv2_position_generation=False,
            smacv2_unit_type_generation=False,
        )
        self.smax = HeuristicEnemySMAX(scenario=scenario, max_steps=limit)
        num_types = len(self.smax.unit_type_names)
        used = sorted(set(info.race or (info.allies + info.enemies)))
        self.type_ids = tuple(used) if len(used) > 1 else ()
        num_units = self.num_allies + self.num_enemies
        self._obs_cols = _type_bit_columns(num_units, self.type_ids, num_types)
        self.spec = EnvSpec(
            num_agents=self.num_allies,
            num_actions=NUM_MOVE_ACTIONS + self.num_enemies,
            obs_dim=int(self._obs_cols.size),
            state_dim=num_units * (OWN_FEATURES + len(self.type_ids)),
            episode_limit=limit,
        )

    def default_params(self) -> SmaxParams:
        return default_reward_params()

    # ------------------------------------------------------------------ reset / step

    def reset(self, key, params):
        del params
        if self.random_units:
            state = self._reset_smacv2(key)
        else:
            _, state = self.smax.reset(key)
        zero = jnp.zeros((), jnp.float32)
        no = jnp.zeros((), bool)
        return self._timestep(state, zero, no, no, {k: zero for k in INFO_KEYS}), state

    def _reset_smacv2(self, key):
        """SMACv2-like start: unit types from the race weights, surrounded/reflect positions."""
        key_types, key_pos, key_policy = jax.random.split(key, 3)
        n = self.num_allies + self.num_enemies
        types = smax_maps.draw_unit_types(key_types, self.map_info)
        pos = smax_maps.smacv2_positions(
            key_pos, self.num_allies, self.num_enemies, self.smax.map_width, self.smax.map_height
        )
        units = UnitState(
            unit_positions=pos,
            unit_alive=jnp.ones((n,), bool),
            unit_teams=(jnp.arange(n) >= self.num_allies).astype(jnp.float32),
            unit_health=self.smax.unit_type_health[types],
            unit_types=types,
            unit_weapon_cooldowns=jnp.zeros((n,), jnp.float32),
            prev_movement_actions=jnp.zeros((n, 2), jnp.float32),
            prev_attack_actions=jnp.zeros((n,), jnp.int32),
            step=jnp.zeros((), jnp.int32),
            done=jnp.zeros((), bool),
        )
        units = self.smax._env._push_units_away(units)
        # the collision push may move a unit onto a wall, which SMAX treats as death
        margin = smax_maps.EDGE_MARGIN
        upper = jnp.array([self.smax.map_width, self.smax.map_height]) - margin
        units = units.replace(unit_positions=jnp.clip(units.unit_positions, margin, upper))
        policy = self.smax.get_enemy_policy_initial_state(key_policy)
        return WrappedState(state=units, enemy_policy_state=policy)

    def step(self, key, state, actions, params: SmaxParams):
        actions = jnp.clip(jnp.asarray(actions).astype(jnp.int32), 0, self.spec.num_actions - 1)
        _, new_state, _, _, _ = self.smax.step_env(
            key, state, agent_dict(actions, self.smax.agents)
        )
        reward, won, _, dead_allies, dead_enemies = shaped_reward(
            params, state.state, new_state.state, self.num_allies, self.smax.unit_type_health
        )
        units = new_state.state
        allies_alive = jnp.any(units.unit_alive[: self.num_allies])
        enemies_alive = jnp.any(units.unit_alive[self.num_allies :])
        terminated, truncated = end_flags(
            ~(allies_alive & enemies_alive), units.step, self.episode_limit
        )
        info = {
            "battle_won": won.astype(jnp.float32),
            "dead_allies": dead_allies,
            "dead_enemies": dead_enemies,
        }
        return self._timestep(new_state, reward, terminated, truncated, info), new_state

    # ------------------------------------------------------------------ views

    def _timestep(self, state, reward, terminated, truncated, info) -> TimeStep:
        obs, global_state, avail = self._views(state.state)
        return make_timestep(obs, global_state, avail, reward, terminated, truncated, info)

    def _views(self, units) -> tuple[Array, Array, Array]:
        """(obs [A, O], state [X], avail_actions [A, U]) of a SMAX unit state."""
        return self._ally_obs(units), self._global_state(units), self._avail(units)

    def observe(self, state) -> Array:
        """[A, O] SMAX unit-list observations of the allies, type bits cut to the map's."""
        return self._ally_obs(state.state)

    def global_state(self, state) -> Array:
        """[X] per unit: health, position / map size, cooldown fraction, type bits."""
        return self._global_state(state.state)

    def avail_actions(self, state) -> Array:
        """[A, U] bool: moves and stop for live agents, attacks on live enemies in range;
        a dead agent may only stop."""
        return self._avail(state.state)

    def _ally_obs(self, units) -> Array:
        """SMAX's ``get_obs_unit_list`` for the allies only (the enemies' observations are
        for the heuristic AI): unit j's features as seen by ally i, for the other units in
        index order, zeroed unless both are alive and j is within i's sight range; then i's
        own features. Uses SMAX's per-unit feature functions."""
        smax = self.smax._env
        num_units = self.num_allies + self.num_enemies
        pos, alive, types = units.unit_positions, units.unit_alive, units.unit_types

        def seen(i, j):
            j = jnp.where(j < i, j, j + 1)  # skip i itself
            feats = smax._observe_features(units, i, j)
            visible = jnp.linalg.norm(pos[j] - pos[i]) < smax.unit_type_sight_ranges[types[i]]
            return jnp.where(visible & alive[i] & alive[j], feats, 0.0)

        allies = jnp.arange(self.num_allies)
        others = jax.vmap(jax.vmap(seen, (None, 0)), (0, None))(allies, jnp.arange(num_units - 1))
        own = jax.vmap(smax._get_own_features, (None, 0))(units, allies)
        full = jnp.concatenate([others.reshape(self.num_allies, -1), own], axis=-1)
        return full[:, self._obs_cols].astype(self.obs_dtype)

    def _global_state(self, units) -> Array:
        smax = self.smax
        types = units.unit_types
        health = units.unit_health / smax.unit_type_health[types]
        pos = units.unit_positions / jnp.array([smax.map_width, smax.map_height])
        cooldown = units.unit_weapon_cooldowns / smax.unit_type_weapon_cooldowns[types]
        bits = types[:, None] == jnp.asarray(self.type_ids, jnp.uint8)[None, :]
        feats = jnp.concatenate(
            [health[:, None], pos, jnp.clip(cooldown, 0.0, 1.0)[:, None], bits], axis=-1
        )
        feats = jnp.where(units.unit_alive[:, None], feats, 0.0)
        return feats.reshape(-1).astype(self.obs_dtype)

    def _avail(self, units) -> Array:
        avail = self.smax._env.get_avail_actions(units)
        return stack_agents(avail, self.smax.agents).astype(bool)

    # ------------------------------------------------------------------ compact replay

    def replay_encode(self, state) -> dict[str, Array]:
        """What the replay buffer keeps of one step instead of obs, state and avail_actions:
        the unit arrays they are computed from, 16 bytes per unit (27m_vs_30m: 0.9 KB per
        step instead of 22 KB of float16 observations). Exact: health is whole hit points."""
        units = state.state
        return {
            "positions": units.unit_positions,  # [N, 2] float32
            "health": units.unit_health.astype(jnp.float16),  # [N]
            "cooldowns": units.unit_weapon_cooldowns,  # [N] float32
            "types": units.unit_types.astype(jnp.uint8),  # [N]
            "last_actions": self._last_action_ids(units),  # [N] uint8
        }

    def replay_decode(self, record: dict[str, Array]) -> tuple[Array, Array, Array]:
        """(obs [..., A, O], state [..., X], avail_actions [..., A, U]) from records of
        :meth:`replay_encode` with any leading dims, equal to what the env emitted.
        Decodes at most REPLAY_DECODE_CHUNK steps at a time to bound the scratch memory."""
        lead = record["health"].shape[:-1]
        count = int(np.prod(lead))
        chunk = _decode_chunk(count)
        if chunk == 0:  # no divisor of a useful size: lax.map's chunks and remainder
            flat = jax.tree.map(lambda x: x.reshape(count, *x.shape[len(lead) :]), record)
            views = jax.lax.map(self._decode_one, flat, batch_size=REPLAY_DECODE_CHUNK)
            return jax.tree.map(lambda x: x.reshape(*lead, *x.shape[1:]), views)
        # chunks that divide the count exactly: lax.map's remainder path concatenates its two
        # parts, which copies the decoded batch (0.5 GiB of obs on 27m_vs_30m) twice more
        split = jax.tree.map(lambda x: x.reshape(-1, chunk, *x.shape[len(lead) :]), record)
        views = jax.lax.map(jax.vmap(self._decode_one), split)
        return jax.tree.map(lambda x: x.reshape(*lead, *x.shape[2:]), views)

    def _decode_one(self, record) -> tuple[Array, Array, Array]:
        num_units = self.num_allies + self.num_enemies
        health = record["health"].astype(jnp.float32)
        last = record["last_actions"].astype(jnp.int32)
        moves = self._move_vectors()
        units = UnitState(
            unit_positions=record["positions"],
            unit_alive=health > 0,
            unit_teams=(jnp.arange(num_units) >= self.num_allies).astype(jnp.float32),
            unit_health=health,
            unit_types=record["types"],
            unit_weapon_cooldowns=record["cooldowns"],
            prev_movement_actions=moves[jnp.minimum(last, STOP)],
            prev_attack_actions=jnp.where(last >= NUM_MOVE_ACTIONS, last, 0),
            step=jnp.zeros((), jnp.int32),
            done=jnp.zeros((), bool),
        )
        return self._views(units)

    def _move_vectors(self) -> Array:
        """[5, 2] SMAX's movement vector of actions 0-4 (north, east, south, west, stop)."""
        moves, _ = self.smax._env._decode_discrete_actions(jnp.arange(NUM_MOVE_ACTIONS))
        return moves

    def _last_action_ids(self, units) -> Array:
        """[N] uint8 each unit's previous action id (attack id, else the move, else stop),
        from SMAX's stored movement vector and attack id."""
        moves = self._move_vectors()[:STOP]  # [4, 2]
        similarity = units.prev_movement_actions @ moves.T  # [N, 4]
        moved = jnp.linalg.norm(units.prev_movement_actions, axis=-1) > 0.5
        move_id = jnp.where(moved, jnp.argmax(similarity, axis=-1), STOP)
        attack = units.prev_attack_actions
        return jnp.where(attack >= NUM_MOVE_ACTIONS, attack, move_id).astype(jnp.uint8)
