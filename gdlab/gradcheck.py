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
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdlab import backprop, layers, losses, tolerances
from gdlab._compat import enable_x64, highest_precision
from gdlab.layers import Layer
from gdlab.layers.base import leaf_paths
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
        from gdlab.records import to_json  # NaN (a broken backward) becomes null

        return to_json(self.to_dict(), indent=2)

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
        lines = _table(rows)
        failed = sum(not leaf.passed for leaf in self.leaves)
        lines.append(
            f"{self.dtype}: {len(self.leaves) - failed}/{len(self.leaves)} rows pass; "
            f"worst relative error manual vs jax.grad {self.worst_rel_err:.2e}"
        )
        return "\n".join(lines)


def _table(rows) -> list[str]:
    """``rows`` of strings (the first the header) as fixed-width lines, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def compare(a, b, tol: Tolerance, *, floor: float = 1.0) -> Comparison:
    """Compare two arrays (one leaf) in float64: pass when, everywhere,
    |a−b| ≤ atol·max(floor, ‖a‖∞, ‖b‖∞) + rtol·(|a|+|b|).

    The absolute floor grows with the leaf's largest entry: an entry that is the small
    difference of much larger terms cannot be resolved more finely than the dtype's
    rounding of those terms, so beside entries of size 30 a float32 entry near 0 may be
    off by 30·atol, atol relative to the leaf's largest entry. ``floor`` floors that
    reference for a leaf whose entries all cancel to near 0 (a bias before batch norm); a
    check passes the size of the gradient it checks (``_check``), so that a gradient a
    million times smaller than 1 is checked as closely as one of size 1. A NaN or an
    infinity anywhere fails: it would otherwise make every bound infinite."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # ∞ − ∞ and ∞ / ∞ are NaN, failing
        diff = np.abs(a - b)
        scale = np.abs(a) + np.abs(b)
        size = max(floor, float(np.max(np.abs(a), initial=0.0)),
                   float(np.max(np.abs(b), initial=0.0)))
        rel = diff / np.maximum(tolerances.RELATIVE_FLOOR, scale)
    return Comparison(
        max_abs_err=float(np.max(diff, initial=0.0)),
        max_rel_err=float(np.max(rel, initial=0.0)),
        passed=bool(np.all(np.isfinite(scale))
                    and np.all(diff <= tol.atol * size + tol.rtol * scale)),
    )


def finite_differences(f: Callable, args, *, step: float = tolerances.FD_STEP,
                       chunk: int | None = None):
    """Central-difference gradient of scalar ``f(args)`` for every coordinate of ``args``.

    ``args`` must be float64. Coordinates are perturbed ``chunk`` at a time
    under one ``vmap``, so a few thousand parameters take a few compiled calls. The
    flattening and the index vectors are built on the host: done with jnp op by op, each
    would compile a program of its own for every new shape.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    host = [np.asarray(leaf, np.float64) for leaf in leaves]
    flat = np.concatenate([a.ravel() for a in host]) if host else np.zeros(0)
    n = flat.size
    chunk = max(1, min(FD_CHUNK if chunk is None else chunk, n))
    ends = np.cumsum([a.size for a in host])

    def unravel(v):  # slices: NumPy arrays stay on the host, traced ones stay traced
        return treedef.unflatten([v[end - a.size:end].reshape(a.shape)
                                  for a, end in zip(host, ends)])

    @jax.jit
    def directional(flat, idx):
        e = jax.nn.one_hot(idx, n, dtype=flat.dtype) * step  # (chunk, n), rows h·e_i
        f_plus = jax.vmap(lambda d: f(unravel(flat + d)))(e)
        f_minus = jax.vmap(lambda d: f(unravel(flat - d)))(e)
        return (f_plus - f_minus) / (2.0 * step)

    parts = []
    for start in range(0, n, chunk):
        idx = np.full(chunk, -1, np.int32)  # one_hot(−1) = 0: the padding perturbs nothing
        idx[: min(chunk, n - start)] = np.arange(start, min(start + chunk, n))
        parts.append(np.asarray(directional(flat, idx))[: min(chunk, n - start)])
    return jax.tree.map(jnp.asarray, unravel(np.concatenate(parts) if parts else np.zeros(0)))


def _cast(tree, dtype):
    """Floating leaves to ``dtype``; integer leaves (token ids) unchanged. Concrete arrays
    are cast on the host, where an eager ``astype`` would compile a program per shape."""

    def cast(a):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return a
        if isinstance(a, jax.core.Tracer):
            return a.astype(dtype)
        return jnp.asarray(np.asarray(a).astype(dtype))

    return jax.tree.map(cast, tree)


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
    # one program for both: compiling is most of a small check's time
    g_manual, g_auto = jax.jit(lambda a: (manual_grad(a), autodiff_grad(a)))(args_d)
    g_fd = finite_differences(scalar, _cast(args, jnp.float64))
    analytic = tolerances.ANALYTIC[dtype]
    fd_tol = tolerances.FINITE_DIFF[dtype]
    # The absolute floor's reference: the largest entry of the whole float64 gradient, up
    # to 1. Against a fixed 1, a small gradient (a deep sigmoid net's first layers, ~1e-7)
    # would pass in float32 whatever its value.
    scale = min(1.0, max((float(np.max(np.abs(np.asarray(g, np.float64)), initial=0.0))
                          for g in jax.tree_util.tree_leaves(g_fd)), default=1.0))
    scale = max(scale, tolerances.RELATIVE_FLOOR)
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
                vs_autodiff=compare(gm, ga, analytic, floor=scale),
                manual_vs_fd=compare(gm, gf, fd_tol, floor=scale),
                autodiff_vs_fd=compare(ga, gf, fd_tol, floor=scale),
            )
        )
    if jax.tree_util.tree_structure(g_manual) != jax.tree_util.tree_structure(g_auto):
        raise ValueError(f"{name}: manual gradients are not shaped like the parameters")
    return rows


def check_model(
    model: Layer,
    loss: Loss,
    params,
    state,
    x,
    y,
    *,
    dtype: str = "float64",
    key=None,
    train: bool = False,
    weights=None,
) -> Report:
    """Check ∂J/∂params of ``loss(model(params, state, x), y)``, one row per parameter leaf.

    The model ``state`` (batch-norm statistics) is held fixed and never checked:
    it is not a parameter. ``train=True`` checks the training-mode forward
    (batch statistics, dropout with ``key``), which is what descent differentiates.
    """
    dtype = tolerances.dtype_name(dtype)
    with enable_x64(), highest_precision():
        manual = backprop.manual(model, loss)
        auto = backprop.autodiff(model, loss)

        def data(p):
            # x, float targets, weights and state follow the params' dtype, so the float64
            # copy is float64 throughout (integer inputs such as token ids stay integers).
            dt = jax.tree_util.tree_leaves(p)[0].dtype
            w = None if weights is None else jnp.asarray(weights, dt)
            return _cast(state, dt), _cast(x, dt), _cast_targets(y, p), w

        def objective(p):
            s, xs, ys, w = data(p)
            preds = model.forward(p, s, xs, key=key, train=train, weights=w)[0]
            return loss.value(preds, ys, w)

        rows = _check(
            "",
            lambda p: manual(p, *data(p), key=key, train=train)[1],
            lambda p: auto(p, *data(p), key=key, train=train)[1],
            objective,
            params,
            dtype,
        )
    return Report(dtype, tuple(rows))


@dataclasses.dataclass(frozen=True)
class MixedLeaf:
    """One row of a mixed-precision check: a parameter leaf and how far its two gradients,
    computed in the compute dtype, are from the float64 one (‖g − g_64‖ / ‖g_64‖)."""

    path: str
    shape: tuple[int, ...]
    manual_err: float    # hand-written backprop in mixed precision
    autodiff_err: float  # jax.grad in mixed precision
    passed: bool


@dataclasses.dataclass(frozen=True)
class MixedReport:
    """A mixed-precision check (``check_mixed_precision``): every leaf within ``tolerance``."""

    compute_dtype: str
    tolerance: float
    leaves: tuple[MixedLeaf, ...]

    @property
    def passed(self) -> bool:
        return all(leaf.passed for leaf in self.leaves)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "compute_dtype": self.compute_dtype,
                "tolerance": self.tolerance,
                "leaves": [dataclasses.asdict(leaf) for leaf in self.leaves]}

    def to_json(self) -> str:
        from gdlab.records import to_json

        return to_json(self.to_dict(), indent=2)

    def table(self) -> str:
        header = ("path", "shape", "manual vs float64", "jax.grad vs float64", "result")
        rows = [header] + [(leaf.path, "x".join(map(str, leaf.shape)) or "scalar",
                            f"{leaf.manual_err:.2e}", f"{leaf.autodiff_err:.2e}",
                            "pass" if leaf.passed else "FAIL") for leaf in self.leaves]
        lines = _table(rows)
        failed = sum(not leaf.passed for leaf in self.leaves)
        worst = {name: max((getattr(leaf, f"{name}_err") for leaf in self.leaves), default=0.0)
                 for name in ("manual", "autodiff")}
        lines.append(f"mixed precision ({self.compute_dtype} compute, float32 params): "
                     f"{len(self.leaves) - failed}/{len(self.leaves)} rows pass (manual within "
                     f"{self.tolerance:g} of float64, or within {tolerances.MIXED_RATIO:g}× "
                     f"jax.grad's error); worst manual {worst['manual']:.2e}, "
                     f"jax.grad {worst['autodiff']:.2e}")
        return "\n".join(lines)


def check_mixed_precision(model: Layer, loss: Loss, params, state, x, y, *,
                          compute_dtype: str = "bfloat16", key=None, train: bool = False,
                          weights=None) -> MixedReport:
    """The gradient in mixed precision (``backprop.value_and_grad(..., compute_dtype=...)``:
    float32 params and data, forward and backward in ``compute_dtype``, the loss in float32),
    manual and jax.grad, against jax.grad in float64, leaf by leaf in norm. A leaf passes
    when the manual error is within ``tolerances.MIXED``, or within ``MIXED_RATIO`` times
    jax.grad's own error where bfloat16 rounding alone exceeds that bound."""
    tol = tolerances.MIXED[compute_dtype]
    with enable_x64(), highest_precision():
        def run(method, dt, compute=None):
            vg = backprop.value_and_grad(model, loss, method, compute_dtype=compute)
            w = None if weights is None else jnp.asarray(weights, dt)
            p = _cast(params, dt)
            return jax.jit(lambda p, s, xs, ys: vg(p, s, xs, ys, w, key=key, train=train)[1])(
                p, _cast(state, dt), _cast(x, dt), _cast_targets(y, p))

        reference = run("autodiff", jnp.float64)
        mixed = {m: run(m, jnp.float32, jnp.dtype(compute_dtype)) for m in ("manual", "autodiff")}

    def err(g, r):
        r = np.asarray(r, np.float64)
        return float(np.linalg.norm(np.asarray(g, np.float64) - r)
                     / max(np.linalg.norm(r), tolerances.RELATIVE_FLOOR))

    rows = []
    for path, ref, gm, ga in zip(leaf_paths(params), *(jax.tree_util.tree_leaves(t) for t in
                                                        (reference, mixed["manual"],
                                                         mixed["autodiff"]))):
        e_m, e_a = err(gm, ref), err(ga, ref)
        rows.append(MixedLeaf(path, tuple(ref.shape), e_m, e_a,
                              e_m <= max(tol, tolerances.MIXED_RATIO * e_a)))
    return MixedReport(compute_dtype, tol, tuple(rows))


MODELS = ("mlp", "cnn", "transformer")
"""The model families ``check_random_model`` builds."""


def random_model(model: str = "mlp", *, loss: str = "xent", hidden: Sequence[int] = (32, 32),
                 activation: str = "tanh", input_dim: int = 8, num_classes: int = 5):
    """``(net, in_shape)``: the random problem's model and the shape of one example (see
    ``random_problem``)."""
    from gdlab import models

    if model == "mlp":
        outputs = 1 if loss == "bce" else num_classes
        return models.mlp([*hidden, outputs], activation), (input_dim,)
    if model == "cnn":
        return models.cnn(num_classes, channels=(4, 6), kernel_size=3, hidden=(8,)), (8, 8, 1)
    if model == "transformer":
        return models.transformer(num_classes, num_classes, max_len=6, width=8, depth=2,
                                  num_heads=2, mlp_ratio=2, causal=True), (6,)
    raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")


FD_CHUNK = 512
"""Coordinates ``finite_differences`` perturbs at once, under one ``vmap``."""

FD_MAX_PARAMS = 100_000
"""The most parameters the experiments check or time by finite differences: 2P forward
passes per gradient, each of cost ∝ P, so their time grows as P² (2·10⁵ passes here)."""


def problem_size(model: str = "mlp", *, batch_size: int = 16, **spec) -> tuple[int, int]:
    """``(P, bytes)`` of the random problem of ``random_problem``, without building it:
    its parameter count, and about the memory its finite differences take at once (a chunk
    of ``FD_CHUNK`` perturbed copies of the parameters, and of the batch's forward values,
    float64). ``spec``: ``random_model``'s arguments."""
    net, in_shape = random_model(model, **spec)
    _, params, state = jax.eval_shape(lambda k: net.init(k, in_shape), jax.random.PRNGKey(0))
    leaf = jax.tree.leaves(params)[0]  # shapes only: the example in the params' own dtype
    one = jax.ShapeDtypeStruct((1, *in_shape), jnp.int32 if model == "transformer" else leaf.dtype)
    _, _, residuals = jax.eval_shape(
        lambda p, s, x: net.forward(p, s, x, train=True, key=jax.random.PRNGKey(0)),
        params, state, one)
    count = sum(leaf.size for leaf in jax.tree.leaves(params))
    per_example = math.prod(in_shape) + sum(leaf.size for leaf in jax.tree.leaves(residuals))
    chunk = min(FD_CHUNK, count)
    return count, 8 * chunk * (count + 2 * batch_size * per_example)


def random_problem(model: str = "mlp", *, loss: str = "xent", hidden: Sequence[int] = (32, 32),
                   activation: str = "tanh", batch_size: int = 16, input_dim: int = 8,
                   num_classes: int = 5, seed: int = 0):
    """``(model, params, state, x, y)``: a small random model and a batch that suits it.

    mlp: ``hidden`` layers on ``input_dim`` normal features, targets for ``loss``
    (``num_classes`` logits for xent, one logit for bce, ``num_classes`` outputs
    for mse and huber). cnn: two conv stages on 8×8×1 images with ``num_classes``
    logits. transformer: two causal blocks on length-6 sequences over
    ``num_classes`` symbols, per-token logits. Call it with 64-bit floats on.
    """
    k_init, k_x, k_y = jax.random.split(jax.random.PRNGKey(seed), 3)
    net, in_shape = random_model(model, loss=loss, hidden=hidden, activation=activation,
                                 input_dim=input_dim, num_classes=num_classes)
    if model == "transformer":
        x = jax.random.randint(k_x, (batch_size, *in_shape), 0, num_classes)
    else:
        x = jax.random.normal(k_x, (batch_size, *in_shape), jnp.float64)
    _, params, state = net.init(k_init, in_shape)
    if model != "mlp":
        if loss != "xent":
            raise ValueError(f"the {model} check uses the xent loss, got {loss!r}")
        # layer norm γ ≠ 1, non-zero biases
        params = _perturb(params, np.random.default_rng(seed), 0.1)
        y = jax.random.randint(k_y, x.shape[:1] + ((6,) if model == "transformer" else ()),
                               0, num_classes)
    elif loss == "xent":
        y = jax.random.randint(k_y, (batch_size,), 0, num_classes)
    elif loss == "bce":
        y = jax.random.bernoulli(k_y, 0.5, (batch_size,)).astype(jnp.float64)
    else:
        y = jax.random.normal(k_y, (batch_size, num_classes), jnp.float64)
    return net, params, state, x, y


def check_random_model(model: str = "mlp", *, loss: str = "xent", dtype: str = "float64",
                       mixed: str | None = None, **problem) -> Report | MixedReport:
    """Check a random ``model`` (``MODELS``) on a random batch, in training mode
    (batch statistics), with ``loss``; ``problem`` goes to ``random_problem``. With
    ``mixed`` (a compute dtype, "bfloat16"), the mixed-precision check instead
    (``check_mixed_precision``; ``dtype`` is then unused)."""
    with enable_x64():
        net, params, state, x, y = random_problem(model, loss=loss, **problem)
        if mixed is not None:
            return check_mixed_precision(net, losses.get(loss), params, state, x, y,
                                         compute_dtype=mixed, train=True)
        return check_model(net, losses.get(loss), params, state, x, y, dtype=dtype, train=True)


def check_random_mlp(*, hidden: Sequence[int] = (32, 32), activation: str = "tanh",
                     loss: str = "xent", dtype: str = "float64", batch_size: int = 16,
                     input_dim: int = 8, num_classes: int = 5, seed: int = 0) -> Report:
    """Check an ``mlp`` on a random batch: normal inputs, targets that suit ``loss``."""
    return check_random_model("mlp", loss=loss, dtype=dtype, hidden=hidden,
                              activation=activation, batch_size=batch_size,
                              input_dim=input_dim, num_classes=num_classes, seed=seed)


def _cast_targets(y, params):
    y = jnp.asarray(y)
    if jnp.issubdtype(y.dtype, jnp.floating):
        return y.astype(jax.tree_util.tree_leaves(params)[0].dtype)
    return y


def check_layer(layer: Layer, params, state, x, dy, *, dtype="float64", key=None, train=False,
                weights=None, name: str | None = None) -> list[LeafCheck]:
    """Rows for one layer: ∂⟨forward(params, state, x), dy⟩ with respect to each param leaf
    and, when it is floating point, x. The state is held fixed (it is not a parameter)."""
    name = name or layer.name
    differentiate_x = jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)

    def unpack(args):
        dt = jax.tree_util.tree_leaves(args)[0].dtype  # the dtype under check
        xs = args["x"] if differentiate_x else x
        w = None if weights is None else jnp.asarray(weights, dt)
        return args["params"], _cast(state, dt), xs, w, jnp.asarray(dy, dt)

    def manual(args):
        p, s, xs, w, cot = unpack(args)
        _, _, residuals = layer.forward(p, s, xs, key=key, train=train, weights=w)
        dparams, dx = layer.backward(p, residuals, cot)
        return {"params": dparams, "x": dx} if differentiate_x else {"params": dparams}

    def scalar(args):
        p, s, xs, w, cot = unpack(args)
        y = layer.forward(p, s, xs, key=key, train=train, weights=w)[0]
        return jnp.sum(y * cot)

    args = {"params": params, "x": x} if differentiate_x else {"params": params}
    return _check(name, manual, jax.grad(scalar), scalar, args, dtype)


def check_loss(loss: Loss, preds, targets, g, *, dtype="float64",
               name: str | None = None) -> list[LeafCheck]:
    """Rows for one loss: ∂(g·J(preds, targets))/∂preds."""
    name = name or loss.name

    def targets_for(p):
        return _cast_targets(targets, p)

    def manual(p):
        _, residuals = loss.forward(p, targets_for(p))
        return loss.backward(residuals, jnp.asarray(g, p.dtype))

    def scalar(p):
        return jnp.asarray(g, p.dtype) * loss.value(p, targets_for(p))

    rows = _check(f"loss/{name}", manual, jax.grad(scalar), scalar, preds, dtype)
    return [dataclasses.replace(r, path=f"loss/{name}/preds") for r in rows]


def check_penalty(penalty: losses.Penalty, params, g, *, dtype="float64") -> list[LeafCheck]:
    """Rows for a regulariser R(params): ∂(g·R)/∂params."""

    def manual(p):
        _, residuals = penalty.forward(p)
        return penalty.backward(residuals, g)

    def scalar(p):
        return g * penalty.forward(p)[0]

    return _check(f"penalty/{penalty.name}", manual, jax.grad(scalar), scalar, params, dtype)


# --- every layer and loss on its own ---------------------------------------------------

class Case(NamedTuple):
    """One layer to check: its input shape (with batch), forward mode, and input kind."""

    layer: Layer
    shape: tuple[int, ...]   # the input x, batch axis first
    train: bool = False      # training-mode forward (dropout on, batch statistics)
    vocab: int = 0           # > 0: x holds integer ids below ``vocab`` (no ∂J/∂x row)
    masked: bool = False     # pass per-example weights with zeros (a padded last batch)


def layer_cases() -> dict[str, Case]:
    """The layers ``check_all`` covers, by name."""
    b, d = 4, 5
    img = (3, 6, 5, 4)   # (B, H, W, C)
    seq = (3, 5, 8)      # (B, T, D)
    block = layers.transformer_block(8, 2, mlp_ratio=2)
    return {
        "dense": Case(layers.dense(3), (b, d)),
        "identity": Case(layers.identity(), (b, d)),
        "sigmoid": Case(layers.sigmoid(), (b, d)),
        "tanh": Case(layers.tanh(), (b, d)),
        "relu": Case(layers.relu(), (b, d)),
        "leaky_relu": Case(layers.leaky_relu(0.1), (b, d)),
        "elu": Case(layers.elu(), (b, d)),
        "softplus": Case(layers.softplus(), (b, d)),
        "gelu": Case(layers.gelu(), (b, d)),
        "gelu_tanh": Case(layers.gelu(approximate=True), (b, d)),
        "softmax": Case(layers.softmax(), (b, d)),
        "dropout": Case(layers.dropout(0.5), (b, d), train=True),
        "layer_norm": Case(layers.layer_norm(), (b, d)),
        "flatten": Case(layers.flatten(), (b, 2, 3, 2)),
        "conv2d": Case(layers.conv2d(3, 3), img),
        "conv2d_strided": Case(layers.conv2d(3, (2, 3), strides=2, padding="VALID"), img),
        "conv2d_dilated_grouped": Case(
            layers.conv2d(6, 3, dilation=2, feature_groups=2, padding=((1, 2), (2, 1))), img),
        "max_pool": Case(layers.max_pool(2), img),
        "max_pool_overlapping": Case(layers.max_pool(3, strides=2, padding="SAME"), img),
        "avg_pool": Case(layers.avg_pool(2, strides=1, padding="SAME"), img),
        "global_avg_pool": Case(layers.global_avg_pool(), img),
        "batch_norm_train": Case(layers.batch_norm(), (6, d), train=True),
        "batch_norm_train_masked": Case(layers.batch_norm(), (6, d), train=True, masked=True),
        "batch_norm_train_image": Case(layers.batch_norm(), img, train=True),
        "batch_norm_eval": Case(layers.batch_norm(), (6, d)),
        "embedding": Case(layers.embedding(7, 4), (3, 5), vocab=7),
        "positional_embedding": Case(layers.positional_embedding(6), seq),
        "attention": Case(layers.multi_head_attention(2), seq),
        "attention_causal": Case(layers.multi_head_attention(2, causal=True), seq),
        "transformer_block": Case(block, seq),
        "residual": Case(layers.residual(layers.serial(layers.dense(d), layers.tanh())), (b, d)),
        "parallel_sum": Case(layers.parallel(layers.dense(3), layers.serial(
            layers.dense(4), layers.tanh(), layers.dense(3))), (b, d)),
        "parallel_concat": Case(layers.parallel(layers.dense(3), layers.tanh(),
                                                merge="concat"), (b, d)),
        "serial": Case(layers.serial(layers.dense(4), layers.tanh(), layers.dense(2)), (b, d)),
    }


LOSS_NAMES = ("mse", "huber", "xent", "xent_tokens", "bce")
CHECK_NAMES = (*layer_cases().keys(), *LOSS_NAMES, "l2")
"""Everything ``check_all`` can check, by name."""


def check_all(*, dtype: str = "float64", seed: int = 0, names: Sequence[str] | None = None) -> Report:
    """Check every layer, loss and penalty (or those ``names``) with random inputs,
    params, state and cotangents: one row per parameter leaf and per input."""
    dtype = tolerances.dtype_name(dtype)
    names = list(CHECK_NAMES if names is None else names)
    unknown = [n for n in names if n not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"unknown layer or loss {unknown[0]!r}; choose from: {', '.join(CHECK_NAMES)}")
    cases = layer_cases()
    rows: list[LeafCheck] = []
    # The random values come from NumPy: drawn op by op with jax.random, every new shape
    # would compile its own program, and those compiles were most of check_all's time.
    rng = np.random.default_rng(seed)
    with enable_x64(), highest_precision():
        key = jax.random.PRNGKey(seed)
        for name in names:
            key, k_init, k_fwd = jax.random.split(key, 3)
            if name in cases:
                case = cases[name]
                fwd_key = k_fwd if case.train else None
                params, state, x, weights, dy = _case_inputs(case, k_init, fwd_key, rng)
                rows += check_layer(case.layer, params, state, x, dy, dtype=dtype, key=fwd_key,
                                    train=case.train, weights=weights, name=name)
            elif name == "l2":
                params = {"w": _normal(rng, (3, 4)), "b": _normal(rng, (4,))}
                rows += check_penalty(losses.l2_penalty(0.3), params, 1.7, dtype=dtype)
            else:
                loss = losses.get(name.removesuffix("_tokens"))
                preds, targets = _loss_inputs(name, rng)
                rows += check_loss(loss, preds, targets, float(rng.uniform(0.5, 2.0)),
                                   dtype=dtype, name=name)
    return Report(dtype, tuple(rows))


def _normal(rng: np.random.Generator, shape, scale: float = 1.0):
    return jnp.asarray(scale * rng.standard_normal(shape), jnp.float64)


def _case_inputs(case: Case, k_init, fwd_key, rng: np.random.Generator):
    """``(params, state, x, weights, dy)`` for one layer case: the layer's initial params and
    statistics moved to random non-trivial values, a random input, and a random cotangent
    shaped like the output (its shape found by tracing, not by running the forward)."""
    _, params, state = case.layer.init(k_init, case.shape[1:])
    params = _perturb(params, rng)
    state = _perturb_state(state, rng)
    if case.vocab:
        x = jnp.asarray(rng.integers(0, case.vocab, case.shape))
    else:
        x = _normal(rng, case.shape, 1.5)
    weights = None
    if case.masked:  # the last third of the batch is padding
        n = case.shape[0]
        weights = jnp.asarray(np.arange(n) < n - n // 3, jnp.float64)
    out = jax.eval_shape(lambda p, s, x: case.layer.forward(
        p, s, x, key=fwd_key, train=case.train, weights=weights)[0], params, state, x)
    return params, state, x, weights, _normal(rng, out.shape)


def _perturb(params, rng: np.random.Generator, scale: float = 0.5):
    """Random non-trivial float64 values for every parameter (layer norm starts at γ=1,
    β=0): each value moved by ``scale`` times a standard normal."""
    return jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf, np.float64)
                                                 + scale * rng.standard_normal(leaf.shape)),
                        params)


def _perturb_state(state, rng: np.random.Generator):
    """Running statistics away from their initial 0 and 1: positive, so variances stay valid."""
    return jax.tree.map(lambda leaf: jnp.asarray(
        0.2 + np.abs(np.asarray(leaf, np.float64) + 0.5 * rng.standard_normal(leaf.shape))),
        state)


def _loss_inputs(name, rng: np.random.Generator, batch: int = 6, classes: int = 4):
    if name == "xent_tokens":  # per-token logits (B, T, C) against labels (B, T)
        return (_normal(rng, (batch, 3, classes), 2.0),
                jnp.asarray(rng.integers(0, classes, (batch, 3))))
    if name == "xent":
        return _normal(rng, (batch, classes), 2.0), jnp.asarray(rng.integers(0, classes, batch))
    if name == "bce":
        return (_normal(rng, (batch, 1), 2.0),
                jnp.asarray(rng.integers(0, 2, batch), jnp.float64))
    preds = _normal(rng, (batch, 2))
    return preds, preds + _normal(rng, (batch, 2), 1.5)
