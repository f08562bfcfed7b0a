"""Three ways to get (loss, ∂J/∂params) for a model and a loss.

- ``manual``: forward keeping residuals, loss backward, then the model's
  backward in reverse layer order. Every derivative is written by hand.
- ``custom_vjp``: the same hand-written rules registered with
  ``jax.custom_vjp``, so ``jax.grad``, ``jit`` and ``vmap`` run through them.
- ``autodiff``: ``jax.value_and_grad`` of the plain forward, the reference.

Each returns::

    value_and_grad(params, state, x, y, weights=None, *, key=None, train=False)
        -> ((loss, new_state), grads)

the shape of ``jax.value_and_grad(..., has_aux=True)``: ``grads`` is shaped like
``params``; ``new_state`` is the model state after this forward pass (batch
norm's running statistics), never differentiated; ``weights`` (B,) are the
per-example loss weights (see ``gdlab.losses``), which the forward pass sees too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from gdlab.layers import Layer
from gdlab.losses import Loss, upcast
from gdlab.types import Array, Grads, Params, PRNGKey, State

ValueAndGrad = Callable[..., tuple[tuple[Array, State], Grads]]

METHODS = ("manual", "custom_vjp", "autodiff")


def like_params(grads: Grads, params: Params) -> Grads:
    """``grads`` in each param's own dtype, as ``jax.grad`` gives them: the hand-written
    backward computes in the activations' dtype, which differs from the params' when the
    inputs do (float64 data on a float32 model, float32 data on a bfloat16 one)."""
    return jax.tree.map(lambda g, p: g.astype(jnp.result_type(p)), grads, params)


def manual(model: Layer, loss: Loss) -> ValueAndGrad:
    """Backprop by hand: ∂J/∂θ_l = (∂J/∂y_L)·(∂y_L/∂y_{L−1})···(∂y_l/∂θ_l), right to left."""

    def value_and_grad(params: Params, state: State, x: Array, y: Array,
                       weights: Array | None = None, *, key: PRNGKey | None = None,
                       train: bool = False):
        preds, new_state, residuals = model.forward(params, state, x, key=key, train=train,
                                                    weights=weights)  # forward, keep residuals
        value, loss_res = loss.forward(preds, y, weights)
        dpreds = loss.backward(loss_res, 1.0)                  # ∂J/∂preds
        grads, _ = model.backward(params, residuals, dpreds)   # back through the layers
        return (value, new_state), like_params(grads, params)

    return value_and_grad


def autodiff(model: Layer, loss: Loss) -> ValueAndGrad:
    """The reference: ``jax.value_and_grad`` of loss(model(params, x), y)."""

    def objective(params, state, x, y, weights, key, train):
        preds, new_state, _ = model.forward(params, state, x, key=key, train=train, weights=weights)
        return loss.value(preds, y, weights), new_state

    vg = jax.value_and_grad(objective, has_aux=True)

    def value_and_grad(params, state, x, y, weights=None, *, key=None, train=False):
        return vg(params, state, x, y, weights, key, train)

    return value_and_grad


def custom_vjp_layer(layer: Layer) -> Callable[..., tuple[Array, State]]:
    """``apply(params, state, x, key=None, train=False, weights=None) -> (y, new_state)``
    whose VJP is ``layer.backward``.

    ``jax.grad`` through ``apply`` never looks inside ``layer.forward``: it calls
    the hand-written backward with the saved residuals. The state, the key and the
    weights get no cotangent (None: zero).
    """

    @partial(jax.custom_vjp, nondiff_argnums=(5,))
    def apply(params, state, x, key, weights, train):
        y, new_state, _ = layer.forward(params, state, x, key=key, train=train, weights=weights)
        return y, new_state

    def fwd(params, state, x, key, weights, train):
        y, new_state, residuals = layer.forward(params, state, x, key=key, train=train,
                                                weights=weights)
        return (y, new_state), (params, residuals)

    def bwd(train, saved, cotangents):
        params, residuals = saved
        dy, _ = cotangents  # the new state's cotangent is ignored: state is not differentiated
        dparams, dx = layer.backward(params, residuals, dy)
        return like_params(dparams, params), None, dx, None, None

    apply.defvjp(fwd, bwd)

    def call(params, state, x, key=None, train=False, weights=None):
        return apply(params, state, x, key, weights, train)

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

    def objective(params, state, x, y, weights, key, train):
        preds, new_state = apply(params, state, x, key, train, weights)
        return value(preds, y, weights), new_state

    vg = jax.value_and_grad(objective, has_aux=True)

    def value_and_grad(params, state, x, y, weights=None, *, key=None, train=False):
        return vg(params, state, x, y, weights, key, train)

    return value_and_grad


def mixed_precision(build: Callable[[Layer, Loss], ValueAndGrad], model: Layer, loss: Loss,
                    compute_dtype) -> ValueAndGrad:
    """The value-and-grad that ``build(model, loss)`` makes (``manual``, ``autodiff``,
    ``custom_vjp``, ``gdlab.parallel.value_and_grad``), run in ``compute_dtype`` (e.g.
    bfloat16) from float32 master params.

    The float params and inputs are cast down for the forward and the backward pass, so
    every matmul runs in ``compute_dtype``; the gradients come back up to each param's own
    dtype, for the optimizer to update the master params in full precision. The loss
    itself runs in float32 (``build`` gets ``losses.upcast(loss, compute_dtype)``). The
    model state (batch-norm statistics) keeps its dtype. float16 is refused: without
    loss scaling its small gradients underflow.
    """
    if jnp.dtype(compute_dtype) == jnp.float16:
        raise ValueError("compute_dtype float16 needs loss scaling (its gradients underflow), "
                         "which gdlab does not do; use bfloat16")
    inner = build(model, upcast(loss, compute_dtype))

    def down(a):
        return a.astype(compute_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    def vg(params, state, x, y, weights=None, *, key=None, train=False):
        (value, new_state), grads = inner(jax.tree.map(down, params), state, down(x), y,
                                          weights, key=key, train=train)
        return (value, new_state), jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)

    return vg


def value_and_grad(model: Layer, loss: Loss, method: str = "manual", *,
                   compute_dtype=None) -> ValueAndGrad:
    """``manual``, ``custom_vjp`` or ``autodiff`` value-and-grad by name; with a
    ``compute_dtype`` (e.g. ``jnp.bfloat16``), in mixed precision (``mixed_precision``)."""
    builders = {"manual": manual, "custom_vjp": custom_vjp, "autodiff": autodiff}
    if method not in builders:
        raise ValueError(f"unknown gradient method {method!r}; choose one of: {', '.join(METHODS)}")
    if compute_dtype is None:
        return builders[method](model, loss)
    return mixed_precision(builders[method], model, loss, compute_dtype)
