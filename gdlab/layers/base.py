"""The layer convention, and the combinators ``serial``, ``residual`` and ``parallel``.

A layer is three pure functions::

    init(key, in_shape)                         -> (out_shape, params, state)
    forward(params, state, x, *, key=None, train=False, weights=None)
                                                -> (y, new_state, residuals)
    backward(params, residuals, dy)             -> (dparams, dx)

``in_shape``/``out_shape`` describe ONE example (no batch axis): a dense layer
on 784 features has ``in_shape == (784,)``. ``x`` carries a leading batch axis.

- ``params`` are trained; ``backward`` returns ``∂J/∂params`` shaped like them.
- ``state`` is NOT trained: batch norm's running statistics. ``forward`` reads it
  and returns the next one (in training mode); optimizers and the gradient checker
  never see it, and ``backward`` never returns a cotangent for it. A layer
  without state has ``state == {}``, a pytree with no leaves: it costs nothing.
- ``residuals`` is whatever the forward pass keeps for the backward pass.
- ``key`` feeds randomness (dropout); ``train`` (a Python bool, static) picks
  training or evaluation behaviour; ``weights`` ``(B,)`` are the per-example
  weights of the batch (0 marks the padding of a partial last batch), which
  batch statistics must respect. Layers that need none of them ignore them.
- ``backward`` takes the cotangent ``dy = ∂J/∂y`` and returns ``∂J/∂params`` and
  ``∂J/∂x`` (shaped like ``x``; ``None`` for integer inputs such as token ids):
  one link of the chain rule.

Composition: ``serial`` runs forwards in order and backwards in reverse;
``residual(f)`` is ``y = x + f(x)``; ``parallel`` feeds one input to several
branches and merges their outputs by sum or concatenation. Where one value
feeds several consumers (the skip connection, a fan-out) the cotangents that
come back from them are summed: the multivariate chain rule.

Parameter paths: ``serial`` → ``layers/i/...``, ``residual`` → ``body/...``,
``parallel`` → ``branches/i/...``; model state follows the same paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gdlab.types import Array, Params, PRNGKey, Residuals, Shape, State


class Layer(NamedTuple):
    """A layer as its three functions, plus a name for reports."""

    init: Callable[[PRNGKey, Shape], tuple[Shape, Params, State]]
    forward: Callable[..., tuple[Array, State, Residuals]]
    backward: Callable[[Params, Residuals, Array], tuple[Params, Array]]
    name: str


def apply(layer: Layer, params: Params, state: State, x: Array, *, key: PRNGKey | None = None,
          train: bool = False, weights: Array | None = None) -> Array:
    """The forward pass's output alone, without the new state or residuals."""
    return layer.forward(params, state, x, key=key, train=train, weights=weights)[0]


def init_shapes(layer: Layer, in_shape: Shape) -> tuple[Shape, Params, State]:
    """``layer.init`` traced abstractly (``jax.eval_shape``): shapes only, nothing computed.

    Raises the layer's own ``ValueError`` when ``in_shape`` does not fit it.
    """
    out = []

    def init(key):
        out_shape, params, state = layer.init(key, tuple(in_shape))
        out.append(tuple(int(d) for d in out_shape))  # plain ints: static, never traced
        return params, state

    params, state = jax.eval_shape(init, jax.random.PRNGKey(0))
    return out[0], params, state


def feature_axis(layer: str, in_shape: Shape) -> int:
    """The size of the last axis of ``in_shape`` (one example's), which ``layer`` works on;
    a ValueError for an example of one number, shape ()."""
    if len(in_shape) < 1:
        raise ValueError(f"{layer} needs a feature axis: an input shape of rank >= 1 per "
                         f"example, got {tuple(in_shape)}; one number per example is "
                         f"x[:, None], of shape (N, 1)")
    return in_shape[-1]


def _check_layers(combinator: str, items) -> None:
    """A ValueError naming the first of ``items`` that is not a ``Layer`` (most often a
    builder not called: ``relu`` for ``relu()``), before it fails inside ``init``."""
    for i, item in enumerate(items):
        if not isinstance(item, Layer):
            hint = f" (a builder: call it, {item.__name__}(...))" if callable(item) and hasattr(
                item, "__name__") else ""
            raise ValueError(f"{combinator} takes Layers, got {item!r} as argument {i}{hint}")


def _forward_output(layer: Layer, i: int, out):
    """``out``, a layer's forward result, or a ValueError naming the layer when it is not
    the triple ``(y, new_state, residuals)`` (most often the state left out)."""
    if not isinstance(out, tuple) or len(out) != 3:
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise ValueError(f"layers/{i} ({layer.name}): forward must return (y, new_state, "
                         f"residuals), got {got}; a layer without state returns the state "
                         f"it was given ({{}})")
    return out


def _check_backward(layer: Layer, i: int, params, dparams, dx, in_shape) -> None:
    """A ValueError naming layer ``i`` when its backward's ``dparams`` are not shaped like its
    params (same pytree, same leaf shapes), or its ``dx`` not like its input: a dx that only
    broadcasts would otherwise flow on into the layers before it and train them wrongly."""
    where = f"layers/{i} ({layer.name}): backward"
    p_def, g_def = jax.tree.structure(params), jax.tree.structure(dparams)
    if p_def != g_def:
        raise ValueError(f"{where} must return dparams shaped like its params, {p_def}; "
                         f"got {g_def}")
    for path, p, g in zip(leaf_paths(params), jax.tree.leaves(params),
                          jax.tree.leaves(dparams)):
        if jnp.shape(g) != jnp.shape(p):
            raise ValueError(f"{where} returned a gradient of shape {jnp.shape(g)} for the "
                             f"param {path} of shape {jnp.shape(p)}")
    if dx is None:
        if i > 0:
            raise ValueError(f"{where} returned dx None, but layers/{i - 1} before it needs "
                             f"∂J/∂x (None is for integer inputs, such as token ids)")
    elif tuple(jnp.shape(dx)) != tuple(in_shape):
        raise ValueError(f"{where} returned dx of shape {tuple(jnp.shape(dx))} for an input "
                         f"of shape {tuple(in_shape)}; dx must be shaped like x")


def leaf_paths(tree) -> list[str]:
    """Readable paths of a pytree's leaves, e.g. ``layers/0/w``."""
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return ["/".join(_key_name(k) for k in path) for path, _ in paths]


def _key_name(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _split(key: PRNGKey | None, n: int) -> list:
    return [None] * n if key is None else list(jax.random.split(key, n))


def stateless(name: str, fn: Callable[[Array], tuple[Array, Residuals]],
              grad: Callable[[Residuals, Array], Array]) -> Layer:
    """A layer without parameters or state, from ``fn(x) -> (y, res)`` and ``grad(res, dy) -> dx``."""

    def init(key, in_shape):
        del key
        return tuple(in_shape), {}, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del params, key, train, weights
        y, residuals = fn(x)
        return y, state, residuals

    def backward(params, residuals, dy):
        del params
        return {}, grad(residuals, dy)

    return Layer(init, forward, backward, name)


def serial(*layers: Layer, name: str = "serial") -> Layer:
    """Compose layers: forward in order, backward in reverse (the chain rule).

    Params and state are ``{"layers": (p0, p1, ...)}``, so a leaf reads ``layers/0/w``.
    A forward key, when given, is split into one key per layer.
    """
    _check_layers("serial", layers)

    def init(key, in_shape):
        params, states = [], []
        shape = tuple(in_shape)
        for layer, k in zip(layers, jax.random.split(key, len(layers))):
            shape, p, s = layer.init(k, shape)
            params.append(p)
            states.append(s)
        return shape, {"layers": tuple(params)}, {"layers": tuple(states)}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        residuals, states, inputs = [], [], []
        for i, (layer, p, s, k) in enumerate(zip(layers, params["layers"], state["layers"],
                                                 _split(key, len(layers)))):
            # each layer's input shape, for checking its dx, carried as the static shape of
            # an empty array (as in ``parallel``): residuals hold arrays only
            inputs.append(jnp.zeros((0, *jnp.shape(x)), jnp.result_type(x)))
            x, s, r = _forward_output(layer, i, layer.forward(p, s, x, key=k, train=train,
                                                               weights=weights))
            states.append(s)
            residuals.append(r)
        return x, {"layers": tuple(states)}, (tuple(residuals), tuple(inputs))

    def backward(params, residuals, dy):
        # J = ℓ(f_n(…f_1(x))): walk the layers backwards, each turning ∂J/∂(its
        # output) into ∂J/∂(its params) and ∂J/∂(its input).
        residuals, inputs = residuals
        dparams = [None] * len(layers)
        for i in reversed(range(len(layers))):
            dparams[i], dy = layers[i].backward(params["layers"][i], residuals[i], dy)
            _check_backward(layers[i], i, params["layers"][i], dparams[i], dy,
                            inputs[i].shape[1:])
        return {"layers": tuple(dparams)}, dy

    return Layer(init, forward, backward, name)


def residual(body: Layer, *, name: str | None = None) -> Layer:
    """A skip connection around ``body``: y = x + f(x) (He et al. 2016).

    x feeds two consumers, the identity path and f, so its cotangent is the sum
    of theirs: dx = dy + (∂f/∂x)ᵀ·dy. Params and state are ``{"body": ...}``.
    """
    _check_layers("residual", (body,))

    def init(key, in_shape):
        out_shape, p, s = body.init(key, tuple(in_shape))
        if tuple(out_shape) != tuple(in_shape):
            raise ValueError(f"residual({body.name}) needs the body to keep the shape: it maps "
                             f"{tuple(in_shape)} to {tuple(out_shape)}")
        return tuple(in_shape), {"body": p}, {"body": s}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        fx, s, r = body.forward(params["body"], state["body"], x, key=key, train=train,
                                weights=weights)
        return x + fx, {"body": s}, r

    def backward(params, residuals, dy):
        """dx = dy (identity path) + dx_f (through the body): cotangents meeting at x add."""
        dp, dx_body = body.backward(params["body"], residuals, dy)
        return {"body": dp}, dy + dx_body

    return Layer(init, forward, backward, name or f"residual({body.name})")


MERGES = ("sum", "concat")


def parallel(*branches: Layer, merge: str = "sum", name: str | None = None) -> Layer:
    """Fan out: every branch sees the same x; outputs merged by ``"sum"`` or ``"concat"``.

    sum:    y = Σ_i f_i(x),            dy_i = dy
    concat: y = [f_1(x), …, f_n(x)]     (last axis), dy_i = dy's slice of branch i
    and, x feeding every branch, dx = Σ_i dx_i. Params and state are
    ``{"branches": (p0, p1, ...)}``.
    """
    if merge not in MERGES:
        raise ValueError(f"unknown merge {merge!r}; choose one of: {', '.join(MERGES)}")
    if not branches:
        raise ValueError("parallel needs at least one branch")
    _check_layers("parallel", branches)

    def init(key, in_shape):
        shapes, params, states = [], [], []
        for branch, k in zip(branches, jax.random.split(key, len(branches))):
            shape, p, s = branch.init(k, tuple(in_shape))
            shapes.append(tuple(shape))
            params.append(p)
            states.append(s)
        if merge == "sum":
            if len(set(shapes)) != 1:
                raise ValueError(f"parallel(merge='sum') needs branches of one output shape, "
                                 f"got {shapes}")
            out_shape = shapes[0]
        else:
            if len({s[:-1] for s in shapes}) != 1:
                raise ValueError(f"parallel(merge='concat') needs branch outputs that differ in "
                                 f"the last axis only, got {shapes}")
            out_shape = (*shapes[0][:-1], sum(s[-1] for s in shapes))
        return out_shape, {"branches": tuple(params)}, {"branches": tuple(states)}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        outs, states, residuals = [], [], []
        for branch, p, s, k in zip(branches, params["branches"], state["branches"],
                                   _split(key, len(branches))):
            y, s, r = branch.forward(p, s, x, key=k, train=train, weights=weights)
            outs.append(y)
            states.append(s)
            residuals.append(r)
        y = sum(outs[1:], outs[0]) if merge == "sum" else jnp.concatenate(outs, axis=-1)
        # Each branch's output width, for splitting dy, carried as the static shape of an
        # empty array: residuals hold arrays only (jit, vmap and custom_vjp pass them on).
        widths = tuple(jnp.zeros((0, o.shape[-1]), o.dtype) for o in outs)
        return y, {"branches": tuple(states)}, (tuple(residuals), widths)

    def backward(params, residuals, dy):
        """dx = Σ_i (∂f_i/∂x)ᵀ·dy_i: x fed every branch, so their cotangents add."""
        branch_residuals, widths = residuals
        if merge == "sum":
            dys = [dy] * len(branches)
        else:
            sizes = [w.shape[-1] for w in widths]
            cuts = [sum(sizes[:i + 1]) for i in range(len(sizes) - 1)]
            dys = jnp.split(dy, cuts, axis=-1)
        dparams, dx = [], None
        for branch, p, r, dy_i in zip(branches, params["branches"], branch_residuals, dys):
            dp, dx_i = branch.backward(p, r, dy_i)
            dparams.append(dp)
            dx = dx_i if dx is None else dx + dx_i
        return {"branches": tuple(dparams)}, dx

    return Layer(init, forward, backward, name or f"parallel[{merge}]({', '.join(b.name for b in branches)})")
