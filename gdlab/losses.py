"""Loss functions J(predictions, targets), each with its gradient by hand.

A loss follows the layer convention, minus parameters::

    forward(preds, targets, weights=None) -> (value, residuals)  # value: a scalar
    backward(residuals, g=1.0) -> dpreds    # g · ∂J/∂preds, shaped like preds

``g`` is the cotangent of the scalar loss (1 when the loss is the objective).
Every loss is a weighted mean of per-example losses, J = Σ_b ω_b ℓ_b, with
ω_b = 1/B (plain batch mean) or, given per-example ``weights`` w (B,),
ω_b = w_b / Σ w. Weights of 0 mask padding out of a partial mini-batch. Each
gradient therefore carries the factor ω_b (1/B for the plain mean).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gdlab.layers.activations import exp_neg_abs, sigmoid_forward
from gdlab.optim.base import check_number
from gdlab.types import Array, Params


class Loss(NamedTuple):
    """A loss as its forward and backward functions, plus a name for reports."""

    forward: Callable[..., tuple[Array, object]]
    backward: Callable[..., Array]
    name: str

    def value(self, preds: Array, targets: Array, weights: Array | None = None) -> Array:
        """The scalar loss alone."""
        return self.forward(preds, targets, weights)[0]


def example_weights(weights: Array | None, preds: Array) -> Array:
    """ω, shaped to broadcast against ``preds`` (B, ...): 1/B each, or w / Σw."""
    batch = preds.shape[0]
    if weights is None:
        omega = jnp.full((batch,), 1.0 / batch, preds.dtype)
    else:
        w = weights.astype(preds.dtype)
        omega = w / jnp.sum(w)
    return omega.reshape((batch,) + (1,) * (preds.ndim - 1))


def _per_example_size(x: Array) -> int:
    """Elements per example (the D in a (B, D) array; 1 for (B,))."""
    return x.size // x.shape[0]


def mse() -> Loss:
    """Mean squared error: ℓ_b = (1/D) Σ_d (p − t)², J = Σ_b ω_b ℓ_b (= mean over all
    elements when unweighted).  ∂J/∂p = 2ω_b(p − t)/D.

    Targets are reshaped to the predictions' shape, so ``(B,)`` targets work
    with ``(B, 1)`` predictions.
    """

    def forward(preds, targets, weights=None):
        r = preds - targets.reshape(preds.shape).astype(preds.dtype)  # residual p − t
        scale = example_weights(weights, preds) / _per_example_size(preds)  # ω_b / D
        return jnp.sum(scale * r * r), (r, scale)

    def backward(residuals, g=1.0):
        r, scale = residuals
        return (2.0 * g) * scale * r

    return Loss(forward, backward, "mse")


def huber(delta: float = 1.0) -> Loss:
    """Huber loss, per element ½r² for |r| ≤ δ and δ(|r| − ½δ) beyond, averaged
    like ``mse``.  ∂J/∂p = ω_b·clip(r, −δ, δ)/D: quadratic near the target, a
    constant pull far away.
    """

    if not delta > 0:
        raise ValueError(f"huber's delta must be a positive number, got {delta}")

    def forward(preds, targets, weights=None):
        r = preds - targets.reshape(preds.shape).astype(preds.dtype)
        a = jnp.abs(r)
        per_element = jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
        scale = example_weights(weights, preds) / _per_example_size(preds)
        return jnp.sum(scale * per_element), (r, scale)

    def backward(residuals, g=1.0):
        r, scale = residuals
        return g * scale * jnp.clip(r, -delta, delta)

    return Loss(forward, backward, f"huber({delta})")


def softmax_cross_entropy() -> Loss:
    """Cross-entropy of softmax(logits) (B, C) against integer labels (B,), or per token:
    logits (B, T, C) against labels (B, T).

    Per position ℓ = logsumexp(z) − z_y, computed stably (max subtracted); an
    example's loss is the mean over its T positions (T = 1 for plain
    classification), J = Σ_b ω_b ℓ_b. The softmax and the log cancel into the
    fused gradient ∂J/∂z = (ω_b/T)(softmax(z) − onehot(y)), i.e.
    (softmax − onehot)/B for plain unweighted classification.

    A label outside 0..C−1 (negative ones too: no wrapping) makes that position's ℓ
    NaN, so the loss is NaN and a guarded step is refused; its onehot is 0, in the
    hand-written gradient and in ``jax.grad`` alike.
    """

    def forward(logits, labels, weights=None):
        labels = labels.astype(jnp.int32)
        # The shift cancels in ℓ, so its derivative is exactly 0: stop_gradient spares
        # jax.grad the max's own backward (a tie count and a select, two more kernels).
        shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
        lse = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))  # logsumexp(z) − max(z), (B, ...)
        correct = jnp.take_along_axis(shifted, labels[..., None], axis=-1)[..., 0]
        in_range = (labels >= 0) & (labels < logits.shape[-1])  # take_along_axis wraps −1
        correct = jnp.where(in_range, correct, jnp.nan)
        probs = jnp.exp(shifted - lse[..., None])           # softmax(z), (B, ..., C)
        positions = _per_example_size(lse)                  # T tokens per example
        scale = example_weights(weights, lse) / positions   # ω_b / T, (B, 1, ...) like lse
        return jnp.sum(scale * (lse - correct)), (probs, labels, scale[..., None])

    def backward(residuals, g=1.0):
        probs, labels, scale = residuals
        onehot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
        return g * scale * (probs - onehot)

    return Loss(forward, backward, "xent")


def sigmoid_binary_cross_entropy() -> Loss:
    """Binary cross-entropy of sigmoid(logits) against 0/1 labels, averaged like ``mse``.

    Per element max(z, 0) − z·y + log(1 + e^{−|z|}) (stable for any z).
    ∂J/∂z = ω_b (sigmoid(z) − y) / D.  Labels are reshaped to the logits' shape.

    σ(z) − y is evaluated as (1 − y)·σ(z) − y·σ(−z) (the same number): for 0/1 labels
    it is σ(z) or −σ(−z) outright, so it keeps full relative precision where σ(z)
    rounds to 1 (σ(z) − 1 would cancel).
    """

    def forward(logits, labels, weights=None):
        y = labels.reshape(logits.shape).astype(logits.dtype)
        # max(z, 0) and e^{−|z|} as wheres with z = 0 on the z ≥ 0 side: the jax.grad of
        # jnp.maximum and jnp.abs at 0 (½ and +1) would make its gradient −y there, not σ(0) − y
        per_element = (jnp.where(logits >= 0, logits, 0.0) - logits * y
                       + jnp.log1p(exp_neg_abs(logits)))
        scale = example_weights(weights, logits) / _per_example_size(logits)
        return jnp.sum(scale * per_element), (logits, y, scale)

    def backward(residuals, g=1.0):
        z, y, scale = residuals
        dz = (1.0 - y) * sigmoid_forward(z) - y * sigmoid_forward(-z)  # σ(z) − y, stably
        return g * scale * dz

    return Loss(forward, backward, "bce")


class Penalty(NamedTuple):
    """A regulariser R(params), by the same forward/backward convention."""

    forward: Callable[[Params], tuple[Array, object]]
    backward: Callable[..., Params]
    name: str


def l2_penalty(coeff: float) -> Penalty:
    """R(θ) = (λ/2) Σ θ² over every leaf.  ∂R/∂θ = λθ.  ``coeff``: λ ≥ 0, finite."""
    check_number("l2_penalty coeff", coeff)

    def forward(params):
        leaves = jax.tree_util.tree_leaves(params)
        return 0.5 * coeff * sum(jnp.sum(p * p) for p in leaves), params

    def backward(params, g=1.0):
        return jax.tree.map(lambda p: (g * coeff) * p, params)

    return Penalty(forward, backward, f"l2({coeff})")


def upcast(loss: Loss, grad_dtype) -> Loss:
    """``loss`` evaluated in float32 on predictions of lower precision (mixed precision):
    the predictions go up to float32 before the loss (its exponentials and its sum over the
    batch), and ∂J/∂preds comes back down as ``grad_dtype``, the predictions' own dtype.
    The same name: a report or an accuracy sees the loss it wraps."""

    def forward(preds, targets, weights=None):
        return loss.forward(preds.astype(jnp.float32), targets, weights)

    def backward(residuals, g=1.0):
        return loss.backward(residuals, g).astype(grad_dtype)

    return Loss(forward, backward, loss.name)


LOSSES = {
    "mse": mse,
    "huber": huber,
    "xent": softmax_cross_entropy,
    "bce": sigmoid_binary_cross_entropy,
}
"""Loss builders by the names experiments use."""


def get(name: str) -> Loss:
    """A loss by name: ``mse``, ``huber``, ``xent`` or ``bce``. The same name gives the same
    object every time, so compiled programs keyed on the loss (``train.sweep``) are reused."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return _built(name)


@functools.cache
def _built(name: str) -> Loss:
    return LOSSES[name]()
