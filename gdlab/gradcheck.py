"""Check hand-written gradients against ``jax.grad`` and finite differences.

For every parameter leaf (and, for single layers and losses, the input) three
gradients are compared:

- manual: the hand-written backward passes (``gdlab.backprop.manual``);
- jax.grad: reverse-mode autodiff of the same forward (``gdlab.backprop.autodiff``);
- finite differences: central differences (f(θ+h·e_i) − f(θ−h·e_i)) / 2h for
  every coordinate i, always in float64.

Manual is held to ``tolerances.ANALYTIC`` against jax.grad, and both to
``tolerances.FINITE_DIFF`` against finite differences; matmuls run at
precision "highest" throughout.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gdlab import backprop, layers, losses, tolerances
from gdlab._compat import enable_x64, highest_precision
from gdlab.layers import Layer
from gdlab.losses import Loss
from gdlab.tolerances import Tolerance


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How far two arrays are apart: worst absolute and relative error, and the verdict."""

    max_abs_err: float
    max_rel_err: float
    passed: bool


@dataclasses.dataclass(frozen=True)
class LeafCheck:
    """One row of the report: a parameter leaf (or input) and its three comparisons."""

    path: str
    shape: tuple[int, ...]
    vs_autodiff: Comparison   # manual against jax.grad
    manual_vs_fd: Comparison  # manual against finite differences
    autodiff_vs_fd: Comparison  # jax.grad against finite differences

    @property
    def passed(self) -> bool:
        return self.vs_autodiff.passed and self.manual_vs_fd.passed and self.autodiff_vs_fd.passed

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "shape": list(self.shape),
            "max_abs_err": self.vs_autodiff.max_abs_err,
            "max_rel_err": self.vs_autodiff.max_rel_err,
            "passed": self.passed,
            "finite_differences": {
                "manual": dataclasses.asdict(self.manual_vs_fd),
                "autodiff": dataclasses.asdict(self.autodiff_vs_fd),
            },
        }


@dataclasses.dataclass(frozen=True)
class Report:
    """All rows of a check, in one dtype."""

    dtype: str
    leaves: tuple[LeafCheck, ...]

    @property
    def passed(self) -> bool:
        return all(leaf.passed for leaf in self.leaves)

    @property
    def worst_rel_err(self) -> float:
        """The largest manual-vs-jax.grad relative error over all rows."""
        return max((leaf.vs_autodiff.max_rel_err for leaf in self.leaves), default=0.0)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "dtype": self.dtype,
            "tolerances": {
                "analytic": tolerances.ANALYTIC[self.dtype]._asdict(),
                "finite_differences": tolerances.FINITE_DIFF[self.dtype]._asdict(),
                "fd_step": tolerances.FD_STEP,
            },
            "leaves": [leaf.to_dict() for leaf in self.leaves],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """A fixed-width table: one row per leaf, then a verdict line."""
        header = ("path", "shape", "abs err", "rel err", "rel err vs FD", "jax.grad vs FD", "result")
        rows = [header] + [
            (
                leaf.path,
                "x".join(map(str, leaf.shape)) or "scalar",
                f"{leaf.vs_autodiff.max_abs_err:.2e}",
                f"{leaf.vs_autodiff.max_rel_err:.2e}",
                f"{leaf.manual_vs_fd.max_rel_err:.2e}",
                f"{leaf.autodiff_vs_fd.max_rel_err:.2e}",
                "pass" if leaf.passed else "FAIL",
            )
            for leaf in self.leaves
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        failed = sum(not leaf.passed for leaf in self.leaves)
        lines.append(
            f"{self.dtype}: {len(self.leaves) - failed}/{len(self.leaves)} rows pass; "
            f"worst relative error manual vs jax.grad {self.worst_rel_err:.2e}"
        )
        return "\n".join(lines)


def compare(a, b, tol: Tolerance) -> Comparison:
    """Compare two arrays in float64: pass when |a−b| ≤ atol + rtol·(|a|+|b|) everywhere."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    diff = np.abs(a - b)
    scale = np.abs(a) + np.abs(b)
    rel = diff / np.maximum(tolerances.RELATIVE_FLOOR, scale)
    return Comparison(
        max_abs_err=float(np.max(diff, initial=0.0)),
        max_rel_err=float(np.max(rel, initial=0.0)),
        passed=bool(np.all(diff <= tol.atol + tol.rtol * scale)),
    )


def leaf_paths(tree) -> list[str]:
    """Readable paths of a pytree's leaves, e.g. ``layers/0/w``."""
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return ["/".join(_key_name(k) for k in path) for path, _ in paths]


def _key_name(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def finite_differences(f: Callable, args, *, step: float = tolerances.FD_STEP, chunk: int = 512):
    """Central-difference gradient of scalar ``f(args)`` for every coordinate of ``args``.

    ``args`` must be float64. Coordinates are perturbed ``chunk`` at a time
    under one ``vmap``, so a few thousand parameters take a few compiled calls.
    """
    flat, unravel = ravel_pytree(args)
    n = flat.size

    @jax.jit
    def directional(idx):
        e = jax.nn.one_hot(idx, n, dtype=flat.dtype) * step  # (chunk, n), rows h·e_i
        f_plus = jax.vmap(lambda d: f(unravel(flat + d)))(e)
        f_minus = jax.vmap(lambda d: f(unravel(flat - d)))(e)
        return (f_plus - f_minus) / (2.0 * step)

    parts = []
    for start in range(0, n, chunk):
        idx = jnp.arange(start, min(start + chunk, n))
        idx = jnp.pad(idx, (0, chunk - idx.size), constant_values=-1)  # one_hot(−1) = 0
        parts.append(np.asarray(directional(idx))[: min(chunk, n - start)])
    return unravel(jnp.asarray(np.concatenate(parts) if parts else np.zeros(0)))


def _cast(tree, dtype):
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _check(
    name: str,
    manual_grad: Callable,
    autodiff_grad: Callable,
    scalar: Callable,
    args,
    dtype: str,
) -> list[LeafCheck]:
    """Rows for ``args``: ``manual_grad(args)`` and ``autodiff_grad(args)`` in ``dtype``,
    against finite differences of ``scalar`` on a float64 copy of ``args``."""
    args_d = _cast(args, jnp.dtype(dtype))
    g_manual = jax.jit(manual_grad)(args_d)
    g_auto = jax.jit(autodiff_grad)(args_d)
    g_fd = finite_differences(scalar, _cast(args, jnp.float64))
    analytic = tolerances.ANALYTIC[dtype]
    fd_tol = tolerances.FINITE_DIFF[dtype]
    rows = []
    for path, gm, ga, gf in zip(
        leaf_paths(args),
        jax.tree_util.tree_leaves(g_manual),
        jax.tree_util.tree_leaves(g_auto),
        jax.tree_util.tree_leaves(g_fd),
    ):
        if gm.shape != ga.shape:
            raise ValueError(f"{name}/{path}: manual gradient shape {gm.shape} != {ga.shape}")
        rows.append(
            LeafCheck(
                path=f"{name}/{path}" if name else path,
                shape=tuple(gm.shape),
                vs_autodiff=compare(gm, ga, analytic),
                manual_vs_fd=compare(gm, gf, fd_tol),
                autodiff_vs_fd=compare(ga, gf, fd_tol),
            )
        )
    if jax.tree_util.tree_structure(g_manual) != jax.tree_util.tree_structure(g_auto):
        raise ValueError(f"{name}: manual gradients are not shaped like the parameters")
    return rows


def check_model(
    model: Layer,
    loss: Loss,
    params,
    x,
    y,
    *,
    dtype: str = "float64",
    key=None,
    train: bool = False,
) -> Report:
    """Check ∂J/∂params of ``loss(model(params, x), y)``, one row per parameter leaf."""
    dtype = tolerances.dtype_name(dtype)
    with enable_x64(), highest_precision():
        manual = backprop.manual(model, loss)
        auto = backprop.autodiff(model, loss)

        def data(p):
            # x and float targets follow the params' dtype, so the float64 copy is float64 throughout.
            return _cast(x, jax.tree_util.tree_leaves(p)[0].dtype), _cast_targets(y, p)

        rows = _check(
            "",
            lambda p: manual(p, *data(p), key=key, train=train)[1],
            lambda p: auto(p, *data(p), key=key, train=train)[1],
            lambda p: loss.value(model.forward(p, data(p)[0], key=key, train=train)[0], data(p)[1]),
            params,
            dtype,
        )
    return Report(dtype, tuple(rows))


def check_random_mlp(
    *,
    hidden: Sequence[int] = (32, 32),
    activation: str = "tanh",
    loss: str = "xent",
    dtype: str = "float64",
    batch_size: int = 16,
    input_dim: int = 8,
    num_classes: int = 5,
    seed: int = 0,
) -> Report:
    """Check an ``mlp`` on a random batch: normal inputs, targets that suit ``loss``.

    Outputs: ``num_classes`` logits for xent, one logit for bce, ``num_classes``
    regression outputs for mse and huber.
    """
    from gdlab import models

    outputs = 1 if loss == "bce" else num_classes
    model = models.mlp([*hidden, outputs], activation)
    k_init, k_x, k_y = jax.random.split(jax.random.PRNGKey(seed), 3)
    _, params = model.init(k_init, (input_dim,))
    with enable_x64():
        x = jax.random.normal(k_x, (batch_size, input_dim), jnp.float64)
        if loss == "xent":
            y = jax.random.randint(k_y, (batch_size,), 0, num_classes)
        elif loss == "bce":
            y = jax.random.bernoulli(k_y, 0.5, (batch_size,)).astype(jnp.float64)
        else:
            y = jax.random.normal(k_y, (batch_size, outputs), jnp.float64)
        return check_model(model, losses.get(loss), params, x, y, dtype=dtype)


def _cast_targets(y, params):
    y = jnp.asarray(y)
    if jnp.issubdtype(y.dtype, jnp.floating):
        return y.astype(jax.tree_util.tree_leaves(params)[0].dtype)
    return y


def check_layer(layer: Layer, params, x, dy, *, dtype="float64", key=None, train=False,
                name: str | None = None) -> list[LeafCheck]:
    """Rows for one layer: ∂⟨forward(params, x), dy⟩ with respect to each param leaf and x."""
    name = name or layer.name

    def cotangent(args):
        return jnp.asarray(dy, args["x"].dtype)

    def manual(args):
        _, residuals = layer.forward(args["params"], args["x"], key=key, train=train)
        dparams, dx = layer.backward(args["params"], residuals, cotangent(args))
        return {"params": dparams, "x": dx}

    def scalar(args):
        y = layer.forward(args["params"], args["x"], key=key, train=train)[0]
        return jnp.sum(y * cotangent(args))

    return _check(name, manual, jax.grad(scalar), scalar, {"params": params, "x": x}, dtype)


def check_loss(loss: Loss, preds, targets, g, *, dtype="float64") -> list[LeafCheck]:
    """Rows for one loss: ∂(g·J(preds, targets))/∂preds."""

    def targets_for(p):
        return _cast_targets(targets, p)

    def manual(p):
        _, residuals = loss.forward(p, targets_for(p))
        return loss.backward(residuals, jnp.asarray(g, p.dtype))

    def scalar(p):
        return jnp.asarray(g, p.dtype) * loss.value(p, targets_for(p))

    rows = _check(f"loss/{loss.name}", manual, jax.grad(scalar), scalar, preds, dtype)
    return [dataclasses.replace(r, path=f"loss/{loss.name}/preds") for r in rows]


def check_penalty(penalty: losses.Penalty, params, g, *, dtype="float64") -> list[LeafCheck]:
    """Rows for a regulariser R(params): ∂(g·R)/∂params."""

    def manual(p):
        _, residuals = penalty.forward(p)
        return penalty.backward(residuals, g)

    def scalar(p):
        return g * penalty.forward(p)[0]

    return _check(f"penalty/{penalty.name}", manual, jax.grad(scalar), scalar, params, dtype)


# --- every layer and loss on its own ---------------------------------------------------

def layer_cases() -> dict[str, tuple[Layer, tuple[int, ...], dict]]:
    """The layers ``check_all`` covers: name → (layer, input shape with batch, forward kwargs)."""
    b, d = 4, 5
    return {
        "dense": (layers.dense(3), (b, d), {}),
        "identity": (layers.identity(), (b, d), {}),
        "sigmoid": (layers.sigmoid(), (b, d), {}),
        "tanh": (layers.tanh(), (b, d), {}),
        "relu": (layers.relu(), (b, d), {}),
        "leaky_relu": (layers.leaky_relu(0.1), (b, d), {}),
        "elu": (layers.elu(), (b, d), {}),
        "softplus": (layers.softplus(), (b, d), {}),
        "gelu": (layers.gelu(), (b, d), {}),
        "gelu_tanh": (layers.gelu(approximate=True), (b, d), {}),
        "softmax": (layers.softmax(), (b, d), {}),
        "dropout": (layers.dropout(0.5), (b, d), {"train": True}),
        "layer_norm": (layers.layer_norm(), (b, d), {}),
        "flatten": (layers.flatten(), (b, 2, 3, 2), {}),
        "serial": (layers.serial(layers.dense(4), layers.tanh(), layers.dense(2)), (b, d), {}),
    }


LOSS_NAMES = ("mse", "huber", "xent", "bce")
CHECK_NAMES = (*layer_cases().keys(), *LOSS_NAMES, "l2")
"""Everything ``check_all`` can check, by name."""


def check_all(*, dtype: str = "float64", seed: int = 0, names: Sequence[str] | None = None) -> Report:
    """Check every layer, loss and penalty (or those ``names``) with random inputs,
    params and cotangents: one row per parameter leaf and per input."""
    dtype = tolerances.dtype_name(dtype)
    names = list(CHECK_NAMES if names is None else names)
    unknown = [n for n in names if n not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"unknown layer or loss {unknown[0]!r}; choose from: {', '.join(CHECK_NAMES)}")
    cases = layer_cases()
    rows: list[LeafCheck] = []
    with enable_x64(), highest_precision():
        key = jax.random.PRNGKey(seed)
        for name in names:
            key, k_init, k_x, k_dy, k_fwd = jax.random.split(key, 5)
            if name in cases:
                layer, shape, kwargs = cases[name]
                _, params = layer.init(k_init, shape[1:])
                params = _perturb(params, k_init)
                x = 1.5 * jax.random.normal(k_x, shape, jnp.float64)
                out = layer.forward(_cast(params, jnp.float64), x, key=k_fwd, **kwargs)[0]
                dy = jax.random.normal(k_dy, out.shape, jnp.float64)
                rows += check_layer(layer, params, x, dy, dtype=dtype,
                                    key=k_fwd if kwargs.get("train") else None,
                                    train=kwargs.get("train", False), name=name)
            elif name == "l2":
                params = {"w": jax.random.normal(k_x, (3, 4)), "b": jax.random.normal(k_dy, (4,))}
                rows += check_penalty(losses.l2_penalty(0.3), params, 1.7, dtype=dtype)
            else:
                loss = losses.get(name)
                preds, targets = _loss_inputs(name, k_x, k_dy)
                g = float(jax.random.uniform(k_fwd, (), minval=0.5, maxval=2.0))
                rows += check_loss(loss, preds, targets, g, dtype=dtype)
    return Report(dtype, tuple(rows))


def _perturb(params, key):
    """Random non-trivial values for every parameter (layer norm starts at γ=1, β=0)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, max(1, len(leaves)))
    return treedef.unflatten(
        [leaf + 0.5 * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)]
    )


def _loss_inputs(name, k_pred, k_target, batch: int = 6, classes: int = 4):
    if name == "xent":
        return (2.0 * jax.random.normal(k_pred, (batch, classes), jnp.float64),
                jax.random.randint(k_target, (batch,), 0, classes))
    if name == "bce":
        return (2.0 * jax.random.normal(k_pred, (batch, 1), jnp.float64),
                jax.random.bernoulli(k_target, 0.5, (batch,)).astype(jnp.float64))
    preds = jax.random.normal(k_pred, (batch, 2), jnp.float64)
    return preds, preds + 1.5 * jax.random.normal(k_target, (batch, 2), jnp.float64)
