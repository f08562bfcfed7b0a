"""Embeddings: a learned lookup table for token ids, and learned positions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gdlab.layers._windows import positive_int
from gdlab.layers.base import Layer


def embedding(vocab_size: int, features: int, *, stddev: float | None = None,
              dtype=jnp.float32) -> Layer:
    """Token embedding: integer ids ``(B, ...)`` → rows of a table, ``(B, ..., features)``.

    ``params = {"table": (V, D)}`` drawn N(0, stddev²), stddev = 1/√features by
    default. ``in_shape`` is the per-example shape of the ids, e.g. ``(T,)`` →
    ``(T, D)``. y = table[ids] is a gather; an id outside [−V, V) gives a row of
    NaN (``jnp.take(..., mode="fill")``), never a silently clamped row, so a bad
    id shows up in the loss. (Ids in [−V, 0) wrap around, NumPy style.) Ids that are
    not integers (floats, booleans) are a ``ValueError`` naming the layer.
    """
    vocab_size = positive_int(vocab_size, "embedding vocab_size")
    features = positive_int(features, "embedding features")
    std = 1.0 / math.sqrt(features) if stddev is None else stddev

    def init(key, in_shape):
        table = std * jax.random.normal(key, (vocab_size, features), dtype)
        return (*tuple(in_shape), features), {"table": table}, {}

    def forward(params, state, ids, *, key=None, train=False, weights=None):
        del key, train, weights
        if not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
            raise ValueError(f"embedding({vocab_size}, {features}) takes integer token ids, "
                             f"got dtype {jnp.result_type(ids)}")
        y = jnp.take(params["table"], ids, axis=0, mode="fill", fill_value=jnp.nan)
        return y, state, ids  # keep the ids: the backward scatters into their rows

    def backward(params, ids, dy):
        """dtable = Σ over positions with ids = v of dy (a scatter-add: a row used k times
        gets k contributions); dx = None, integer ids have no cotangent.

        Out-of-range ids (the NaN rows of the forward pass) contribute nothing. The rows
        are summed in at least float32: a bfloat16 scatter-add rounds after every
        contribution, so a frequent id's sum stalls (4096 × 0.01 came to 4, not 40.96).
        """
        table = params["table"]                       # (V, D)
        acc = jnp.promote_types(table.dtype, jnp.float32)
        dtable = jnp.zeros(table.shape, acc).at[ids].add(dy.astype(acc), mode="drop")
        return {"table": dtable.astype(table.dtype)}, None

    return Layer(init, forward, backward, f"embedding({vocab_size}, {features})")


def positional_embedding(max_len: int, *, stddev: float = 0.02, dtype=jnp.float32) -> Layer:
    """Learned positions: x ``(B, T, D)`` → x + table[:T], ``params = {"table": (max_len, D)}``.

    The table is drawn N(0, stddev²). ``init`` needs ``in_shape == (T, D)`` with
    T ≤ max_len. Every example of the batch shares the table, so its gradient is
    the sum over the batch.
    """
    max_len = positive_int(max_len, "positional_embedding max_len")

    def init(key, in_shape):
        if len(in_shape) != 2:
            raise ValueError(f"positional_embedding needs an input of shape (T, D), got {tuple(in_shape)}")
        t, d = in_shape
        if t > max_len:
            raise ValueError(f"positional_embedding(max_len={max_len}) got a sequence of length {t}")
        return tuple(in_shape), {"table": stddev * jax.random.normal(key, (max_len, d), dtype)}, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del key, train, weights
        t = x.shape[-2]
        if t > max_len:
            raise ValueError(f"positional_embedding(max_len={max_len}) got a sequence of length {t}")
        return x + params["table"][:t], state, None

    def backward(params, residuals, dy):
        """dx = dy;  dtable[:T] = Σ_batch dy,  dtable[T:] = 0 (rows never used)."""
        del residuals
        table = params["table"]                                         # (max_len, D)
        t = dy.shape[-2]
        used = jnp.sum(dy, axis=tuple(range(dy.ndim - 2))).astype(table.dtype)  # (T, D)
        dtable = jnp.zeros_like(table).at[:t].set(used)
        return {"table": dtable}, dy

    return Layer(init, forward, backward, f"positional_embedding({max_len})")
