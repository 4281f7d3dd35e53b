"""The Python API: ``powmarl.train(algo, env, seeds=..., t_max=..., **overrides)``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from powmarl import algos, presets
from powmarl.config import Config, HParams, apply_overrides, to_dict
from powmarl.io.run_dir import MetricsWriter, prepare_run_dir
from powmarl.runners.evaluate import one_step_tables
from powmarl.runners.jax_runner import Runner, make_runner


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: per-seed metrics and the trained parameters."""

    algo: str
    env: Any
    seeds: list[int]
    config: Config
    hparams: HParams
    metrics: list[dict[str, Any]]  # one row per seed per evaluation
    params: Any  # learner parameters, leaves [S, ...]
    env_params: Any
    runner: Runner
    run_dir: Path | None = None

    def _column(self, name: str) -> np.ndarray:
        last = {}
        for row in self.metrics:
            last[row["seed"]] = row[name]
        return np.asarray([last[s] for s in self.seeds], dtype=np.float64)

    @property
    def final_eval_return(self) -> np.ndarray:
        """Greedy test return at the end of training, [num_seeds]."""
        return self._column("eval/return_mean")

    @property
    def t_env(self) -> np.ndarray:
        return self._column("t_env")

    def curve(self, name: str = "eval/return_mean") -> tuple[np.ndarray, np.ndarray]:
        """(t_env [S, N], values [S, N]) of a logged metric."""
        rows = {s: [r for r in self.metrics if r["seed"] == s] for s in self.seeds}
        t = np.asarray([[r["t_env"] for r in rows[s]] for s in self.seeds], dtype=np.float64)
        v = np.asarray([[r[name] for r in rows[s]] for s in self.seeds], dtype=np.float64)
        return t, v

    def seed_params(self, i: int):
        return jax.tree.map(lambda x: x[i], self.params)

    def tables(self) -> list[dict[str, np.ndarray]]:
        """One-step games, per seed: greedy joint action, Q_i, and the tables of Q_tot and of
        the extras that have one ("central" = Q*, "recogniser" = Q_r)."""
        if self.env.spec.episode_limit != 1:
            raise ValueError("tables: only defined for one-step games (episode_limit 1)")
        key = jax.random.key(0)
        return [
            one_step_tables(self.runner, self.env, self.seed_params(i), self.env_params, key)
            for i in range(len(self.seeds))
        ]

    def greedy_actions(self) -> np.ndarray:
        """One-step games: the greedy joint action of each seed, [num_seeds, num_agents]."""
        return np.stack([t["greedy_actions"] for t in self.tables()])


def resolve_settings(
    env, overrides: dict[str, Any], algo: algos.Algorithm | None = None
) -> tuple[Config, HParams]:
    """Library defaults < the algorithm's reference settings < the env family's run
    settings < the user's overrides."""
    settings = dict(algo.defaults) if algo is not None else {}
    settings.update(presets.env_defaults(getattr(env, "env_id", None)))
    settings.update(overrides)
    return apply_overrides(Config(), HParams(), settings)


def _versions() -> dict[str, str]:
    import flax
    import optax

    from powmarl import __version__

    return {
        "powmarl": __version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
    }


def train(
    algo: str | algos.Algorithm,
    env,
    seeds: Sequence[int] = (0,),
    t_max: int | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    env_params: Any = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``algo`` on ``env`` for every seed at once (one compiled, vmapped program).

    ``overrides`` set any :class:`Config` or :class:`HParams` field by name.
    Training stops at the first evaluation where every seed has taken ``t_max`` env steps.
    """
    from powmarl.envs import make as make_env

    if isinstance(env, str):
        env = make_env(env)
    algorithm = algos.make(algo) if isinstance(algo, str) else algo
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: need at least one seed and no repeats, got {seeds}")
    if t_max is not None:
        overrides["t_max"] = t_max
    cfg, hp = resolve_settings(env, overrides, algorithm)
    env_params = env.default_params() if env_params is None else env_params
    runner = make_runner(cfg, env, algorithm)
    record = {
        "algo": algorithm.name,
        "env_id": getattr(env, "env_id", type(env).__name__),
        "env_kwargs": getattr(env, "env_kwargs", {}),
        "seeds": seeds,
        **to_dict(cfg, hp),
        "versions": _versions(),
    }
    writer = MetricsWriter(prepare_run_dir(run_dir, record)) if run_dir is not None else None
    params, rows = _drive(runner, cfg, hp, env_params, seeds, writer, progress, algorithm.name)
    result = TrainResult(
        algo=algorithm.name,
        env=env,
        seeds=seeds,
        config=cfg,
        hparams=hp,
        metrics=rows,
        params=params,
        env_params=env_params,
        runner=runner,
        run_dir=Path(run_dir) if run_dir else None,
    )
    if result.run_dir is not None and env.spec.episode_limit == 1:
        save_tables(result)
    return result


def save_tables(result: TrainResult) -> None:
    """Write the one-step tables of every seed to ``tables.json`` in the run directory."""
    import json

    from powmarl.io.run_dir import atomic_write_text

    tables = {
        str(seed): {k: np.asarray(v).tolist() for k, v in tab.items()}
        for seed, tab in zip(result.seeds, result.tables())
    }
    atomic_write_text(result.run_dir / "tables.json", json.dumps(tables, indent=1))


def _drive(runner: Runner, cfg, hp, env_params, seeds, writer, show_progress, label):
    """Python loop over compiled chunks: progress, logging, budget."""
    from powmarl.io.progress import Progress

    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, dtype=jnp.uint32))
    # init and run_chunk are separate compiled calls (known-pitfalls: a GRU init inside the
    # vmapped training program can hang XLA:CPU)
    init = jax.jit(jax.vmap(runner.init, in_axes=(0, None)))
    run_chunk = jax.jit(
        jax.vmap(runner.run_chunk, in_axes=(0, None, None, None), axis_name="seed"),
        donate_argnums=0,
    )
    state = init(keys, env_params)
    hp_arrays = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), hp)
    rows: list[dict[str, Any]] = []
    it, start = 0, time.perf_counter()
    t_prev = np.zeros(len(seeds))
    with Progress(cfg.t_max, label, enabled=show_progress) as bar:
        while True:
            chunk_start = time.perf_counter()
            state, metrics = run_chunk(state, hp_arrays, env_params, jnp.int32(it))
            metrics = jax.device_get(metrics)
            it += runner.iters_per_chunk
            wall = time.perf_counter() - chunk_start
            t_env = np.asarray(metrics["t_env"], dtype=np.float64)
            new_rows = _rows(metrics, seeds, t_env - t_prev, wall, time.perf_counter() - start)
            t_prev = t_env
            rows.extend(new_rows)
            if writer is not None:
                writer.write(new_rows)
            bar.update(int(t_env.min()), float(np.mean(metrics["eval/return_mean"])))
            if t_env.min() >= cfg.t_max:
                break
    return state.learner.params, rows


def _rows(metrics, seeds, steps, wall, elapsed) -> list[dict[str, Any]]:
    rows = []
    for i, seed in enumerate(seeds):
        row = {"seed": seed}
        for name, values in metrics.items():
            value = np.asarray(values)[i]
            row[name] = int(value) if np.issubdtype(value.dtype, np.integer) else float(value)
        row["time/env_steps_per_s"] = float(steps[i] / max(wall, 1e-9))
        row["time/elapsed_s"] = float(elapsed)
        rows.append(row)
    return rows
