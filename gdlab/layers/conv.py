"""The 2-D convolution layer (NHWC inputs, HWIO kernel), its backward by hand.

Forward (a cross-correlation, as in every deep-learning library)::

    y[n, p, q, o] = b[o] + Σ_{i,j,c} x_pad[n, s_h·p + d_h·i, s_w·q + d_w·j, c] · W[i, j, c, o]

with strides ``s``, dilation ``d`` and, for ``feature_groups = G``, input channel ``c``
running over the group of ``o`` only. The backward is two more convolutions:

- ``dx = dy ⋆ rot180(W)`` with W's in/out channels swapped: a *transposed*
  convolution (dy dilated by the strides, the kernel spatially reversed);
- ``dW = x ⋆ dy``: a correlation of the input with the cotangent, batch and
  channel roles swapped, so the sum runs over the batch and all positions;
- ``db = Σ_{n, p, q} dy``.

The paddings of the two backward convolutions are those of JAX's own transpose rules
(``_conv_general_dilated_transpose_lhs`` / ``_rhs`` in ``jax/_src/lax/convolution.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from gdlab.layers import initializers
from gdlab.layers._windows import (
    check_image_shape,
    check_batch_fits,
    check_window_fits,
    dilated,
    normalize_padding,
    output_hw,
    padding_pairs,
    pair,
    positive_int,
)
from gdlab.layers.base import Layer
from gdlab.types import Array

_NHWC = ("NHWC", "HWIO", "NHWC")
_DW_AS_CONV = ("CHWN", "IHWO", "HWNC")
"""dW as one convolution: x with its channels as the batch and its batch as the features,
dy as the kernel (its batch the input features), the kernel's taps as the output's
positions (JAX's own transpose rule for the kernel, ``_conv_general_dilated_transpose_rhs``)."""


def conv2d(features: int, kernel_size: int | tuple[int, int], *, strides=1, padding="SAME",
           dilation=1, feature_groups: int = 1, use_bias: bool = True, w_init="he_normal",
           dtype=jnp.float32) -> Layer:
    """A 2-D convolution with ``params = {"w": (kh, kw, C_in/G, features), "b": (features,)}``.

    ``x`` is ``(B, H, W, C_in)`` and ``y`` is ``(B, H', W', features)``. ``strides`` and
    ``dilation`` (of the kernel) are an int or a pair; ``padding`` is ``"SAME"``
    (``H' = ⌈H/s⌉``), ``"VALID"``, an int (all four sides) or
    ``((top, bottom), (left, right))``. ``feature_groups = G`` splits the channels into
    G independent convolutions (G = C_in: depthwise). ``w_init`` names an initialiser
    (fan_in = kh·kw·C_in/G); the bias starts at zero. ``use_bias=False`` leaves it out
    (``params = {"w": ...}``), as before a batch norm, whose shift would cancel it.
    """
    features = positive_int(features, "features")
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(strides, "strides")
    dh, dw = pair(dilation, "dilation")
    groups = positive_int(feature_groups, "feature_groups")
    pad_spec = normalize_padding(padding)
    if features % groups:
        raise ValueError(f"conv2d needs features ({features}) divisible by feature_groups "
                         f"({groups})")
    w_init = initializers.get(w_init)
    window = (dilated(kh, dh), dilated(kw, dw))  # the dilated kernel's extent

    def pads_for(in_hw):
        return padding_pairs(pad_spec, in_hw, window, (sh, sw))

    def init(key, in_shape):
        h, w, c_in = check_image_shape("conv2d", in_shape)
        if c_in % groups:
            raise ValueError(f"conv2d needs input channels ({c_in}) divisible by "
                             f"feature_groups ({groups})")
        pads = pads_for((h, w))
        check_window_fits("conv2d", "dilated kernel", (h, w), window, pads)
        out_h, out_w = output_hw((h, w), window, (sh, sw), pads)
        params = {"w": w_init(key, (kh, kw, c_in // groups, features), dtype)}
        if use_bias:
            params["b"] = jnp.zeros((features,), dtype)
        return (out_h, out_w, features), params, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del key, train, weights
        pads = check_batch_fits("conv2d", "dilated kernel", x, window, pads_for)
        # in the inputs' and kernel's common dtype, as dense's x @ w computes (lax's
        # convolution takes only operands of one dtype: float64 images, a float32 kernel)
        x, w = _promoted(x, params["w"])
        y = lax.conv_general_dilated(x, w, (sh, sw), pads, rhs_dilation=(dh, dw),
                                     dimension_numbers=_NHWC, feature_group_count=groups)
        if use_bias:
            y = y + params["b"]
        return y, state, x  # keep x: dW = x ⋆ dy needs it

    def backward(params, x, dy):
        """dx = dy ⋆ rot180(W) (a transposed convolution, I/O swapped),
        dW[i, j] = Σ_{n,p,q} x[n, s·p + d·i, s·q + d·j]ᵀ·dy[n, p, q] (a correlation of x with
        dy: per kernel tap, or on a GPU as one convolution), db = Σ_{n,p,q} dy."""
        dy, w = _promoted(dy, params["w"])    # (kh, kw, C_in/G, C_out)
        c_out = w.shape[3]
        in_hw = x.shape[1:3]
        out_hw = dy.shape[1:3]                # dy: (B, H', W', C_out)
        pads = pads_for(in_hw)
        out_dilated = [dilated(o, s) for o, s in zip(out_hw, (sh, sw))]  # 1 + s·(H' − 1)

        dparams = {}
        if use_bias:  # db = Σ over batch and positions.
            dparams["b"] = dy.sum(axis=(0, 1, 2))  # (C_out,)

        # dx: the transposed convolution. Regroup the kernel so that group g's
        # outputs become group g's inputs: (kh, kw, C_in/G, C_out)
        # → (kh, kw, C_in/G, G, C_out/G) → (kh, kw, G, C_in/G, C_out/G)
        # → (kh, kw, C_in, C_out/G), then swap I/O → (kh, kw, C_out/G, C_in), and rotate.
        w_t = w.reshape(kh, kw, w.shape[2], groups, c_out // groups)
        w_t = w_t.transpose(0, 1, 3, 2, 4).reshape(kh, kw, -1, c_out // groups)
        w_t = w_t.transpose(0, 1, 3, 2)[::-1, ::-1]       # (kh, kw, C_out/G, C_in)
        dx_pads = []
        for n, k, o, (lo, _) in zip(in_hw, window, out_dilated, pads):
            before = k - 1 - lo
            dx_pads.append((before, n + k - 1 - o - before))
        dx = lax.conv_general_dilated(dy, w_t, (1, 1), dx_pads, lhs_dilation=(sh, sw),
                                      rhs_dilation=(dh, dw), dimension_numbers=_NHWC,
                                      feature_group_count=groups)   # (B, H, W, C_in)

        if _dw_as_one_convolution():
            d_w = weight_grad_convolution(x, dy, (kh, kw), (sh, sw), (dh, dw), pads, groups)
        else:
            d_w = weight_grad_taps(x, dy, (kh, kw), (sh, sw), (dh, dw), pads, groups)
        return {"w": d_w, **dparams}, dx

    name = f"conv2d({features}, {kh}x{kw}"
    if (sh, sw) != (1, 1):
        name += f", stride {sh}" if sh == sw else f", stride {sh}x{sw}"
    if (dh, dw) != (1, 1):
        name += f", dilation {dh}" if dh == dw else f", dilation {dh}x{dw}"
    if groups != 1:
        name += f", groups {groups}"
    if not use_bias:
        name += ", no bias"
    return Layer(init, forward, backward, name + ")")


def _dw_as_one_convolution() -> bool:
    """Whether conv2d's backward computes dW as one convolution (on a GPU, as ``jax.grad``
    does) rather than one matmul per kernel tap (elsewhere)."""
    return jax.default_backend() == "gpu"


def weight_grad_taps(x, dy, kernel, strides, dilation, pads, groups):
    """dW, the correlation of x with dy, one kernel tap (i, j) at a time. Tap (i, j) met
    input pixel (s·p + d·i, s·q + d·j) of the padded x at output (p, q), so

        dW[i, j] = Σ_{b,p,q} x_pad[b, s·p + d·i, s·q + d·j, :]ᵀ · dy[b, p, q, :],

    a (C_in/G × C_out) matmul per tap and group. (On a CPU: XLA's CPU backend runs the
    single convolution of ``weight_grad_convolution`` some 30 times slower inside a
    scanned epoch.)"""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    b, oh, ow, c_out = dy.shape
    c_in = x.shape[3]
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    dy_g = dy.reshape(b * oh * ow, groups, c_out // groups)     # (B·H'·W', G, C_out/G)
    taps = []
    for i in range(kh):
        for j in range(kw):
            start = (0, i * dh, j * dw, 0)
            stop = (b, i * dh + sh * (oh - 1) + 1, j * dw + sw * (ow - 1) + 1, c_in)
            x_tap = lax.slice(xp, start, stop, (1, sh, sw, 1))  # (B, H', W', C_in)
            x_tap = x_tap.reshape(b * oh * ow, groups, c_in // groups)
            taps.append(jnp.einsum("ngc,ngo->cgo", x_tap, dy_g))  # (C_in/G, G, C_out/G)
    return jnp.stack(taps).reshape(kh, kw, c_in // groups, c_out)  # (kh, kw, C_in/G, C_out)


def _promoted(a: Array, w: Array) -> tuple[Array, Array]:
    """``a`` and ``w`` in their common dtype (``jnp.result_type``): unchanged when they share one."""
    dtype = jnp.result_type(a, w)
    return a.astype(dtype), w.astype(dtype)


def weight_grad_convolution(x, dy, kernel, strides, dilation, pads, groups):
    """The same dW as ``weight_grad_taps``, as one convolution: x correlated with dy, the
    sum over the batch carried by the convolution's feature sum. The forward's kernel
    dilation becomes this one's stride and its stride this one's kernel dilation; the
    padding is the forward's below and, above, whatever makes kh × kw positions. With
    groups, group g of x's channels meets group g of dy's (``batch_group_count``). On a
    GPU this is one cuDNN kernel where the taps are kh·kw small gemms: on an H200 the
    small CNN's manual step with taps took 1.24× ``jax.grad``'s, which emits this."""
    window = [dilated(k, d) for k, d in zip(kernel, dilation)]
    out_dilated = [dilated(o, s) for o, s in zip(dy.shape[1:3], strides)]
    pads_dw = [(lo, (o - n) + (k - lo - 1))
               for (lo, _), o, n, k in zip(pads, out_dilated, x.shape[1:3], window)]
    return lax.conv_general_dilated(x, dy, window_strides=dilation, padding=pads_dw,
                                    rhs_dilation=strides, dimension_numbers=_DW_AS_CONV,
                                    batch_group_count=groups)  # (kh, kw, C_in/G, C_out)
