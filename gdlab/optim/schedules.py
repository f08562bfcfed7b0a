"""Learning-rate schedules: functions ``step -> lr``.

``step`` is the number of updates applied so far (the optimizer's int32
``count``, 0 for the first update). Every schedule is built from ``jnp`` ops
only, so it works on a traced step under ``jit``/``scan`` and elementwise on an
array of steps (``schedule(jnp.arange(n))`` gives the whole curve). Values are
in the default float dtype; optimizers cast each step back to the parameters'
dtype.

- ``constant(v)``: ``v``.
- ``piecewise_constant(boundaries, values)``: ``values[i]`` where ``i`` is the number
  of boundaries ``≤ step`` (a step schedule).
- ``exponential_decay(v₀, r, k, staircase=False)``: ``v₀ · r^(step/k)``
  (``⌊step/k⌋`` with ``staircase``).
- ``inverse_time_decay(v₀, r, k)``: ``v₀ / (1 + r·step/k)``.
- ``cosine_decay(v₀, k, alpha=0)``: ``v₀ · ((1−a)·½(1 + cos(π·min(step, k)/k)) + a)``
  (Loshchilov & Hutter 2017, SGDR, without restarts).
- ``linear_warmup(peak, w, then=None)``: ``peak·step/w`` for ``step < w``, then
  ``peak`` or ``then(step − w)`` (Goyal et al. 2017).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from gdlab.optim.base import MAX_COUNT, Schedule, check_number

SCHEDULES = ("constant", "step", "exponential", "inverse_time", "cosine", "warmup_cosine")
"""Names ``get_schedule`` accepts."""


def _float(step) -> jax.Array:
    return jnp.asarray(step).astype(float)


def _check_steps(name: str, value, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0
    )
    if not ok:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {kind} int; got {value!r}")


def constant(value: float) -> Schedule:
    """``lr(step) = value``."""
    check_number("constant value", value)

    def schedule(step):
        return jnp.full(jnp.shape(step), value, dtype=float)

    return schedule


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """A step schedule: ``values[0]`` before ``boundaries[0]``, ``values[i]`` from
    ``boundaries[i−1]`` on (a boundary step already takes the new value).

    Args:
      boundaries: increasing non-negative step numbers, ``len(values) − 1`` of them.
      values: the learning rate on each of the ``len(boundaries) + 1`` pieces.
    """
    boundaries, values = list(boundaries), list(values)
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"piecewise_constant needs len(values) == len(boundaries) + 1; got "
            f"{len(values)} values and {len(boundaries)} boundaries"
        )
    for b in boundaries:
        _check_steps("piecewise_constant boundary", b, allow_zero=True)
        if b > MAX_COUNT:
            raise ValueError(f"piecewise_constant boundary must be at most {MAX_COUNT} (the "
                             f"optimizers count steps in int32); got {b}")
    for v in values:
        check_number("piecewise_constant value", v)
    if any(b1 >= b2 for b1, b2 in itertools.pairwise(boundaries)):
        raise ValueError(f"piecewise_constant boundaries must increase; got {boundaries}")
    bounds = jnp.asarray(boundaries, dtype=jnp.int32).reshape(-1)
    table = jnp.asarray(values, dtype=float)

    def schedule(step):
        step = jnp.asarray(step)
        piece = jnp.sum(step[..., None] >= bounds, axis=-1)  # number of boundaries passed
        return table[piece]

    return schedule


def exponential_decay(
    init_value: float, decay_rate: float, decay_steps: int, *, staircase: bool = False
) -> Schedule:
    """``lr(step) = init_value · decay_rate^(step / decay_steps)``; with
    ``staircase=True`` the exponent is ``⌊step / decay_steps⌋``."""
    _check_steps("exponential_decay decay_steps", decay_steps)
    check_number("exponential_decay init_value", init_value)
    check_number("exponential_decay decay_rate", decay_rate, low_open=True)

    def schedule(step):
        p = _float(step) / decay_steps
        if staircase:
            p = jnp.floor(p)
        return init_value * jnp.power(decay_rate, p)

    return schedule


def inverse_time_decay(init_value: float, decay_rate: float, decay_steps: int) -> Schedule:
    """``lr(step) = init_value / (1 + decay_rate · step / decay_steps)``."""
    _check_steps("inverse_time_decay decay_steps", decay_steps)
    check_number("inverse_time_decay init_value", init_value)
    check_number("inverse_time_decay decay_rate", decay_rate)

    def schedule(step):
        return init_value / (1.0 + decay_rate * _float(step) / decay_steps)

    return schedule


def cosine_decay(init_value: float, decay_steps: int, *, alpha: float = 0.0) -> Schedule:
    """Half a cosine from ``init_value`` down to ``alpha · init_value`` over
    ``decay_steps``, then flat (Loshchilov & Hutter 2017, "SGDR", no restarts):
    ``lr(step) = init_value · ((1 − alpha) · ½(1 + cos(π · min(step, decay_steps) /
    decay_steps)) + alpha)``. ``alpha`` lies in [0, 1]: above 1 the half cosine would rise.
    """
    _check_steps("cosine_decay decay_steps", decay_steps)
    check_number("cosine_decay init_value", init_value)
    check_number("cosine_decay alpha", alpha, high=1.0, high_open=False)

    def schedule(step):
        t = jnp.clip(_float(step), 0.0, decay_steps) / decay_steps
        cosine = 0.5 * (1.0 + jnp.cos(math.pi * t))
        return init_value * ((1.0 - alpha) * cosine + alpha)

    return schedule


def linear_warmup(
    peak_value: float, warmup_steps: int, *, then: Callable[[jax.Array], jax.Array] | None = None
) -> Schedule:
    """Linear from 0 to ``peak_value`` over ``warmup_steps`` (Goyal et al. 2017), then
    ``peak_value`` or, when given, ``then(step − warmup_steps)``.

    ``lr(step) = peak_value · step / warmup_steps`` for ``step < warmup_steps``; the
    first update (step 0) therefore has learning rate 0.
    """
    _check_steps("linear_warmup warmup_steps", warmup_steps, allow_zero=True)
    check_number("linear_warmup peak_value", peak_value)
    after = constant(peak_value) if then is None else then
    if warmup_steps == 0:
        return after

    def schedule(step):
        s = _float(step)
        ramp = peak_value * s / warmup_steps
        return jnp.where(s < warmup_steps, ramp, after(jnp.asarray(step) - warmup_steps))

    return schedule


def get_schedule(name: str, lr: float, total_steps: int) -> Schedule:
    """A named schedule starting from (or peaking at) ``lr`` over ``total_steps``.

    - ``"constant"``: ``lr`` throughout.
    - ``"step"``: ``lr``, ×0.1 from 50% of ``total_steps``, ×0.01 from 75%.
    - ``"exponential"``: ``lr · 0.01^(step/total_steps)``, reaching ``lr/100`` at the end.
    - ``"inverse_time"``: ``lr / (1 + 9·step/total_steps)``, reaching ``lr/10`` at the end.
    - ``"cosine"``: ``cosine_decay(lr, total_steps)``, reaching 0 at the end.
    - ``"warmup_cosine"``: linear warm-up over the first 10% of the steps (at least
      one), then cosine decay to 0 over the rest.

    Raises:
      ValueError: for an unknown name or a ``total_steps`` that is not a positive int.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    _check_steps("get_schedule total_steps", total_steps)
    if name == "constant":
        return constant(lr)
    if name == "step":  # the first steps at or past 50% and 75% of total_steps
        half, three_quarters = -(-total_steps // 2), -(-3 * total_steps // 4)
        if half == three_quarters:  # one step (or none) between: no ×0.1 phase
            return piecewise_constant([half], [lr, lr * 0.01])
        return piecewise_constant([half, three_quarters], [lr, lr * 0.1, lr * 0.01])
    if name == "exponential":
        return exponential_decay(lr, 0.01, total_steps)
    if name == "inverse_time":
        return inverse_time_decay(lr, 9.0, total_steps)
    if name == "cosine":
        return cosine_decay(lr, total_steps)
    warmup = max(1, total_steps // 10)
    return linear_warmup(lr, warmup, then=cosine_decay(lr, max(1, total_steps - warmup)))
