"""What a gradient costs: finite differences against backpropagation.

For a model with P parameters, one forward pass costs ∝ P (every weight is used
once per example). The naive gradient perturbs one parameter at a time, with
central differences

    ∂J/∂θ_i ≈ (J(θ + h·e_i) − J(θ − h·e_i)) / 2h,

so it takes 2P forward passes: time ∝ P². Backpropagation gets all P
derivatives from one forward and one backward pass, each ∝ P: time ∝ P. This
module builds tanh MLPs, times both (and ``jax.grad``), counts their floating-point
operations as XLA compiles them, and fits the log-log slope of time (and of
operations) against P.

Those slopes are 2 and 1 only where compute outweighs the fixed cost of a call
(dispatch, a loop iteration): on small models a gradient costs about the same at
any P and the slopes come out far below. The experiment therefore grows the MLP
in depth at a fixed width and a batch of hundreds: every layer adds the same
matmuls, tanh and per-op overhead, so each forward pass costs ∝ P throughout.

Timing follows the gdlab rule for measurements: compile and warm up outside the
clock, ``jax.block_until_ready``, median of repeated runs (each run repeats a
fast call enough times to last ``min_seconds``).

Everything here works in float64 (finite differences need it to be gradients at
all); ``measure_size`` turns 64-bit floats on for its own work.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

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

def objective_fn(model: Layer, loss: losses.Loss, params) -> Callable:
    """``J(flat, x, y)``: the loss of the model at the flat parameter vector ``flat``
    (shaped like ``ravel_pytree(params)[0]``): one forward pass."""
    _, unravel = ravel_pytree(params)

    def objective(flat, x, y):
        return loss.value(model.forward(unravel(flat), _no_state(model, x), x)[0], y)

    return objective


def fd_gradient_fn(model: Layer, loss: losses.Loss, params, *,
                   step: float = tolerances.FD_STEP) -> Callable:
    """``grad(params, x, y) -> grads`` by central differences, one coordinate at a time.

    ``lax.map`` runs the P coordinates sequentially; each does two full forward
    passes, J(θ + h·e_i) and J(θ − h·e_i): 2P forward passes in all, nothing
    shared or batched between them. Jit the result.
    """
    _, unravel = ravel_pytree(params)
    objective = objective_fn(model, loss, params)

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


# --- counting operations --------------------------------------------------------------

def xla_flops(fn: Callable, *args) -> float:
    """Floating-point operations of one call of ``fn(*args)`` as XLA counts them after
    compiling it (``cost_analysis()["flops"]``: a multiply-add is 2, tanh and exp are
    not counted); NaN where the backend gives no count.

    XLA counts a loop's body once whatever its trip count, so ``fn`` should hold
    no loop that matters: see ``flop_counts``.
    """
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)  # a jitted fn: its cached compile
    analysis = jitted.lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per device program
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops > 0 else math.nan


def flop_counts(model: Layer, loss: losses.Loss, params, x, y, *,
                fns: dict[str, Callable] | None = None) -> dict[str, float]:
    """Operations per gradient for each of ``METHODS``.

    Finite differences: 2P × one forward pass (XLA's count of ``objective_fn``);
    the P perturbations and differences add O(P), not counted. Backprop and
    jax.grad: XLA's count of the whole compiled gradient, which has no loop.
    ``fns``: the functions of ``gradient_fns``, when the caller already has them.
    """
    flat, _ = ravel_pytree(params)
    fns = fns or gradient_fns(model, loss, params)
    forward = xla_flops(objective_fn(model, loss, params), flat, x, y)
    return {
        "finite_differences": 2 * flat.size * forward,
        "backprop": xla_flops(fns["backprop"], params, x, y),
        "autodiff": xla_flops(fns["autodiff"], params, x, y),
    }


# --- timing ------------------------------------------------------------------------------

def _run(fn: Callable, args: tuple, n: int) -> float:
    """Seconds for ``n`` back-to-back calls of ``fn(*args)``, waiting for the last result."""
    t0 = time.perf_counter()
    for _ in range(n):
        out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - t0


def calibrate(fn: Callable, *args, min_seconds: float = 1e-2) -> tuple[int, float]:
    """``(n, seconds per call)``: the number of back-to-back calls a timed run needs to
    last ≥ ``min_seconds`` (a fast call alone is mostly timer noise), and what the
    last calibration run measured. ``fn`` must already be compiled."""
    n = 1
    elapsed = _run(fn, args, n)
    while elapsed < min_seconds:
        n *= max(2, min(10, int(min_seconds / max(elapsed, 1e-9)) + 1))
        elapsed = _run(fn, args, n)
    return n, elapsed / n


def time_call(fn: Callable, *args, repeats: int = 5, min_seconds: float = 1e-2,
              warm_up: bool = True) -> float:
    """Median seconds per call of ``fn(*args)`` over ``repeats`` timed runs.

    A warm-up call compiles first, off the clock (``warm_up=False`` when the
    caller has already made one). Each run makes ``n`` back-to-back calls, ``n``
    chosen by ``calibrate`` so a run lasts ≥ ``min_seconds``, and waits for the
    last result with ``jax.block_until_ready``; the last calibration run is the
    first sample.
    """
    if warm_up:
        jax.block_until_ready(fn(*args))
    n, first = calibrate(fn, *args, min_seconds=min_seconds)
    samples = [first] + [_run(fn, args, n) / n for _ in range(repeats - 1)]
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
    """One model size: its parameter count, seconds and operations per gradient by each method."""

    width: int
    depth: int                   # hidden layers
    params: int                  # P
    forward_passes_fd: int       # 2P
    seconds: dict[str, float]    # method -> median seconds per gradient
    runs: dict[str, int]         # method -> timed runs the median is taken over
    flops: dict[str, float]      # method -> operations per gradient (``flop_counts``; NaN: no count)
    fd_over_backprop: float      # seconds["finite_differences"] / seconds["backprop"]
    fd_max_rel_err: float        # worst |FD − backprop| / (|FD| + |backprop|) over all P entries
    fd_matches_backprop: bool    # within tolerances.FINITE_DIFF["float64"]


class _Prepared(NamedTuple):
    """One size, compiled and checked, while the timing rounds run."""

    fns: dict[str, Callable]        # method -> jitted gradient
    args: tuple                     # (params, x, y)
    check: object                   # gradcheck.compare of FD against backprop
    flops: dict[str, float]         # method -> operations per gradient
    calls: dict[str, int]           # method -> calls per timed run
    samples: dict[str, list[float]]  # method -> seconds per call of each run


def measure_sizes(sizes: Sequence[tuple[int, int]], *, input_dim: int, outputs: int,
                  batch_size: int, repeats: int, seed: int, min_seconds: float = 1e-2,
                  min_method_seconds: float = 0.0,
                  progress: Callable[[str], None] | None = None) -> list[SizeResult]:
    """Time every method on each MLP of ``sizes`` (``(width, depth)`` pairs; size i
    drawn with ``seed + i``), in float64; count operations; check FD against backprop.

    Each method's first call compiles it and is the untimed warm-up; the FD and
    backprop gradients of those calls are compared entrywise (a correctness
    check, not a timing). Then, one method at a time, rounds each time one run
    (``n`` calls, ``n`` from ``calibrate``) on every size in turn, so a machine
    that gets busier or quieter during the measurement shifts all sizes alike
    instead of bending the slope: ``repeats`` rounds, or more while a method's
    rounds add up to less than ``min_method_seconds`` (a fast method gets more
    samples at little cost). Per size and method the median run is reported.
    ``progress(line)`` hears about each size as it is prepared.
    """
    from gdlab.gradcheck import compare

    with enable_x64():
        prepared = []
        for i, (width, depth) in enumerate(sizes):
            model, params, x, y = build_problem(width, depth=depth, input_dim=input_dim,
                                                outputs=outputs, batch_size=batch_size,
                                                seed=seed + i)
            fns = gradient_fns(model, losses.mse(), params)
            grads = {m: jax.block_until_ready(fn(params, x, y)) for m, fn in fns.items()}  # warm-up
            check = compare(ravel_pytree(grads["finite_differences"])[0],
                            ravel_pytree(grads["backprop"])[0], tolerances.FINITE_DIFF["float64"])
            size = _Prepared(fns=fns, args=(params, x, y), check=check, calls={}, samples={},
                             flops=flop_counts(model, losses.mse(), params, x, y, fns=fns))
            for m in METHODS:  # the last calibration run is each method's first sample
                size.calls[m], first = calibrate(fns[m], params, x, y, min_seconds=min_seconds)
                size.samples[m] = [first]
            prepared.append(size)
            if progress is not None:
                progress(f"prepared width {width}, depth {depth}")
        for m in METHODS:  # one method at a time, its sizes in quick succession
            round_seconds = sum(size.samples[m][0] * size.calls[m] for size in prepared)
            rounds = max(repeats, math.ceil(min_method_seconds / max(round_seconds, 1e-9)))
            for _ in range(rounds - 1):
                for size in prepared:
                    size.samples[m].append(_run(size.fns[m], size.args, size.calls[m])
                                           / size.calls[m])

    results = []
    for (width, depth), size in zip(sizes, prepared):
        p = param_count(width, depth=depth, input_dim=input_dim, outputs=outputs)
        seconds = {m: float(np.median(size.samples[m])) for m in METHODS}
        results.append(SizeResult(
            width=width, depth=depth, params=p, forward_passes_fd=2 * p, seconds=seconds,
            runs={m: len(size.samples[m]) for m in METHODS}, flops=size.flops, fd_over_backprop=seconds["finite_differences"] / seconds["backprop"],
            fd_max_rel_err=size.check.max_rel_err, fd_matches_backprop=size.check.passed,
        ))
    return results


def measure_size(width: int, *, depth: int, input_dim: int, outputs: int, batch_size: int,
                 repeats: int, seed: int, min_seconds: float = 1e-2) -> SizeResult:
    """``measure_sizes`` of one MLP."""
    return measure_sizes([(width, depth)], input_dim=input_dim, outputs=outputs,
                         batch_size=batch_size, repeats=repeats, seed=seed,
                         min_seconds=min_seconds)[0]


def fits(results: Sequence[SizeResult], *, measure: str = "seconds",
         methods: Sequence[str] = METHODS) -> dict[str, tuple[float, float] | None]:
    """``fit_slope`` of ``measure`` ("seconds" or "flops") against P, per method:
    ``(slope, intercept)``, or None where some size has no positive finite value."""
    ps = [r.params for r in results]
    out = {}
    for m in methods:
        ys = [getattr(r, measure)[m] for r in results]
        ok = all(math.isfinite(v) and v > 0 for v in ys)
        out[m] = fit_slope(ps, ys) if ok else None
    return out


def slopes(results: Sequence[SizeResult], *, measure: str = "seconds",
           methods: Sequence[str] = METHODS) -> dict[str, float | None]:
    """The fitted log-log slope of ``measure`` against P, per method (≈ 2 for finite
    differences, ≈ 1 for backprop once compute outweighs per-call overhead)."""
    return {m: None if f is None else f[0]
            for m, f in fits(results, measure=measure, methods=methods).items()}
