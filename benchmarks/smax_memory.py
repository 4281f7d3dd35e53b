"""Replay-buffer bytes per seed on the SMAX maps, with and without the compact record.

    python benchmarks/smax_memory.py [--buffer-size 5000] [--maps 27m_vs_30m corridor]

Sizes come from the shapes the compiled runner would allocate (``jax.eval_shape``; nothing
is allocated). "compact" is what powmarl stores (``SmaxEnv.replay_encode``: unit arrays,
decoded to observations when a batch is sampled); "float16" and "float32" are what storing
the observations, states and avail masks themselves would cost.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from powmarl import algos
from powmarl.api import resolve_settings
from powmarl.envs import make, smax_maps
from powmarl.runners.jax_runner import make_runner


def buffer_bytes(env, buffer_size: int) -> int:
    cfg, _ = resolve_settings(env, {"buffer_size": buffer_size}, algos.make("qmix"))
    runner = make_runner(cfg, env, algos.make("qmix"), seed_axis=None)
    shapes = jax.eval_shape(runner.init, jax.random.key(0), env.default_params())
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes.buffer))


def stored_views_bytes(env, buffer_size: int, obs_bytes: int) -> int:
    """Bytes of obs, state and avail_actions themselves, plus the rest of an episode."""
    s = env.spec
    slots = s.episode_limit + 1
    views = slots * (s.num_agents * s.obs_dim * obs_bytes + s.state_dim * obs_bytes)
    views += slots * s.num_agents * s.num_actions  # bool avail
    rest = s.episode_limit * (s.num_agents + 4 + 1 + 1)  # uint8 actions, f32 reward, 2 flags
    return buffer_size * (views + rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buffer-size", type=int, default=5000)
    parser.add_argument("--maps", nargs="*", default=list(smax_maps.ALL_MAPS))
    args = parser.parse_args()
    gib = 2.0**30
    print(
        f"| map | A | O | X | T | compact GiB | float16 GiB | float32 GiB |  (buffer {args.buffer_size})"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.maps:
        env = make("smax", map_name=name)
        s = env.spec
        compact = buffer_bytes(env, args.buffer_size) / gib
        f16 = stored_views_bytes(env, args.buffer_size, 2) / gib
        f32 = stored_views_bytes(env, args.buffer_size, 4) / gib
        print(
            f"| {name} | {s.num_agents} | {s.obs_dim} | {s.state_dim} | {s.episode_limit} "
            f"| {compact:.2f} | {f16:.2f} | {f32:.2f} |"
        )


if __name__ == "__main__":
    main()
