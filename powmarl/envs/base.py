"""The environment protocol: gymnax-style pure ``reset``/``step``.

An environment is a plain Python object holding only static configuration
(its :class:`EnvSpec`); everything that changes lives in the explicit state,
everything tunable that does not change shapes lives in ``params`` (a pytree,
so it can be vmapped), and randomness comes in through ``key``.
Environments do not auto-reset: the runner resets at the start of each episode
and ignores steps taken after an episode has ended.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from powmarl.types import Array, EnvParams, EnvSpec, EnvState, PRNGKey, TimeStep


@runtime_checkable
class MultiAgentEnv(Protocol):
    """A cooperative multi-agent environment with a team reward."""

    spec: EnvSpec
    #: Agent-input flags the reference code uses for this environment.
    obs_last_action: bool
    obs_agent_id: bool

    def default_params(self) -> EnvParams: ...

    def reset(self, key: PRNGKey, params: EnvParams) -> tuple[TimeStep, EnvState]: ...

    def step(
        self, key: PRNGKey, state: EnvState, actions: Array, params: EnvParams
    ) -> tuple[TimeStep, EnvState]: ...
