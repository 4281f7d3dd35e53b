"""The environment contract: env kinds, construction-time checks, hook defaults, identity
kept in the registry, picklable copy factories, and envs that draw themselves.

Malformed envs must fail when they are made (``checked``, and ``register`` + ``make``)
with a one-line message naming the env and the missing or wrong part.
"""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from powmarl import envs, render
from powmarl.envs import contract, registry
from powmarl.envs.base import (
    JAX_ATTRIBUTES,
    JAX_HOOKS,
    JAX_METHODS,
    JaxEnvDefaults,
    MultiAgentEnv,
)
from powmarl.envs.host import HostMatrixGame, is_host_env, make_copies
from powmarl.envs.host.base import (
    HOST_ATTRIBUTES,
    HOST_HOOKS,
    HOST_METHODS,
    HostEnv,
    HostEnvDefaults,
)
from powmarl.types import EnvSpec, TimeStep

SPEC = EnvSpec(num_agents=2, num_actions=3, obs_dim=2, state_dim=2, episode_limit=1)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "envs" / "contract.md"


class PlainJax:
    """A well-formed one-step JAX env with no optional hook at all."""

    obs_last_action = False
    obs_agent_id = True
    spec = SPEC

    def default_params(self):
        return jnp.zeros(())

    def _timestep(self, t):
        state = jax.nn.one_hot(t, 2)
        return TimeStep(
            obs=jnp.broadcast_to(state, (2, 2)),
            state=state,
            avail_actions=jnp.ones((2, 3), bool),
            reward=jnp.zeros((), jnp.float32),
            terminated=t > 0,
            truncated=jnp.zeros((), bool),
            info={},
        )

    def reset(self, key, params):
        return self._timestep(jnp.int32(0)), jnp.int32(0)

    def step(self, key, state, actions, params):
        return self._timestep(state + 1), state + 1


class PlainHost:
    """A well-formed one-step host env with no optional hook at all."""

    obs_last_action = False
    obs_agent_id = True
    info_keys: tuple[str, ...] = ()
    spec = SPEC

    def reset(self, seed=None):
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions):
        return 0.0, True, False, {}

    def get_obs(self):
        return np.zeros((2, 2), np.float32)

    def get_state(self):
        return np.zeros(2, np.float32)

    def get_avail_actions(self):
        return np.ones((2, 3), bool)

    def close(self):
        pass


def _absent(name):
    """A class attribute that hides an inherited member (hasattr is False)."""

    def get(self):
        raise AttributeError(name)

    return property(get)


def _variant(base, **attributes):
    """An instance of a subclass of ``base`` with ``attributes`` set (None removes one)."""
    removed = {n: _absent(n) for n, v in attributes.items() if v is None}
    env = type(f"Bad{base.__name__}", (base,), removed)()
    for name, value in attributes.items():
        if value is not None:
            setattr(env, name, value)
    return env


def _encode(state):
    return {"t": state}


MALFORMED = {  # id: (base class, attributes set or removed (None), part of the message)
    "jax-no-spec": (PlainJax, {"spec": None}, "missing spec"),
    "jax-no-params": (PlainJax, {"default_params": None}, "a JAX env (missing default_params) nor"),
    "spec-dict": (PlainJax, {"spec": {"num_agents": 2}}, "spec must be a powmarl.types.EnvSpec"),
    "spec-zero": (
        PlainJax,
        {"spec": SPEC._replace(obs_dim=0)},
        "spec.obs_dim must be a positive int",
    ),
    "spec-float": (
        PlainJax,
        {"spec": SPEC._replace(num_actions=2.0)},
        "spec.num_actions must be a positive int",
    ),
    "encode-only": (PlainJax, {"replay_encode": _encode}, "has replay_encode but no replay_decode"),
    "decode-only": (PlainJax, {"replay_decode": _encode}, "has replay_decode but no replay_encode"),
    "obs-dtype-int": (PlainJax, {"obs_dtype": "int8"}, "obs_dtype must be a NumPy float dtype"),
    "obs-dtype-junk": (
        PlainJax,
        {"obs_dtype": "no-such-dtype"},
        "obs_dtype must be a NumPy float dtype",
    ),
    "flag-int": (PlainJax, {"obs_last_action": 1}, "obs_last_action must be a bool"),
    "step-not-callable": (PlainJax, {"step": 3}, "step must be callable"),
    "run-defaults-list": (
        PlainJax,
        {"run_defaults": [("lr", 1.0)]},
        "run_defaults must be a mapping",
    ),
    "render-not-callable": (PlainJax, {"render_frame": "gif"}, "render_frame must be callable"),
    "main-metric-not-a-name": (PlainHost, {"main_metric": 3}, "main_metric must be"),
    "jax-max-copies": (PlainJax, {"max_copies": 2}, "max_copies is a hook of host envs only"),
    "max-copies-zero": (PlainHost, {"max_copies": 0}, "max_copies must be a positive int"),
    "max-copies-bool": (PlainHost, {"max_copies": True}, "max_copies must be a positive int"),
    "clone-not-callable": (PlainHost, {"clone": "again"}, "clone must be callable"),
    "host-no-info-keys": (PlainHost, {"info_keys": None}, "host env (missing info_keys)"),
    "info-keys-list": (
        PlainHost,
        {"info_keys": ["battle_won"]},
        "info_keys must be a tuple of str",
    ),
    "host-codec": (
        PlainHost,
        {"replay_encode": _encode},
        "replay_encode is a hook of JAX envs only",
    ),
    "host-no-get-obs": (PlainHost, {"get_obs": None}, "missing get_obs"),
}


@pytest.fixture
def register_temporarily():
    """``register`` under fresh ids, removed again after the test."""
    added = []

    def add(env_id, factory):
        registry.register(env_id, factory)
        added.append(env_id)

    yield add
    for env_id in added:
        del registry._REGISTRY[env_id], registry._DESCRIPTIONS[env_id]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_env_fails_checked_naming_the_part(case):
    base, attributes, expected = MALFORMED[case]
    env = _variant(base, **attributes)
    with pytest.raises(
        ValueError, match=f"^env Bad{base.__name__}: .*{re.escape(expected)}"
    ) as err:
        contract.checked(env)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_env_fails_at_make(case, register_temporarily):
    base, attributes, expected = MALFORMED[case]
    register_temporarily("bad_env", lambda: _variant(base, **attributes))
    name = f"^env 'bad_env' \\(Bad{base.__name__}\\): .*"
    with pytest.raises(ValueError, match=name + re.escape(expected)):
        envs.make("bad_env")
    with pytest.raises(envs.ConformanceError, match=re.escape(expected)):
        envs.check(_variant(base, **attributes))


def test_neither_nor_both_protocols_name_what_is_missing():
    with pytest.raises(ValueError, match="^env object: is neither a JAX env .*missing spec"):
        contract.env_kind(object())
    both = type("Both", (PlainJax, PlainHost), {})()
    with pytest.raises(ValueError, match="^env Both: has the members of both"):
        contract.checked(both)


def test_env_kind_and_is_host_env():
    assert contract.env_kind(envs.make("matrix_pow")) == "jax"
    assert contract.env_kind(envs.make("matrix_host")) == "host"
    assert contract.env_kind(PlainJax()) == "jax" and contract.env_kind(PlainHost()) == "host"
    assert is_host_env(PlainHost()) and not is_host_env(PlainJax())
    with pytest.raises(ValueError, match="is neither"):
        is_host_env(object())


def test_protocol_member_lists_match_the_protocols():
    """The lists ``env_kind``/``checked`` use are the Protocol classes' members."""
    for protocol, attributes, methods in (
        (MultiAgentEnv, JAX_ATTRIBUTES, JAX_METHODS),
        (HostEnv, HOST_ATTRIBUTES, HOST_METHODS),
    ):
        body = vars(protocol)
        assert set(body["__annotations__"]) == set(attributes)
        declared = {n for n, v in body.items() if callable(v) and not n.startswith("_")}
        assert declared == set(methods)


def test_every_hook_is_validated_and_documented():
    names = {h.name for h in (*JAX_HOOKS, *HOST_HOOKS)}
    assert names == set(contract._HOOK_PROBLEMS)
    page = DOCS.read_text(encoding="utf-8")
    for name in names:
        assert f"`{name}" in page, name


@pytest.mark.parametrize("env", [PlainJax(), PlainHost(), HostEnvDefaults, JaxEnvDefaults])
def test_hook_defaults(env):
    if isinstance(env, type):  # the mixins: the defaults spelled out
        env = type("Mixed", (env, PlainHost if env is HostEnvDefaults else PlainJax), {})()
    assert contract.checked(env) is env
    assert contract.replay_codec(env) is None
    assert contract.obs_dtype(env) == np.dtype(np.float32)
    assert contract.max_copies(env) is None
    defaults = contract.run_defaults(env)
    assert defaults == {}
    defaults["lr"] = 1.0  # a fresh dict: the env's mapping stays empty
    assert contract.run_defaults(env) == {}
    assert contract.identity(env) is None
    with pytest.raises(ValueError, match=f"^render: env {type(env).__name__} cannot be drawn"):
        contract.renderer(env)


def test_set_hooks_are_returned():
    env = HostMatrixGame()
    env.max_copies, env.obs_dtype, env.run_defaults = 2, "float16", {"t_max": 10}
    assert contract.checked(env) is env
    assert contract.max_copies(env) == 2 and contract.obs_dtype(env) == np.float16
    assert contract.run_defaults(env) == {"t_max": 10}
    jax_env = _variant(PlainJax, replay_encode=_encode, replay_decode=_encode)
    assert contract.replay_codec(contract.checked(jax_env)) == (_encode, _encode)


def test_check_holds_a_jax_env_to_its_declared_obs_dtype():
    envs.check(_variant(PlainJax, obs_dtype="float32"), episodes=1)
    with pytest.raises(envs.ConformanceError, match="obs_dtype: obs is float32, declared float16"):
        envs.check(_variant(PlainJax, obs_dtype="float16"), episodes=1)


def test_identity_lives_in_the_registry_not_on_the_env():
    env = envs.make("matrix", payoff=[[1.0, 0.0], [0.0, 1.0]])
    assert contract.identity(env) == ("matrix", {"payoff": [[1.0, 0.0], [0.0, 1.0]]})
    assert not hasattr(env, "env_id") and not hasattr(env, "env_kwargs")
    contract.identity(env)[1]["payoff"] = None  # a copy: the registry keeps its own
    assert contract.identity(env)[1]["payoff"] is not None
    assert contract.identity(envs.MatrixGame()) is None
    key = id(env)
    assert key in registry._MADE
    del env
    gc.collect()
    assert key not in registry._MADE  # dropped with the env


def _copy_in_child(factory):
    """Run in a 'spawn' worker: the copy's spec and identity."""
    env = factory()
    return env.spec, contract.identity(env), type(env).__name__


def test_copy_factory_of_a_registry_env_runs_in_a_spawned_process():
    env = envs.make("matrix_host", payoff=[[1.0, 0.0], [0.0, 2.0]])
    factory = contract.copy_factory(env)
    again = pickle.loads(pickle.dumps(factory))()
    assert again is not env and np.array_equal(again.payoff, env.payoff)
    assert contract.identity(again) == contract.identity(env)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        spec, made, name = pool.submit(_copy_in_child, factory).result(timeout=300)
    assert (spec, made, name) == (env.spec, contract.identity(env), "HostMatrixGame")


def test_copy_factory_falls_back_to_clone_then_pickle_then_none():
    clone_env = HostMatrixGame([[3.0, 0.0], [0.0, 1.0]])  # not from the registry: its clone
    factory = contract.copy_factory(clone_env)
    assert factory == clone_env.clone
    assert np.array_equal(pickle.loads(pickle.dumps(factory))().payoff, clone_env.payoff)
    plain = PlainHost()  # no clone: a pickle of the env
    copy = pickle.loads(pickle.dumps(contract.copy_factory(plain)))()
    assert type(copy) is PlainHost and copy is not plain
    stuck = PlainHost()
    stuck.lock = threading.Lock()  # does not pickle
    assert contract.copy_factory(stuck) is None
    assert make_copies(stuck, 3) == [stuck]
    stuck.clone = lambda: PlainHost()  # an in-process clone is still a factory
    assert type(contract.copy_factory(stuck)()) is PlainHost
    assert len({id(e) for e in make_copies(plain, 3)}) == 3


def test_make_copies_honours_max_copies():
    env = HostMatrixGame()
    env.max_copies = 2
    assert len(make_copies(env, 5)) == 2 and len(make_copies(HostMatrixGame(), 5)) == 5


def _frame(env, actions, t=0):
    _, state = env.reset(jax.random.key(0), env.default_params())
    return {"state": state, "actions": actions, "reward": 0.0, "return": 1.5, "t": t}


def test_matrix_and_stag_hunt_draw_themselves():
    from PIL import Image

    matrix = envs.make("matrix_pow")
    draw = contract.renderer(matrix)
    image = draw(_frame(matrix, np.array([0, 0])), matrix.default_params())
    assert isinstance(image, Image.Image) and image.size == (240, 144)
    assert image.getpixel((10, 30)) == (60, 180, 90)  # the chosen cell (A, A) ...
    assert image.getpixel((90, 30)) == (250, 250, 250)  # ... and not its neighbour (A, B)
    assert draw(_frame(matrix, None, 1), matrix.default_params()) is None
    stag = envs.make("stag_hunt", grid_size=5, num_agents=2, num_stags=1, episode_limit=3)
    frames = [_frame(stag, np.array([4, 4])), _frame(stag, None, 1)]
    images = render.draw_frames(stag, frames, stag.default_params())
    assert len(images) == 2 and images[0].size == (200, 224)


def test_an_env_without_a_renderer_says_so_by_name():
    env = envs.make("matrix_host")
    with pytest.raises(ValueError, match="^render: env 'matrix_host' \\(HostMatrixGame\\)"):
        render.draw_frames(env, [], None)
