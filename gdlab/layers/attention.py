"""Multi-head self-attention (Vaswani et al. 2017) and the pre-LN transformer block."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gdlab.layers import initializers
from gdlab.layers._windows import positive_int
from gdlab.layers.activations import gelu, softmax_backward, softmax_forward
from gdlab.layers.base import Layer, residual, serial
from gdlab.layers.dense import dense, weight_grad
from gdlab.layers.normalization import layer_norm


def _split_heads(z, num_heads):
    """(..., T, D) → (..., H, T, d_h): head h owns columns h·d_h … (h+1)·d_h − 1."""
    *lead, t, d = z.shape
    return jnp.swapaxes(z.reshape(*lead, t, num_heads, d // num_heads), -2, -3)


def _merge_heads(z):
    """(..., H, T, d_h) → (..., T, H·d_h): the inverse of ``_split_heads``."""
    z = jnp.swapaxes(z, -2, -3)  # (..., T, H, d_h)
    return z.reshape(*z.shape[:-2], z.shape[-2] * z.shape[-1])


def multi_head_attention(num_heads: int, *, causal: bool = False, w_init="glorot_uniform",
                         dtype=jnp.float32) -> Layer:
    """Multi-head scaled dot-product self-attention (Vaswani et al. 2017) on x ``(B, T, D)``.

    ``params = {"query": {"w": (D, D), "b": (D,)}, "key": {"w": (D, D)},
    "value": {"w": (D, D), "b": (D,)}, "out": {"w": (D, D), "b": (D,)}}`` (biases 0 at
    init); D must be divisible by H = ``num_heads``, d_h = D/H. The key has no bias:
    q·(k + b) adds q·b to every score of a query's row, which the softmax ignores, so
    a key bias would have a gradient of exactly 0 and never move.

    Forward:  [q k v] = x·[W_q W_k W_v] + [b_q 0 b_v] (one matmul), each split into
              heads (B, H, T, d_h);
              s = q·kᵀ/√d_h (B, H, T, T)  (``causal``: s_ts masked for s > t);
              p = softmax(s) over s;  o = p·v;  y = merge(o)·W_out + b_out.
    Backward: dW_out = oᵀ·dy, db_out = Σ dy, do = dy·W_outᵀ;
              dp = do·vᵀ, dv = pᵀ·do, ds = p ⊙ (dp − Σ_s dp ⊙ p)  (softmax; 0 where masked);
              dq = ds·k/√d_h, dk = dsᵀ·q/√d_h;
              [dW_q dW_k dW_v] = xᵀ·[dq dk dv], db_q = Σ dq, db_v = Σ dv,
              dx = [dq dk dv]·[W_q W_k W_v]ᵀ.
    Masked scores are set to the dtype's most negative finite value, so their
    probability is exactly 0 and a fully masked row could never produce NaN.
    """
    num_heads = positive_int(num_heads, "multi_head_attention num_heads")
    if not isinstance(causal, (bool, np.bool_)):  # "no" or "False" is truthy: a causal model
        raise ValueError(f"multi_head_attention causal must be True or False, got {causal!r}")
    causal = bool(causal)
    w_init = initializers.get(w_init)

    def init(key, in_shape):
        if len(in_shape) != 2:
            raise ValueError(f"multi_head_attention needs an input of shape (T, D), got {tuple(in_shape)}")
        d = in_shape[-1]
        if d % num_heads:
            raise ValueError(f"multi_head_attention: width {d} is not divisible by {num_heads} heads")
        k_q, k_k, k_v, k_out = jax.random.split(key, 4)
        params = {
            "query": {"w": w_init(k_q, (d, d), dtype), "b": jnp.zeros((d,), dtype)},
            "key": {"w": w_init(k_k, (d, d), dtype)},
            "value": {"w": w_init(k_v, (d, d), dtype), "b": jnp.zeros((d,), dtype)},
            "out": {"w": w_init(k_out, (d, d), dtype), "b": jnp.zeros((d,), dtype)},
        }
        return tuple(in_shape), params, {}

    def qkv_weights(params):
        """[W_q W_k W_v] (D, 3D) and [b_q 0 b_v] (3D,): the three projections as one matmul."""
        q, k, v = params["query"], params["key"], params["value"]
        w = jnp.concatenate([q["w"], k["w"], v["w"]], axis=1)
        return w, jnp.concatenate([q["b"], jnp.zeros_like(q["b"]), v["b"]])

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del key, train, weights
        t, d = x.shape[-2], x.shape[-1]
        scale = 1.0 / math.sqrt(d // num_heads)
        w_qkv, b_qkv = qkv_weights(params)
        qkv = x @ w_qkv + b_qkv                                      # (B, T, 3D)
        q, k, v = (_split_heads(z, num_heads) for z in jnp.split(qkv, 3, axis=-1))  # (B, H, T, d_h)
        scores = jnp.einsum("...td,...sd->...ts", q, k) * scale    # (B, H, T, T)
        if causal:
            allowed = jnp.tril(jnp.ones((t, t), dtype=bool))       # (T, T): s ≤ t
            scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)
        p = softmax_forward(scores, axis=-1)                       # (B, H, T, T)
        o = _merge_heads(jnp.einsum("...ts,...sd->...td", p, v))   # (B, T, D)
        y = o @ params["out"]["w"] + params["out"]["b"]
        return y, state, (x, q, k, v, p, o)

    def backward(params, residuals, dy):
        """dW_out = oᵀdy, do = dy·W_outᵀ, dp = do·vᵀ, dv = pᵀdo, ds = softmax_backward(p, dp),
        dq = ds·k/√d_h, dk = dsᵀ·q/√d_h, dW_{q,k,v} = xᵀ·d{q,k,v}, db_{q,v} = Σ d{q,v},
        dx = [dq dk dv]·[W_q W_k W_v]ᵀ."""
        x, q, k, v, p, o = residuals
        d = x.shape[-1]
        scale = 1.0 / math.sqrt(d // num_heads)
        # Output projection, a dense layer on o: leading axes folded into one.
        dw_out = weight_grad(o.reshape(-1, d), dy.reshape(-1, d))   # (D, D): oᵀ·dy
        db_out = dy.reshape(-1, d).sum(axis=0)                      # (D,)
        do = _split_heads(dy @ params["out"]["w"].T, num_heads)     # (B, H, T, d_h)
        # o = p·v
        dp = jnp.einsum("...td,...sd->...ts", do, v)               # (B, H, T, T)
        dv = jnp.einsum("...ts,...td->...sd", p, do)               # (B, H, T, d_h)
        # p = softmax(s); masked entries have p = 0, hence ds = 0 there.
        ds = softmax_backward(p, dp, axis=-1)                       # (B, H, T, T)
        # s = q·kᵀ·scale
        dq = jnp.einsum("...ts,...sd->...td", ds, k) * scale       # (B, H, T, d_h)
        dk = jnp.einsum("...ts,...td->...sd", ds, q) * scale       # (B, H, T, d_h)
        dqkv = jnp.concatenate([_merge_heads(dq), _merge_heads(dk), _merge_heads(dv)],
                               axis=-1)                             # (B, T, 3D)
        dw_q, dw_k, dw_v = jnp.split(_qkv_weight_grad(x, dqkv), 3, axis=1)  # xᵀ·dqkv
        db_q, _, db_v = jnp.split(dqkv.reshape(-1, 3 * d).sum(axis=0), 3)  # (D,) each
        dx = dqkv @ qkv_weights(params)[0].T                        # (B, T, D)
        return {"query": {"w": dw_q, "b": db_q}, "key": {"w": dw_k},
                "value": {"w": dw_v, "b": db_v}, "out": {"w": dw_out, "b": db_out}}, dx

    name = f"multi_head_attention({num_heads} heads{', causal' if causal else ''})"
    return Layer(init, forward, backward, name)


def _qkv_weight_grad(x, dqkv):
    """``xᵀ·dqkv`` summed over every position of every sequence: (B, T, D) and (B, T, 3D)
    folded into (B·T) rows, the dense layers' ``weight_grad``. (``scripts/profile_step.py``
    times the contraction over the two leading axes in place against it, which the GPU
    might lay out better.)"""
    d = x.shape[-1]
    return weight_grad(x.reshape(-1, d), dqkv.reshape(-1, dqkv.shape[-1]))


def transformer_block(width: int, num_heads: int, *, mlp_ratio: int = 4, causal: bool = False,
                      dtype=jnp.float32) -> Layer:
    """A pre-layer-norm transformer block (Xiong et al. 2020) on x ``(B, T, width)``:

        h = x + MHA(LN(x)),   y = h + W₂·gelu(W₁·LN(h) + b₁) + b₂

    built from ``serial``/``residual`` around existing layers, so its backward is
    theirs chained (the skip connections add dy to each body's dx). The MLP's
    hidden layer has ``mlp_ratio·width`` units (He-normal init, GELU follows);
    the projection back is Glorot-uniform. Param paths read e.g.
    ``layers/0/body/layers/1/query/w`` (attention) and ``layers/1/body/layers/3/w``.
    """
    width = positive_int(width, "transformer_block width")
    mlp_ratio = positive_int(mlp_ratio, "transformer_block mlp_ratio")
    attn = multi_head_attention(num_heads, causal=causal, dtype=dtype)
    name = f"transformer_block({width}, {num_heads} heads{', causal' if causal else ''})"
    block = serial(
        residual(serial(layer_norm(dtype=dtype), attn, name=f"serial(layer_norm, {attn.name})")),
        residual(serial(layer_norm(dtype=dtype),
                        dense(mlp_ratio * width, w_init="he_normal", dtype=dtype),
                        gelu(),
                        dense(width, dtype=dtype),
                        name=f"serial(layer_norm, mlp({mlp_ratio * width}))")),
        name=name,
    )

    def init(key, in_shape):
        if len(in_shape) != 2 or in_shape[-1] != width:
            raise ValueError(f"{name} needs an input of shape (T, {width}), got {tuple(in_shape)}")
        return block.init(key, in_shape)

    return Layer(init, block.forward, block.backward, name)
