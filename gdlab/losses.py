"""Loss functions J(predictions, targets), each with its gradient by hand.

A loss follows the layer convention, minus parameters::

    forward(preds, targets) -> (value, residuals)   # value: a scalar, the batch mean
    backward(residuals, g=1.0) -> dpreds            # g · ∂J/∂preds, shaped like preds

``g`` is the cotangent of the scalar loss (1 when the loss is the objective).
Every loss averages over the batch, so its gradient carries a 1/B factor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gdlab.types import Array, Params


class Loss(NamedTuple):
    """A loss as its forward and backward functions, plus a name for reports."""

    forward: Callable[[Array, Array], tuple[Array, object]]
    backward: Callable[..., Array]
    name: str

    def value(self, preds: Array, targets: Array) -> Array:
        """The scalar loss alone."""
        return self.forward(preds, targets)[0]


def mse() -> Loss:
    """Mean squared error over all elements: J = (1/n) Σ (p − t)².  ∂J/∂p = 2(p − t)/n.

    Targets are reshaped to the predictions' shape, so ``(B,)`` targets work
    with ``(B, 1)`` predictions.
    """

    def forward(preds, targets):
        r = preds - targets.reshape(preds.shape).astype(preds.dtype)  # residual p − t
        return jnp.mean(r * r), r

    def backward(r, g=1.0):
        return (2.0 * g / r.size) * r

    return Loss(forward, backward, "mse")


def huber(delta: float = 1.0) -> Loss:
    """Huber loss, mean over elements: ½r² for |r| ≤ δ, δ(|r| − ½δ) beyond.

    ∂J/∂p = clip(r, −δ, δ)/n: quadratic near the target, a constant pull far away.
    """

    def forward(preds, targets):
        r = preds - targets.reshape(preds.shape).astype(preds.dtype)
        a = jnp.abs(r)
        per_element = jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
        return jnp.mean(per_element), r

    def backward(r, g=1.0):
        return (g / r.size) * jnp.clip(r, -delta, delta)

    return Loss(forward, backward, f"huber({delta})")


def softmax_cross_entropy() -> Loss:
    """Cross-entropy of softmax(logits) against integer labels, batch mean.

    J = (1/B) Σ_b [logsumexp(z_b) − z_b,y_b], computed stably (max subtracted).
    The softmax and the log cancel into the fused gradient
    ∂J/∂z = (softmax(z) − onehot(y)) / B.
    """

    def forward(logits, labels):
        m = jnp.max(logits, axis=-1, keepdims=True)
        shifted = logits - m
        lse = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))  # logsumexp − m, (B,)
        correct = jnp.take_along_axis(shifted, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
        probs = jnp.exp(shifted - lse[..., None])            # softmax(z), (B, C)
        return jnp.mean(lse - correct), (probs, labels)

    def backward(residuals, g=1.0):
        probs, labels = residuals
        onehot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
        batch = probs.size // probs.shape[-1]
        return (g / batch) * (probs - onehot)

    return Loss(forward, backward, "xent")


def sigmoid_binary_cross_entropy() -> Loss:
    """Binary cross-entropy of sigmoid(logits) against 0/1 labels, mean over elements.

    J = (1/n) Σ [max(z, 0) − z·y + log(1 + e^{−|z|})]  (stable for any z).
    ∂J/∂z = (sigmoid(z) − y) / n.  Labels are reshaped to the logits' shape.
    """

    def forward(logits, labels):
        y = labels.reshape(logits.shape).astype(logits.dtype)
        per_element = jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits)))
        return jnp.mean(per_element), (logits, y)

    def backward(residuals, g=1.0):
        z, y = residuals
        return (g / z.size) * (0.5 * (jnp.tanh(0.5 * z) + 1.0) - y)

    return Loss(forward, backward, "bce")


class Penalty(NamedTuple):
    """A regulariser R(params), by the same forward/backward convention."""

    forward: Callable[[Params], tuple[Array, object]]
    backward: Callable[..., Params]
    name: str


def l2_penalty(coeff: float) -> Penalty:
    """R(θ) = (λ/2) Σ θ² over every leaf.  ∂R/∂θ = λθ."""

    def forward(params):
        leaves = jax.tree_util.tree_leaves(params)
        return 0.5 * coeff * sum(jnp.sum(p * p) for p in leaves), params

    def backward(params, g=1.0):
        return jax.tree.map(lambda p: (g * coeff) * p, params)

    return Penalty(forward, backward, f"l2({coeff})")


LOSSES = {
    "mse": mse,
    "huber": huber,
    "xent": softmax_cross_entropy,
    "bce": sigmoid_binary_cross_entropy,
}
"""Loss builders by the names experiments use."""


def get(name: str) -> Loss:
    """A loss by name: ``mse``, ``huber``, ``xent`` or ``bce``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]()
