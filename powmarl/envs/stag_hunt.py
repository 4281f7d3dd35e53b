"""Predator-prey with mis-capture punishment (the "stag hunt" of WQMIX / PyMARL2 / POW).

A pure-JAX port of the reference ``stag_hunt.py`` under the configuration the POW
experiments use (``pred_prey_punish`` / PyMARL2 ``stag_hunt``): a bounded square grid,
``num_agents`` predators, ``num_stags`` stags, no hares, 5x5 local views without walls,
an explicit ``catch`` action that needs two agents, freezing and removal of the agents
that made a capture, stags that never rest, stag reward 10, no time or collision reward.

Coordinates are ``(row, col)`` with row 0 at the top.

Actions (reference order): 0 right ``(0, +1)``, 1 down ``(+1, 0)``, 2 left ``(0, -1)``,
3 up ``(-1, 0)``, 4 stay, 5 catch.

Availability: a move off the grid is unavailable; moves into another agent or a stag are
available (they just fail); stay is always available; catch only when a live stag is
4-adjacent; a frozen agent may only stay.

One step, in the reference order:

1. Agents move one at a time in a fresh random order. A move is blocked (the agent stays)
   by the grid edge or by a cell holding a non-frozen agent or a live stag.
2. Stags are visited one at a time in a fresh random order. For a live stag, count the
   non-frozen agents that chose catch and are 4-adjacent to it *now* (agents frozen by a
   stag visited earlier in this step no longer count). With two or more, the stag is
   captured: it is removed, the team gets ``reward_stag``, and every counted agent is
   frozen and removed from the grid. With one, the team gets ``punishment`` (once per such
   stag per step) and the stag then moves as usual. An uncaptured stag moves to a
   uniformly random 4-adjacent cell that is inside the grid and holds no non-frozen agent
   and no live stag, or stays if there is none; later stags see its new position.
3. The episode terminates when every stag is captured or every agent is frozen; after
   ``episode_limit`` steps without that it is truncated.

Observation of agent ``i``: the 5x5 window centred on it, three channels (agents, stags,
hares), flattened row-major as ``[row offset -2..2][col offset -2..2][channel]`` (75
values, channel fastest). It includes the agent itself at the centre; cells off the grid
are 0; frozen agents and captured stags are invisible; a frozen agent sees all zeros.
State: the whole grid ``[row][col][channel]`` flattened (``grid_size**2 * 3`` values).
Both are 0/1 ``uint8``; the hare channel is always 0 (kept for the reference layout).

Differences from the reference, all invisible under this configuration or deliberate:
randomness comes from explicit JAX keys (same distributions, different streams; the
random orders rank random words instead of sorting, see ``_random_order``); the
reference's episode-limit step reports ``terminated=True`` plus an ``episode_limit`` flag,
here it is ``truncated=True, terminated=False`` unless the game also ended naturally on
that step (then ``terminated=True, truncated=False``).
"""

from __future__ import annotations

import math
import numbers
from types import MappingProxyType

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from powmarl.envs.base import JaxEnvDefaults
from powmarl.envs.drawing import draw_grid_hunt
from powmarl.types import Array, EnvSpec, TimeStep

RIGHT, DOWN, LEFT, UP, STAY, CATCH = range(6)
NUM_ACTIONS = 6
#: (d_row, d_col) of each action, in the reference order.
ACTION_DELTAS = np.array([[0, 1], [1, 0], [0, -1], [-1, 0], [0, 0], [0, 0]], dtype=np.int32)
#: View radius (``agent_obs = [2, 2]``): the window is (2r+1) x (2r+1).
VIEW_RADIUS = 2
VIEW = 2 * VIEW_RADIUS + 1
#: Feature channels of grid, state and observation: agents, stags, hares.
NUM_CHANNELS = 3
AGENT_CH, STAG_CH, HARE_CH = range(NUM_CHANNELS)
#: Agents that must catch together to capture a stag (``capture_action_conditions[0]``).
CATCHERS_NEEDED = 2
INFO_KEYS = ("stags_captured", "miscaptures")


@flax.struct.dataclass
class StagHuntParams:
    """Tunable rewards (float32 scalars; vmappable)."""

    punishment: Array  # reward added once per lone-catch stag per step (reference: <= 0)
    reward_stag: Array  # reward per captured stag


@flax.struct.dataclass
class StagHuntState:
    """Positions are (row, col); a frozen agent keeps its last position but is off the grid."""

    agent_pos: Array  # [A, 2] int32
    frozen: Array  # [A] bool
    stag_pos: Array  # [P, 2] int32
    stag_alive: Array  # [P] bool
    time: Array  # [] int32, steps taken


def _check_int(name: str, value, low: int) -> int:
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def _random_order(key, n: int) -> Array:
    """A uniformly random permutation of ``range(n)``.

    Ranks n random 32-bit words by pairwise comparison (ties broken by index), which
    for the handful of entities here is much cheaper than the sort behind
    ``jax.random.permutation``; the bias from ties is below n**2 / 2**32.
    """
    words = jax.random.bits(key, (n,), jnp.uint32)
    ids = jnp.arange(n)
    before = (words[None, :] < words[:, None]) | (
        (words[None, :] == words[:, None]) & (ids[None, :] < ids[:, None])
    )
    rank = jnp.sum(before, axis=1)  # rank[i]: position of entity i in the order
    return jnp.sum(jnp.where(rank[None, :] == ids[:, None], ids[None, :], 0), axis=1)


class StagHunt(JaxEnvDefaults):
    """Predator-prey with a two-agent catch action and mis-capture punishment ``p``.

    ``punishment`` is meant to be <= 0 (the reference configs use 0 and -2), but any
    finite number is accepted.
    """

    obs_last_action = True
    obs_agent_id = False  # the reference predator-prey configs use no agent id
    #: Run settings of the reference predator-prey runs (notes sec. 4.4): epsilon 1 -> 0.05
    #: over 500k (library defaults), 5.05M steps, 16 test episodes every 10k, C = 1 (README
    #: of the reference code); the buffer is ~0.9 GiB per seed: a checkpoint every 200k.
    run_defaults = MappingProxyType(
        {
            "t_max": 5_050_000,
            "test_interval": 10_000,
            "test_nepisode": 16,
            "recognition_threshold": 1.0,
            "checkpoint_interval": 200_000,
        }
    )

    def __init__(
        self,
        grid_size: int = 10,
        num_agents: int = 8,
        num_stags: int = 8,
        punishment: float = 0.0,
        episode_limit: int = 200,
    ):
        self.grid_size = _check_int("grid_size", grid_size, 3)
        self.num_agents = _check_int("num_agents", num_agents, CATCHERS_NEEDED)
        self.num_stags = _check_int("num_stags", num_stags, 1)
        self.episode_limit = _check_int("episode_limit", episode_limit, 1)
        cells = self.grid_size**2
        if self.num_agents + self.num_stags > cells:
            raise ValueError(
                f"num_agents + num_stags: must be <= grid_size**2 = {cells} "
                f"(one entity per cell), got {self.num_agents + self.num_stags}"
            )
        if (
            isinstance(punishment, bool)
            or not isinstance(punishment, numbers.Real)
            or not math.isfinite(punishment)
        ):
            raise ValueError(
                f"punishment: must be a finite number (usually <= 0), got {punishment!r}"
            )
        self.punishment = float(punishment)
        self.spec = EnvSpec(
            num_agents=self.num_agents,
            num_actions=NUM_ACTIONS,
            obs_dim=VIEW * VIEW * NUM_CHANNELS,
            state_dim=cells * NUM_CHANNELS,
            episode_limit=self.episode_limit,
        )

    def default_params(self) -> StagHuntParams:
        return StagHuntParams(
            punishment=jnp.asarray(self.punishment, jnp.float32),
            reward_stag=jnp.asarray(10.0, jnp.float32),
        )

    def render_frame(self, frame, env_params):
        """The grid of the frame's state: stags, agents (pale when frozen), return so far."""
        del env_params
        return draw_grid_hunt(self.grid_size, frame)

    # ------------------------------------------------------------------ reset / step

    def reset(self, key, params):
        """Agents, then stags, on distinct uniformly random cells (all placements equally likely)."""
        del params
        n, p, g = self.num_agents, self.num_stags, self.grid_size
        cells = jax.random.choice(key, g * g, (n + p,), replace=False).astype(jnp.int32)
        pos = jnp.stack([cells // g, cells % g], axis=-1)
        state = StagHuntState(
            agent_pos=pos[:n],
            frozen=jnp.zeros((n,), bool),
            stag_pos=pos[n:],
            stag_alive=jnp.ones((p,), bool),
            time=jnp.zeros((), jnp.int32),
        )
        zero = jnp.zeros((), jnp.float32)
        info = {k: zero for k in INFO_KEYS}
        return self._timestep(state, zero, jnp.zeros((), bool), jnp.zeros((), bool), info), state

    def step(self, key, state: StagHuntState, actions, params: StagHuntParams):
        n, p, g = self.num_agents, self.num_stags, self.grid_size
        key_agents, key_stags, key_moves = jax.random.split(key, 3)
        agent_order = _random_order(key_agents, n)
        stag_order = _random_order(key_stags, p)
        move_draws = jax.random.uniform(key_moves, (p,))
        actions = jnp.clip(jnp.asarray(actions).astype(jnp.int32), 0, NUM_ACTIONS - 1)
        # 1. agents move sequentially in random order
        agent_pos = _move_agents(state, actions, agent_order, g)
        # 2. stags: capture check, then (if not captured) a random move, one at a time
        frozen, stag_pos, stag_alive, reward, captures, misses = _visit_stags(
            state, agent_pos, actions == CATCH, stag_order, move_draws, params, g
        )
        new_state = StagHuntState(
            agent_pos=agent_pos,
            frozen=frozen,
            stag_pos=stag_pos,
            stag_alive=stag_alive,
            time=state.time + 1,
        )
        terminated = ~jnp.any(stag_alive) | jnp.all(frozen)
        truncated = (new_state.time >= self.episode_limit) & ~terminated
        info = {"stags_captured": captures, "miscaptures": misses}
        return self._timestep(new_state, reward, terminated, truncated, info), new_state

    # ------------------------------------------------------------------ views

    def _timestep(self, state, reward, terminated, truncated, info) -> TimeStep:
        grid = self._padded_grid(state)
        return TimeStep(
            obs=self._observe(state, grid),
            state=self._crop_state(grid),
            avail_actions=self.avail_actions(state),
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(terminated, bool),
            truncated=jnp.asarray(truncated, bool),
            info=info,
        )

    def _padded_grid(self, state: StagHuntState) -> Array:
        """The grid with a VIEW_RADIUS border of empty cells, [row][col][channel] flattened.

        One extra slot at the end absorbs the writes of invisible entities.
        """
        width = self.grid_size + 2 * VIEW_RADIUS
        pos = jnp.concatenate([state.agent_pos, state.stag_pos], 0) + VIEW_RADIUS
        channel = np.array([AGENT_CH] * self.num_agents + [STAG_CH] * self.num_stags, np.int32)
        visible = jnp.concatenate([~state.frozen, state.stag_alive], 0)
        size = width * width * NUM_CHANNELS
        index = (pos[:, 0] * width + pos[:, 1]) * NUM_CHANNELS + channel
        index = jnp.where(visible, index, size)
        return jnp.zeros((size + 1,), jnp.uint8).at[index].set(1)

    def _crop_state(self, grid: Array) -> Array:
        g, width = self.grid_size, self.grid_size + 2 * VIEW_RADIUS
        inner = grid[:-1].reshape(width, width, NUM_CHANNELS)
        return inner[VIEW_RADIUS : VIEW_RADIUS + g, VIEW_RADIUS : VIEW_RADIUS + g].reshape(-1)

    def _observe(self, state: StagHuntState, grid: Array) -> Array:
        width = self.grid_size + 2 * VIEW_RADIUS
        # window of an agent at padded (r, c) = (row + R, col + R) starts at padded (row, col)
        rows, cols, chans = np.meshgrid(
            np.arange(VIEW), np.arange(VIEW), np.arange(NUM_CHANNELS), indexing="ij"
        )
        offsets = ((rows * width + cols) * NUM_CHANNELS + chans).reshape(-1)
        corner = (state.agent_pos[:, 0] * width + state.agent_pos[:, 1]) * NUM_CHANNELS
        obs = grid[corner[:, None] + offsets[None, :]]  # [A, O]
        return jnp.where(state.frozen[:, None], jnp.uint8(0), obs)

    def global_state(self, state: StagHuntState) -> Array:
        """The grid [row][col][channel] flattened, uint8 0/1."""
        return self._crop_state(self._padded_grid(state))

    def observe(self, state: StagHuntState) -> Array:
        """Each agent's 5x5x3 window [row offset][col offset][channel] flattened, uint8 0/1."""
        return self._observe(state, self._padded_grid(state))

    def avail_actions(self, state: StagHuntState) -> Array:
        """[A, 6] bool: on-grid moves, stay, catch next to a live stag; frozen: stay only."""
        g = self.grid_size
        targets = state.agent_pos[:, None, :] + jnp.asarray(ACTION_DELTAS[:4])  # [A, 4, 2]
        moves = jnp.all((targets >= 0) & (targets < g), -1)
        dist = jnp.sum(jnp.abs(state.stag_pos[None, :, :] - state.agent_pos[:, None, :]), -1)
        catch = jnp.any((dist == 1) & state.stag_alive[None, :], -1)
        stay = jnp.ones_like(catch)
        avail = jnp.concatenate([moves, stay[:, None], catch[:, None]], -1)
        only_stay = jnp.arange(NUM_ACTIONS) == STAY
        return jnp.where(state.frozen[:, None], only_stay, avail)


def _occupied(cells, agent_pos, frozen, stag_pos, stag_alive):
    """[..., 2] cells -> [...] whether a non-frozen agent or live stag is there."""
    on_agent = jnp.all(cells[..., None, :] == agent_pos, -1) & ~frozen
    on_stag = jnp.all(cells[..., None, :] == stag_pos, -1) & stag_alive
    return jnp.any(on_agent, -1) | jnp.any(on_stag, -1)


def _inside(cells, grid_size: int):
    return jnp.all((cells >= 0) & (cells < grid_size), -1)


def _move_agents(state: StagHuntState, actions, agent_order, grid_size: int):
    """Agents move one at a time in ``agent_order``; a move into a wall, a non-frozen agent
    or a live stag is not made, nor any move of a frozen agent. New positions [A, 2]."""
    deltas = jnp.asarray(ACTION_DELTAS)[actions]  # [A, 2]

    def move_agent(k, agent_pos):
        i = agent_order[k]
        pos = agent_pos[i]
        target = pos + deltas[i]
        ok = ~state.frozen[i] & _inside(target, grid_size)
        ok &= ~_occupied(target, agent_pos, state.frozen, state.stag_pos, state.stag_alive)
        return agent_pos.at[i].set(jnp.where(ok, target, pos))

    return jax.lax.fori_loop(0, actions.shape[0], move_agent, state.agent_pos)


def _visit_stags(state, agent_pos, catching, stag_order, move_draws, params, grid_size: int):
    """Stags in ``stag_order``: captured by CATCHERS_NEEDED adjacent catching agents (who
    freeze; +reward_stag), a lone catch is punished, else a random move to a free
    neighbour. (frozen, stag_pos, stag_alive, reward, captures, misses)."""
    dirs = jnp.asarray(ACTION_DELTAS[:4])  # [4, 2]

    def visit_stag(k, carry):
        frozen, stag_pos, stag_alive, reward, captures, misses = carry
        j = stag_order[k]
        alive = stag_alive[j]
        pos = stag_pos[j]
        adjacent = jnp.sum(jnp.abs(agent_pos - pos), -1) == 1
        catchers = adjacent & catching & ~frozen
        num = jnp.sum(catchers)
        captured = alive & (num >= CATCHERS_NEEDED)
        missed = alive & (num > 0) & ~captured
        frozen = frozen | (catchers & captured)
        stag_alive = stag_alive.at[j].set(alive & ~captured)
        # random move to a free neighbour (the stag's own cell is never a neighbour)
        nbrs = pos + dirs  # [4, 2]
        free = _inside(nbrs, grid_size) & ~_occupied(nbrs, agent_pos, frozen, stag_pos, stag_alive)
        num_free = jnp.sum(free)
        pick = jnp.minimum((move_draws[j] * num_free).astype(jnp.int32), num_free - 1)
        chosen = free & (jnp.cumsum(free) - 1 == pick)
        new_pos = jnp.sum(jnp.where(chosen[:, None], nbrs, 0), 0)
        moves = alive & ~captured & (num_free > 0)
        stag_pos = stag_pos.at[j].set(jnp.where(moves, new_pos, pos))
        reward = (
            reward
            + jnp.where(captured, params.reward_stag, 0.0)
            + jnp.where(missed, params.punishment, 0.0)
        )
        return frozen, stag_pos, stag_alive, reward, captures + captured, misses + missed

    zero = jnp.zeros((), jnp.float32)
    init = (state.frozen, state.stag_pos, state.stag_alive, zero, zero, zero)
    return jax.lax.fori_loop(0, stag_order.shape[0], visit_stag, init)
