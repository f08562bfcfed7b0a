"""Batch, stochastic and mini-batch gradient descent: which examples each step sees.

- ``batch``: every step uses the whole training set (B = N, one step per epoch).
- ``sgd``: every step uses one example (B = 1, N steps per epoch).
- ``minibatch``: every step uses B examples (⌈N/B⌉ steps per epoch).

Each epoch draws a new shuffled order from an explicit key, and every example
is used exactly once per epoch. When B does not divide N, the last batch is
*masked*, not dropped: it is padded to B with repeated indices whose loss
weight is 0, so its gradient is the mean over its real examples only, and
every epoch has the same shapes (no recompilation).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gdlab.types import Array, PRNGKey

MODES = ("batch", "sgd", "minibatch")


def batch_size_for(mode: str, num_examples: int, batch_size: int | None = None) -> int:
    """The batch size a descent ``mode`` uses on ``num_examples`` examples."""
    if mode == "batch":
        return num_examples
    if mode == "sgd":
        return 1
    if mode == "minibatch":
        if batch_size is None or not 1 <= batch_size <= num_examples:
            raise ValueError(
                f"minibatch descent needs 1 <= batch_size <= {num_examples} (the training "
                f"set size), got {batch_size}")
        return batch_size
    raise ValueError(f"unknown descent mode {mode!r}; choose one of: {', '.join(MODES)}")


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """⌈N / B⌉: the last batch may be partial (and is masked)."""
    return math.ceil(num_examples / batch_size)


def epoch_batches(key: PRNGKey | None, num_examples: int, batch_size: int) -> tuple[Array, Array]:
    """One epoch's batches: ``(indices, weights)``, both ``(steps, B)``.

    ``indices`` is a permutation of 0..N−1 (in order when ``key`` is None),
    cut into rows of B and padded at the end with indices from the start of
    the permutation; ``weights`` is 1 for real examples and 0 for padding.
    Shapes depend only on N and B, so this works under ``jit``.
    """
    steps = steps_per_epoch(num_examples, batch_size)
    pad = steps * batch_size - num_examples
    order = jnp.arange(num_examples) if key is None else jax.random.permutation(key, num_examples)
    order = order.astype(jnp.int32)
    indices = jnp.concatenate([order, order[:pad]]).reshape(steps, batch_size)
    weights = jnp.concatenate([jnp.ones(num_examples, jnp.float32), jnp.zeros(pad, jnp.float32)])
    return indices, weights.reshape(steps, batch_size)
