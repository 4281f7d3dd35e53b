"""Episode replay buffer: a ring of whole episodes, uniform sampling without replacement.

Data is stored in the dtypes the episodes arrive in (grid observations as uint8,
actions as uint8), so the paper's 5000-episode buffer stays small.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from powmarl.types import Array, EpisodeBatch, PRNGKey


@flax.struct.dataclass
class BufferState:
    data: EpisodeBatch  # every leaf [capacity, ...]
    insert_pos: Array  # [] int32, next row to write
    size: Array  # [] int32, rows holding an episode


def buffer_init(episode: EpisodeBatch, capacity: int) -> BufferState:
    """An empty buffer for episodes shaped like ``episode`` (unbatched leaves or ShapeDtypeStructs)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *x.shape), x.dtype), episode)
    return BufferState(
        data=data, insert_pos=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32)
    )


def buffer_capacity(state: BufferState) -> int:
    return state.data.reward.shape[0]


def buffer_insert(state: BufferState, episodes: EpisodeBatch) -> BufferState:
    """Write E episodes (leaves [E, ...]) at the ring position, overwriting the oldest."""
    capacity = buffer_capacity(state)
    num_new = episodes.reward.shape[0]
    rows = (state.insert_pos + jnp.arange(num_new)) % capacity
    data = jax.tree.map(
        lambda buf, new: buf.at[rows].set(new.astype(buf.dtype)), state.data, episodes
    )
    return BufferState(
        data=data,
        insert_pos=(state.insert_pos + num_new) % capacity,
        size=jnp.minimum(state.size + num_new, capacity),
    )


def buffer_sample(state: BufferState, key: PRNGKey, batch_size: int) -> EpisodeBatch:
    """``batch_size`` distinct stored episodes, uniformly (needs size >= batch_size)."""
    capacity = buffer_capacity(state)
    valid = jnp.arange(capacity) < state.size
    probs = valid / jnp.maximum(state.size, 1)
    rows = jax.random.choice(key, capacity, (batch_size,), replace=False, p=probs)
    return jax.tree.map(lambda x: x[rows], state.data)
