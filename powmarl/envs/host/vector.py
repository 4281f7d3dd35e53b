"""E copies of a host env stepped in lockstep, in-process and in sequence (no subprocesses).

The host runner runs whole episodes: it resets up to E copies together, steps the ones
whose episode is still running, and stops when all have ended, so there is no auto-reset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from powmarl.envs.contract import copy_factory, max_copies
from powmarl.envs.host.base import HostEnv, check_step_views


def make_copies(env: HostEnv, num: int) -> list[HostEnv]:
    """``env`` and up to ``num - 1`` more copies of it.

    Copies come from :func:`powmarl.envs.contract.copy_factory` (the registry again with the
    same arguments, the env's ``clone()``, or a pickle of the env); an env with none of them,
    or with ``max_copies`` (e.g. 1 for StarCraft II: one game process), gets fewer copies and
    the runner plays its episodes in several waves.
    """
    limit = max_copies(env)
    num = max(1, num if limit is None else min(num, limit))
    factory = copy_factory(env) if num > 1 else None
    if factory is None:
        return [env]
    return [env] + [factory() for _ in range(num - 1)]


class HostVectorEnv:
    """Several copies of one host env; arrays gain a leading env axis [n, ...]."""

    def __init__(self, envs: Sequence[HostEnv]):
        if not envs:
            raise ValueError("HostVectorEnv: needs at least one env")
        specs = {e.spec for e in envs}
        if len(specs) != 1:
            raise ValueError(f"HostVectorEnv: the copies have different specs {sorted(specs)}")
        self.envs = list(envs)
        self.spec = envs[0].spec
        self.info_keys = tuple(envs[0].info_keys)

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reset the first ``len(seeds)`` copies: (obs [n, A, O], state [n, X], avail [n, A, U])."""
        if len(seeds) > len(self.envs):
            raise ValueError(f"HostVectorEnv: {len(seeds)} seeds for {len(self.envs)} copies")
        views = []
        for env, seed in zip(self.envs, seeds):
            obs, state, avail = env.reset(int(seed))
            check_step_views(env, obs, state, avail)
            views.append((obs, state, avail))
        return _stack(views)

    def step(self, actions: np.ndarray, active: np.ndarray):
        """Step copy i with ``actions[i]`` [A] where ``active[i]``; the others stand still.

        Returns reward [n] float32, terminated [n] bool, truncated [n] bool, info {key: [n]}
        (zeros for inactive copies) and the views after the step (obs, state, avail; zeros
        for inactive copies).
        """
        n = len(active)
        reward = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        info = {k: np.zeros(n, np.float32) for k in self.info_keys}
        views = []
        for i in range(n):
            env = self.envs[i]
            if not active[i]:
                views.append(None)
                continue
            r, term, trunc, step_info = env.step(np.asarray(actions[i]))
            reward[i], terminated[i], truncated[i] = r, term, trunc
            for k in self.info_keys:
                info[k][i] = float(step_info.get(k, 0.0))
            view = (env.get_obs(), env.get_state(), env.get_avail_actions())
            if not term:  # a view the runner reads (next step, or slot T at a truncation)
                check_step_views(env, *view)
            views.append(view)
        template = next(v for v in views if v is not None) if any(active) else None
        filled = [v if v is not None else _zeros_like(template) for v in views] if template else []
        obs, state, avail = _stack(filled) if template is not None else (None, None, None)
        return reward, terminated, truncated, info, (obs, state, avail)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _stack(views):
    obs, state, avail = zip(*views)
    return np.stack(obs), np.stack(state), np.stack([np.asarray(a, bool) for a in avail])


def _zeros_like(view):
    return tuple(np.zeros_like(np.asarray(x)) for x in view)
