"""The JAX backend: every member in one compiled, vmapped program (DESIGN sec. 5).

``init`` and ``run_chunk`` are separate compiled calls (known-pitfalls: a GRU init inside
the vmapped training program can hang XLA:CPU). With several local devices the member
axis is sharded across them when their count divides it.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.algos.base import Algorithm
from powmarl.config import Config, HParams
from powmarl.runners.jax_runner import Runner, make_runner
from powmarl.runners.members import Member, init_program, member_keys


def member_sharding(num_members: int, log=None):
    """Shard the member axis across local devices when there are several and they divide it."""
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    if num_members % len(devices):
        if log:
            log(
                f"powmarl: {num_members} members do not divide over {len(devices)} devices; "
                "running on one device"
            )
        return None
    mesh = jax.sharding.Mesh(np.asarray(devices), ("members",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("members"))


def compile_fns(runner: Runner):
    """Separate ``init`` (compiled unless :func:`init_program` says otherwise) and compiled
    ``run_chunk``, vmapped over members."""
    init = init_program(jax.vmap(runner.init, in_axes=(0, None)))
    run_chunk = jax.jit(
        jax.vmap(runner.run_chunk, in_axes=(0, 0, None, None), axis_name="seed"),
        donate_argnums=0,
    )
    return init, run_chunk


class JaxBackend:
    """Members of a JAX env trained together by ``vmap(run_chunk)``."""

    kind = "jax"

    def __init__(
        self,
        env,
        cfg: Config,
        algo: Algorithm,
        members: list[Member],
        hparams: HParams,
        env_params: Any,
        log=None,
    ):
        log = log or (lambda msg: print(msg, file=sys.stderr))
        self.env, self.members, self.env_params = env, members, env_params
        self.runner = make_runner(cfg, env, algo)
        self.learner = self.runner.learner
        self.iters_per_chunk = self.runner.iters_per_chunk
        self._sharding = member_sharding(len(members), log)
        self._init, self._run_chunk = compile_fns(self.runner)
        self._hparams = self._place(hparams)

    def _place(self, tree):
        return tree if self._sharding is None else jax.device_put(tree, self._sharding)

    def init(self):
        return self._init(self._place(member_keys(self.members)), self.env_params)

    def template(self):
        return jax.eval_shape(self._init, member_keys(self.members), self.env_params)

    def prepare(self, state):
        return self._place(state)

    def run_chunk(self, state, iteration: int):
        state, metrics = self._run_chunk(
            state, self._hparams, self.env_params, jnp.int32(iteration)
        )
        return state, jax.device_get(metrics)

    def evaluate(self, agent_params, episodes: int, keys):
        rollout, env_params = self.runner.rollout, self.env_params
        play = jax.vmap(lambda p, k: rollout(p, env_params, k, 0.0, episodes)[1])
        return jax.device_get(jax.jit(play)(agent_params, keys))

    def close(self) -> None:
        pass
