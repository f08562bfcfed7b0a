"""Pooling layers (NHWC), their backward passes by hand.

A pooling window at output position (p, q) reads the padded input at rows
``s_h·p + i`` and columns ``s_w·q + j`` for window offsets ``0 ≤ i < k_h``,
``0 ≤ j < k_w``. For one offset (i, j), those reads form the strided slice
``x_pad[:, i::s_h, j::s_w, :]`` shaped like ``y``. The backward passes use that
view: each offset's share of ``dy`` is scattered back with ``lax.pad`` (low = the
offset, interior = stride − 1, so it lands on the rows and columns it came from),
the shares are summed, and the padding is cropped off::

    dx = crop( Σ_{i,j} pad_{i,j}( ∂y/∂x_{i,j} ⊙ dy ) )

Overlapping windows (stride < window) therefore accumulate, as the chain rule asks.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from gdlab.layers._windows import (
    check_image_shape,
    check_batch_fits,
    check_image_batch,
    check_window_fits,
    normalize_padding,
    output_hw,
    padding_pairs,
    pair,
)
from gdlab.layers.base import Layer


def _full(pads):
    """Spatial ``((top, bottom), (left, right))`` as NHWC padding for all four axes."""
    return ((0, 0), *pads, (0, 0))


def _offsets(window):
    """Window offsets (i, j) in row-major order."""
    return [(i, j) for i in range(window[0]) for j in range(window[1])]


def _offset_slice(xp, i, j, out_hw, strides):
    """``xp[:, i::s_h, j::s_w, :]`` cut to ``out_hw``: what window offset (i, j) sees."""
    (oh, ow), (sh, sw) = out_hw, strides
    b, _, _, c = xp.shape
    return lax.slice(xp, (0, i, j, 0), (b, i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1, c),
                     (1, sh, sw, 1))  # (B, H', W', C)


def _scatter_back(shares, in_hw, padded_hw, pads, strides):
    """Σ over offsets of each share, placed back on the rows/columns it was read from,
    with the padding cropped off: a ``(B, H, W, C)`` cotangent."""
    dx_pad = None
    for (i, j), share in shares:                     # share: (B, H', W', C)
        oh, ow = share.shape[1:3]
        config = ((0, 0, 0),
                  (i, padded_hw[0] - i - (strides[0] * (oh - 1) + 1), strides[0] - 1),
                  (j, padded_hw[1] - j - (strides[1] * (ow - 1) + 1), strides[1] - 1),
                  (0, 0, 0))
        placed = lax.pad(share, jnp.zeros((), share.dtype), config)  # (B, H_pad, W_pad, C)
        dx_pad = placed if dx_pad is None else dx_pad + placed
    (top, _), (left, _) = pads
    return dx_pad[:, top:top + in_hw[0], left:left + in_hw[1], :]


def _pool_layer(kind: str, window, strides, padding, reject_all_padding: bool):
    """The shared builder bookkeeping: normalised window, strides and padding, and an
    ``init`` that validates the input shape and returns the output shape."""
    window = pair(window, "window")
    strides = window if strides is None else pair(strides, "strides")
    pad_spec = normalize_padding(padding)
    if reject_all_padding and not isinstance(pad_spec, str):
        if any(lo >= k or hi >= k for (lo, hi), k in zip(pad_spec, window)):
            raise ValueError(f"{kind} needs padding smaller than the window {window}, got "
                             f"{pad_spec}: a window of padding only has no value")

    def pads_for(in_hw):
        return padding_pairs(pad_spec, in_hw, window, strides)

    def init(key, in_shape):
        del key
        h, w, c = check_image_shape(kind, in_shape)
        pads = pads_for((h, w))
        check_window_fits(kind, "window", (h, w), window, pads)
        return (*output_hw((h, w), window, strides, pads), c), {}, {}

    return window, strides, pads_for, init


def _describe(kind, window, strides, default_strides):
    name = f"{kind}({window[0]}x{window[1]}"
    if strides != default_strides:
        name += f", stride {strides[0]}" if strides[0] == strides[1] else \
            f", stride {strides[0]}x{strides[1]}"
    return name + ")"


def max_pool(window, *, strides=None, padding="VALID") -> Layer:
    """y = max over each window (padding counts as −∞); no params, state ``{}``.

    ``window``/``strides`` are an int or a pair (``strides`` defaults to ``window``);
    ``padding`` is ``"SAME"``, ``"VALID"``, an int or ``((top, bottom), (left, right))``
    and must be smaller than the window on every side.

    Backward: dx[a] = Σ_{windows w} dy[w] · [a is w's chosen maximum]. Tie rule: each
    window's gradient goes to exactly ONE element, the FIRST maximum in row-major window
    order (top row first, left to right), so an all-equal window sends all of dy to its
    top-left element. (A subgradient; JAX's autodiff of ``reduce_window`` may break ties
    differently.)
    """
    window, strides, pads_for, init = _pool_layer("max_pool", window, strides, padding, True)

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del params, key, train, weights
        # A concrete (NumPy) init value lets lax use its reduce_window_max primitive, which
        # autodiff (the tests' reference) understands; a traced one gets the generic reducer.
        pads = check_batch_fits("max_pool", "window", x, window, pads_for)
        y = lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, *window, 1),
                              (1, *strides, 1), _full(pads))
        return y, state, (x, y)  # keep x and y: find each window's maximum again

    def backward(params, residuals, dy):
        """dx = Σ_{i,j} pad_{i,j}(dy ⊙ [x_{i,j} is its window's first maximum]), cropped."""
        del params
        x, y = residuals                       # x: (B, H, W, C), y: (B, H', W', C)
        pads = pads_for(x.shape[1:3])
        xp = jnp.pad(x, _full(pads), constant_values=-jnp.inf)   # (B, H_pad, W_pad, C)
        taken = jnp.zeros(y.shape, bool)       # has this window's maximum been claimed?
        shares = []
        for i, j in _offsets(window):          # row-major: the first maximum wins
            hit = (_offset_slice(xp, i, j, y.shape[1:3], strides) == y) & ~taken
            taken = taken | hit
            shares.append(((i, j), jnp.where(hit, dy, jnp.zeros((), dy.dtype))))
        return {}, _scatter_back(shares, x.shape[1:3], xp.shape[1:3], pads, strides)

    return Layer(init, forward, backward, _describe("max_pool", window, strides, window))


def avg_pool(window, *, strides=None, padding="VALID", count_include_pad=True) -> Layer:
    """y = mean over each window; no params, state ``{}``.

    Arguments as for ``max_pool``. With ``count_include_pad`` every window divides by
    its full size k_h·k_w (padding counts as zeros); without it, by the number of real
    (unpadded) elements it covers, and the padding must then be smaller than the window.

    Backward: dx[a] = Σ_{windows w ∋ a} dy[w] / count[w].
    """
    window, strides, pads_for, init = _pool_layer("avg_pool", window, strides, padding,
                                                  not count_include_pad)

    def counts(in_hw, pads, out_hw):
        """Elements each window divides by, ``(1, H', W', 1)`` (static, numpy)."""
        if count_include_pad:
            return math.prod(window)
        per_axis = []
        for n, k, s, (lo, _), o in zip(in_hw, window, strides, pads, out_hw):
            start = np.arange(o) * s - lo   # first input index the window covers
            per_axis.append(np.minimum(start + k, n) - np.maximum(start, 0))
        return np.outer(*per_axis)[None, :, :, None]

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del params, key, train, weights
        in_hw = x.shape[1:3]
        pads = check_batch_fits("avg_pool", "window", x, window, pads_for)
        total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, (1, *window, 1),
                                  (1, *strides, 1), _full(pads))
        y = total / jnp.asarray(counts(in_hw, pads, total.shape[1:3]), x.dtype)
        # Only x's spatial shape is needed later: carry it as an empty array's shape.
        return y, state, jnp.zeros((0, *in_hw), x.dtype)

    def backward(params, residuals, dy):
        """dx = Σ_{i,j} pad_{i,j}(dy / count), cropped: each window spreads dy evenly."""
        del params
        in_hw = residuals.shape[1:3]
        pads = pads_for(in_hw)
        padded_hw = tuple(n + lo + hi for n, (lo, hi) in zip(in_hw, pads))
        share = dy / jnp.asarray(counts(in_hw, pads, dy.shape[1:3]), dy.dtype)  # (B, H', W', C)
        shares = [(offset, share) for offset in _offsets(window)]
        return {}, _scatter_back(shares, in_hw, padded_hw, pads, strides)

    name = _describe("avg_pool", window, strides, window)
    return Layer(init, forward, backward, name)


def global_avg_pool() -> Layer:
    """(B, H, W, C) → (B, C): y = mean over H and W.  dx = dy / (H·W), broadcast over H, W."""

    def init(key, in_shape):
        del key
        _, _, c = check_image_shape("global_avg_pool", in_shape)
        return (c,), {}, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del params, key, train, weights
        check_image_batch("global_avg_pool", x)
        # Only x's spatial shape is needed later: carry it as an empty array's shape.
        return x.mean(axis=(1, 2)), state, jnp.zeros((0, *x.shape[1:3]), x.dtype)

    def backward(params, residuals, dy):
        """dx[n, h, w, c] = dy[n, c] / (H·W)."""
        del params
        h, w = residuals.shape[1:3]
        b, c = dy.shape                        # (B, C)
        return {}, jnp.broadcast_to((dy / (h * w))[:, None, None, :], (b, h, w, c))

    return Layer(init, forward, backward, "global_avg_pool")
