"""gdlab against PyTorch, an independent implementation: the hand-written backward passes
against ``torch.autograd`` and the optax-free optimizers against ``torch.optim``, all in
float64, on the same weights, batch and gradients.

The reference is PyTorch, the ``peer`` extra, which CI does not install: without it this
file is skipped. To run it::

    pip install -e .[peer]
    ./scripts/test.sh tests/test_torch_reference.py

What is compared, and why it is exact. Both sides apply the same formulas in float64, so
they differ only by rounding, a few ulps per operation: every comparison asks for
``|a − b| ≤ 1e-13·(|a| + |b|) + 2e-15·max|leaf|`` (optimizers: ``1e-14`` relative), the
absolute floor scaled by the leaf's largest entry for entries that cancel to near zero
(``3e-14`` through attention, whose softmax backward cancels more: ``ATTN_ATOL``). A
wrong rule (a missing 1/B, a transposed kernel, a biased where torch is unbiased) is off
by order one. The weights are copied across with torch's layouts (a dense ``w`` is
``(in, out)`` in gdlab and ``Linear.weight`` is ``(out, in)``; conv kernels are HWIO
against OIHW, images NHWC against NCHW) and the gradients mapped back the same way.

- Models and layers: gdlab's hand-written path (``backprop.manual`` for whole models, each
  layer's ``backward`` given a random cotangent) against autograd through ``torch.nn``
  modules holding the same weights: every parameter leaf, the input's cotangent dx where
  the input is a float, the forward output or loss value, and batch norm's running mean.
- Losses: value and ∂J/∂preds, torch's ``reduction="mean"`` being gdlab's plain batch mean
  (per-example weights: Σ w_b ℓ_b / Σ w, written out on torch's ``reduction="none"``).
- Optimizers: 20 steps fed the same fixed random gradients (not computed from a loss, so
  only the update rules meet), params compared after every step, with and without weight
  decay and learning-rate schedules.

The test data come from NumPy (seeded), and each gdlab computation runs inside one
``jax.jit``, so the file stays fast.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdlab import backprop, layers, losses, models, optim
from gdlab.optim import schedules

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

F64 = torch.float64
RTOL = 1e-13
"""Relative tolerance of the gradient comparisons (both sides float64)."""
ATOL = 2e-15
"""Absolute floor, times the leaf's largest entry, for entries that cancel to near zero
(about 10 ulps of that entry)."""
ATTN_ATOL = 3e-14
"""The floor through attention. The softmax backward ds = p ⊙ (dp − Σ p ⊙ dp) subtracts
nearly equal numbers, and the key gradient dsᵀ·q sums terms much larger than itself: its
small entries keep only the rounding of those terms, so gdlab's hand-written path,
jax.grad and torch differ pairwise there (measured over 12 seeds: up to 6e-15 of the
leaf's largest entry; 1e-14 with two transformer blocks)."""
OPT_RTOL = 1e-14
"""Relative tolerance of the optimizer trajectories (params after every step)."""


# ----------------------------------------------------------------------------- helpers


def _assert_close(ours, theirs, what: str, *, rtol: float = RTOL, atol: float = ATOL) -> None:
    """``|a − b| ≤ rtol·(|a| + |b|) + atol·max(‖a‖∞, ‖b‖∞)`` element by element."""
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} against torch's {b.shape}"
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    bad = np.abs(a - b) > rtol * (np.abs(a) + np.abs(b)) + atol * scale
    if bad.any():
        i = np.unravel_index(np.argmax(bad), a.shape)
        rel = np.abs(a - b) / np.maximum(1e-300, np.abs(a) + np.abs(b))
        raise AssertionError(f"{what}: gdlab {a[i]!r} against torch {b[i]!r} at {i}; worst "
                             f"relative error {rel.max():.3g}, {int(bad.sum())} of {a.size} "
                             f"entries out of tolerance")


def _t(a, *, grad: bool = False):
    """A float64 torch tensor holding ``a`` (a copy), optionally a leaf that wants a grad."""
    return torch.tensor(np.asarray(a, np.float64), dtype=F64, requires_grad=grad)


def _nchw(a):
    """An NHWC array as a contiguous NCHW torch tensor."""
    return np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2))


def _nhwc(t):
    """An NCHW torch tensor (or its grad) back as an NHWC NumPy array."""
    return t.detach().numpy().transpose(0, 2, 3, 1)


def _oihw(w):
    """gdlab's HWIO kernel as torch's OIHW weight."""
    return np.ascontiguousarray(np.asarray(w).transpose(3, 2, 0, 1))


def _hwio(t):
    """torch's OIHW weight (or its grad) back as an HWIO array."""
    return t.detach().numpy().transpose(2, 3, 1, 0)


def _randomize(params, rng, scale=0.5):
    """Every leaf replaced by N(0, scale²) draws: biases, shifts and scales away from their
    init (0 and 1), so a gradient rule that only holds at init cannot pass."""
    return jax.tree.map(lambda p: jnp.asarray(scale * rng.normal(size=p.shape), jnp.float64),
                        params)


def _linear(p):
    """A torch ``nn.Linear`` holding gdlab dense params ``{"w": (in, out), "b": (out,)}``."""
    d_in, d_out = p["w"].shape
    lin = nn.Linear(d_in, d_out, dtype=F64)
    with torch.no_grad():
        lin.weight.copy_(_t(np.asarray(p["w"]).T))
        lin.bias.copy_(_t(p["b"]))
    return lin


def _assert_linear_grads(grads, lin, what: str, **tol) -> None:
    """gdlab's dense grads against an ``nn.Linear``'s, the weight transposed back."""
    _assert_close(grads["w"], lin.weight.grad.T, f"{what} w", **tol)
    _assert_close(grads["b"], lin.bias.grad, f"{what} b", **tol)


def _norm_module(module, p):
    """A torch layer/batch norm module with gdlab's ``{"scale", "shift"}``."""
    with torch.no_grad():
        module.weight.copy_(_t(p["scale"]))
        module.bias.copy_(_t(p["shift"]))
    return module


def _assert_norm_grads(grads, module, what: str, **tol) -> None:
    _assert_close(grads["scale"], module.weight.grad, f"{what} scale", **tol)
    _assert_close(grads["shift"], module.bias.grad, f"{what} shift", **tol)


def _manual_model(model, loss, *, train: bool = False, with_dx: bool = True):
    """Jitted ``(params, state, x, y) -> (J, new_state, grads, dx)`` by hand: the grads from
    ``backprop.manual``, and dx (which ``backprop.manual`` does not return; ``None`` without
    ``with_dx``) from the same chain, ``model.backward`` of the loss's backward."""
    value_and_grad = backprop.manual(model, loss)

    def run(params, state, x, y):
        (value, new_state), grads = value_and_grad(params, state, x, y, train=train)
        dx = None
        if with_dx:
            preds, _, residuals = model.forward(params, state, x, train=train)
            dpreds = loss.backward(loss.forward(preds, y)[1])
            _, dx = model.backward(params, residuals, dpreds)
        return value, new_state, grads, dx

    return jax.jit(run)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _manual_layer(layer, params, state, x, dy, train=False):
    """One layer's forward, then its hand-written backward of the cotangent ``dy``."""
    y, new_state, residuals = layer.forward(params, state, x, train=train)
    dparams, dx = layer.backward(params, residuals, dy)
    return y, new_state, dparams, dx


def _torch_pad(x, pads, value=0.0):
    """``((top, bottom), (left, right))`` padding of an NCHW tensor (F.pad's order is
    left, right, top, bottom)."""
    (top, bottom), (left, right) = pads
    return F.pad(x, (left, right, top, bottom), value=value)


# --------------------------------------------------------------------- (a) the MLP


ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


@pytest.mark.parametrize("loss_name", ["xent", "mse"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_gradients_match_torch_autograd(activation, loss_name):
    """``models.mlp([7, 5, 3])`` (two hidden layers) under softmax cross-entropy and MSE:
    the loss, every weight and bias gradient, and dx, against ``nn.Sequential`` of
    ``nn.Linear`` and the same activation with ``F.cross_entropy`` / ``F.mse_loss``,
    ``reduction="mean"`` (gdlab's losses are a plain batch mean; MSE also averages over
    the 3 outputs, which torch's mean over all elements does too)."""
    rng = np.random.default_rng(10)
    model = models.mlp([7, 5, 3], activation, dtype=jnp.float64)
    _, params, state = model.init(jax.random.PRNGKey(0), (4,))
    params = _randomize(params, rng)
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, size=6) if loss_name == "xent" else rng.normal(size=(6, 3))
    value, _, grads, dx = _manual_model(model, losses.get(loss_name))(params, state, x, y)

    dense = [i for i, p in enumerate(params["layers"]) if p]  # the dense layers' indices
    lins = [_linear(params["layers"][i]) for i in dense]
    net = nn.Sequential(lins[0], ACTIVATIONS[activation](), lins[1],
                        ACTIVATIONS[activation](), lins[2])
    xt = _t(x, grad=True)
    out = net(xt)
    if loss_name == "xent":
        ref = F.cross_entropy(out, torch.tensor(y), reduction="mean")
    else:
        ref = F.mse_loss(out, _t(y), reduction="mean")
    ref.backward()

    _assert_close(value, ref, "loss")
    for i, lin in zip(dense, lins):
        _assert_linear_grads(grads["layers"][i], lin, f"layer {i}")
    _assert_close(dx, xt.grad, "dx")


# ------------------------------------------------ (b) convolution, pooling, batch norm


X_IMAGE = (2, 8, 9, 4)  # (B, H, W, C): H even and W odd, so SAME pads unevenly somewhere

# name -> (conv2d keyword arguments, torch padding): the torch padding is the pads gdlab's
# docstring gives, ((top, bottom), (left, right)), worked out by hand (SAME: total
# max((⌈n/s⌉ − 1)·s + k − n, 0), the odd one at the bottom/right), or torch's own "same".
CONV_CASES = {
    # H = 8: ⌈8/2⌉ = 4 rows, total (4 − 1)·2 + 3 − 8 = 1 → (0, 1); W = 9: 5, 2 → (1, 1)
    "same_stride2": (dict(features=6, kernel_size=3, strides=2), ((0, 1), (1, 1))),
    "valid_stride2": (dict(features=6, kernel_size=3, strides=2, padding="VALID"),
                      ((0, 0), (0, 0))),
    "explicit_2x3_dilation_2x1": (dict(features=6, kernel_size=(2, 3), padding=((1, 2), (0, 1)),
                                       dilation=(2, 1)), ((1, 2), (0, 1))),
    "same_dilation2": (dict(features=6, kernel_size=3, dilation=2), "same"),
    "groups2_same_stride2": (dict(features=6, kernel_size=3, strides=2, feature_groups=2),
                             ((0, 1), (1, 1))),
    "depthwise_valid_stride_2x1": (dict(features=8, kernel_size=(3, 2), strides=(2, 1),
                                        padding="VALID", feature_groups=4), ((0, 0), (0, 0))),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_backward_matches_torch(case):
    """``conv2d`` (stride 2, SAME/VALID/explicit padding, dilation, groups): y, and the
    hand-written dW (a correlation of x with dy), db and dx (a transposed convolution) of a
    random cotangent, against ``F.conv2d`` on the NCHW input and OIHW kernel and
    ``y.backward(dy)``; uneven SAME padding goes to torch as an explicit ``F.pad``."""
    kw, torch_pads = CONV_CASES[case]
    kw = dict(kw)
    rng = np.random.default_rng(20)
    layer = layers.conv2d(kw.pop("features"), **kw, dtype=jnp.float64)
    out_shape, params, state = layer.init(jax.random.PRNGKey(0), X_IMAGE[1:])
    params = _randomize(params, rng)
    x = rng.normal(size=X_IMAGE)
    dy = rng.normal(size=(X_IMAGE[0], *out_shape))
    y, _, grads, dx = _manual_layer(layer, params, state, x, dy)

    xt = _t(_nchw(x), grad=True)
    wt = _t(_oihw(params["w"]), grad=True)
    bt = _t(params["b"], grad=True)
    strides, dilation = kw.get("strides", 1), kw.get("dilation", 1)
    groups = kw.get("feature_groups", 1)
    if torch_pads == "same":
        yt = F.conv2d(xt, wt, bt, stride=strides, padding="same", dilation=dilation,
                      groups=groups)
    else:
        yt = F.conv2d(_torch_pad(xt, torch_pads), wt, bt, stride=strides, dilation=dilation,
                      groups=groups)
    yt.backward(_t(_nchw(dy)))

    _assert_close(y, _nhwc(yt), "y")
    _assert_close(grads["w"], _hwio(wt.grad), "dW")
    _assert_close(grads["b"], bt.grad, "db")
    _assert_close(dx, _nhwc(xt.grad), "dx")


X_POOL = (2, 7, 9, 3)

# name -> (gdlab layer, torch function of the NCHW input)
POOL_CASES = {
    "max_2x2": (lambda: layers.max_pool(2), lambda x: F.max_pool2d(x, 2)),
    # SAME, 2x2 stride 2: H = 7 → 4 rows, total 1 → (0, 1); W = 9 → 5, total 1 → (0, 1)
    "max_2x2_same": (lambda: layers.max_pool(2, padding="SAME"),
                     lambda x: F.max_pool2d(_torch_pad(x, ((0, 1), (0, 1)), -np.inf), 2)),
    "max_3x3_s2_pad1": (lambda: layers.max_pool(3, strides=2, padding=1),
                        lambda x: F.max_pool2d(x, 3, stride=2, padding=1)),
    "max_2x3_s1x2_explicit": (
        lambda: layers.max_pool((2, 3), strides=(1, 2), padding=((1, 0), (2, 1))),
        lambda x: F.max_pool2d(_torch_pad(x, ((1, 0), (2, 1)), -np.inf), (2, 3), stride=(1, 2))),
    "avg_3x3_s2_valid": (lambda: layers.avg_pool(3, strides=2),
                         lambda x: F.avg_pool2d(x, 3, stride=2)),
    "avg_3x3_s2_pad1_include": (
        lambda: layers.avg_pool(3, strides=2, padding=1, count_include_pad=True),
        lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True)),
    "avg_3x3_s2_pad1_exclude": (
        lambda: layers.avg_pool(3, strides=2, padding=1, count_include_pad=False),
        lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)),
    # zero padding counted in the mean: F.pad with zeros, then a plain VALID average
    "avg_2x2_same_include": (lambda: layers.avg_pool(2, padding="SAME"),
                             lambda x: F.avg_pool2d(_torch_pad(x, ((0, 1), (0, 1))), 2)),
}


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pooling_backward_matches_torch(case):
    """``max_pool`` and ``avg_pool`` (overlapping windows, SAME, symmetric and uneven
    explicit padding, padding counted in the mean or not): y and the hand-written dx of a
    random cotangent against ``F.max_pool2d`` / ``F.avg_pool2d`` and autograd. Max-pool
    padding is −∞ on both sides (torch's own padding, or ``F.pad`` with −inf)."""
    build, torch_pool = POOL_CASES[case]
    rng = np.random.default_rng(30)
    layer = build()
    out_shape, params, state = layer.init(jax.random.PRNGKey(0), X_POOL[1:])
    x = rng.normal(size=X_POOL)
    dy = rng.normal(size=(X_POOL[0], *out_shape))
    y, _, _, dx = _manual_layer(layer, params, state, x, dy)

    xt = _t(_nchw(x), grad=True)
    yt = torch_pool(xt)
    yt.backward(_t(_nchw(dy)))
    _assert_close(y, _nhwc(yt), "y")
    _assert_close(dx, _nhwc(xt.grad), "dx")


def test_max_pool_ties_go_where_torch_sends_them():
    """Ties: on an input of small integers (most windows hold several equal maxima,
    overlapping 3x3 windows at stride 2) gdlab sends each window's gradient to its first
    maximum in row-major order; PyTorch's CPU kernel picks the same element (it replaces
    the running maximum only on a strictly greater value). Another choice would move a
    whole dy entry; what is left is the order in which overlapping windows add up."""
    rng = np.random.default_rng(31)
    layer = layers.max_pool(3, strides=2)
    out_shape, params, state = layer.init(jax.random.PRNGKey(0), X_POOL[1:])
    x = rng.integers(0, 3, size=X_POOL).astype(np.float64)
    dy = rng.normal(size=(X_POOL[0], *out_shape))
    _, _, _, dx = _manual_layer(layer, params, state, x, dy)
    windows = [x[:, 2 * p:2 * p + 3, 2 * q:2 * q + 3, :]          # (B, 3, 3, C) each
               for p in range(out_shape[0]) for q in range(out_shape[1])]
    maxima = [np.sum(w == np.max(w, axis=(1, 2), keepdims=True), axis=(1, 2)) for w in windows]
    assert np.mean(np.concatenate(maxima) > 1) > 0.5  # most windows hold a tie for the max

    xt = _t(_nchw(x), grad=True)
    F.max_pool2d(xt, 3, stride=2).backward(_t(_nchw(dy)))
    _assert_close(dx, _nhwc(xt.grad), "dx with ties")


BN_SHAPES = {"NC": (6, 3), "NHWC": (3, 4, 5, 2), "NTD": (4, 5, 3)}


@pytest.mark.parametrize("shape", list(BN_SHAPES))
def test_batch_norm_train_mode_matches_torch(shape):
    """``batch_norm`` in training mode on (N, C), (N, H, W, C) and (N, T, D): the
    normalised output y, dγ, dβ and dx (through the batch mean and variance) of a random
    cotangent, and the updated running mean, against ``nn.BatchNorm1d``/``2d`` in train
    mode with the same ε; gdlab's ``momentum`` 0.9 is the share of the old value kept,
    torch's 0.1 the share of the new one. The running variance is not compared: gdlab's
    follows the biased batch variance (the one it normalises with, flax's convention),
    torch's the unbiased n/(n − 1) one."""
    x_shape = BN_SHAPES[shape]
    rng = np.random.default_rng(40)
    layer = layers.batch_norm(momentum=0.9, eps=1e-5, dtype=jnp.float64)
    _, params, state = layer.init(jax.random.PRNGKey(0), x_shape[1:])
    params = _randomize(params, rng, scale=1.0)
    x = 1.5 + 2.0 * rng.normal(size=x_shape)
    dy = rng.normal(size=x_shape)
    y, new_state, grads, dx = _manual_layer(layer, params, state, x, dy, True)

    c = x_shape[-1]
    bn = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1, dtype=F64) if len(x_shape) == 4 else \
        nn.BatchNorm1d(c, eps=1e-5, momentum=0.1, dtype=F64)
    _norm_module(bn, params).train()
    to_torch = {"NC": lambda a: a, "NHWC": _nchw, "NTD": lambda a: a.transpose(0, 2, 1)}[shape]
    xt = _t(np.ascontiguousarray(to_torch(x)), grad=True)
    yt = bn(xt)
    yt.backward(_t(np.ascontiguousarray(to_torch(dy))))
    back = {"NC": lambda t: t.detach().numpy(), "NHWC": _nhwc,
            "NTD": lambda t: t.detach().numpy().transpose(0, 2, 1)}[shape]

    _assert_close(y, back(yt), "normalised y")
    _assert_norm_grads(grads, bn, "batch_norm")
    _assert_close(dx, back(xt.grad), "dx")
    _assert_close(new_state["mean"], bn.running_mean, "running mean")


def test_cnn_model_gradients_match_torch_autograd():
    """``models.cnn`` (conv → batch norm (train) → relu → max-pool SAME, twice; flatten; a
    hidden dense layer and the head) under softmax cross-entropy: the loss, every kernel,
    batch-norm and dense gradient, dx and both running means against the same network
    written with torch modules. gdlab flattens NHWC, so the torch side permutes back to
    channels-last before its flatten; the first pool pads 7 → 8 at the bottom/right with −∞."""
    rng = np.random.default_rng(50)
    model = models.cnn(3, channels=(3, 4), hidden=(5,), dtype=jnp.float64)
    _, params, state = model.init(jax.random.PRNGKey(0), (7, 7, 2))
    params = _randomize(params, rng)
    x = rng.normal(size=(4, 7, 7, 2))
    y = rng.integers(0, 3, size=4)
    value, new_state, grads, dx = _manual_model(model, losses.get("xent"), train=True)(
        params, state, x, y)

    p = params["layers"]
    kernels = [_t(_oihw(p[i]["w"]), grad=True) for i in (0, 4)]
    bns = [_norm_module(nn.BatchNorm2d(c, eps=1e-5, momentum=0.1, dtype=F64), p[i]).train()
           for c, i in ((3, 1), (4, 5))]
    hidden, head = _linear(p[9]), _linear(p[11])
    xt = _t(_nchw(x), grad=True)
    h = F.relu(bns[0](F.conv2d(xt, kernels[0], padding=1)))    # 3x3 SAME, stride 1
    h = F.max_pool2d(_torch_pad(h, ((0, 1), (0, 1)), -np.inf), 2)  # 7x7 → 4x4
    h = F.relu(bns[1](F.conv2d(h, kernels[1], padding=1)))
    h = F.max_pool2d(h, 2)                                       # 4x4 → 2x2
    h = h.permute(0, 2, 3, 1).reshape(4, -1)                     # flatten as NHWC
    ref = F.cross_entropy(head(F.relu(hidden(h))), torch.tensor(y), reduction="mean")
    ref.backward()

    _assert_close(value, ref, "loss")
    for i, kernel in zip((0, 4), kernels):
        _assert_close(grads["layers"][i]["w"], _hwio(kernel.grad), f"conv {i} w")
    for i, bn in zip((1, 5), bns):
        _assert_norm_grads(grads["layers"][i], bn, f"batch_norm {i}")
        _assert_close(new_state["layers"][i]["mean"], bn.running_mean, f"running mean {i}")
    _assert_linear_grads(grads["layers"][9], hidden, "hidden dense")
    _assert_linear_grads(grads["layers"][11], head, "head")
    _assert_close(dx, _nhwc(xt.grad), "dx")


# ------------------------------------------- (c) layer norm, embedding, attention


def test_layer_norm_matches_torch():
    """``layer_norm`` on (B, T, D): y, dγ, dβ and dx of a random cotangent against
    ``nn.LayerNorm(D, eps=1e-5)``."""
    rng = np.random.default_rng(60)
    layer = layers.layer_norm(eps=1e-5, dtype=jnp.float64)
    _, params, state = layer.init(jax.random.PRNGKey(0), (4, 6))
    params = _randomize(params, rng, scale=1.0)
    x = 0.5 + 2.0 * rng.normal(size=(3, 4, 6))
    dy = rng.normal(size=(3, 4, 6))
    y, _, grads, dx = _manual_layer(layer, params, state, x, dy)

    ln = _norm_module(nn.LayerNorm(6, eps=1e-5, dtype=F64), params)
    xt = _t(x, grad=True)
    yt = ln(xt)
    yt.backward(_t(dy))
    _assert_close(y, yt, "y")
    _assert_norm_grads(grads, ln, "layer_norm")
    _assert_close(dx, xt.grad, "dx")


def test_embedding_scatter_add_matches_torch():
    """``embedding``: 15 ids from a vocabulary of 4, so rows repeat and the hand-written
    scatter-add must sum their cotangents (one row left unused, its gradient 0), against
    ``nn.Embedding`` and autograd."""
    rng = np.random.default_rng(70)
    layer = layers.embedding(5, 6, dtype=jnp.float64)
    _, params, state = layer.init(jax.random.PRNGKey(0), (5,))
    params = _randomize(params, rng, scale=1.0)
    ids = rng.integers(0, 4, size=(3, 5))          # id 4 never occurs
    assert len(np.unique(ids)) < ids.size
    dy = rng.normal(size=(3, 5, 6))
    y, _, grads, _ = _manual_layer(layer, params, state, jnp.asarray(ids), dy)

    emb = nn.Embedding(5, 6, dtype=F64)
    with torch.no_grad():
        emb.weight.copy_(_t(params["table"]))
    yt = emb(torch.tensor(ids))
    yt.backward(_t(dy))
    _assert_close(y, yt, "y")
    _assert_close(grads["table"], emb.weight.grad, "dtable")
    assert not np.any(np.asarray(grads["table"])[4])


def _torch_mha(p, width, num_heads):
    """``nn.MultiheadAttention`` holding gdlab's attention params: ``in_proj_weight`` is
    ``[W_q W_k W_v]ᵀ`` (3D, D) and ``in_proj_bias`` ``[b_q 0 b_v]`` (gdlab has no key bias,
    whose gradient would be 0), ``out_proj`` the output dense layer."""
    mha = nn.MultiheadAttention(width, num_heads, dropout=0.0, bias=True, batch_first=True,
                                dtype=F64)
    w = np.concatenate([p["query"]["w"], p["key"]["w"], p["value"]["w"]], axis=1)
    b = np.concatenate([p["query"]["b"], np.zeros(width), p["value"]["b"]])
    with torch.no_grad():
        mha.in_proj_weight.copy_(_t(w.T))
        mha.in_proj_bias.copy_(_t(b))
        mha.out_proj.weight.copy_(_t(np.asarray(p["out"]["w"]).T))
        mha.out_proj.bias.copy_(_t(p["out"]["b"]))
    return mha


def _assert_mha_grads(grads, mha, width, what, **tol):
    """gdlab's attention grads against ``nn.MultiheadAttention``'s, the packed in-projection
    split back into query, key and value; torch's key-bias gradient must be 0."""
    dw = mha.in_proj_weight.grad.detach().numpy()   # (3D, D)
    db = mha.in_proj_bias.grad.detach().numpy()     # (3D,)
    for j, name in enumerate(("query", "key", "value")):
        _assert_close(grads[name]["w"], dw[j * width:(j + 1) * width].T, f"{what} {name} w",
                      **tol)
    _assert_close(grads["query"]["b"], db[:width], f"{what} query b", **tol)
    _assert_close(grads["value"]["b"], db[2 * width:], f"{what} value b", **tol)
    scale = np.max(np.abs(db))
    assert np.all(np.abs(db[width:2 * width]) <= 1e-14 * scale), \
        f"{what}: torch's key-bias gradient {db[width:2 * width]} is not 0"
    _assert_close(grads["out"]["w"], mha.out_proj.weight.grad.T, f"{what} out w", **tol)
    _assert_close(grads["out"]["b"], mha.out_proj.bias.grad, f"{what} out b", **tol)


def _causal_mask(t):
    """torch's boolean attention mask: True where position s > t may not be attended."""
    return torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_multi_head_attention_matches_torch(causal):
    """``multi_head_attention`` (2 heads of 4) on (B, T, D) = (2, 5, 8), causal and not:
    y and every projection's gradient and dx of a random cotangent against
    ``nn.MultiheadAttention(batch_first=True)`` with the same weights (a boolean upper
    triangular ``attn_mask`` for the causal case) and autograd."""
    rng = np.random.default_rng(80)
    layer = layers.multi_head_attention(2, causal=causal, dtype=jnp.float64)
    _, params, state = layer.init(jax.random.PRNGKey(0), (5, 8))
    params = _randomize(params, rng)
    x = rng.normal(size=(2, 5, 8))
    dy = rng.normal(size=(2, 5, 8))
    y, _, grads, dx = _manual_layer(layer, params, state, x, dy)

    mha = _torch_mha(params, 8, 2)
    xt = _t(x, grad=True)
    yt, _ = mha(xt, xt, xt, attn_mask=_causal_mask(5) if causal else None, need_weights=False)
    yt.backward(_t(dy))
    _assert_close(y, yt, "y", atol=ATTN_ATOL)
    _assert_mha_grads(grads, mha, 8, "attention", atol=ATTN_ATOL)
    _assert_close(dx, xt.grad, "dx", atol=ATTN_ATOL)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_transformer_model_gradients_match_torch_autograd(causal):
    """``models.transformer`` (embedding of repeated ids + learned positions, a pre-LN
    ``transformer_block`` (one: a second costs compile time and maps the same way), final
    layer norm, dense head) under per-token softmax cross-entropy: the loss and every
    leaf's gradient against torch's ``nn.Embedding``, a position table,
    ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu", dropout=0)`` per
    block (gdlab's block: h = x + MHA(LN(x)), y = h + W₂·gelu(W₁·LN(h) + b₁) + b₂,
    exact GELU), ``nn.LayerNorm`` and ``nn.Linear``. gdlab's per-token loss is the mean
    over the batch of each sequence's mean over tokens, torch's ``F.cross_entropy`` mean
    over all B·T tokens: the same number for equal-length sequences."""
    rng = np.random.default_rng(90 + causal)
    vocab, width, heads, ratio, depth, t, b = 5, 8, 2, 2, 1, 6, 3
    model = models.transformer(vocab, vocab, max_len=7, width=width, depth=depth, num_heads=heads,
                               mlp_ratio=ratio, causal=causal, dtype=jnp.float64)
    _, params, state = model.init(jax.random.PRNGKey(0), (t,))
    params = _randomize(params, rng)
    ids = rng.integers(0, vocab, size=(b, t))
    targets = np.sort(ids, axis=1)
    value, _, grads, _ = _manual_model(model, losses.get("xent"), with_dx=False)(
        params, state, ids, targets)  # integer ids: no dx

    p = params["layers"]
    emb = nn.Embedding(vocab, width, dtype=F64)
    pos = _t(p[1]["table"], grad=True)
    blocks = []
    for blk in p[2:2 + depth]:
        attn_ln, attn = blk["layers"][0]["body"]["layers"]
        mlp_ln, dense1, _, dense2 = blk["layers"][1]["body"]["layers"]
        enc = nn.TransformerEncoderLayer(width, heads, dim_feedforward=ratio * width,
                                         dropout=0.0, activation="gelu", layer_norm_eps=1e-5,
                                         batch_first=True, norm_first=True, dtype=F64)
        enc.self_attn = _torch_mha(attn, width, heads)
        enc.linear1, enc.linear2 = _linear(dense1), _linear(dense2)
        _norm_module(enc.norm1, attn_ln)
        _norm_module(enc.norm2, mlp_ln)
        blocks.append(enc.train())
    final_ln = _norm_module(nn.LayerNorm(width, eps=1e-5, dtype=F64), p[2 + depth])
    head = _linear(p[3 + depth])
    with torch.no_grad():
        emb.weight.copy_(_t(p[0]["table"]))

    h = emb(torch.tensor(ids)) + pos[:t]
    for enc in blocks:
        h = enc(h, src_mask=_causal_mask(t) if causal else None)
    logits = head(final_ln(h))
    ref = F.cross_entropy(logits.reshape(-1, vocab), torch.tensor(targets).reshape(-1),
                          reduction="mean")
    ref.backward()

    g, tol = grads["layers"], dict(atol=ATTN_ATOL)
    _assert_close(value, ref, "loss")
    _assert_close(g[0]["table"], emb.weight.grad, "embedding table", **tol)
    _assert_close(g[1]["table"], pos.grad, "position table", **tol)  # row 6 unused: 0 both
    for i, enc in enumerate(blocks):
        gb = g[2 + i]["layers"]
        attn_ln, attn = gb[0]["body"]["layers"]
        mlp_ln, dense1, _, dense2 = gb[1]["body"]["layers"]
        _assert_norm_grads(attn_ln, enc.norm1, f"block {i} attention layer_norm", **tol)
        _assert_mha_grads(attn, enc.self_attn, width, f"block {i}", **tol)
        _assert_norm_grads(mlp_ln, enc.norm2, f"block {i} mlp layer_norm", **tol)
        _assert_linear_grads(dense1, enc.linear1, f"block {i} dense 1", **tol)
        _assert_linear_grads(dense2, enc.linear2, f"block {i} dense 2", **tol)
    _assert_norm_grads(g[2 + depth], final_ln, "final layer_norm", **tol)
    _assert_linear_grads(g[3 + depth], head, "head", **tol)


# ------------------------------------------------------------------ (d) the losses


def _weighted_mean(per_example, weights):
    """torch: Σ_b w_b ℓ_b / Σ w, gdlab's weighted reduction written out."""
    w = _t(weights)
    return (w * per_example).sum() / w.sum()


def _loss_cases(rng):
    """name -> (gdlab loss, preds, targets, weights or None, torch loss of (preds, targets))."""
    b = 5
    w = np.array([1.0, 0.0, 2.5, 0.5, 1.0])           # one example masked out
    reg_p, reg_t = 2.0 * rng.normal(size=(b, 3)), 2.0 * rng.normal(size=(b, 3))
    logits, labels = 2.0 * rng.normal(size=(b, 4)), rng.integers(0, 4, size=b)
    tok_logits, tok_labels = 2.0 * rng.normal(size=(b, 3, 4)), rng.integers(0, 4, size=(b, 3))
    bce_z = 3.0 * rng.normal(size=(b, 3))
    bce_y = rng.integers(0, 2, size=(b, 3)).astype(np.float64)
    return {
        "mse": (losses.mse(), reg_p, reg_t, None,
                lambda p, t: F.mse_loss(p, _t(t), reduction="mean")),
        "mse_weighted": (losses.mse(), reg_p, reg_t, w, lambda p, t: _weighted_mean(
            F.mse_loss(p, _t(t), reduction="none").mean(dim=1), w)),
        # δ = 0.7 with |p − t| on both sides of it (residuals of size up to ~6)
        "huber": (losses.huber(0.7), reg_p, reg_t, None,
                  lambda p, t: F.huber_loss(p, _t(t), reduction="mean", delta=0.7)),
        "xent": (losses.softmax_cross_entropy(), logits, labels, None,
                 lambda z, y: F.cross_entropy(z, torch.tensor(y), reduction="mean")),
        "xent_weighted": (losses.softmax_cross_entropy(), logits, labels, w,
                          lambda z, y: _weighted_mean(
                              F.cross_entropy(z, torch.tensor(y), reduction="none"), w)),
        "xent_per_token_weighted": (
            losses.softmax_cross_entropy(), tok_logits, tok_labels, w,
            lambda z, y: _weighted_mean(F.cross_entropy(
                z.permute(0, 2, 1), torch.tensor(y), reduction="none").mean(dim=1), w)),
        "bce": (losses.sigmoid_binary_cross_entropy(), bce_z, bce_y, None,
                lambda z, y: F.binary_cross_entropy_with_logits(z, _t(y), reduction="mean")),
    }


@pytest.mark.parametrize("case", ["mse", "mse_weighted", "huber", "xent", "xent_weighted",
                                  "xent_per_token_weighted", "bce"])
def test_loss_value_and_gradient_match_torch(case):
    """Each loss alone: J and the hand-written ∂J/∂preds against torch's functional loss
    and autograd. Unweighted, gdlab's J is torch's ``reduction="mean"`` (MSE, Huber and
    BCE average over every element, cross-entropy over examples, or tokens); with
    per-example weights (one of them 0) it is Σ w_b ℓ_b / Σ w over torch's
    ``reduction="none"``. Huber's δ = 0.7 is torch's ``delta``, with residuals on both
    sides of it."""
    loss, preds, targets, weights, torch_loss = _loss_cases(np.random.default_rng(100))[case]
    w = None if weights is None else jnp.asarray(weights)

    @jax.jit
    def run(p, t, w):
        value, residuals = loss.forward(p, t, w)
        return value, loss.backward(residuals, 1.0)

    value, dpreds = run(jnp.asarray(preds), jnp.asarray(targets), w)
    pt = _t(preds, grad=True)
    ref = torch_loss(pt, targets)
    ref.backward()
    _assert_close(value, ref, "J")
    _assert_close(dpreds, pt.grad, "dJ/dpreds")
    if case == "huber":  # both pieces of the Huber loss are exercised
        r = np.abs(preds - targets)
        assert (r < 0.7).any() and (r > 0.7).any()


# -------------------------------------------------------------- (2) the optimizers


N_STEPS = 20


def _no_schedule(opt):
    return None


# name -> (gdlab optimizer, torch optimizer of the param list, torch scheduler or None)
OPT_CASES = {
    "gd": (lambda: optim.gd(0.1), lambda ps: torch.optim.SGD(ps, lr=0.1), _no_schedule),
    # gdlab's convention is torch's: v ← β·v + g, w ← w − α·v (Nesterov: w ← w − α·(g + β·v))
    "momentum": (lambda: optim.momentum(0.1, beta=0.9),
                 lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), _no_schedule),
    "nesterov": (lambda: optim.nesterov(0.1, beta=0.9),
                 lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                 _no_schedule),
    "adagrad": (lambda: optim.adagrad(0.1, eps=1e-10, initial_accumulator=0.1),
                lambda ps: torch.optim.Adagrad(ps, lr=0.1, eps=1e-10,
                                               initial_accumulator_value=0.1),
                _no_schedule),
    # gdlab's rmsprop is torch's uncentred one without momentum; decay ρ is torch's alpha
    "rmsprop": (lambda: optim.rmsprop(0.01, decay=0.9, eps=1e-8),
                lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-8),
                _no_schedule),
    "adam": (lambda: optim.adam(0.01, b1=0.9, b2=0.999, eps=1e-8),
             lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8),
             _no_schedule),
    # decoupled: gdlab adds −α·λ·w to Adam's step, torch first multiplies w by 1 − α·λ
    "adamw": (lambda: optim.adamw(0.01, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1),
              lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8,
                                           weight_decay=0.1),
              _no_schedule),
    # coupled (L2): g ← g + λ·w before the rule, torch's weight_decay in SGD and Adam
    "gd_weight_decay": (lambda: optim.chain(optim.add_weight_decay(0.05), optim.gd(0.1)),
                        lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=0.05),
                        _no_schedule),
    "momentum_weight_decay": (
        lambda: optim.chain(optim.add_weight_decay(0.05), optim.momentum(0.1, beta=0.9)),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.05),
        _no_schedule),
    "adam_weight_decay": (
        lambda: optim.chain(optim.add_weight_decay(0.05), optim.adam(0.01)),
        lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.05), _no_schedule),
    # schedules: gdlab's lr(t) for update t (0-based) is torch's lr after t scheduler steps
    "momentum_exponential_decay": (
        lambda: optim.momentum(schedules.exponential_decay(0.1, 0.9, 1), beta=0.9),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)),
    "gd_staircase_decay": (
        lambda: optim.gd(schedules.exponential_decay(0.1, 0.5, 5, staircase=True)),
        lambda ps: torch.optim.SGD(ps, lr=0.1),
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)),
    "momentum_piecewise_constant": (
        lambda: optim.momentum(schedules.piecewise_constant([6, 13], [0.1, 0.01, 0.001]),
                               beta=0.9),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[6, 13], gamma=0.1)),
    "adamw_exponential_decay": (
        lambda: optim.adamw(schedules.exponential_decay(0.01, 0.8, 1), weight_decay=0.1),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
        lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8)),
    "adam_cosine_decay": (
        lambda: optim.adam(schedules.cosine_decay(0.01, N_STEPS)),
        lambda ps: torch.optim.Adam(ps, lr=0.01),
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=N_STEPS)),
}


@pytest.mark.parametrize("case", list(OPT_CASES))
def test_optimizer_trajectory_matches_torch_optim(case):
    """20 updates of a two-leaf float64 tree (a (3, 4) weight, a (4,) bias), each fed the
    same fixed random gradient on both sides (``p.grad`` set by hand before
    ``optimizer.step()``, then ``scheduler.step()``): the params after every step agree
    to 1e-14 relative, so the update rules, their hyper-parameter conventions (momentum,
    ε placement, bias correction, coupled and decoupled weight decay) and the schedules'
    step indexing are the same."""
    build, torch_opt, torch_sched = OPT_CASES[case]
    rng = np.random.default_rng(110)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=4))}
    grads = [{"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)} for _ in range(N_STEPS)]
    grads[3] = {"w": 1e-3 * grads[3]["w"], "b": 50.0 * grads[3]["b"]}  # uneven scales

    opt = build()

    @jax.jit
    def step(params, state, g):
        updates, state = opt.update(g, state, params)
        return optim.apply_updates(params, updates), state

    tw, tb = (nn.Parameter(_t(params[k])) for k in ("w", "b"))
    topt = torch_opt([tw, tb])
    sched = torch_sched(topt)
    state = opt.init(params)
    for t, g in enumerate(grads):
        params, state = step(params, state, jax.tree.map(jnp.asarray, g))
        tw.grad, tb.grad = _t(g["w"]), _t(g["b"])
        topt.step()
        if sched is not None:
            sched.step()
        _assert_close(params["w"], tw, f"w after step {t + 1}", rtol=OPT_RTOL)
        _assert_close(params["b"], tb, f"b after step {t + 1}", rtol=OPT_RTOL)
