"""What a gradient costs: finite differences against backpropagation.

For a model with P parameters, one forward pass costs ∝ P (every weight is used
once per example). The naive gradient perturbs one parameter at a time, with
central differences

    ∂J/∂θ_i ≈ (J(θ + h·e_i) − J(θ − h·e_i)) / 2h,

so it takes 2P forward passes: time ∝ P². Backpropagation gets all P
derivatives from one forward and one backward pass, each ∝ P: time ∝ P. This
module builds MLPs of growing width, times both (and ``jax.grad``), and fits
the log-log slope of time against P.

Timing follows the gdlab rule for measurements: compile and warm up outside the
clock, ``jax.block_until_ready``, median of repeated runs (each run repeats a
fast call enough times to last ``min_seconds``).

Everything here works in float64 (finite differences need it to be gradients at
all); ``measure_size`` turns 64-bit floats on for its own work.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gdlab import backprop, losses, models, tolerances
from gdlab._compat import enable_x64
from gdlab.layers import Layer, init_shapes

METHODS = ("finite_differences", "backprop", "autodiff")
"""What is timed: 2P forward passes, manual backprop (``gdlab.backprop.manual``), jax.grad."""


# --- the models ----------------------------------------------------------------------

def mlp_sizes(width: int, depth: int, outputs: int) -> list[int]:
    """Layer output sizes of the timed MLP: ``depth`` hidden layers of ``width``, then ``outputs``."""
    return [width] * depth + [outputs]


def param_count(width: int, *, depth: int, input_dim: int, outputs: int) -> int:
    """P of that MLP: (D_in + 1)·w + (depth − 1)·(w + 1)·w + (w + 1)·outputs."""
    sizes = [input_dim, *mlp_sizes(width, depth, outputs)]
    return sum((d_in + 1) * d_out for d_in, d_out in itertools.pairwise(sizes))


def build_problem(width: int, *, depth: int, input_dim: int, outputs: int, batch_size: int,
                  seed: int, dtype=jnp.float64):
    """A tanh MLP (smooth, so finite differences apply), its params, and a random
    regression batch ``(x, y)`` for the mean squared error, all in ``dtype``
    (float64 needs 64-bit floats enabled).

    The parameter shapes come from ``model.init`` (traced with ``jax.eval_shape``,
    nothing compiled); the values are NumPy draws, weights ~ N(0, 1/fan_in) and
    biases ~ N(0, 0.1²) (non-zero, so their gradients are exercised). Compiling
    a random initialiser per size would cost more than timing a small model.
    """
    model = models.mlp(mlp_sizes(width, depth, outputs), "tanh", dtype=dtype)
    _, shapes, _ = jax.eval_shape(lambda k: model.init(k, (input_dim,)),
                                  jax.ShapeDtypeStruct((2,), jnp.uint32))  # a raw PRNG key
    rng = np.random.default_rng(seed)

    def draw(leaf):
        scale = 1.0 / np.sqrt(leaf.shape[0]) if len(leaf.shape) == 2 else 0.1
        return jnp.asarray(scale * rng.standard_normal(leaf.shape), dtype)

    params = jax.tree.map(draw, shapes)
    x = jnp.asarray(rng.standard_normal((batch_size, input_dim)), dtype)
    y = jnp.asarray(rng.standard_normal((batch_size, outputs)), dtype)
    return model, params, x, y


# --- the three gradients ---------------------------------------------------------------

def fd_gradient_fn(model: Layer, loss: losses.Loss, params, *,
                   step: float = tolerances.FD_STEP) -> Callable:
    """``grad(params, x, y) -> grads`` by central differences, one coordinate at a time.

    ``lax.map`` runs the P coordinates sequentially; each does two full forward
    passes, J(θ + h·e_i) and J(θ − h·e_i): 2P forward passes in all, nothing
    shared or batched between them. Jit the result.
    """
    _, unravel = ravel_pytree(params)

    def objective(flat, x, y):
        return loss.value(model.forward(unravel(flat), _no_state(model, x), x)[0], y)

    def grad(params, x, y):
        flat, _ = ravel_pytree(params)

        def one(i):  # ∂J/∂θ_i ≈ (J(θ + h·e_i) − J(θ − h·e_i)) / 2h
            return (objective(flat.at[i].add(step), x, y)
                    - objective(flat.at[i].add(-step), x, y)) / (2.0 * step)

        return unravel(jax.lax.map(one, jnp.arange(flat.size)))

    return grad


def _no_state(model: Layer, x):
    """The timed MLPs carry no model state: their state tree, which has no leaves."""
    state = init_shapes(model, x.shape[1:])[2]
    if jax.tree_util.tree_leaves(state):
        raise ValueError(f"{model.name} has model state; gdlab.cost times stateless models")
    return state


def gradient_fns(model: Layer, loss: losses.Loss, params) -> dict[str, Callable]:
    """``grad(params, x, y) -> grads`` for each of ``METHODS``, jitted."""
    manual = backprop.manual(model, loss)
    auto = backprop.autodiff(model, loss)
    return {
        "finite_differences": jax.jit(fd_gradient_fn(model, loss, params)),
        "backprop": jax.jit(lambda p, x, y: manual(p, _no_state(model, x), x, y)[1]),
        "autodiff": jax.jit(lambda p, x, y: auto(p, _no_state(model, x), x, y)[1]),
    }


# --- timing ------------------------------------------------------------------------------

def time_call(fn: Callable, *args, repeats: int = 5, min_seconds: float = 1e-2,
              warm_up: bool = True) -> float:
    """Median seconds per call of ``fn(*args)`` over ``repeats`` timed runs.

    A warm-up call compiles first, off the clock (``warm_up=False`` when the
    caller has already made one). Each run makes ``n`` back-to-back calls, ``n``
    chosen so a run lasts ≥ ``min_seconds`` (a fast call alone is mostly timer
    noise), and waits for the last result with ``jax.block_until_ready``.
    """
    if warm_up:
        jax.block_until_ready(fn(*args))

    def run(n):
        t0 = time.perf_counter()
        for _ in range(n):
            out = fn(*args)
        jax.block_until_ready(out)
        return time.perf_counter() - t0

    n = 1
    elapsed = run(n)
    while elapsed < min_seconds:  # calibrate n; the last calibration run is the first sample
        n *= max(2, min(10, int(min_seconds / max(elapsed, 1e-9)) + 1))
        elapsed = run(n)
    samples = [elapsed / n] + [run(n) / n for _ in range(repeats - 1)]
    return float(np.median(samples))


# --- fitting -----------------------------------------------------------------------------

def fit_slope(params: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through (log P, log t): ``(slope, intercept)``, natural logs.

    ``t = c·P^k`` gives slope ``k`` and intercept ``log c`` exactly.
    """
    p = np.asarray(params, np.float64)
    t = np.asarray(seconds, np.float64)
    if p.size < 2 or np.unique(p).size < 2:
        raise ValueError("fitting a slope needs at least two different sizes")
    if np.any(p <= 0) or np.any(t <= 0):
        raise ValueError("sizes and times must be positive to fit a log-log slope")
    slope, intercept = np.polyfit(np.log(p), np.log(t), 1)
    return float(slope), float(intercept)


# --- the measurement -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SizeResult:
    """One model size: its parameter count, seconds per gradient by each method."""

    width: int
    params: int                  # P
    forward_passes_fd: int       # 2P
    seconds: dict[str, float]    # method -> median seconds per gradient
    fd_over_backprop: float      # seconds["finite_differences"] / seconds["backprop"]
    fd_max_rel_err: float        # worst |FD − backprop| / (|FD| + |backprop|) over all P entries
    fd_matches_backprop: bool    # within tolerances.FINITE_DIFF["float64"]


def measure_size(width: int, *, depth: int, input_dim: int, outputs: int, batch_size: int,
                 repeats: int, seed: int, min_seconds: float = 1e-2) -> SizeResult:
    """Time every method on one MLP (float64) and check FD against backprop.

    Each method's first call compiles it and is the untimed warm-up; the FD and
    backprop gradients of those calls are compared entrywise (a correctness
    check, not a timing).
    """
    from gdlab.gradcheck import compare

    with enable_x64():
        model, params, x, y = build_problem(width, depth=depth, input_dim=input_dim,
                                            outputs=outputs, batch_size=batch_size, seed=seed)
        fns = gradient_fns(model, losses.mse(), params)
        grads = {m: jax.block_until_ready(fn(params, x, y)) for m, fn in fns.items()}  # warm-up
        seconds = {m: time_call(fns[m], params, x, y, repeats=repeats, min_seconds=min_seconds,
                                warm_up=False)
                   for m in METHODS}
        check = compare(ravel_pytree(grads["finite_differences"])[0],
                        ravel_pytree(grads["backprop"])[0], tolerances.FINITE_DIFF["float64"])
    p = param_count(width, depth=depth, input_dim=input_dim, outputs=outputs)
    return SizeResult(
        width=width, params=p, forward_passes_fd=2 * p, seconds=seconds,
        fd_over_backprop=seconds["finite_differences"] / seconds["backprop"],
        fd_max_rel_err=check.max_rel_err, fd_matches_backprop=check.passed,
    )


def slopes(results: Sequence[SizeResult], methods: Sequence[str] = METHODS) -> dict[str, float]:
    """The fitted log-log slope of seconds against P, per method (≈ 2 for finite
    differences, ≈ 1 for backprop once compute outweighs per-call overhead)."""
    ps = [r.params for r in results]
    return {m: fit_slope(ps, [r.seconds[m] for r in results])[0] for m in methods}
