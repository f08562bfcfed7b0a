"""Gradient transformations to compose with ``chain``.

Each is an ``Optimizer(init, update)`` that maps incoming updates ``u`` (the raw
gradient when it comes first in a chain) to new updates:

- ``clip_by_global_norm(max_norm)``: ``u ← u · min(1, max_norm / ‖u‖)``, ``‖·‖`` the
  global 2-norm over all leaves (Pascanu et al. 2013, "On the difficulty of
  training recurrent neural networks").
- ``add_weight_decay(coeff)``: L2 regularisation, ``u ← u + λ·w``; put it *before*
  the optimizer so the step sees the gradient of ``J + λ/2·‖w‖²``.
- ``scale_by_learning_rate(lr)``: ``u ← −α·u``, turns a direction into a signed step.
- ``add_decayed_weights(coeff, learning_rate=None)``: decoupled weight decay,
  ``u ← u − α·λ·w`` (``α = 1`` when no learning rate is given, i.e. ``coeff``
  already includes it); put it *after* the optimizer so the decay bypasses the
  optimizer's rescaling (Loshchilov & Hutter 2019, "Decoupled Weight Decay
  Regularization"). For plain ``gd`` both decays give the same step; for adaptive
  methods (adam, rmsprop, adagrad) they differ.

``w`` is always the parameter value before the step, so the transforms that read
it need ``update(grads, state, params)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gdlab.optim.base import (
    EmptyState,
    LearningRate,
    Optimizer,
    check_number,
    global_norm,
    increment,
    learning_rate_at,
    like,
    zero_count,
)


class ScaleByLearningRateState(NamedTuple):
    count: jax.Array  # number of updates applied so far, int32 scalar; the schedule's step


def _needs_params(name: str, params) -> None:
    if params is None:
        raise ValueError(f"{name} reads the parameters: call update(grads, state, params)")


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


def add_weight_decay(coeff: float) -> Optimizer:
    """L2 regularisation: ``u ← u + λ·w`` (the gradient of ``λ/2·‖w‖²`` added).

    Chain it before the optimizer: ``chain(add_weight_decay(1e-4), adam(1e-3))``.
    """
    check_number("add_weight_decay coeff", coeff)

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None):
        _needs_params("add_weight_decay", params)
        return jax.tree.map(lambda u, w: like(u + coeff * w, u), grads, params), state

    return Optimizer(init, update)


def scale_by_learning_rate(learning_rate: LearningRate) -> Optimizer:
    """``u ← −α·u``, with ``α`` a number or a schedule of the step count."""
    check_number("learning_rate", learning_rate)

    def init(params):
        del params
        return ScaleByLearningRateState(count=zero_count())

    def update(grads, state, params=None):
        del params
        alpha = learning_rate_at(learning_rate, state.count)
        updates = jax.tree.map(lambda u: like(-alpha * u, u), grads)
        return updates, ScaleByLearningRateState(count=increment(state.count))

    return Optimizer(init, update)


def add_decayed_weights(coeff: float, *, learning_rate: LearningRate | None = None) -> Optimizer:
    """Decoupled weight decay: ``u ← u − α·λ·w`` (``α = 1`` when ``learning_rate`` is None).

    Chain it after the optimizer, which has already produced a signed step:
    ``chain(adam(1e-3), add_decayed_weights(1e-2, learning_rate=1e-3))`` is AdamW
    (Loshchilov & Hutter 2019). With a schedule as ``learning_rate`` the state
    keeps the step count; without one the transform is stateless.
    """
    check_number("add_decayed_weights coeff", coeff)
    check_number("learning_rate", learning_rate)

    def init(params):
        del params
        if learning_rate is None:
            return EmptyState()
        return ScaleByLearningRateState(count=zero_count())

    def update(grads, state, params=None):
        _needs_params("add_decayed_weights", params)
        if learning_rate is None:
            alpha, new_state = 1.0, state
        else:
            alpha = learning_rate_at(learning_rate, state.count)
            new_state = ScaleByLearningRateState(count=increment(state.count))
        updates = jax.tree.map(lambda u, w: like(u - alpha * coeff * w, u), grads, params)
        return updates, new_state

    return Optimizer(init, update)
