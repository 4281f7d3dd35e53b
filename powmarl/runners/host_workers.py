"""Copies of a host env stepped in worker processes, with the interface of
:class:`powmarl.envs.host.vector.HostVectorEnv` (``reset(seeds)``, ``step(actions, active)``).

The copies are split into contiguous blocks, one block per worker process; each worker
builds its block from a picklable factory and steps it with a ``HostVectorEnv``. A call
sends every worker its slice and then gathers the answers, so the workers step at the same
time. Workers are started with ``spawn`` (the parent runs JAX, which must not be forked).
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Sequence

import numpy as np

from powmarl.envs.host.vector import HostVectorEnv
from powmarl.types import EnvSpec


def _serve(conn, factory: Callable, num_copies: int) -> None:
    """A worker's loop: build its copies, then answer reset/step/close until closed."""
    try:
        vec = HostVectorEnv([factory() for _ in range(num_copies)])
        conn.send(("ok", (vec.spec, vec.info_keys)))
    except Exception:  # noqa: BLE001 - the parent re-raises it with the worker's traceback
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        command, args = conn.recv()
        if command == "close":
            vec.close()
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(vec, command)(*args)))
        except Exception:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))


def split_counts(total: int, parts: int) -> list[int]:
    """``total`` items in ``parts`` contiguous blocks whose sizes differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


class WorkerVectorEnv:
    """``num_copies`` copies of a host env made by ``factory``, in ``num_workers`` processes."""

    def __init__(self, factory: Callable, num_copies: int, num_workers: int, obs_dtype=np.float32):
        ctx = multiprocessing.get_context("spawn")
        self.counts = [c for c in split_counts(num_copies, min(num_workers, num_copies)) if c]
        self.obs_dtype = np.dtype(obs_dtype)
        self._conns, self._procs = [], []
        for count in self.counts:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, factory, count), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        answers = [self._receive(i) for i in range(len(self._conns))]
        self.spec: EnvSpec = answers[0][0]
        self.info_keys = tuple(answers[0][1])

    def __len__(self) -> int:
        return sum(self.counts)

    def _blocks(self, n: int) -> list[slice]:
        """The slices of the first ``n`` copies that fall in each worker's block."""
        out, start = [], 0
        for count in self.counts:
            out.append(slice(min(start, n), min(start + count, n)))
            start += count
        return out

    def reset(self, seeds: Sequence[int]):
        if len(seeds) > len(self):
            raise ValueError(f"WorkerVectorEnv: {len(seeds)} seeds for {len(self)} copies")
        blocks = [b for b in self._blocks(len(seeds)) if b.stop > b.start]
        for conn, block in zip(self._conns, blocks):
            conn.send(("reset", (list(seeds[block]),)))
        parts = [self._receive(i) for i in range(len(blocks))]
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))

    def _receive(self, i: int):
        status, value = self._conns[i].recv()
        if status != "ok":
            self.close()
            raise RuntimeError(f"host env worker {i} failed:\n{value}")
        return value

    def step(self, actions: np.ndarray, active: np.ndarray):
        """As ``HostVectorEnv.step`` over the first ``len(active)`` copies."""
        blocks = [b for b in self._blocks(len(active)) if b.stop > b.start]
        for conn, block in zip(self._conns, blocks):
            conn.send(("step", (actions[block], active[block])))
        parts = [self._receive(i) for i in range(len(blocks))]
        reward, terminated, truncated = (np.concatenate([p[j] for p in parts]) for j in range(3))
        info = {k: np.concatenate([p[3][k] for p in parts]) for k in self.info_keys}
        views = [self._views(p[4], b.stop - b.start) for p, b in zip(parts, blocks)]
        stacked = tuple(np.concatenate([v[j] for v in views]) for j in range(3))
        return reward, terminated, truncated, info, stacked

    def _views(self, views, n: int):
        """A block's views after a step; zeros when none of its copies was active."""
        if views[0] is not None:
            return views
        spec = self.spec
        return (
            np.zeros((n, spec.num_agents, spec.obs_dim), self.obs_dtype),
            np.zeros((n, spec.state_dim), self.obs_dtype),
            np.zeros((n, spec.num_agents, spec.num_actions), bool),
        )

    def close(self) -> None:
        for conn, proc in zip(self._conns, self._procs):
            try:
                if proc.is_alive():
                    conn.send(("close", ()))
                    conn.poll(5) and conn.recv()
            except (OSError, EOFError, BrokenPipeError):
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []
