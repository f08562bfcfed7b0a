"""gdlab: how neural networks learn, made concrete.

Gradient descent decides how to move the weights, ``w_new = w_old − α · ∂J/∂w``;
backpropagation computes every ``∂J/∂w`` by applying the chain rule backwards
through the layers. Every piece here is a small pure function.

Calling conventions, stated once
--------------------------------
Parameters are pytrees of arrays: ``{"w": (D_in, D_out), "b": (D_out,)}`` for a
dense layer, ``{"layers": (p0, p1, ...)}`` for a composition.

A **layer** (``gdlab.layers``) is three functions::

    init(key, in_shape)              -> (out_shape, params)   # in_shape: one example, no batch axis
    forward(params, x, *, key=None, train=False) -> (y, residuals)
    backward(params, residuals, dy)  -> (dparams, dx)        # the chain rule, by hand

``backward`` turns ``dy = ∂J/∂y`` into ``∂J/∂params`` and ``∂J/∂x``; ``serial``
runs forwards in order and backwards in reverse. A model is a layer.

A **loss** (``gdlab.losses``) is ``forward(preds, targets, weights=None) ->
(value, residuals)`` and ``backward(residuals, g=1.0) -> dpreds``.

**Gradients** (``gdlab.backprop``): ``manual``, ``custom_vjp`` and ``autodiff``
each give ``value_and_grad(params, x, y, weights=None, *, key, train) -> (loss, grads)``.

An **optimizer** (``gdlab.optim``) is ``Optimizer(init, update)`` with
``update(grads, state, params) -> (updates, state)``, and
``apply_updates(params, updates)`` takes the step.

Randomness is explicit: PRNG keys are passed, split and consumed once.
"""

from gdlab import (
    backprop,
    data,
    descent,
    gradcheck,
    layers,
    losses,
    models,
    optim,
    theory,
    tolerances,
    train,
)
from gdlab.layers import Layer, serial
from gdlab.losses import Loss
from gdlab.models import linear, mlp
from gdlab.optim import Optimizer, apply_updates
from gdlab.train import TrainState, fit, sweep

__version__ = "0.1.0"

__all__ = [
    "Layer", "Loss", "Optimizer", "TrainState", "apply_updates", "backprop", "data",
    "descent", "fit", "gradcheck", "layers", "linear", "losses", "mlp", "models", "optim",
    "serial", "sweep", "theory", "tolerances", "train",
]
