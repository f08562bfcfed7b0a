"""The optimizers: gradient descent and its momentum and adaptive descendants.

Each returns ``Optimizer(init, update)`` (see ``gdlab.optim.base``); ``update``
returns the *signed* step ``u``, and ``apply_updates`` adds it: ``w ← w + u``.
``g`` is the gradient ``∂J/∂w``, ``α`` the learning rate (a number or a schedule
of ``t``, the number of updates applied so far, starting at 0), and every
operation is elementwise per leaf.

=========  ==========================================================  ===============================
name       state and update                                            reference
=========  ==========================================================  ===============================
gd         ``u = −α·g``  (the seed rule ``w_new = w_old − α·∂J/∂w``)    Cauchy 1847
momentum   ``v ← β·v + g``;  ``u = −α·v``  (heavy ball)                 Polyak 1964
nesterov   ``v ← β·v + g``;  ``u = −α·(g + β·v)``  (v the new velocity) Nesterov 1983; Sutskever 2013
adagrad    ``s ← s + g²``;  ``u = −α·g / (√s + ε)``                     Duchi, Hazan & Singer 2011
rmsprop    ``s ← ρ·s + (1−ρ)·g²``;  ``u = −α·g / (√s + ε)``             Tieleman & Hinton 2012
adam       ``m ← β₁·m + (1−β₁)·g``;  ``v ← β₂·v + (1−β₂)·g²``;           Kingma & Ba 2015
           ``m̂ = m/(1−β₁ᵗ⁺¹)``, ``v̂ = v/(1−β₂ᵗ⁺¹)``;  ``u = −α·m̂/(√v̂ + ε)``
adamw      adam's ``m̂, v̂``;  ``u = −α·(m̂/(√v̂ + ε) + λ·w)``               Loshchilov & Hutter 2019
           (``chain(adam, add_decayed_weights)``)
=========  ==========================================================  ===============================

**One momentum sign convention.** The velocity accumulates *gradients*,
``v ← β·v + g`` (starting from ``v = 0``), and the step is ``−α·v``; Nesterov's
look-ahead is taken in the same form, ``u = −α·(g + β·v_new)``, as in Sutskever et
al. 2013 ("On the importance of initialization and momentum in deep learning")
and PyTorch's ``SGD(nesterov=True)``. Because ``α`` multiplies ``v`` at step
time rather than being folded into it, changing the learning rate (e.g. by a
schedule) rescales the whole accumulated velocity at once.

Moments and accumulators start at zero (adagrad's at ``initial_accumulator``),
have the dtype of the parameters, and keep it; the step count is an int32 scalar.
The parameters must be floating point (``init`` refuses integer leaves). Adam's bias
corrections ``1 − βᵗ`` are taken as ``−expm1(t·ln β)`` with ``ln β`` in double
precision, so float32 runs are as exact as float32 allows (``1 − β**t`` in float32
rounds β first: 7e-4 off at t = 1 for β₂ = 0.99999).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gdlab.optim.base import (
    LearningRate,
    Optimizer,
    Params,
    chain,
    check_floating,
    check_number,
    increment,
    learning_rate_at,
    like,
    zero_count,
)
from gdlab.optim.transforms import Mask, add_decayed_weights


class GDState(NamedTuple):
    count: jax.Array  # number of updates applied so far, int32 scalar; the schedule's step


class MomentumState(NamedTuple):
    count: jax.Array  # number of updates applied so far, int32 scalar; the schedule's step
    velocity: Params  # v, the β-discounted sum of past gradients; pytree like params


class AdagradState(NamedTuple):
    count: jax.Array  # number of updates applied so far, int32 scalar; the schedule's step
    sum_of_squares: Params  # s, initial_accumulator + Σ g² over all steps; pytree like params


class RMSPropState(NamedTuple):
    count: jax.Array  # number of updates applied so far, int32 scalar; the schedule's step
    mean_square: Params  # s, exponential moving average of g² (from 0); pytree like params


class AdamState(NamedTuple):
    count: jax.Array  # number of updates applied so far, int32 scalar; schedule step, bias power
    mu: Params  # m, exponential moving average of g (first moment, from 0); pytree like params
    nu: Params  # v, exponential moving average of g² (second moment, from 0); pytree like params


def _zeros_like(params, fill: float = 0.0):
    """State leaves like ``params`` filled with ``fill``; a ValueError for integer params."""
    check_floating(params)
    return jax.tree.map(lambda w: jnp.full(jnp.shape(w), fill, jnp.result_type(w)), params)


def _one_minus_power(beta, t: jax.Array) -> jax.Array:
    """``1 − βᵗ`` as ``−expm1(t·ln β)``, ``ln β`` taken in double precision for a concrete
    ``β``: in float32 ``1 − β**t`` would first round β (β₂ = 0.99999 to 0.99998999),
    and the subtraction would make that 1.4e-3 of the bias correction at t = 1."""
    if isinstance(beta, numbers.Real):
        if beta == 0:
            return jnp.ones_like(t, dtype=float)  # 0ᵗ = 0 for t ≥ 1
        return -jnp.expm1(t.astype(float) * math.log(beta))
    return -jnp.expm1(t.astype(float) * jnp.log(beta))


def gd(learning_rate: LearningRate) -> Optimizer:
    """Plain gradient descent: ``w_new = w_old − α · ∂J/∂w`` (Cauchy 1847).

    Args:
      learning_rate: ``α``, a number or a schedule ``step -> α``.
    """
    check_number("learning_rate", learning_rate, schedule=True)

    def init(params):
        check_floating(params)
        return GDState(count=zero_count())

    def update(grads, state, params=None):
        del params
        alpha = learning_rate_at(learning_rate, state.count)
        # w_new = w_old − α · ∂J/∂w; the update is the signed step −α · ∂J/∂w.
        updates = jax.tree.map(lambda dJ_dw: like(-alpha * dJ_dw, dJ_dw), grads)
        return updates, GDState(count=increment(state.count))

    return Optimizer(init, update)


def momentum(learning_rate: LearningRate, *, beta: float = 0.9, nesterov: bool = False) -> Optimizer:
    """Heavy-ball momentum (Polyak 1964): ``v ← β·v + g``, ``u = −α·v``.

    With ``nesterov=True``, Nesterov's accelerated gradient in the Sutskever et al.
    (2013) / PyTorch form: ``v ← β·v + g``, ``u = −α·(g + β·v)``.

    Args:
      learning_rate: ``α``, a number or a schedule ``step -> α``.
      beta: ``β`` in [0, 1), the velocity's decay per step.
      nesterov: take the look-ahead step.
    """
    check_number("learning_rate", learning_rate, schedule=True)
    check_number("momentum beta", beta, high=1.0)

    def init(params):
        return MomentumState(count=zero_count(), velocity=_zeros_like(params))

    def update(grads, state, params=None):
        del params
        alpha = learning_rate_at(learning_rate, state.count)
        velocity = jax.tree.map(lambda v, g: like(beta * v + g, v), state.velocity, grads)
        if nesterov:
            updates = jax.tree.map(lambda g, v: like(-alpha * (g + beta * v), g), grads, velocity)
        else:
            updates = jax.tree.map(lambda g, v: like(-alpha * v, g), grads, velocity)
        return updates, MomentumState(count=increment(state.count), velocity=velocity)

    return Optimizer(init, update)


def nesterov(learning_rate: LearningRate, *, beta: float = 0.9) -> Optimizer:
    """Nesterov momentum (Nesterov 1983; Sutskever et al. 2013):
    ``v ← β·v + g``, ``u = −α·(g + β·v)``. Same as ``momentum(..., nesterov=True)``."""
    return momentum(learning_rate, beta=beta, nesterov=True)


def adagrad(
    learning_rate: LearningRate, *, eps: float = 1e-10, initial_accumulator: float = 0.0
) -> Optimizer:
    """AdaGrad (Duchi, Hazan & Singer 2011): ``s ← s + g²``, ``u = −α·g / (√s + ε)``.

    Each coordinate's step shrinks with the total squared gradient it has seen.

    Args:
      learning_rate: ``α``, a number or a schedule ``step -> α``.
      eps: ``ε`` added to ``√s`` so a coordinate with no gradient yet gets no step.
      initial_accumulator: the starting value of ``s``, ≥ 0.
    """
    check_number("learning_rate", learning_rate, schedule=True)
    check_number("adagrad eps", eps, low_open=True)  # ε = 0: 0/0 where a gradient is 0
    check_number("adagrad initial_accumulator", initial_accumulator)

    def init(params):
        return AdagradState(count=zero_count(), sum_of_squares=_zeros_like(params, initial_accumulator))

    def update(grads, state, params=None):
        del params
        alpha = learning_rate_at(learning_rate, state.count)
        s = jax.tree.map(lambda s, g: like(s + g * g, s), state.sum_of_squares, grads)
        updates = jax.tree.map(lambda g, s: like(-alpha * g / (jnp.sqrt(s) + eps), g), grads, s)
        return updates, AdagradState(count=increment(state.count), sum_of_squares=s)

    return Optimizer(init, update)


def rmsprop(learning_rate: LearningRate, *, decay: float = 0.9, eps: float = 1e-8) -> Optimizer:
    """RMSProp (Tieleman & Hinton 2012, Coursera lecture 6.5):
    ``s ← ρ·s + (1−ρ)·g²``, ``u = −α·g / (√s + ε)``, with ``s`` starting at 0.

    Args:
      learning_rate: ``α``, a number or a schedule ``step -> α``.
      decay: ``ρ`` in [0, 1), the moving average's decay per step.
      eps: ``ε`` added to ``√s``.
    """
    check_number("learning_rate", learning_rate, schedule=True)
    check_number("rmsprop decay", decay, high=1.0)
    check_number("rmsprop eps", eps, low_open=True)  # ε = 0: 0/0 where a gradient is 0

    def init(params):
        return RMSPropState(count=zero_count(), mean_square=_zeros_like(params))

    def update(grads, state, params=None):
        del params
        alpha = learning_rate_at(learning_rate, state.count)
        s = jax.tree.map(
            lambda s, g: like(decay * s + (1.0 - decay) * g * g, s), state.mean_square, grads
        )
        updates = jax.tree.map(lambda g, s: like(-alpha * g / (jnp.sqrt(s) + eps), g), grads, s)
        return updates, RMSPropState(count=increment(state.count), mean_square=s)

    return Optimizer(init, update)


def adam(
    learning_rate: LearningRate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    """Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization").

    ``m ← β₁·m + (1−β₁)·g``, ``v ← β₂·v + (1−β₂)·g²``, then with ``t`` the 1-based
    update number ``m̂ = m/(1−β₁ᵗ)``, ``v̂ = v/(1−β₂ᵗ)`` and ``u = −α·m̂/(√v̂ + ε)``.

    Args:
      learning_rate: ``α``, a number or a schedule ``step -> α``.
      b1: ``β₁`` in [0, 1), decay of the first-moment average.
      b2: ``β₂`` in [0, 1), decay of the second-moment average.
      eps: ``ε`` added to ``√v̂``.
    """
    check_number("learning_rate", learning_rate, schedule=True)
    check_number("adam b1", b1, high=1.0)
    check_number("adam b2", b2, high=1.0)
    check_number("adam eps", eps, low_open=True)  # ε = 0: 0/0 where a gradient is 0

    def init(params):
        return AdamState(count=zero_count(), mu=_zeros_like(params), nu=_zeros_like(params))

    def update(grads, state, params=None):
        del params
        alpha = learning_rate_at(learning_rate, state.count)
        t = increment(state.count)  # this is update number t (1-based), as in Kingma & Ba
        mu = jax.tree.map(lambda m, g: like(b1 * m + (1.0 - b1) * g, m), state.mu, grads)
        nu = jax.tree.map(lambda v, g: like(b2 * v + (1.0 - b2) * g * g, v), state.nu, grads)
        # Bias correction: m and v start at 0, so early averages are too small by 1 − βᵗ.
        bc1, bc2 = _one_minus_power(b1, t), _one_minus_power(b2, t)
        updates = jax.tree.map(
            lambda g, m, v: like(-alpha * (m / bc1) / (jnp.sqrt(v / bc2) + eps), g), grads, mu, nu)
        return updates, AdamState(count=increment(state.count), mu=mu, nu=nu)

    return Optimizer(init, update)


def adamw(
    learning_rate: LearningRate,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    mask: Mask = None,
) -> Optimizer:
    """AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization").

    ``chain(adam(α, ...), add_decayed_weights(λ, learning_rate=α, mask=mask))``: Adam's
    step ``−α·m̂/(√v̂ + ε)``, then ``−α·λ·w``. The decay is added to the step, not to
    the gradient, so Adam's per-coordinate scaling does not weaken it. ``update``
    needs ``params``; the state is ``(AdamState, the decay's state)``.

    Args:
      learning_rate: ``α``, a number or a schedule ``step -> α``.
      b1, b2, eps: as in ``adam``.
      weight_decay: ``λ`` ≥ 0.
      mask: which leaves decay (``gdlab.optim.transforms``): None for every one, or
        e.g. ``optim.weights_only`` to spare biases and normalisation parameters.
    """
    check_number("adamw weight_decay", weight_decay)
    return chain(adam(learning_rate, b1=b1, b2=b2, eps=eps),
                 add_decayed_weights(weight_decay, learning_rate=learning_rate, mask=mask))
