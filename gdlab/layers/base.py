"""The layer convention, and ``serial`` composition.

A layer is three pure functions::

    init(key, in_shape)              -> (out_shape, params)
    forward(params, x, *, key, train) -> (y, residuals)
    backward(params, residuals, dy)   -> (dparams, dx)

``in_shape``/``out_shape`` describe ONE example (no batch axis): a dense layer
on 784 features has ``in_shape == (784,)``. ``x`` carries a leading batch
axis. ``residuals`` is whatever the forward pass keeps for the backward pass.
``backward`` takes the cotangent ``dy = ∂J/∂y`` and returns ``∂J/∂params``
(shaped like ``params``) and ``∂J/∂x`` (shaped like ``x``): one link of the
chain rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from gdlab.types import Array, Params, PRNGKey, Residuals, Shape


class Layer(NamedTuple):
    """A layer as its three functions, plus a name for reports."""

    init: Callable[[PRNGKey, Shape], tuple[Shape, Params]]
    forward: Callable[..., tuple[Array, Residuals]]
    backward: Callable[[Params, Residuals, Array], tuple[Params, Array]]
    name: str


def apply(layer: Layer, params: Params, x: Array, *, key: PRNGKey | None = None,
          train: bool = False) -> Array:
    """The forward pass's output alone, without residuals."""
    return layer.forward(params, x, key=key, train=train)[0]


def stateless(name: str, fn: Callable[[Array], tuple[Array, Residuals]],
              grad: Callable[[Residuals, Array], Array]) -> Layer:
    """A layer without parameters, from ``fn(x) -> (y, res)`` and ``grad(res, dy) -> dx``."""

    def init(key, in_shape):
        del key
        return tuple(in_shape), {}

    def forward(params, x, *, key=None, train=False):
        del params, key, train
        return fn(x)

    def backward(params, residuals, dy):
        del params
        return {}, grad(residuals, dy)

    return Layer(init, forward, backward, name)


def serial(*layers: Layer, name: str = "serial") -> Layer:
    """Compose layers: forward in order, backward in reverse (the chain rule).

    Params are ``{"layers": (p0, p1, ...)}``, so a leaf reads ``layers/0/w``.
    A forward key, when given, is split into one key per layer.
    """

    def init(key, in_shape):
        params = []
        shape = tuple(in_shape)
        for layer, k in zip(layers, jax.random.split(key, len(layers))):
            shape, p = layer.init(k, shape)
            params.append(p)
        return shape, {"layers": tuple(params)}

    def forward(params, x, *, key=None, train=False):
        keys = [None] * len(layers) if key is None else list(jax.random.split(key, len(layers)))
        residuals = []
        for layer, p, k in zip(layers, params["layers"], keys):
            x, r = layer.forward(p, x, key=k, train=train)
            residuals.append(r)
        return x, tuple(residuals)

    def backward(params, residuals, dy):
        # J = ℓ(f_n(…f_1(x))): walk the layers backwards, each turning ∂J/∂(its
        # output) into ∂J/∂(its params) and ∂J/∂(its input).
        dparams = [None] * len(layers)
        for i in reversed(range(len(layers))):
            dparams[i], dy = layers[i].backward(params["layers"][i], residuals[i], dy)
        return {"layers": tuple(dparams)}, dy

    return Layer(init, forward, backward, name)
