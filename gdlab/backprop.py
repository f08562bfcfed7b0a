"""Three ways to get (loss, ∂J/∂params) for a model and a loss.

- ``manual``: forward keeping residuals, loss backward, then the model's
  backward in reverse layer order. Every derivative is written by hand.
- ``custom_vjp``: the same hand-written rules registered with
  ``jax.custom_vjp``, so ``jax.grad``, ``jit`` and ``vmap`` run through them.
- ``autodiff``: ``jax.value_and_grad`` of the plain forward, the reference.

Each returns ``value_and_grad(params, x, y, weights=None, *, key=None, train=False)
-> (loss, grads)`` with ``grads`` shaped like ``params``; ``weights`` (B,) are the
per-example loss weights (see ``gdlab.losses``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax

from gdlab.layers import Layer
from gdlab.losses import Loss
from gdlab.types import Array, Grads, Params, PRNGKey

ValueAndGrad = Callable[..., tuple[Array, Grads]]

METHODS = ("manual", "custom_vjp", "autodiff")


def manual(model: Layer, loss: Loss) -> ValueAndGrad:
    """Backprop by hand: ∂J/∂θ_l = (∂J/∂y_L)·(∂y_L/∂y_{L−1})···(∂y_l/∂θ_l), right to left."""

    def value_and_grad(params: Params, x: Array, y: Array, weights: Array | None = None, *,
                       key: PRNGKey | None = None, train: bool = False):
        preds, residuals = model.forward(params, x, key=key, train=train)  # forward, keep residuals
        value, loss_res = loss.forward(preds, y, weights)
        dpreds = loss.backward(loss_res, 1.0)                  # ∂J/∂preds
        grads, _ = model.backward(params, residuals, dpreds)   # back through the layers
        return value, grads

    return value_and_grad


def autodiff(model: Layer, loss: Loss) -> ValueAndGrad:
    """The reference: ``jax.value_and_grad`` of loss(model(params, x), y)."""

    def objective(params, x, y, weights, key, train):
        return loss.value(model.forward(params, x, key=key, train=train)[0], y, weights)

    vg = jax.value_and_grad(objective)

    def value_and_grad(params, x, y, weights=None, *, key=None, train=False):
        return vg(params, x, y, weights, key, train)

    return value_and_grad


def custom_vjp_layer(layer: Layer) -> Callable[..., Array]:
    """``apply(params, x, key=None, train=False) -> y`` whose VJP is ``layer.backward``.

    ``jax.grad`` through ``apply`` never looks inside ``layer.forward``: it calls
    the hand-written backward with the saved residuals.
    """

    @partial(jax.custom_vjp, nondiff_argnums=(3,))
    def apply(params, x, key, train):
        return layer.forward(params, x, key=key, train=train)[0]

    def fwd(params, x, key, train):
        y, residuals = layer.forward(params, x, key=key, train=train)
        return y, (params, residuals)

    def bwd(train, saved, dy):
        params, residuals = saved
        dparams, dx = layer.backward(params, residuals, dy)
        return dparams, dx, None  # a PRNG key has no cotangent: None means zero

    apply.defvjp(fwd, bwd)

    def call(params, x, key=None, train=False):
        return apply(params, x, key, train)

    return call


def custom_vjp_loss(loss: Loss) -> Callable[[Array, Array], Array]:
    """``value(preds, targets, weights)`` whose VJP with respect to ``preds`` is ``loss.backward``."""

    @jax.custom_vjp
    def value(preds, targets, weights):
        return loss.forward(preds, targets, weights)[0]

    def fwd(preds, targets, weights):
        return loss.forward(preds, targets, weights)

    def bwd(residuals, g):
        return loss.backward(residuals, g), None, None  # targets, weights: data, zero cotangent

    value.defvjp(fwd, bwd)
    return value


def custom_vjp(model: Layer, loss: Loss) -> ValueAndGrad:
    """``jax.value_and_grad`` of the model and loss wrapped by ``custom_vjp_layer``/``_loss``."""
    apply = custom_vjp_layer(model)
    value = custom_vjp_loss(loss)

    def objective(params, x, y, weights, key, train):
        return value(apply(params, x, key, train), y, weights)

    vg = jax.value_and_grad(objective)

    def value_and_grad(params, x, y, weights=None, *, key=None, train=False):
        return vg(params, x, y, weights, key, train)

    return value_and_grad


def value_and_grad(model: Layer, loss: Loss, method: str = "manual") -> ValueAndGrad:
    """``manual``, ``custom_vjp`` or ``autodiff`` value-and-grad by name."""
    builders = {"manual": manual, "custom_vjp": custom_vjp, "autodiff": autodiff}
    if method not in builders:
        raise ValueError(f"unknown gradient method {method!r}; choose one of: {', '.join(METHODS)}")
    return builders[method](model, loss)

