"""The Python API: ``powmarl.train(algo, env, seeds=..., t_max=..., **overrides)``."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from powmarl import algos, presets
from powmarl.config import Config, HParams, apply_overrides, from_dict, to_dict
from powmarl.envs.host.base import is_host_env
from powmarl.io import checkpoint
from powmarl.io.run_dir import atomic_write_text, prepare_run_dir, read_metrics
from powmarl.runners import driver
from powmarl.runners.evaluate import one_step_tables
from powmarl.runners.jax_runner import Runner, make_runner


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: per-member metrics and the trained parameters.

    A member is a seed, or in a hyperparameter sweep a (grid point, seed) pair; per-member
    arrays follow the order of ``members``.
    """

    algo: str
    env: Any
    members: list[driver.Member]
    config: Config
    hparams: HParams  # leaves [M]
    metrics: list[dict[str, Any]]  # one row per member per evaluation
    params: Any  # learner parameters, leaves [M, ...]
    env_params: Any
    runner: Runner
    run_dir: Path | None = None

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.members]

    @property
    def labels(self) -> list[str]:
        """'seed' or 'seed variant' per member (keys of tables.json)."""
        return [f"{m.seed} {m.variant}".strip() for m in self.members]

    def _member_rows(self) -> list[list[dict[str, Any]]]:
        index = {(m.seed, m.variant): i for i, m in enumerate(self.members)}
        out: list[list[dict[str, Any]]] = [[] for _ in self.members]
        for row in self.metrics:
            out[index[(row["seed"], row.get("variant", ""))]].append(row)
        return out

    def _column(self, name: str) -> np.ndarray:
        return np.asarray([rows[-1][name] for rows in self._member_rows()], dtype=np.float64)

    @property
    def final_eval_return(self) -> np.ndarray:
        """Greedy test return at the end of training, [num_members]."""
        return self._column("eval/return_mean")

    @property
    def t_env(self) -> np.ndarray:
        return self._column("t_env")

    def curve(self, name: str = "eval/return_mean") -> tuple[np.ndarray, np.ndarray]:
        """(t_env [M, N], values [M, N]) of a logged metric."""
        rows = self._member_rows()
        t = np.asarray([[r["t_env"] for r in rs] for rs in rows], dtype=np.float64)
        v = np.asarray([[r[name] for r in rs] for rs in rows], dtype=np.float64)
        return t, v

    def seed_params(self, i: int):
        """Parameters of member ``i``."""
        return jax.tree.map(lambda x: x[i], self.params)

    def tables(self, key: jax.Array | None = None) -> list[dict[str, np.ndarray]]:
        """One-step games, per member: greedy joint action, Q_i, and the tables of Q_tot and
        of the extras that have one ("central" = Q*, "recogniser" = Q_r). ``key`` resets
        the game (a one-step game's reset is deterministic; default ``key(0)``)."""
        if self.env.spec.episode_limit != 1:
            raise ValueError("tables: only defined for one-step games (episode_limit 1)")
        if is_host_env(self.env):
            raise ValueError("tables: not available for host envs (use the JAX 'matrix' game)")
        key = jax.random.key(0) if key is None else key
        return [
            one_step_tables(self.runner, self.env, self.seed_params(i), self.env_params, key)
            for i in range(len(self.members))
        ]

    def greedy_actions(self) -> np.ndarray:
        """One-step games: the greedy joint action of each member, [M, num_agents]."""
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
    loggers: Sequence[str] = (),
    logger_options: dict[str, Any] | None = None,
    hparam_grid: dict[str, Sequence[float]] | None = None,
    stop_when: Any = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``algo`` on ``env`` for every seed at once (one compiled, vmapped program).

    ``overrides`` set any :class:`Config` or :class:`HParams` field by name.
    ``hparam_grid`` maps HParams fields to lists of values: every grid point is trained
    for every seed inside the same compiled program (no recompilation).
    ``loggers`` adds "tensorboard" and/or "wandb" to the JSONL metrics (needs ``run_dir``).
    With ``run_dir`` the run writes checkpoints and can be continued by :func:`resume`.
    Training stops at the first evaluation where every member has taken ``t_max`` env steps,
    or earlier at the first evaluation where ``stop_when(rows so far)`` is true (JAX envs).
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
    if loggers and run_dir is None:
        raise ValueError("loggers: TensorBoard and W&B logging need a run_dir")
    cfg, hp = resolve_settings(env, overrides, algorithm)
    members = _members(seeds, hparam_grid)
    host = is_host_env(env)
    if not host:
        env_params = env.default_params() if env_params is None else env_params
    record = {
        "algo": algorithm.name,
        "env_id": getattr(env, "env_id", type(env).__name__),
        "env_kwargs": getattr(env, "env_kwargs", {}),
        "seeds": seeds,
        "hparam_grid": {k: [float(v) for v in vs] for k, vs in (hparam_grid or {}).items()},
        "members": [{"seed": m.seed, "hparams": m.hparams} for m in members],
        **to_dict(cfg, hp),
        "versions": _versions(),
    }
    if host:
        record["runner"] = "host"
    if run_dir is not None:
        prepare_run_dir(run_dir, record)
    if host:
        return _train_host(
            algorithm, env, cfg, hp, members, run_dir, progress, loggers, record, logger_options
        )
    session = _session(algorithm, env, cfg, hp, members, env_params, run_dir, progress)
    session.sinks = _sinks(loggers, run_dir, record, logger_options)
    session.stop_when = stop_when
    return _finish(session, env, algorithm, *_run(session))


def _train_host(
    algorithm,
    env,
    cfg,
    hp,
    members,
    run_dir,
    progress,
    loggers,
    record,
    options,
    resume_from=None,
    runner=None,
):
    """Python (host) envs: the host runner trains the members one after another
    (docs/envs/sc2.md); with ``resume_from`` (tree, position) it continues a run."""
    from powmarl.runners import host_runner

    sinks = _sinks(loggers, run_dir, record, options)
    run_dir = Path(run_dir) if run_dir is not None else None
    try:
        out = host_runner.train(
            algorithm, env, cfg, hp, members, run_dir, progress, sinks, None, resume_from, runner
        )
    finally:
        for sink in sinks:
            sink.close()
    hps = [apply_overrides(cfg, hp, m.hparams)[1] for m in members]
    return TrainResult(
        algo=algorithm.name,
        env=env,
        members=members,
        config=cfg,
        hparams=driver.stack_hparams(hps),
        metrics=out.rows,
        params=jax.tree.map(lambda *xs: np.stack(xs), *out.params),
        env_params=None,
        runner=out.runner,
        run_dir=run_dir,
    )


def _resume_host(run_dir, record, env, algorithm, progress, loggers, options) -> TrainResult:
    """``resume`` for a host-env run, from its newest valid checkpoint (or the start)."""
    from powmarl.runners import host_runner

    cfg, hp = from_dict(record)
    members = _record_members(record)
    runner = host_runner.make_host_runner(cfg, env, algorithm)
    ckpt = checkpoint.load_latest(run_dir, host_runner.checkpoint_template(runner))
    rows = truncate_metrics(run_dir, int(ckpt.meta["rows"]) if ckpt else 0)
    resume_from = None
    if ckpt is not None:
        resume_from = (ckpt.state, host_runner.HostPosition.from_meta(ckpt.meta, rows))
    return _train_host(
        algorithm,
        env,
        cfg,
        hp,
        members,
        run_dir,
        progress,
        loggers,
        record,
        _resumed(options, members, rows),
        resume_from,
        runner,
    )


def resume(
    run_dir: str | Path,
    progress: bool = True,
    algo: algos.Algorithm | None = None,
    env=None,
    env_params: Any = None,
    loggers: Sequence[str] = (),
    logger_options: dict[str, Any] | None = None,
) -> TrainResult:
    """Continue the run in ``run_dir`` from its newest valid checkpoint (or from the start
    when it has none) and finish it. Metrics rows written after that checkpoint are
    dropped and recomputed, so the finished run matches an uninterrupted one (bitwise on
    CPU, except the ``time/*`` columns). ``algo``/``env`` are needed only for objects
    that are not registered by name."""
    from powmarl.envs import make as make_env

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if env is None:
        env = make_env(record["env_id"], **record["env_kwargs"])
    algorithm = algo if algo is not None else algos.make(record["algo"])
    if record.get("runner") == "host" or is_host_env(env):
        return _resume_host(run_dir, record, env, algorithm, progress, loggers, logger_options)
    cfg, hp = from_dict(record)
    members = _record_members(record)
    env_params = env.default_params() if env_params is None else env_params
    session = _session(algorithm, env, cfg, hp, members, env_params, run_dir, progress)
    ckpt = checkpoint.load_latest(run_dir, driver.state_template(session))
    position = driver.Position()
    state = None
    if ckpt is not None:
        meta = ckpt.meta
        position = driver.Position(
            iteration=int(meta["iteration"]),
            elapsed_s=float(meta["elapsed_s"]),
            last_checkpoint_t=float(meta["last_checkpoint_t"]),
            finished=bool(meta["finished"]),
        )
        state = ckpt.state
    position.rows = truncate_metrics(run_dir, int(ckpt.meta["rows"]) if ckpt else 0)
    options = _resumed(logger_options, members, position.rows)
    session.sinks = _sinks(loggers, run_dir, record, options)
    return _finish(session, env, algorithm, *_run(session, state, position))


def _resumed(options, members, rows) -> dict[str, Any]:
    """Logger options for a resumed run: per member, TensorBoard hides the events after
    the last kept row (they are logged again)."""
    from powmarl.io.logging import member_name

    last = {member_name(row): int(row["t_env"]) for row in rows}
    names = [member_name({"seed": m.seed, "variant": m.variant}) for m in members]
    return {**(options or {}), "purge_steps": {n: last.get(n, -1) + 1 for n in names}}


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.json``, with a clear error when it is missing or unreadable."""
    path = Path(run_dir) / "config.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"run_dir: {run_dir} holds no run (no config.json)") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"run_dir: cannot read {path}: {err}") from None
    if "members" not in record:  # runs written before sweeps existed
        record["members"] = [{"seed": s, "hparams": {}} for s in record["seeds"]]
    return record


def truncate_metrics(run_dir: Path, keep_rows: int) -> list[dict[str, Any]]:
    """Keep the first ``keep_rows`` complete rows of metrics.jsonl (atomically) and
    return them: rows after the resumed checkpoint are recomputed."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    complete = [ln for ln in lines if ln.endswith("\n") and ln.strip()]
    if len(complete) < keep_rows:
        raise ValueError(
            f"resume: {path} has {len(complete)} rows but the checkpoint expects {keep_rows}"
        )
    kept = complete[:keep_rows]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))
    return [json.loads(ln) for ln in kept]


def run_status(run_dir: str | Path) -> str:
    """'new' (nothing there), 'finished', or 'partial' (resume it)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        return "new"
    record = read_record(run_dir)
    checkpoints = checkpoint.list_checkpoints(run_dir)
    if record.get("runner") == "host" and not checkpoints:  # runs from before host
        # checkpoints (or killed before the first): finished when every member is
        t_max = record["config"]["t_max"]
        last: dict[tuple[int, str], int] = {}
        metrics = run_dir / "metrics.jsonl"
        for row in read_metrics(run_dir) if metrics.exists() else []:
            last[(row["seed"], row.get("variant", ""))] = row["t_env"]
        done = len(last) == len(record["members"]) and min(last.values()) >= t_max
        return "finished" if done else "partial"
    for meta_path in reversed(checkpoints):
        try:
            return "finished" if json.loads(meta_path.read_text())["finished"] else "partial"
        except (OSError, ValueError, KeyError):
            continue
    return "partial"


def _members(seeds: list[int], grid: dict[str, Sequence[float]] | None) -> list[driver.Member]:
    """Every grid point for every seed; grid keys must be HParams fields."""
    if not grid:
        return [driver.Member(s) for s in seeds]
    allowed = {f.name for f in dataclasses.fields(HParams)}
    static = {f.name for f in dataclasses.fields(Config)}
    for name, values in grid.items():
        if name in static:
            raise ValueError(
                f"hparam_grid: {name} is a static setting (it changes the compiled program); "
                "sweep it as separate runs"
            )
        if name not in allowed:
            raise ValueError(
                f"hparam_grid: unknown hyperparameter {name!r}; allowed: "
                + ", ".join(sorted(allowed))
            )
        if isinstance(values, (str, bytes)) or not list(values):
            raise ValueError(f"hparam_grid: {name} needs a non-empty list of values")
    names = sorted(grid)
    points = itertools.product(*[[float(v) for v in grid[n]] for n in names])
    return [driver.Member(s, dict(zip(names, p))) for p in points for s in seeds]


def _session(algorithm, env, cfg, hp, members, env_params, run_dir, progress) -> driver.Session:
    hps = [apply_overrides(cfg, hp, m.hparams)[1] for m in members]
    return driver.Session(
        runner=make_runner(cfg, env, algorithm),
        cfg=cfg,
        hparams=driver.stack_hparams(hps),
        members=members,
        env_params=env_params,
        run_dir=Path(run_dir) if run_dir is not None else None,
        label=algorithm.name,
        progress=progress,
    )


def _sinks(loggers, run_dir, record, options):
    if not loggers:
        return ()
    from powmarl.io.logging import make_loggers

    return make_loggers(list(loggers), run_dir, record, **(options or {}))


def _run(session: driver.Session, state=None, position=None):
    try:
        return driver.run(session, state, position)
    finally:
        for sink in session.sinks:
            sink.close()


def _finish(session, env, algorithm, state, position) -> TrainResult:
    result = TrainResult(
        algo=algorithm.name,
        env=env,
        members=session.members,
        config=session.cfg,
        hparams=session.hparams,
        metrics=position.rows,
        params=state.learner.params,
        env_params=session.env_params,
        runner=session.runner,
        run_dir=session.run_dir,
    )
    if result.run_dir is not None and env.spec.episode_limit == 1:
        save_tables(result)
    return result


def save_tables(result: TrainResult) -> None:
    """Write the one-step tables of every seed to ``tables.json`` in the run directory."""
    tables = {
        str(seed): {k: np.asarray(v).tolist() for k, v in tab.items()}
        for seed, tab in zip(result.labels, result.tables())
    }
    atomic_write_text(result.run_dir / "tables.json", json.dumps(tables, indent=1))


def evaluate(
    run_dir: str | Path,
    episodes: int | None = None,
    key_seed: int = 0,
    render: str | Path | None = None,
    member: int = 0,
) -> list[dict[str, Any]]:
    """Greedy evaluation of the newest valid checkpoint in ``run_dir``: ``episodes`` per
    member (default: the run's ``test_nepisode``), from ``jax.random.key(key_seed)``.

    Returns one dict per member (seed, variant, return mean/std, episode length and the
    env's info counters). With ``render`` a GIF of one greedy episode of member ``member``
    is written there (matrix games and stag_hunt). For a host-env run, the members
    trained up to the checkpoint are evaluated, one after another, without ``render``.
    """
    from powmarl.envs import make as make_env

    record = read_record(run_dir)
    env = make_env(record["env_id"], **record["env_kwargs"])
    algorithm = algos.make(record["algo"])
    cfg, hp = from_dict(record)
    members = _record_members(record)
    if not 0 <= member < len(members):
        raise ValueError(f"member: must be in [0, {len(members) - 1}], got {member}")
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    if record.get("runner") == "host" or is_host_env(env):
        if render is not None:
            raise ValueError("render: GIFs are drawn for JAX envs only, not host (Python) envs")
        return _evaluate_host(run_dir, env, algorithm, cfg, members, episodes, key_seed)
    env_params = env.default_params()
    session = _session(algorithm, env, cfg, hp, members, env_params, run_dir, False)
    ckpt = checkpoint.load_latest(run_dir, driver.state_template(session))
    if ckpt is None:
        raise ValueError(f"eval: {run_dir} has no checkpoint yet (it was killed before one)")
    agent_params = ckpt.state.learner.params["agent"]
    count = episodes or cfg.test_nepisode
    rollout = session.runner.rollout
    keys = jax.random.split(jax.random.key(key_seed), len(members))
    stats = jax.jit(jax.vmap(lambda p, k: rollout(p, env_params, k, 0.0, count)[1]))(
        agent_params, keys
    )
    stats = jax.device_get(stats)
    t_env = int(ckpt.meta.get("t_env_min", 0))
    out = [
        _eval_row(m, count, t_env, jax.tree.map(lambda x, i=i: x[i], stats))
        for i, m in enumerate(members)
    ]
    if render is not None:
        from powmarl import render as rendering

        params_i = jax.tree.map(lambda x: x[member], agent_params)
        frames = rendering.play_episode(
            session.runner, env, params_i, env_params, jax.random.fold_in(keys[member], 1)
        )
        rendering.write_gif(rendering.draw_frames(env, frames, env_params), render)
    return out


def _evaluate_host(run_dir, env, algorithm, cfg, members, episodes, key_seed):
    """``evaluate`` for a host-env run: the members trained so far (finished ones and the
    one in training at the checkpoint), one after another."""
    from powmarl.runners import host_runner

    runner = host_runner.make_host_runner(cfg, env, algorithm)
    ckpt = checkpoint.load_latest(run_dir, host_runner.checkpoint_template(runner))
    if ckpt is None:
        raise ValueError(f"eval: {run_dir} has no checkpoint yet (it was killed before one)")
    params = list(ckpt.state["done"]) + [ckpt.state["current"].learner.params]
    t_envs = list(ckpt.meta["member_t_env"]) + [int(ckpt.meta["t_env"])]
    count = episodes or cfg.test_nepisode
    keys = jax.random.split(jax.random.key(key_seed), len(members))
    out = []
    for i, (m, p, t_env) in enumerate(zip(members, params, t_envs)):
        _, stats = host_runner.rollout(runner, p["agent"], keys[i], 0.0, count)
        out.append(_eval_row(m, count, int(t_env), stats))
    runner.vec.close()
    return out


def _eval_row(member: driver.Member, episodes: int, t_env: int, stats) -> dict[str, Any]:
    """One member's line of ``evaluate``: return and length statistics and the env's info
    counters of its greedy episodes (``stats``: one member's EpisodeStats)."""
    row = {
        "seed": member.seed,
        "variant": member.variant,
        "episodes": episodes,
        "t_env": t_env,
        "return_mean": float(np.mean(stats.returns)),
        "return_std": float(np.std(stats.returns)),
        "ep_length_mean": float(np.mean(stats.lengths)),
    }
    row.update({f"{k}_mean": float(np.mean(v)) for k, v in stats.info.items()})
    return row


def _record_members(record: dict[str, Any]) -> list[driver.Member]:
    """The members (seed, sweep hyperparameters) a run's ``config.json`` lists."""
    return [driver.Member(int(m["seed"]), dict(m["hparams"])) for m in record["members"]]
