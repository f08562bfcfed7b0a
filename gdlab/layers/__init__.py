"""Layers: each one ``init``/``forward``/``backward``, its backward written by hand.

See ``gdlab.layers.base`` for the convention; every backward's docstring
states its chain-rule formula.
"""

from gdlab.layers import initializers
from gdlab.layers.activations import (
    ACTIVATIONS,
    elu,
    gelu,
    identity,
    leaky_relu,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from gdlab.layers.activations import get as activation
from gdlab.layers.base import Layer, apply, serial, stateless
from gdlab.layers.dense import dense
from gdlab.layers.dropout import dropout
from gdlab.layers.normalization import layer_norm
from gdlab.layers.reshape import flatten

__all__ = [
    "ACTIVATIONS", "Layer", "activation", "apply", "dense", "dropout", "elu", "flatten",
    "gelu", "identity", "initializers", "layer_norm", "leaky_relu", "relu", "serial",
    "sigmoid", "softmax", "softplus", "stateless", "tanh",
]
