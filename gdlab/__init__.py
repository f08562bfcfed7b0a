"""gdlab: how neural networks learn, made concrete.

Gradient descent decides how to move the weights, ``w_new = w_old − α · ∂J/∂w``;
backpropagation computes every ``∂J/∂w`` by applying the chain rule backwards
through the layers. Every piece here is a small pure function.

Calling conventions, stated once
--------------------------------
Parameters are pytrees of arrays: ``{"w": (D_in, D_out), "b": (D_out,)}`` for a
dense layer, ``{"layers": (p0, p1, ...)}`` for a composition.

A **layer** (``gdlab.layers``) is three functions::

    init(key, in_shape) -> (out_shape, params, state)     # in_shape: one example, no batch axis
    forward(params, state, x, *, key=None, train=False, weights=None)
                        -> (y, new_state, residuals)
    backward(params, residuals, dy) -> (dparams, dx)       # the chain rule, by hand

``params`` are trained; ``state`` is not (batch norm's running statistics,
``{}`` for every layer without any): ``forward`` returns the next state,
optimizers and the gradient checker never see it. ``weights`` (B,) are the
per-example weights of the batch (0 for the padding of a partial batch).
``backward`` turns ``dy = ∂J/∂y`` into ``∂J/∂params`` and ``∂J/∂x``. ``serial``
runs forwards in order and backwards in reverse; ``residual`` and
``gdlab.layers.parallel`` sum the cotangents that meet where one value feeds two paths. A model is a layer.

A **loss** (``gdlab.losses``) is ``forward(preds, targets, weights=None) ->
(value, residuals)`` and ``backward(residuals, g=1.0) -> dpreds``.

**Gradients** (``gdlab.backprop``): ``manual``, ``custom_vjp`` and ``autodiff``
each give ``value_and_grad(params, state, x, y, weights=None, *, key, train)
-> ((loss, new_state), grads)``.

An **optimizer** (``gdlab.optim``) is ``Optimizer(init, update)`` with
``update(grads, state, params) -> (updates, state)``, and
``apply_updates(params, updates)`` takes the step.

Everything that changes while training is one pytree, ``gdlab.train.TrainState``
(params, model state, optimizer state, key, step, divergence record);
``gdlab.checkpoint`` saves and restores it for exact resume, and
``gdlab.parallel`` trains it on many devices and hosts.

Randomness is explicit: PRNG keys are passed, split and consumed once.

Records come in three kinds, each for one use: a ``NamedTuple`` for a small fixed
record that may pass through ``jit`` as a pytree (the ``Layer``, ``Loss`` and
``Optimizer`` bundles of functions, optimizer states, the arrays a jitted function
returns, tables of constants); ``flax.struct.dataclass`` for the training state
(``TrainState`` and its ``Health``), updated with ``.replace`` inside jitted steps; and a
frozen ``dataclasses.dataclass`` for host-side results that never enter a jitted
function (a ``Dataset``, ``fit``'s result, a gradient check's report).
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("analysis", "backprop", "checkpoint", "cost", "curvature", "data", "descent",
               "gradcheck", "landscapes", "layers", "losses", "models", "optim", "parallel",
               "plots", "records", "theory", "tolerances", "train", "workdir")
"""Imported on first use (``gdlab.train``, ``from gdlab import optim``): ``import gdlab``
loads none of them, so a command pays only for what it touches."""

_NAMES = {
    "Layer": "layers", "residual": "layers", "serial": "layers",
    "Loss": "losses",
    "cnn": "models", "linear": "models", "mlp": "models", "transformer": "models",
    "Optimizer": "optim", "apply_updates": "optim",
    "TrainState": "train", "fit": "train", "sweep": "train",
}
"""The names ``gdlab`` re-exports, and the submodule each comes from."""

__all__ = sorted(set(_NAMES) | {
    "backprop", "checkpoint", "data", "descent", "gradcheck", "layers", "losses", "models",
    "optim", "parallel", "theory", "tolerances", "train"})


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"gdlab.{name}")
    elif name in _NAMES:
        module = getattr(importlib.import_module(f"gdlab.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module 'gdlab' has no attribute {name!r}")
    globals()[name] = module  # the next lookup finds it without coming here
    return module


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_NAMES))
