"""Type aliases shared across gdlab.

They are documentation, not enforcement: every one of them is a pytree of
``jax.Array`` leaves (or a single array) that jit, vmap and scan accept.

Which container, when (one rule for the whole package):

- ``typing.NamedTuple`` for small records that travel through ``jit``, ``scan`` and
  ``vmap`` as pytrees, or pair functions: optimizer states, step and epoch metrics,
  ``Layer``, ``Loss``, curvature results. Every field is commented where it is defined.
- ``flax.struct.dataclass`` for the one training pytree that is checkpointed and
  updated field by field with ``.replace``: ``train.TrainState`` and its ``Health``.
- frozen ``dataclasses.dataclass`` for host-side values that are not traced: data
  sets, configurations, reports and results holding NumPy arrays or Python numbers.
"""

from __future__ import annotations

from typing import Any

import jax

Array = jax.Array
Shape = tuple[int, ...]

Params = Any
"""A pytree of arrays: dicts for one layer (``{"w": ..., "b": ...}``), a dict
holding a tuple for a composition (``{"layers": (p0, p1, ...)}``)."""

Grads = Any
"""A pytree shaped exactly like the ``Params`` it differentiates."""

State = Any
"""A layer's non-trainable state, a pytree shaped like its params' tree (batch norm's
running mean and variance); ``{}`` for a layer without state. Never differentiated."""

Residuals = Any
"""What a forward pass keeps for its backward pass: a pytree of arrays (or None)."""

PRNGKey = jax.Array
"""A ``jax.random`` key; split before use, consumed once."""

Batch = tuple[jax.Array, jax.Array]
"""``(inputs, targets)``: inputs ``(B, ...)``, targets ``(B,)`` int labels or ``(B, D)`` floats."""
