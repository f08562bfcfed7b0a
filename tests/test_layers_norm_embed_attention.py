"""batch_norm, embedding, positional_embedding, multi_head_attention, transformer_block.

Every hand-written backward is checked against ``jax.vjp`` of the layer's own
forward; forwards are checked against flax where flax has the same layer.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose

from gdlab.layers.attention import multi_head_attention, transformer_block
from gdlab.layers.embedding import embedding, positional_embedding
from gdlab.layers.normalization import batch_norm, layer_norm

DTYPES = [jnp.float64, jnp.float32]
DTYPE_IDS = ["float64", "float32"]
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)

BN_SHAPES = [(4, 3), (3, 2, 2, 3), (4, 5, 3)]  # (N, D), (N, H, W, C), (N, T, D)


# ----------------------------------------------------------------------------- helpers


# Speed: on the CPU every eager jax op compiles once per shape and dtype, which would
# dominate this file's run time. So test data is drawn and shifted in NumPy, and the
# computations under test run inside one jax.jit each.


def _rng(key, salt=0):
    """A NumPy generator seeded by a PRNG key (and a salt)."""
    return np.random.default_rng([*(int(v) for v in np.asarray(key).ravel()), salt])


def _normal(key, shape, dtype, *, salt=0, loc=0.0, scale=1.0):
    """N(loc, scale²) samples, drawn by NumPy."""
    return jnp.asarray(loc + scale * _rng(key, salt).standard_normal(shape), dtype)


def _perturb(tree, key, scale=0.5):
    """Every leaf plus N(0, scale²) noise: non-zero biases, non-unit scales."""
    rng = _rng(key, 99)
    return jax.tree.map(
        lambda leaf: jnp.asarray(np.asarray(leaf) + scale * rng.standard_normal(leaf.shape),
                                 leaf.dtype), tree)


def _vjp_reference(layer, params, state, x, dy, **kw):
    """(dparams, dx) by jax.vjp of the layer's own forward (dx None for integer x)."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        _, pull = jax.vjp(lambda p: layer.forward(p, state, x, **kw)[0], params)
        return pull(dy)[0], None
    _, pull = jax.vjp(lambda p, xx: layer.forward(p, state, xx, **kw)[0], params, x)
    return pull(dy)


def _manual(layer, params, state, x, dy, **kw):
    y, new_state, res = layer.forward(params, state, x, **kw)
    dparams, dx = layer.backward(params, res, dy)
    return y, new_state, res, dparams, dx


def _check_backward(layer, params, state, x, dy, dtype, modes=None, **kw):
    """Manual backward against jax.vjp, both inside one jit (one compilation instead of
    one per eager op); the residuals are checked to be arrays while tracing.

    ``modes`` ({name: forward kwargs}) checks several forward modes in one compilation.
    """
    modes = {"": kw} if modes is None else modes

    def both(params, x, dy):
        out = {}
        for name, mode_kw in modes.items():
            _, _, res, dparams, dx = _manual(layer, params, state, x, dy, **mode_kw)
            leaves = jax.tree_util.tree_leaves(res)
            assert all(isinstance(leaf, jax.Array) for leaf in leaves), (name, jax.tree.map(type, res))
            out[name] = (dparams, dx), _vjp_reference(layer, params, state, x, dy, **mode_kw)
        return out

    for name, ((dparams, dx), (ref_dparams, ref_dx)) in jax.jit(both)(params, x, dy).items():
        try:
            assert_tree_allclose(dparams, ref_dparams, dtype=dtype)
            if ref_dx is None:
                assert dx is None
            else:
                assert dx.shape == x.shape and dx.dtype == x.dtype
                assert_tree_allclose(dx, ref_dx, dtype=dtype)
        except AssertionError as err:
            raise AssertionError(f"mode {name!r}: {err}") from err


def _bn_setup(key, shape, dtype, eval_state=True):
    layer = batch_norm(momentum=0.8, eps=1e-3, dtype=dtype)
    _, params, state = layer.init(key, shape[1:])
    params = _perturb(params, key)
    if eval_state:  # a non-trivial running mean/var
        c = shape[-1]
        state = {"mean": _normal(key, (c,), dtype, salt=1),
                 "var": jnp.asarray(np.exp(_rng(key, 2).standard_normal(c)), dtype)}
    x = _normal(key, shape, dtype, salt=3, loc=1.5, scale=2.0)
    dy = _normal(key, shape, dtype, salt=4)
    return layer, params, state, x, dy


BN_WEIGHTS = {
    "none": None,
    "with_zeros": np.array([1.0, 0.0, 2.5, 0.0]),
    "positive": np.array([0.5, 2.0, 1.0, 3.0]),
}


# ----------------------------------------------------------------------------- batch norm


@dtypes
@pytest.mark.parametrize("shape", BN_SHAPES, ids=["ND", "NHWC", "NTD"])
def test_batch_norm_backward_matches_vjp(key, dtype, shape):
    """Training with each kind of weights, and evaluation (which ignores them)."""
    layer, params, state, x, dy = _bn_setup(key, shape, dtype)
    modes = {f"train-{name}": {"train": True,
                               "weights": None if w is None else jnp.asarray(w[: shape[0]], dtype)}
             for name, w in BN_WEIGHTS.items()}
    modes["eval"] = {"train": False}
    _check_backward(layer, params, state, x, dy, dtype, modes=modes)


@dtypes
@pytest.mark.parametrize("shape", BN_SHAPES, ids=["ND", "NHWC", "NTD"])
def test_batch_norm_matches_flax(key, dtype, shape):
    """Outputs and updated statistics against flax.linen.BatchNorm: training, training
    with padded rows (weight 0 here, ``mask`` there), and evaluation."""
    layer, params, state, x, _ = _bn_setup(key, shape, dtype)
    keep = BN_WEIGHTS["with_zeros"][: shape[0]] > 0
    mask = jnp.asarray(np.broadcast_to(keep.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape))
    variables = {"params": {"scale": params["scale"], "bias": params["shift"]},
                 "batch_stats": {"mean": state["mean"], "var": state["var"]}}
    modes = {"train": (True, False), "train-masked": (True, True), "eval": (False, False)}

    def flax_bn(train):
        return nn.BatchNorm(use_running_average=not train, momentum=0.8, epsilon=1e-3,
                            dtype=dtype, param_dtype=dtype, use_fast_variance=False,
                            force_float32_reductions=False)

    @jax.jit
    def both(x):
        out = {}
        for name, (train, padded) in modes.items():
            weights = jnp.asarray(keep, dtype) if padded else None
            y, new_state, _ = layer.forward(params, state, x, train=train, weights=weights)
            ref = flax_bn(train).apply(variables, x, mask=mask if padded else None,
                                       mutable=["batch_stats"])
            out[name] = (y, new_state), ref
        return out

    for name, ((y, new_state), (y_ref, updates)) in both(x).items():
        train, padded = modes[name]
        if padded:  # flax leaves the masked rows' outputs as they come: compare the real rows
            y, y_ref = np.asarray(y)[keep], np.asarray(y_ref)[keep]
        stats = updates["batch_stats"]
        try:
            assert_tree_allclose(y, y_ref, dtype=dtype)
            assert_tree_allclose(new_state, {"mean": stats["mean"], "var": stats["var"]},
                                 dtype=dtype)
        except AssertionError as err:
            raise AssertionError(f"mode {name!r}: {err}") from err
        if not train:  # evaluation leaves the state as it was
            for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert new_state["mean"].dtype == dtype and new_state["var"].dtype == dtype


@dtypes
@pytest.mark.parametrize("shape", BN_SHAPES, ids=["ND", "NHWC", "NTD"])
def test_batch_norm_eval_examples_independent(key, dtype, shape):
    layer, params, state, x, _ = _bn_setup(key, shape, dtype)
    other = jnp.concatenate([x[:1], _normal(key, x[1:].shape, dtype, salt=7, scale=100.0)])

    @jax.jit
    def outputs(x):
        return (layer.forward(params, state, x, train=False)[0],
                layer.forward(params, state, x, train=True)[0])

    (y1, t1), (y2, t2) = outputs(x), outputs(other)
    np.testing.assert_array_equal(np.asarray(y1[0]), np.asarray(y2[0]))
    # ... while in training mode the other examples do move example 0.
    assert not np.allclose(np.asarray(t1[0]), np.asarray(t2[0]))


@dtypes
@pytest.mark.parametrize("shape", BN_SHAPES, ids=["ND", "NHWC", "NTD"])
def test_batch_norm_padding_is_ignored(key, dtype, shape):
    """Weight-0 rows change neither the statistics, the real rows' outputs, the new
    running statistics, nor (their dy being 0) the gradients of the real rows."""
    layer, params, state, x, dy = _bn_setup(key, shape, dtype)
    real = x.shape[0] - 2
    x_pad = np.asarray(x).copy()
    x_pad[real:] = 1e3 * _rng(key, 5).standard_normal((2, *x.shape[1:]))
    dy_pad = np.asarray(dy).copy()
    dy_pad[real:] = 0.0
    w = jnp.asarray([1.0] * real + [0.0, 0.0], dtype)

    @jax.jit
    def both(x_pad, dy_pad, x, dy):
        padded = _manual(layer, params, state, x_pad, dy_pad, train=True, weights=w)
        unpadded = _manual(layer, params, state, x, dy, train=True)
        return padded[:2] + padded[3:], unpadded[:2] + unpadded[3:]

    (y_p, s_p, dp_p, dx_p), (y_r, s_r, dp_r, dx_r) = both(
        jnp.asarray(x_pad, dtype), jnp.asarray(dy_pad, dtype), x[:real], dy[:real])
    assert_tree_allclose(y_p[:real], y_r, dtype=dtype)
    assert_tree_allclose(s_p, s_r, dtype=dtype)
    assert_tree_allclose(dp_p, dp_r, dtype=dtype)
    assert_tree_allclose(dx_p[:real], dx_r, dtype=dtype)


@dtypes
def test_batch_norm_integer_weights_repeat_examples(key, dtype):
    """Weight 2 on an example gives the statistics of that example taken twice."""
    layer, params, state, x, _ = _bn_setup(key, (3, 2, 3), dtype)

    @jax.jit
    def both(x):
        y_w, s_w, _ = layer.forward(params, state, x, train=True, weights=jnp.asarray([2, 1, 1]))
        y_rep, s_rep, _ = layer.forward(params, state, jnp.concatenate([x[:1], x]), train=True)
        return (y_w, s_w), (y_rep, s_rep)

    (y_w, s_w), (y_rep, s_rep) = both(x)
    assert_tree_allclose(y_w, y_rep[1:], dtype=dtype)
    assert_tree_allclose(s_w, s_rep, dtype=dtype)


def test_batch_norm_init_and_rank():
    layer = batch_norm()
    out_shape, params, state = layer.init(jax.random.PRNGKey(0), (4, 4, 3))
    assert out_shape == (4, 4, 3)
    assert jax.tree.map(jnp.shape, params) == {"scale": (3,), "shift": (3,)}
    np.testing.assert_array_equal(state["mean"], 0.0)
    np.testing.assert_array_equal(state["var"], 1.0)
    with pytest.raises(ValueError, match="rank"):
        layer.forward(params, state, jnp.ones((3,)), train=True)


# ----------------------------------------------------------------------------- embeddings


def _ids(key, shape, vocab, salt=0):
    ids = _rng(key, salt).integers(0, vocab, shape)
    ids[0, :3] = 1  # repeated ids, surely
    return jnp.asarray(ids, jnp.int32)


@dtypes
def test_embedding_forward_and_backward(key, dtype):
    vocab, feats, b, t = 5, 3, 3, 4
    layer = embedding(vocab, feats, dtype=dtype)
    out_shape, params, state = layer.init(key, (t,))
    assert out_shape == (t, feats) and params["table"].shape == (vocab, feats)
    assert params["table"].dtype == dtype and state == {}
    ids = _ids(key, (b, t), vocab)
    y, _, res = layer.forward(params, state, ids)
    table = np.asarray(params["table"])
    np.testing.assert_array_equal(np.asarray(y), table[np.asarray(ids)])

    dy = _normal(key, (b, t, feats), dtype, salt=1)
    dparams, dx = layer.backward(params, res, dy)
    assert dx is None
    expected = np.zeros_like(table)
    for i in range(b):
        for j in range(t):
            expected[int(ids[i, j])] += np.asarray(dy[i, j])
    assert_tree_allclose(dparams["table"], expected, dtype=dtype)
    _check_backward(layer, params, state, ids, dy, dtype)


@dtypes
def test_embedding_out_of_range_is_nan(key, dtype):
    layer = embedding(4, 2, dtype=dtype)
    _, params, state = layer.init(key, (3,))
    ids = jnp.asarray([[0, 4, 1], [7, 2, -5]])
    y = np.asarray(layer.forward(params, state, ids)[0])
    bad = np.array([[False, True, False], [True, False, True]])
    assert np.isnan(y[bad]).all()
    assert np.isfinite(y[~bad]).all()
    # Out-of-range rows contribute no gradient, as in jax.vjp of the fill-mode gather.
    dy = jnp.ones((2, 3, 2), dtype)
    _check_backward(layer, params, state, ids, dy, dtype)


@pytest.mark.parametrize("ids", [np.array([[0.0, 1.0, 2.0]], np.float32),
                                 np.array([[0.0, 1.5, 2.0]]), np.array([[True, False, True]])],
                         ids=["float32", "float64", "bool"])
def test_embedding_refuses_ids_that_are_not_integers(key, ids):
    """Token ids of another dtype are one ValueError naming the layer, eagerly and under jit,
    and so is a transformer (or ``fit``) given them."""
    from gdlab import losses, models, optim, train

    layer = embedding(4, 2)
    _, params, state = layer.init(key, (3,))
    needle = rf"embedding\(4, 2\) takes integer token ids, got dtype {ids.dtype}"
    with pytest.raises(ValueError, match=needle):
        layer.forward(params, state, ids)
    with pytest.raises(ValueError, match=needle):
        jax.jit(lambda x: layer.forward(params, state, x)[0])(ids)
    model = models.transformer(4, 4, max_len=3, width=8, depth=1, num_heads=2)
    x = np.repeat(ids, 8, axis=0)
    with pytest.raises(ValueError, match=r"embedding\(4, 8\) takes integer token ids"):
        train.fit(model, losses.get("xent"), optim.adam(0.01), (x, np.zeros((8, 3), np.int32)),
                  epochs=1, batch_size=4, key=key)


def test_embedding_gradient_of_a_frequent_id_in_bfloat16(key):
    """A bfloat16 table's gradient sums its rows in float32: one id met 4096 times with
    dy = 0.01 gets 40.96 (to bfloat16 rounding), where a bfloat16 running sum stalls at 4."""
    layer = embedding(4, 2, dtype=jnp.bfloat16)
    _, params, state = layer.init(key, (64,))
    ids = jnp.zeros((64, 64), jnp.int32)
    dy = jnp.full((64, 64, 2), 0.01, jnp.bfloat16)

    @jax.jit
    def table_grad(params, dy):
        _, _, res = layer.forward(params, state, ids)
        return layer.backward(params, res, dy)[0]["table"]

    dtable = np.asarray(table_grad(params, dy), np.float64)
    expected = 4096 * float(jnp.asarray(0.01, jnp.bfloat16))
    np.testing.assert_allclose(dtable[0], [expected, expected], rtol=2.0**-8)
    np.testing.assert_array_equal(dtable[1:], 0.0)


def test_embedding_default_stddev():
    layer = embedding(2000, 16)
    table = layer.init(jax.random.PRNGKey(1), (1,))[1]["table"]
    assert abs(float(jnp.std(table)) - 0.25) < 0.01


@dtypes
def test_positional_embedding(key, dtype):
    layer = positional_embedding(7, dtype=dtype)
    out_shape, params, state = layer.init(key, (5, 3))
    assert out_shape == (5, 3) and params["table"].shape == (7, 3)
    params = _perturb(params, key)
    x = _normal(key, (2, 5, 3), dtype, salt=1)
    y, _, res = layer.forward(params, state, x)
    assert_tree_allclose(y, x + params["table"][:5], dtype=dtype)
    dy = _normal(key, x.shape, dtype, salt=2)
    dparams, dx = layer.backward(params, res, dy)
    np.testing.assert_array_equal(np.asarray(dparams["table"][5:]), 0.0)
    assert_tree_allclose(dx, dy, dtype=dtype)
    _check_backward(layer, params, state, x, dy, dtype)


def test_positional_embedding_init_errors():
    layer = positional_embedding(4)
    with pytest.raises(ValueError, match="length 5"):
        layer.init(jax.random.PRNGKey(0), (5, 2))
    with pytest.raises(ValueError, match=r"\(T, D\)"):
        layer.init(jax.random.PRNGKey(0), (4,))


# ----------------------------------------------------------------------------- attention


def _attn_setup(key, dtype, heads=2, causal=False, shape=(3, 5, 8)):
    layer = multi_head_attention(heads, causal=causal, dtype=dtype)
    _, params, state = layer.init(key, shape[1:])
    params = _perturb(params, key, scale=0.3)  # non-zero biases
    x = _normal(key, shape, dtype, salt=1)
    dy = _normal(key, shape, dtype, salt=2)
    return layer, params, state, x, dy


@pytest.mark.parametrize(("dtype", "causal", "heads"), [
    (jnp.float64, False, 2), (jnp.float64, True, 4), (jnp.float32, False, 1), (jnp.float32, True, 2)],
    ids=["float64-full-2", "float64-causal-4", "float32-full-1", "float32-causal-2"])
def test_attention_backward_matches_vjp(key, dtype, causal, heads):
    layer, params, state, x, dy = _attn_setup(key, dtype, heads, causal)
    _check_backward(layer, params, state, x, dy, dtype)


@dtypes
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_matches_flax(key, dtype, causal):
    heads = 2
    layer, params, state, x, _ = _attn_setup(key, dtype, heads, causal)
    b, t, d = x.shape
    dh = d // heads
    flax_params = {  # flax's key has a bias: zero, as ours has none
        name: {"kernel": params[name]["w"].reshape(d, heads, dh),
               "bias": params[name].get("b", jnp.zeros(d, dtype)).reshape(heads, dh)}
        for name in ("query", "key", "value")
    }
    flax_params["out"] = {"kernel": params["out"]["w"].reshape(heads, dh, d),
                          "bias": params["out"]["b"]}
    module = nn.MultiHeadDotProductAttention(num_heads=heads, qkv_features=d, out_features=d,
                                             dtype=dtype, param_dtype=dtype, deterministic=True)
    mask = nn.make_causal_mask(jnp.ones((b, t))) if causal else None
    y, y_ref = jax.jit(lambda x: (layer.forward(params, state, x)[0],
                                  module.apply({"params": flax_params}, x, mask=mask)))(x)
    assert_tree_allclose(y, y_ref, dtype=dtype)


@dtypes
def test_attention_causal_ignores_the_future(key, dtype):
    layer, params, state, x, _ = _attn_setup(key, dtype, causal=True)
    fwd = jax.jit(lambda xx: layer.forward(params, state, xx)[0])
    y = fwd(x)
    for t in range(x.shape[1] - 1):
        changed = np.asarray(x).copy()
        changed[:, t + 1:] = _rng(key, 10 + t).standard_normal(changed[:, t + 1:].shape)
        y2 = fwd(jnp.asarray(changed, dtype))
        np.testing.assert_array_equal(np.asarray(y[:, :t + 1]), np.asarray(y2[:, :t + 1]))
        assert not np.allclose(np.asarray(y[:, t + 1:]), np.asarray(y2[:, t + 1:]))
    # Not causal: the first position sees the last token.
    full, fparams, _, _, _ = _attn_setup(key, dtype, causal=False)
    fwd = jax.jit(lambda xx: full.forward(fparams, state, xx)[0])
    changed = np.asarray(x).copy()
    changed[:, -1] += 1.0
    y, y2 = fwd(x), fwd(jnp.asarray(changed, dtype))
    assert not np.allclose(np.asarray(y[:, 0]), np.asarray(y2[:, 0]))


def test_attention_init_errors():
    with pytest.raises(ValueError, match="divisible"):
        multi_head_attention(3).init(jax.random.PRNGKey(0), (4, 8))
    with pytest.raises(ValueError, match=r"\(T, D\)"):
        multi_head_attention(2).init(jax.random.PRNGKey(0), (8,))
    layer = multi_head_attention(2)
    out_shape, params, state = layer.init(jax.random.PRNGKey(0), (4, 8))
    assert out_shape == (4, 8) and state == {}
    assert jax.tree.map(jnp.shape, params) == {
        "query": {"w": (8, 8), "b": (8,)}, "key": {"w": (8, 8)},
        "value": {"w": (8, 8), "b": (8,)}, "out": {"w": (8, 8), "b": (8,)}}
    np.testing.assert_array_equal(params["query"]["b"], 0.0)
    np.testing.assert_array_equal(params["value"]["b"], 0.0)
    np.testing.assert_array_equal(params["out"]["b"], 0.0)


def _block_setup(key, dtype, causal):
    layer = transformer_block(8, 2, mlp_ratio=2, causal=causal, dtype=dtype)
    _, params, state = layer.init(key, (4, 8))
    params = _perturb(params, key, scale=0.2)
    x = _normal(key, (2, 4, 8), dtype, salt=1)
    dy = _normal(key, x.shape, dtype, salt=2)
    return layer, params, state, x, dy


@pytest.mark.parametrize(("dtype", "causal"), [(jnp.float64, True), (jnp.float32, False)],
                         ids=["float64-causal", "float32-full"])
def test_transformer_block_backward_matches_vjp(key, dtype, causal):
    layer, params, state, x, dy = _block_setup(key, dtype, causal)
    _check_backward(layer, params, state, x, dy, dtype)


def test_transformer_block_paths_and_name(key):
    layer = transformer_block(8, 2, causal=True)
    assert layer.name == "transformer_block(8, 2 heads, causal)"
    assert transformer_block(8, 2).name == "transformer_block(8, 2 heads)"
    _, params, _ = jax.eval_shape(lambda k: layer.init(k, (4, 8)), key)
    paths = [jax.tree_util.keystr(p, simple=True, separator="/")
             for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    assert all("body" in p for p in paths)
    assert "layers/0/body/layers/1/query/w" in paths
    assert "layers/1/body/layers/1/w" in paths and "layers/1/body/layers/3/b" in paths
    assert params["layers"][1]["body"]["layers"][1]["w"].shape == (8, 32)
    with pytest.raises(ValueError, match="shape"):
        layer.init(key, (4, 6))


# ----------------------------------------------------------------------------- jit, vmap, custom_vjp


def _case(name, key, dtype):
    """(layer, params, state, x, dy, forward kwargs) for the transformation tests."""
    if name.startswith("batch_norm"):
        layer, params, state, x, dy = _bn_setup(key, (4, 2, 3), dtype)
        if name == "batch_norm_eval":
            return layer, params, state, x, dy, {"train": False}
        return layer, params, state, x, dy, {"train": True,
                                             "weights": jnp.asarray([1.0, 0.0, 2.0, 0.5], dtype)}
    if name == "embedding":
        layer = embedding(6, 3, dtype=dtype)
        _, params, state = layer.init(key, (4,))
        ids = _ids(key, (3, 4), 6, salt=1)
        return layer, params, state, ids, _normal(key, (3, 4, 3), dtype, salt=2), {}
    if name == "positional_embedding":
        layer = positional_embedding(6, dtype=dtype)
        _, params, state = layer.init(key, (4, 3))
        x = _normal(key, (2, 4, 3), dtype, salt=1)
        return layer, params, state, x, _normal(key, x.shape, dtype, salt=2), {}
    if name == "attention_causal":
        return (*_attn_setup(key, dtype, causal=True, shape=(2, 4, 8)), {})
    if name == "transformer_block":
        return (*_block_setup(key, dtype, causal=False), {})
    raise AssertionError(name)


CASES = ["batch_norm_train", "batch_norm_eval", "embedding", "positional_embedding",
         "attention_causal", "transformer_block"]


def _loose(dtype):
    """Two differently compiled programs: XLA may fuse and reorder float32 sums, so
    allow a few ulps more in absolute terms than the analytic tolerance."""
    return {"dtype": dtype, "atol": 1e-5} if dtype == jnp.float32 else {"dtype": dtype}


def _fwd_bwd(layer, kw):
    def run(params, state, x, dy, weights):
        kwargs = dict(kw, weights=weights) if weights is not None else kw
        y, new_state, res = layer.forward(params, state, x, **kwargs)
        dparams, dx = layer.backward(params, res, dy)
        return y, new_state, dparams, dx
    return run


@dtypes
@pytest.mark.parametrize("name", CASES)
def test_jit_and_vmap(key, dtype, name):
    layer, params, state, x, dy, kw = _case(name, key, dtype)
    weights = kw.pop("weights", None)
    run = jax.jit(_fwd_bwd(layer, kw))  # jitted here; the vjp checks above run jitted too

    # vmap over an extra leading axis of two batches (the second one a perturbed copy).
    x, dy = np.asarray(x), np.asarray(dy)
    x2 = (x + 1) % 6 if np.issubdtype(x.dtype, np.integer) else (
        x + _rng(key, 11).standard_normal(x.shape))
    xs = jnp.asarray(np.stack([x, x2]), x.dtype)
    dys = jnp.asarray(np.stack([dy, 0.5 * dy]), dtype)
    ws = None if weights is None else jnp.asarray(np.stack([weights, weights[::-1]]), dtype)
    w_axis = None if ws is None else 0
    vmapped = jax.jit(jax.vmap(run, in_axes=(None, None, 0, 0, w_axis)))(params, state, xs, dys, ws)
    # a loop over the same two batches, one call each
    looped = [run(params, state, xs[i], dys[i], None if ws is None else ws[i]) for i in range(2)]
    stacked = jax.tree.map(lambda *a: np.stack(a), *looped)
    assert_tree_allclose(vmapped, stacked, **_loose(dtype))


@pytest.mark.parametrize("name", CASES)
def test_residuals_pass_through_custom_vjp(key, name):
    """Wrapped as a jax.custom_vjp, the manual backward is what jax.grad uses: the
    residuals are a pytree of arrays that custom_vjp, and jit around it, accept.
    (The structure does not depend on the dtype: float64 only.)"""
    dtype = jnp.float64
    layer, params, state, x, dy, kw = _case(name, key, dtype)

    @jax.custom_vjp
    def f(p, xx):
        return layer.forward(p, state, xx, **kw)[0]

    def f_fwd(p, xx):
        y, _, res = layer.forward(p, state, xx, **kw)
        return y, (p, res)

    def f_bwd(saved, g):
        p, res = saved
        return layer.backward(p, res, g)

    f.defvjp(f_fwd, f_bwd)

    if jnp.issubdtype(x.dtype, jnp.integer):  # ids: differentiate the params only
        grads = jax.jit(jax.grad(lambda p: jnp.sum(f(p, x) * dy)))(params)
        ref = jax.jit(lambda p: _vjp_reference(layer, p, state, x, dy, **kw)[0])(params)
    else:
        grads = jax.jit(jax.grad(lambda p, xx: jnp.sum(f(p, xx) * dy), argnums=(0, 1)))(params, x)
        ref = jax.jit(lambda p, xx: _vjp_reference(layer, p, state, xx, dy, **kw))(params, x)
    assert_tree_allclose(grads, ref, **_loose(dtype))


@pytest.mark.parametrize("build, needle", [
    (lambda: batch_norm(momentum=1.5), r"momentum, the share .* must lie in \[0, 1\]"),
    (lambda: batch_norm(momentum=-1), r"must lie in \[0, 1\]"),
    (lambda: batch_norm(eps=-1.0), "batch_norm eps must be a finite number > 0"),
    (lambda: batch_norm(eps=0.0), "batch_norm eps must be a finite number > 0"),
    (lambda: layer_norm(eps=-1.0), "layer_norm eps must be a finite number > 0"),
    (lambda: transformer_block(4, 2, mlp_ratio=0), "transformer_block mlp_ratio must be at least 1"),
    (lambda: multi_head_attention(2.5), "multi_head_attention num_heads must be an int"),
    (lambda: embedding(2.5, 3), "embedding vocab_size must be an int, got 2.5"),
    (lambda: embedding(True, 3), "embedding vocab_size must be an int, got True"),
    (lambda: embedding(5, 0), "embedding features must be at least 1, got 0"),
    (lambda: positional_embedding(2.5), "positional_embedding max_len must be an int"),
])
def test_normalisation_and_attention_refuse_settings_that_wreck_them(build, needle):
    """momentum outside [0, 1] drives the running statistics away (1.5: a mean of −4942 for
    data of mean 1 in 20 steps); ε ≤ 0 puts a non-positive number under a square root."""
    with pytest.raises(ValueError, match=needle):
        build()
    batch_norm(momentum=0.0), batch_norm(momentum=1.0), layer_norm(eps=np.float32(1e-5))


@pytest.mark.parametrize(("state_dtype", "x_dtype"),
                         [(jnp.float32, jnp.float64), (jnp.bfloat16, jnp.float32)],
                         ids=["f32-state-f64-x", "bf16-state-f32-x"])
def test_batch_norm_running_statistics_keep_their_dtype(state_dtype, x_dtype):
    """The running statistics are a jit/scan carry: the new state keeps the layer's dtype
    whatever the input's (wider float64 data into a float32 model, or the reverse), and
    holds m·old + (1 − m)·batch statistic."""
    layer = batch_norm(momentum=0.75, dtype=state_dtype)
    _, params, state = layer.init(jax.random.PRNGKey(0), (3,))
    x = np.random.default_rng(0).standard_normal((5, 3)) * 2.0 + 1.0
    _, new_state, _ = jax.jit(lambda x: layer.forward(params, state, x, train=True))(
        jnp.asarray(x, x_dtype))
    assert {k: v.dtype for k, v in new_state.items()} == {"mean": jnp.dtype(state_dtype),
                                                         "var": jnp.dtype(state_dtype)}
    rtol = 1e-2 if state_dtype == jnp.bfloat16 else 1e-6
    np.testing.assert_allclose(np.asarray(new_state["mean"], np.float64), 0.25 * x.mean(0),
                               rtol=rtol)
    np.testing.assert_allclose(np.asarray(new_state["var"], np.float64),
                               0.75 + 0.25 * x.var(0), rtol=rtol)


@pytest.mark.parametrize("causal", ["no", "False", 0, None])
def test_attention_causal_must_be_a_bool(causal):
    """A string such as "no" is truthy: it used to build a causal model without a word."""
    from gdlab import models

    with pytest.raises(ValueError, match=r"causal must be True or False, got"):
        multi_head_attention(2, causal=causal)
    with pytest.raises(ValueError, match=r"causal must be True or False, got"):
        models.transformer(5, 5, max_len=4, width=8, depth=1, num_heads=2, causal=causal)
