"""The JAX port ``intersection`` against ``intersection_hw`` (highway-env, changed to
behave as the authors' copy), step by step, from the same initial conditions and with the
same actions.

Episodes: starts drawn as the authors draw them (a quarter with random initial speeds),
offsets and speeds rounded to float32 so both envs begin at exactly the same point, under
four action families (uniform; mostly IDLE/FASTER; mostly SLOWER; half the vehicles held
back for a random time); they contain crashes, arrivals and time-outs (checked). Every
step compares the vehicles' positions, headings and speeds, obs, state, reward,
terminated, truncated and info; highway-env's episode end must be the port's.

Why two kinds of comparison: highway-env's lateral controller is unstable below ~2 m/s.
Its lateral loop multiplies a lateral error by about 1 - (L/2) K_lat / v = 1 - 4.17 / v
per step (L = 5 m, K_lat = 1/0.6), so while a vehicle crawls (braking to a stop or
starting again) rounding noise grows 10-1000x a step into a saturated left-right
steering jitter, different in every implementation (float64 ones too): trajectories that
pass through a crawl part by up to metres, both right. So each episode runs on highway-
env, with its continuous state rounded to float32 before each step (a 1e-7 relative
nudge), and on the port twice, in one batch:

- **synced**: the port restarts every step from highway-env's state: every quantity is
  compared on every step of every episode;
- **free-running**: the port plays the episode on its own from the start: reward,
  terminated, truncated and info are compared on every step of every episode, and
  positions, headings, speeds, obs and state on every step of the episodes in which no
  vehicle has gone below 2.5 m/s (well-conditioned).

Tolerances, float32 port vs float64 reference: 1e-4 m for positions (coordinates reach
~120 m, where float32 values are 7.6e-6 to 1.5e-5 apart), 2e-4 for obs and state
(relative rows and route points subtract two such values), 1e-4 rad for headings and
1e-5 m/s for speeds (~10 float32 spacings at 10 m/s). The largest errors measured over
32 episodes (printed with -s) were 1.7e-5 m, 3.4e-5 (obs), 7e-6 rad and 3e-7 m/s, the
headings' on synced steps of crawling vehicles (the controller's gain L K_h / (2 v)
scales the float32 rounding of the heading error). Rewards, flags and info are compared
exactly.

The default run plays 32 episodes (~30 s, mostly compiling the port's step); ``-m slow``
plays 600. Skips unless highway-env (``powmarl[highway]``) and the port are installed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("highway_env", reason="the reference needs highway-env (powmarl[highway])")
intersection = pytest.importorskip("powmarl.envs.intersection", reason="the JAX port is absent")

from powmarl.envs.host.intersection_hw import IntersectionHW
from powmarl.envs.intersection import vehicle as port_vehicle

SLOWER, IDLE, FASTER = 0, 1, 2
T = 101
#: absolute tolerances, float32 port vs float64 reference (see the module docstring)
ATOL = {"position": 1e-4, "heading": 1e-4, "speed": 1e-5, "obs": 2e-4}
#: obs columns that are headings (the 4 rows' 5th feature)
HEADING_COLS = np.arange(4) * 5 + 4
WELL_CONDITIONED_SPEED = 2.5  # m/s: free-running comparison only above this


def draw_episodes(n: int, seed: int):
    """``n`` starts [n, 4] (float32-exact) and action sequences [n, T, 4]."""
    rng = np.random.default_rng(seed)
    hw = IntersectionHW()
    hw.sim.reset(seed=seed)  # seeds the authors' start draw
    draws = [hw.sim.draw_start() for _ in range(n)]
    offset = np.stack([d["entry_offset"] for d in draws])
    speed = np.where(rng.random((n, 1)) < 0.25, rng.uniform(0, 10, (n, 4)), 10.0)
    starts = {
        "entry_offset": np.clip(offset, 0.0, 97.5).astype(np.float32),
        "speed": speed.astype(np.float32),
        "destination": np.stack([d["destination"] for d in draws]).astype(np.int32),
    }
    return starts, np.stack([_actions(rng, k % 4) for k in range(n)])


def _actions(rng, family: int) -> np.ndarray:
    """[T, 4] actions of one episode."""
    probs = ([1 / 3] * 3, [0.1, 0.45, 0.45], [0.8, 0.15, 0.05], [0.1, 0.3, 0.6])[family]
    acts = rng.choice(3, size=(T, 4), p=probs)
    if family == 3:  # hold a random half back (SLOWER) for 10..40 steps
        held = rng.permutation(4)[:2]
        acts[: rng.integers(10, 40), held] = SLOWER
    return acts


def _start(starts, i):
    return {k: np.asarray(v[i], np.float64) for k, v in starts.items()}


# ------------------------------------------------------------------- the port's side

PORT = intersection.Intersection()
PARAMS = PORT.default_params()


@jax.jit
def port_reset(starts):
    return jax.vmap(lambda s: PORT.reset_from(intersection.IntersectionStart(**s)))(starts)


@jax.jit
def port_step(keys, state, actions):
    return jax.vmap(lambda k, s, a: PORT.step(k, s, a, PARAMS))(keys, state, actions)


def port_state_of(hw: IntersectionHW, time: int, destination):
    """The port's state equal to highway-env's (already float32-exact)."""
    cars = hw.sim.controlled_vehicles
    impact = [np.zeros(2) if v.impact is None else v.impact for v in cars]
    veh = port_vehicle.Vehicles(
        position=np.array([v.position for v in cars], np.float32),
        heading=np.array([v.heading for v in cars], np.float32),
        speed=np.array([v.speed for v in cars], np.float32),
        target_speed=np.array([v.target_speed for v in cars], np.float32),
        destination=np.asarray(destination, np.int32),
        target_stage=np.array([3 - len(v.route) for v in cars], np.int32),
        on_exit_lane=np.array([v.lane_index[0].startswith("il") for v in cars]),
        crashed=np.array([v.crashed for v in cars]),
        impact=np.array(impact, np.float32),
        has_impact=np.array([v.impact is not None for v in cars]),
        steering=np.array([v.action["steering"] for v in cars], np.float32),
        acceleration=np.array([v.action["acceleration"] for v in cars], np.float32),
    )
    return intersection.IntersectionState(veh, np.asarray(time, np.int32))


def round_to_float32(hw: IntersectionHW) -> None:
    """Round highway-env's continuous vehicle state to float32 values (in place)."""
    for v in hw.sim.controlled_vehicles:
        v.position = v.position.astype(np.float32).astype(np.float64)
        v.heading = float(np.float32(v.heading))
        v.speed = float(np.float32(v.speed))
        if v.impact is not None:
            v.impact = v.impact.astype(np.float32).astype(np.float64)


# ------------------------------------------------------------------- comparisons


def _close(name, got, want, atol, where):
    err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    assert err <= atol, f"{where}: {name} differs by {err:.3g} > {atol}\nport {got}\nhw   {want}"
    return err


def compare_views(ts, veh, hw, out, where, errors) -> None:
    """Vehicles, obs, state, reward, flags and info of one step (``out``: hw's step)."""
    cars = hw.vehicles()
    for name in ("position", "heading", "speed"):
        errors[name] = max(errors[name], _close(name, veh[name], cars[name], ATOL[name], where))
    obs, want = np.asarray(ts["obs"]), hw.get_obs()
    _close("obs headings", obs[:, HEADING_COLS], want[:, HEADING_COLS], ATOL["heading"], where)
    errors["obs"] = max(errors["obs"], _close("obs", obs, want, ATOL["obs"], where))
    _close("state", ts["state"], hw.get_state(), ATOL["obs"], where)
    _compare_outcome(ts, out, where)


def _pick(ts, veh, i, t=None):
    """Episode i (and step t) of batched port outputs, as plain dicts."""
    idx = (i,) if t is None else (i, t)
    view = {k: np.asarray(getattr(ts, k)[idx]) for k in ("obs", "state", "reward")}
    view.update({k: bool(getattr(ts, k)[idx]) for k in ("terminated", "truncated")})
    view["info"] = {k: float(v[idx]) for k, v in ts.info.items()}
    cars = {k: np.asarray(getattr(veh, k)[idx]) for k in ("position", "heading", "speed")}
    return view, cars


def _end_kind(info) -> str:
    return "crash" if info["collision"] else "arrive" if info["all_arrive"] else "timeout"


def _stack(states):
    return jax.tree.map(lambda *xs: np.stack(xs), *states)


def _take(tree, rows):
    return jax.tree.map(lambda x: x[rows], tree)


def _compare_outcome(view, out, where) -> None:
    got = (float(view["reward"]), view["terminated"], view["truncated"], view["info"])
    assert got == tuple(out), f"{where}: port (reward, terminated, truncated, info) {got}, hw {out}"


class Tally:
    """End kinds, well-conditioned episodes and the largest errors of a validation."""

    def __init__(self, n: int, starts):
        self.ends = {"crash": 0, "arrive": 0, "timeout": 0}
        self.fast = starts["speed"].min(axis=1) >= WELL_CONDITIONED_SPEED  # [n]
        self.synced = {k: 0.0 for k in ATOL}
        self.free = {k: 0.0 for k in ATOL}


def validate(n: int, seed: int) -> Tally:
    """Every episode on highway-env (its state rounded to float32 before each step), and
    on the port twice in one batch: restarted from highway-env's state each step (synced)
    and on its own from the start (free-running)."""
    starts, actions = draw_episodes(n, seed)
    tally, hws = Tally(n, starts), [IntersectionHW() for _ in range(n)]
    ts0, free = port_reset(starts)
    for i, hw in enumerate(hws):
        obs = hw.reset_from(_start(starts, i))[0]
        _close("obs", ts0.obs[i], obs, ATOL["obs"], f"episode {i} reset")
    live = np.ones(n, bool)
    keys = jax.random.split(jax.random.key(seed), (T, 2 * n))
    acts = np.concatenate([actions, actions])
    for t in range(T):
        for i in np.flatnonzero(live):
            round_to_float32(hws[i])
        synced = _stack(
            [port_state_of(hw, t, starts["destination"][i]) for i, hw in enumerate(hws)]
        )
        both = jax.tree.map(lambda a, b: np.concatenate([a, b]), synced, jax.device_get(free))
        ts, new = jax.device_get(port_step(keys[t], both, jnp.asarray(acts[:, t])))
        free = _take(new, slice(n, None))
        for i in np.flatnonzero(live):
            live[i] = _step_episode(hws[i], i, t, ts, new.vehicles, actions[i, t], tally, n)
    assert not live.any(), f"episodes {np.flatnonzero(live)} ran past {T} steps"
    print(f"ends {tally.ends}; well-conditioned {tally.fast.sum()}/{n}")
    print(f"largest errors: synced {tally.synced}, free-running {tally.free}")
    return tally


def _step_episode(hw, i, t, ts, veh, action, tally: Tally, n: int) -> bool:
    """Step episode i on highway-env and compare; whether it goes on."""
    out = hw.step(action)
    where = f"episode {i} step {t + 1}"
    view, cars = _pick(ts, veh, i)
    compare_views(view, cars, hw, out, where + " (synced)", tally.synced)
    view, cars = _pick(ts, veh, n + i)
    _compare_outcome(view, out, where + " (free-running)")
    tally.fast[i] &= hw.vehicles()["speed"].min() >= WELL_CONDITIONED_SPEED
    if tally.fast[i]:
        compare_views(view, cars, hw, out, where + " (free-running)", tally.free)
    if out[1] or out[2]:
        tally.ends[_end_kind(out[3])] += 1
    return not (out[1] or out[2])


def test_port_matches_highway_env_step_by_step():
    tally = validate(32, seed=0)
    assert min(tally.ends.values()) >= 3 and tally.fast.sum() >= 8, tally.ends


@pytest.mark.slow
def test_port_matches_highway_env_over_many_episodes():
    tally = validate(600, seed=1)
    assert min(tally.ends.values()) >= 30 and tally.fast.sum() >= 100, tally.ends
