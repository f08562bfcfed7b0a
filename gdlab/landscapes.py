"""Two-dimensional loss landscapes: "descending a hill in the fog".

Gradient descent only ever sees the slope under its feet, ``∇f(p)``, and steps
downhill: ``p_new = p_old − α·∇f(p_old)``. On a 2-D function the whole path can be
drawn over the contours, which shows what the learning rate and momentum do.

Each ``Landscape`` carries its value and its gradient, both written by hand in
closed form (the tests hold the gradient to ``jax.grad``), its known minima, a
plotting box, a start point and default learning rates (too small, good, too
large) and step count for the experiment.

Points are arrays whose last axis is ``(x, y)``: ``value(p)`` is shaped
``p.shape[:-1]`` and ``grad(p)`` like ``p``, so one function serves a single
point ``(2,)`` and a contour grid ``(H, W, 2)``.

``descend(landscape, start, optimizer, steps)`` runs a ``gdlab.optim`` optimizer
under ``lax.scan`` and returns the whole path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gdlab.optim import Optimizer, apply_updates
from gdlab.types import Array

Point = tuple[float, float]


class Landscape(NamedTuple):
    """A 2-D function with its hand-written gradient and what a plot needs."""

    name: str
    formula: str                       # for titles, e.g. "½(x² + 10y²)"
    value: Callable[[Array], Array]    # p (..., 2) -> f(p) (...)
    grad: Callable[[Array], Array]     # p (..., 2) -> ∇f(p) (..., 2), by hand
    minima: tuple[Point, ...]          # every global minimum (x, y)
    minimum_value: float               # f at each of them
    box: tuple[float, float, float, float]  # plotting box (x_min, x_max, y_min, y_max)
    start: Point                       # where the experiment starts descending
    lrs: tuple[float, ...]             # default learning rates: too small, good, too large
    steps: int                         # default number of updates
    log_levels: bool                   # contours on log-spaced levels (deep narrow valleys)


def _xy(p: Array) -> tuple[Array, Array]:
    return p[..., 0], p[..., 1]


def bowl(a: float = 1.0, b: float = 10.0) -> Landscape:
    """A quadratic bowl with unequal curvatures: f = ½(a·x² + b·y²), ∇f = (a·x, b·y).

    Gradient descent multiplies each coordinate by ``1 − α·a`` and ``1 − α·b`` per
    step, ``x_t = (1 − α·a)ᵗ·x₀``: it converges iff ``α < 2/max(a, b)``, and the
    steep axis oscillates once ``α > 1/max(a, b)``.
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"bowl curvatures must be positive, got a={a}, b={b}")

    def value(p):
        x, y = _xy(p)
        return 0.5 * (a * x * x + b * y * y)

    def grad(p):
        x, y = _xy(p)
        return jnp.stack([a * x, b * y], axis=-1)

    bound = 2.0 / max(a, b)  # the stability bound on α
    return Landscape(
        name="bowl", formula=f"½({_coef(a)}x² + {_coef(b)}y²)", value=value, grad=grad,
        minima=((0.0, 0.0),), minimum_value=0.0, box=(-5.0, 5.0, -3.0, 3.0),
        start=(-4.5, 2.0), lrs=tuple(round(f * bound, 12) for f in (0.1, 0.5, 1.05)), steps=60,
        log_levels=False,
    )


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Landscape:
    """Rosenbrock's banana valley: f = (a − x)² + b·(y − x²)², minimum at (a, a²).

    ∂f/∂x = −2(a − x) − 4b·x·(y − x²),  ∂f/∂y = 2b·(y − x²).
    The valley floor is easy to reach and slow to follow: the curvature across it
    is about 2,500 times the curvature along it at the minimum (its Hessian's
    eigenvalues there are 1001.6 and 0.40), so GD's α must stay below 2/1001.6.
    """

    def value(p):
        x, y = _xy(p)
        return (a - x) ** 2 + b * (y - x * x) ** 2

    def grad(p):
        x, y = _xy(p)
        r = y - x * x  # distance above the valley floor y = x²
        return jnp.stack([-2.0 * (a - x) - 4.0 * b * x * r, 2.0 * b * r], axis=-1)

    return Landscape(
        name="rosenbrock", formula=f"({_num(a)} − x)² + {_num(b)}(y − x²)²", value=value,
        grad=grad, minima=((a, a * a),), minimum_value=0.0, box=(-2.0, 2.0, -1.0, 3.0),
        start=(-1.2, 1.0), lrs=(2e-4, 1.5e-3, 4e-3), steps=2000, log_levels=True,
    )


HIMMELBLAU_MINIMA = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.2831859912861696),
    (3.5844283403304917, -1.8481265269644036),
)
"""Himmelblau's four minima (the last three by Newton's method in 40 digits, rounded)."""


def himmelblau() -> Landscape:
    """Himmelblau's function, four minima of value 0: f = u² + v² with u = x² + y − 11,
    v = x + y² − 7.

    ∂f/∂x = 4x·u + 2v,  ∂f/∂y = 2u + 4y·v.  Which minimum a descent reaches
    depends on where it starts and on the step size.
    """

    def value(p):
        x, y = _xy(p)
        u = x * x + y - 11.0
        v = x + y * y - 7.0
        return u * u + v * v

    def grad(p):
        x, y = _xy(p)
        u = x * x + y - 11.0
        v = x + y * y - 7.0
        return jnp.stack([4.0 * x * u + 2.0 * v, 2.0 * u + 4.0 * y * v], axis=-1)

    return Landscape(
        name="himmelblau", formula="(x² + y − 11)² + (x + y² − 7)²", value=value, grad=grad,
        minima=HIMMELBLAU_MINIMA, minimum_value=0.0, box=(-5.0, 5.0, -5.0, 5.0),
        start=(0.5, -0.5), lrs=(0.002, 0.01, 0.03), steps=100, log_levels=True,
    )


def _num(v: float) -> str:
    return f"{v:g}"


def _coef(v: float) -> str:
    """A coefficient before a variable, as one writes it: 10y², and x² (not 1x²)."""
    return "" if v == 1 else "−" if v == -1 else _num(v)


LANDSCAPES: dict[str, Callable[[], Landscape]] = {
    "bowl": bowl,
    "rosenbrock": rosenbrock,
    "himmelblau": himmelblau,
}
"""Landscape builders by the names experiments use."""


def get(name: str) -> Landscape:
    """A landscape (with its default constants) by name."""
    if name not in LANDSCAPES:
        raise ValueError(f"unknown landscape {name!r}; choose one of: {', '.join(LANDSCAPES)}")
    return LANDSCAPES[name]()


# --- descending ---------------------------------------------------------------------

ESCAPE = 10.0
"""A path that leaves its landscape's box scaled by this factor about its centre has
diverged: ``descend`` keeps that first far point and stops there."""


class Descent(NamedTuple):
    """A descent path. Once it diverges it stays put, so every entry is finite."""

    points: Array       # (steps+1, 2): the start, then the point after each update
    losses: Array       # (steps+1,): f at each point
    diverged: Array     # bool: it left the escape box or an update went non-finite
    diverged_at: Array  # int32: the 1-based update that diverged, −1 if none did


def escape_box(box: Sequence[float], factor: float = ESCAPE) -> tuple[Array, Array]:
    """``(lo, hi)`` corners, (2,) each, of ``box`` scaled by ``factor`` about its centre."""
    x0, x1, y0, y1 = box
    centre = jnp.array([(x0 + x1) / 2, (y0 + y1) / 2])
    half = factor * jnp.array([(x1 - x0) / 2, (y1 - y0) / 2])
    return centre - half, centre + half


def descend(landscape: Landscape, start, optimizer: Optimizer, steps: int, *,
            escape: float = ESCAPE, dtype=None) -> Descent:
    """Run ``steps`` updates of ``optimizer`` from ``start`` using ``landscape.grad``.

    Each step is the optimizer's rule on the hand-written gradient,
    ``updates, s = opt.update(∇f(p), s, p)``, ``p ← apply_updates(p, updates)``,
    all under one ``lax.scan``. Pure and traceable: jit it, or vmap it over
    learning rates (the optimizers accept traced learning rates).

    Divergence: the path stops (its point and optimizer state stay put for the
    remaining steps, ``diverged`` turns on) at the first update that

    - lands outside the landscape's box scaled by ``escape`` about its centre:
      that far point is kept, so a plotted path visibly runs off the axes;
    - or gives a non-finite point or loss: that point is dropped, the path ends
      at the last finite one.

    Args:
      landscape: the function, with its hand-written gradient.
      start: the start point, (2,).
      optimizer: a ``gdlab.optim`` optimizer, e.g. ``optim.gd(0.1)``.
      steps: the number of updates, a Python int ≥ 0.
      escape: the escape box's size as a multiple of the plotting box.
      dtype: the float dtype of the path; by default ``start``'s when it is a float
        array, float32 otherwise.
    """
    if dtype is None:
        dtype = getattr(start, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.float32
    p0 = jnp.asarray(start, dtype).reshape(2)
    lo, hi = (c.astype(dtype) for c in escape_box(landscape.box, escape))

    def step(carry, t):
        p, opt_state, diverged, diverged_at = carry
        updates, new_state = optimizer.update(landscape.grad(p), opt_state, p)
        new_p = apply_updates(p, updates)
        new_loss = landscape.value(new_p)
        finite = jnp.all(jnp.isfinite(new_p)) & jnp.isfinite(new_loss)
        outside = jnp.any((new_p < lo) | (new_p > hi))
        accept = ~diverged & finite
        p = jnp.where(accept, new_p, p)
        opt_state = jax.tree.map(lambda n, o: jnp.where(accept, n, o), new_state, opt_state)
        stop = ~diverged & (~finite | outside)
        diverged_at = jnp.where(stop, t + 1, diverged_at)
        diverged = diverged | stop
        return (p, opt_state, diverged, diverged_at), (p, landscape.value(p))

    carry = (p0, optimizer.init(p0), jnp.asarray(False), jnp.asarray(-1, jnp.int32))
    (_, _, diverged, diverged_at), (points, losses) = jax.lax.scan(
        step, carry, jnp.arange(steps, dtype=jnp.int32))
    return Descent(
        points=jnp.concatenate([p0[None], points]),
        losses=jnp.concatenate([landscape.value(p0)[None], losses]),
        diverged=diverged,
        diverged_at=diverged_at,
    )


def sweep(landscape: Landscape, start, make_optimizer: Callable[[Array], Optimizer],
          lrs: Sequence[float], steps: int, *, escape: float = ESCAPE, dtype=jnp.float32
          ) -> Descent:
    """``descend`` for every learning rate at once (one jitted ``vmap``).

    ``make_optimizer(lr)`` builds the optimizer from a (traced) learning rate, e.g.
    ``lambda lr: optim.momentum(lr, beta=0.9)``. Every field gains a leading
    axis of ``len(lrs)``.
    """

    @jax.jit
    def run(lr):
        return jax.vmap(lambda a: descend(landscape, start, make_optimizer(a), steps,
                                          escape=escape, dtype=dtype))(lr)

    return run(jnp.asarray(lrs, dtype))


def lambda_max(landscape: Landscape, point) -> float:
    """λmax, the largest eigenvalue of f's Hessian at ``point``: the forward-mode
    Jacobian of the hand-written gradient, symmetrised, then ``eigvalsh``.

    On a quadratic it is the same everywhere and plain gradient descent converges
    iff ``α < 2/λmax`` (the bowl: λmax = max(a, b)); elsewhere it is the local
    curvature, the stability bound of GD near ``point``.
    """
    hessian = jax.jacfwd(landscape.grad)(jnp.asarray(point, dtype=float).reshape(2))
    return float(jnp.max(jnp.linalg.eigvalsh(0.5 * (hessian + hessian.T))))


def nearest_minimum(landscape: Landscape, point) -> tuple[Point, float]:
    """The known minimum closest to ``point`` and the Euclidean distance to it."""
    px, py = (float(v) for v in point)
    dists = [((mx - px) ** 2 + (my - py) ** 2) ** 0.5 for mx, my in landscape.minima]
    i = min(range(len(dists)), key=dists.__getitem__)
    return landscape.minima[i], dists[i]
