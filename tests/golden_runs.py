"""The runs whose metrics rows and final parameters must not change (issue 11).

``python tests/golden_runs.py`` records them into ``tests/data/golden/`` (done once, with
the code before the one-loop redesign); ``tests/test_golden.py`` trains them again and
compares every column but ``time/*`` and every parameter leaf bitwise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import numpy as np

import powmarl

DATA = Path(__file__).parent / "data" / "golden"

#: name -> (algo, env id, env kwargs, seeds, overrides)
SMALL_STAG_HUNT = {"grid_size": 5, "num_agents": 3, "num_stags": 1, "punishment": -2.0,
                   "episode_limit": 20}
RUNS = {
    "qmix_matrix_pow": ("qmix", "matrix_pow", {}, [0, 1], {"t_max": 3000}),
    # POW runs pin the Q_r clip they were recorded with: 'reference' before 2026-12-03 held
    # the stale norm constant over the inner steps, now 'stale_constant' (docs/algorithms/
    # pow_qmix.md); everything else must still be bitwise the recorded run
    "pow_qmix_matrix_pow": (
        "pow_qmix", "matrix_pow", {}, [0, 1], {"t_max": 3000, "recogniser_clip": "stale_constant"}
    ),
    "qmix_stag_hunt": (
        "qmix", "stag_hunt", SMALL_STAG_HUNT, [0, 1],
        {"t_max": 4000, "test_interval": 1000, "batch_size": 16, "buffer_size": 64,
         "num_envs": 4, "test_nepisode": 4, "epsilon_anneal_time": 2000},
    ),
    "pow_qmix_stag_hunt": (
        "pow_qmix", "stag_hunt", SMALL_STAG_HUNT, [0, 1],
        {"t_max": 4000, "test_interval": 1000, "batch_size": 16, "buffer_size": 64,
         "num_envs": 4, "test_nepisode": 4, "epsilon_anneal_time": 2000,
         "no_weighted_steps": 1000, "recogniser_clip": "stale_constant"},
    ),
}


def train(name: str):
    algo, env_id, env_kwargs, seeds, overrides = RUNS[name]
    env = powmarl.envs.make(env_id, **env_kwargs)
    return powmarl.train(algo, env, seeds=seeds, progress=False, **overrides)


def comparable_rows(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def param_digests(params) -> dict[str, str]:
    """SHA-256 of every parameter leaf (dtype, shape and bytes): equal digests = bitwise equal."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        x = np.ascontiguousarray(np.asarray(leaf))
        digest = hashlib.sha256(f"{x.dtype}{x.shape}".encode() + x.tobytes()).hexdigest()
        out[jax.tree_util.keystr(path)] = digest
    return out


def record(name: str) -> None:
    result = train(name)
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / f"{name}.json").write_text(json.dumps(comparable_rows(result.metrics), indent=1))
    (DATA / f"{name}.params.json").write_text(json.dumps(param_digests(result.params), indent=1))


if __name__ == "__main__":
    for run in RUNS:
        record(run)
        print("recorded", run)
