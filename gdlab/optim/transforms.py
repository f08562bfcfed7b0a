"""Gradient transformations to compose with ``chain``.

Each is an ``Optimizer(init, update)`` that maps incoming updates ``u`` (the raw
gradient when it comes first in a chain) to new updates:

- ``clip_by_global_norm(max_norm)``: ``u ← u · min(1, max_norm / ‖u‖)``, ``‖·‖`` the
  global 2-norm over all leaves (Pascanu et al. 2013, "On the difficulty of
  training recurrent neural networks").
- ``add_weight_decay(coeff)``: L2 regularisation, ``u ← u + λ·w``; put it *before*
  the optimizer so the step sees the gradient of ``J + λ/2·‖w‖²``.
- ``add_decayed_weights(coeff, learning_rate=None)``: decoupled weight decay,
  ``u ← u − α·λ·w`` (``α = 1`` when no learning rate is given, i.e. ``coeff``
  already includes it); put it *after* the optimizer so the decay bypasses the
  optimizer's rescaling (Loshchilov & Hutter 2019, "Decoupled Weight Decay
  Regularization"). For plain ``gd`` both decays give the same step; for adaptive
  methods (adam, rmsprop, adagrad) they differ. ``adamw`` is
  ``chain(adam, add_decayed_weights)``.

``gd(α)``, last in a chain, turns the direction into the signed step ``u ← −α·u``.

``w`` is always the parameter value before the step, so the transforms that read
it need ``update(grads, state, params)``.

**Which leaves decay.** Both decays take ``mask``: ``None`` decays every leaf (as
``torch.optim``'s ``weight_decay`` does), a pytree of Python bools shaped like the
params (or a prefix of it: one bool for a whole layer) decays the leaves marked
True, and a callable ``params -> such a pytree`` decides from the params; ``weights_only`` marks the leaves of two or more
dimensions (dense and convolution kernels, embedding tables, attention
projections) and leaves biases and normalisation scales and shifts alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdlab.optim.base import (
    EmptyState,
    LearningRate,
    Optimizer,
    Params,
    check_number,
    global_norm,
    increment,
    learning_rate_at,
    like,
    zero_count,
)


class DecayState(NamedTuple):
    count: jax.Array  # number of updates applied so far, int32 scalar; the schedule's step


Mask = Any  # None, a pytree of Python bools shaped like the params, or params -> that pytree


def _needs_params(name: str, params) -> None:
    if params is None:
        raise ValueError(f"{name} reads the parameters: call update(grads, state, params)")


def weights_only(params: Params) -> Any:
    """The decay mask that marks the leaves of two or more dimensions.

    True for dense and convolution kernels, embedding tables and attention
    projections; False for biases and normalisation scales and shifts (one
    dimension) and scalars. Pass it as ``mask=`` to a weight decay.
    """
    return jax.tree.map(lambda w: jnp.ndim(w) >= 2, params)


def _check_mask(name: str, mask: Mask) -> None:
    if mask is None or callable(mask):
        return
    leaves = jax.tree_util.tree_leaves(mask)
    if not all(isinstance(m, (bool, np.bool_)) for m in leaves):
        raise ValueError(f"{name} mask must be None, a pytree of Python bools shaped like "
                         "the params, or a callable params -> such a pytree")


def _decayed(name: str, mask: Mask, decay, updates, params):
    """``decay(u, w)`` on the leaves ``mask`` marks, ``u`` unchanged on the others."""
    marks = mask(params) if callable(mask) else mask
    if marks is None:
        return jax.tree.map(decay, updates, params)
    _check_mask(name, marks)
    try:  # a prefix (one bool for a subtree) marks every leaf below it
        marks = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), marks, params)
    except ValueError as e:
        raise ValueError(f"{name} mask must have the params' structure, or a prefix of "
                         f"it: {e}") from None
    return jax.tree.map(lambda m, u, w: decay(u, w) if m else u, marks, updates, params)


def clip_by_global_norm(max_norm: float) -> Optimizer:
    """``u ← u · min(1, max_norm / ‖u‖₂)`` with the norm taken over all leaves together.

    The direction is kept; only the length is capped at ``max_norm``
    (Pascanu, Mikolov & Bengio 2013).
    """
    check_number("clip_by_global_norm max_norm", max_norm, low_open=True)

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None):
        del params
        norm = global_norm(grads)
        # max_norm / max(‖u‖, max_norm) is min(1, max_norm/‖u‖) and safe when ‖u‖ = 0.
        scale = max_norm / jnp.maximum(norm, max_norm)
        return jax.tree.map(lambda u: like(u * scale, u), grads), state

    return Optimizer(init, update)


def add_weight_decay(coeff: float, *, mask: Mask = None) -> Optimizer:
    """L2 regularisation: ``u ← u + λ·w`` (the gradient of ``λ/2·‖w‖²`` added).

    Chain it before the optimizer: ``chain(add_weight_decay(1e-4), adam(1e-3))``.
    ``mask`` chooses the leaves (module docstring); ``None`` decays every one.
    """
    check_number("add_weight_decay coeff", coeff)
    _check_mask("add_weight_decay", mask)

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None):
        _needs_params("add_weight_decay", params)
        return _decayed("add_weight_decay", mask, lambda u, w: like(u + coeff * w, u),
                        grads, params), state

    return Optimizer(init, update)


def add_decayed_weights(coeff: float, *, learning_rate: LearningRate | None = None,
                        mask: Mask = None) -> Optimizer:
    """Decoupled weight decay: ``u ← u − α·λ·w`` (``α = 1`` when ``learning_rate`` is None).

    Chain it after the optimizer, which has already produced a signed step:
    ``chain(adam(1e-3), add_decayed_weights(1e-2, learning_rate=1e-3))`` is AdamW
    (Loshchilov & Hutter 2019), which ``adamw`` builds. With a schedule as
    ``learning_rate`` the state keeps the step count, so the decay follows the
    schedule; otherwise the transform is stateless. ``mask`` chooses the leaves
    (module docstring); ``None`` decays every one.
    """
    check_number("add_decayed_weights coeff", coeff)
    check_number("learning_rate", learning_rate, schedule=True, none=True)
    _check_mask("add_decayed_weights", mask)
    scheduled = callable(learning_rate)

    def init(params):
        del params
        return DecayState(count=zero_count()) if scheduled else EmptyState()

    def update(grads, state, params=None):
        _needs_params("add_decayed_weights", params)
        if scheduled:
            alpha = learning_rate_at(learning_rate, state.count)
            state = DecayState(count=increment(state.count))
        else:
            alpha = 1.0 if learning_rate is None else learning_rate
        updates = _decayed("add_decayed_weights", mask,
                           lambda u, w: like(u - alpha * coeff * w, u), grads, params)
        return updates, state

    return Optimizer(init, update)
