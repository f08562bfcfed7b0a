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
from gdlab.layers.base import Layer, apply, init_shapes, parallel, residual, serial, stateless
from gdlab.layers.attention import multi_head_attention, transformer_block
from gdlab.layers.conv import conv2d
from gdlab.layers.dense import dense
from gdlab.layers.dropout import dropout
from gdlab.layers.embedding import embedding, positional_embedding
from gdlab.layers.normalization import batch_norm, layer_norm
from gdlab.layers.pooling import avg_pool, global_avg_pool, max_pool
from gdlab.layers.reshape import flatten

__all__ = [
    "ACTIVATIONS", "Layer", "activation", "apply", "avg_pool", "batch_norm", "conv2d", "dense",
    "dropout", "elu", "embedding", "flatten", "gelu", "global_avg_pool", "identity",
    "init_shapes", "initializers", "layer_norm", "leaky_relu", "max_pool",
    "multi_head_attention", "parallel", "positional_embedding", "relu", "residual", "serial",
    "sigmoid", "softmax", "softplus", "stateless", "tanh", "transformer_block",
]
