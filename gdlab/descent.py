"""Batch, stochastic and mini-batch gradient descent: which examples each step sees.

- ``batch``: every step uses the whole training set (B = N, one step per epoch).
- ``sgd``: every step uses one example (B = 1, N steps per epoch).
- ``minibatch``: every step uses B examples (⌈N/B⌉ steps per epoch).

Each epoch draws a new shuffled order from an explicit key, and every example
is used exactly once per epoch. When B does not divide N, the last batch is
*masked*, not dropped: it is padded to B with repeated indices whose loss
weight is 0, so its gradient is the mean over its real examples only, and
every epoch has the same shapes (no recompilation).

The shuffle is ``permutation``: the algorithm of ``jax.random.permutation``
(rounds of a stable sort by random keys), but each round sorts one packed
``uint32`` array instead of key-value pairs. XLA's CPU sort is much slower on
pairs: on a 2-core CPU this is some 3× faster from 4,096 rows up (60,000 rows: 7.8
against 26 ms), and about as fast or slower between 257 and 1,625 rows, where it needs
two rounds and JAX's one (``scripts/bench.py``, its shuffle rows). The orders differ from
``jax.random.permutation``'s.
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


PACKED_MAX_EXAMPLES = 2**20
"""Above this many rows ``permutation`` defers to ``jax.random.permutation``: each round
would carry 11 random bits or fewer, and the rounds' bits (drawn at once) would pass
20 MB."""


def shuffle_rounds(num_examples: int) -> int | None:
    """Sort rounds ``permutation`` makes for ``num_examples`` rows (None: it defers to JAX's).

    A round's sort key is one ``uint32``: ``p = ⌈log₂ N⌉`` low bits hold the row's
    current position and the ``32 − p`` high bits are random, so sorting it is a
    stable sort by the random bits. Rounds are added until they carry at least
    3·log₂ N random bits per row in all, the bound ``jax.random.permutation``
    uses for its 32-bit keys; ties within a round keep the previous round's order.
    """
    if num_examples > PACKED_MAX_EXAMPLES:
        return None
    return max(1, math.ceil(3 * math.log2(max(num_examples, 2))
                            / (32 - _position_bits(num_examples))))


def _position_bits(num_examples: int) -> int:
    """⌈log₂ N⌉ (at least 1): the low bits of a sort key that hold a row's position."""
    return max(1, (num_examples - 1).bit_length())


def permutation(key: PRNGKey, num_examples: int) -> Array:
    """A uniformly random ordering of 0..N−1 (int32), drawn from ``key``; see ``shuffle_rounds``."""
    rounds = shuffle_rounds(num_examples)
    if rounds is None:
        return jax.random.permutation(key, num_examples).astype(jnp.int32)
    position_bits = _position_bits(num_examples)
    position = jnp.arange(num_examples, dtype=jnp.uint32)
    low = jnp.uint32((1 << position_bits) - 1)
    random_high = jax.random.bits(key, (rounds, num_examples), jnp.uint32) & ~low
    order = position
    for r in range(rounds):
        order = order[jnp.sort(random_high[r] | position) & low]
    return order.astype(jnp.int32)


def epoch_batches(key: PRNGKey | None, num_examples: int, batch_size: int) -> tuple[Array, Array]:
    """One epoch's batches: ``(indices, weights)``, both ``(steps, B)``.

    ``indices`` is a permutation of 0..N−1 (in order when ``key`` is None),
    cut into rows of B and padded at the end with indices from the start of
    the permutation; ``weights`` is 1 for real examples and 0 for padding.
    Shapes depend only on N and B, so this works under ``jit``. B must lie in 1..N.
    """
    if not 1 <= batch_size <= num_examples:
        raise ValueError(f"epoch_batches needs a batch_size between 1 and num_examples "
                         f"({num_examples}), got {batch_size}")
    steps = steps_per_epoch(num_examples, batch_size)
    pad = steps * batch_size - num_examples
    order = (jnp.arange(num_examples, dtype=jnp.int32) if key is None
             else permutation(key, num_examples))
    indices = jnp.concatenate([order, order[:pad]]).reshape(steps, batch_size)
    weights = jnp.concatenate([jnp.ones(num_examples, jnp.float32), jnp.zeros(pad, jnp.float32)])
    return indices, weights.reshape(steps, batch_size)


def epoch_plan(key: PRNGKey, num_examples: int, batch_size: int, *, shuffle: bool = True):
    """Everything an epoch draws from its state's key: ``(next_key, indices, weights,
    step_keys)``.

    ``next_key`` goes into the state for the next epoch, ``indices``/``weights`` are
    ``epoch_batches`` (shuffled unless ``shuffle`` is False), and ``step_keys`` holds one
    key per step (dropout). ``train.make_epoch`` begins with it; a loop that replays an
    epoch outside the scan calls it to draw the same batches.
    """
    next_key, shuffle_key, steps_key = jax.random.split(key, 3)
    indices, weights = epoch_batches(shuffle_key if shuffle else None, num_examples, batch_size)
    return next_key, indices, weights, jax.random.split(steps_key, indices.shape[0])
