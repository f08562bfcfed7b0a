"""The dense (affine) layer: y = x·W + b."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gdlab.layers import initializers
from gdlab.layers._windows import positive_int
from gdlab.layers.base import Layer, feature_axis


def dense(out_dim: int, *, w_init="glorot_uniform", dtype=jnp.float32) -> Layer:
    """An affine layer with ``params = {"w": (D_in, D_out), "b": (D_out,)}``.

    ``w_init`` names an initialiser (see ``gdlab.layers.initializers``) or is
    one; the bias starts at zero. ``x`` may have any leading axes: ``(..., D_in)``.
    """
    out_dim = positive_int(out_dim, "dense out_dim")
    w_init = initializers.get(w_init)

    def init(key, in_shape):
        in_dim = feature_axis(f"dense({out_dim})", in_shape)
        w = w_init(key, (in_dim, out_dim), dtype)
        return (*in_shape[:-1], out_dim), {"w": w, "b": jnp.zeros((out_dim,), dtype)}, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del key, train, weights
        return x @ params["w"] + params["b"], state, x  # keep x: ∂y/∂W needs it

    def backward(params, x, dy):
        """dW = xᵀ·dy,  db = Σ_batch dy,  dx = dy·Wᵀ."""
        d_in, d_out = params["w"].shape
        x2 = x.reshape(-1, d_in)    # (B, D_in), leading axes folded into B
        dy2 = dy.reshape(-1, d_out)  # (B, D_out)
        dw = weight_grad(x2, dy2)    # (D_in, D_out): x2ᵀ·dy2
        db = dy2.sum(axis=0)         # (D_out,)
        dx = dy @ params["w"].T      # (..., D_in)
        return {"w": dw, "b": db}, dx

    return Layer(init, forward, backward, f"dense({out_dim})")


TRANSPOSE_MIN_ELEMENTS = 1 << 22
"""``weight_grad`` lays xᵀ and dyᵀ out in memory first when x and dy both hold at least this
many float32 elements on a GPU (a 1024 × 4096 batch, as the large benchmark MLP's)."""


def weight_grad(x2, dy2):
    """``x2ᵀ·dy2``: a weight's gradient, summed over the batch axis (axis 0 of both).

    Both operands have the summed axis first in memory. On a GPU, a float32 gemm (TF32 on
    its tensor cores) reads such operands slowly: Hopper's TF32 tensor-core instructions
    take only operands whose summed axis is the minor one. On an H200, 1024 × 4096 × 4096
    took 155 µs (0.57 of the matmul peak) against 102 µs for the forward x·W of the same
    size, 117 µs with xᵀ already laid out row by row and 108 µs with both xᵀ and dyᵀ. XLA
    would fold a plain transpose into the gemm's operand layout, so for large float32
    operands on a GPU xᵀ and dyᵀ are written out explicitly (each flattened behind an
    optimisation barrier, which XLA can neither fold nor see through) and the gemm is
    xᵀ·(dyᵀ)ᵀ with both operands summed along their minor axis. The large MLP's step
    (4096³, B = 1024): 857 µs plain; in a later run 800 µs with xᵀ written out and 786 µs
    with both. The product is the same but for the order of its float32 sums. Small
    operands, other dtypes and the CPU keep the plain xᵀ·dy (there the copies cost more
    than they save).
    """
    if _transpose_first(x2, dy2):
        xt = _row_major_transpose(x2)    # (D_in, B)
        dyt = _row_major_transpose(dy2)  # (D_out, B)
        return jax.lax.dot_general(xt, dyt, (((1,), (1,)), ((), ())))  # Σ_b xt[i,b]·dyt[j,b]
    return x2.T @ dy2


def _row_major_transpose(a):
    """``aᵀ`` written out row by row: the flat copy behind an optimisation barrier keeps XLA
    from folding the transpose into its consumer's operand layout."""
    rows, cols = a.shape
    return jax.lax.optimization_barrier(a.T.reshape(-1)).reshape(cols, rows)


def _transpose_first(x2, dy2) -> bool:
    """Whether ``weight_grad`` writes xᵀ and dyᵀ out first: large float32 operands on a GPU."""
    return (jax.default_backend() == "gpu" and x2.dtype == jnp.float32 == dy2.dtype
            and min(x2.size, dy2.size) >= TRANSPOSE_MIN_ELEMENTS)
