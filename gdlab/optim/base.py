"""The optimizer interface, stated once: ``Optimizer(init, update)``.

An optimizer (or any gradient transformation) is a pair of pure functions::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)   # params may be None for most
    params = apply_updates(params, updates)              # w ← w + u, leafwise

``updates`` are already signed: for plain gradient descent ``u = −α · ∂J/∂w``, so
``apply_updates`` only ever adds. ``state`` is a ``NamedTuple`` of arrays (every
field commented where it is defined), so ``init``/``update`` work under ``jax.jit``,
``jax.vmap`` and as the carry of ``lax.scan``. ``params`` and ``grads`` are any
pytree of arrays (dicts, tuples, nested; no ``None`` leaves), with the same
structure.

``chain(t1, t2, ...)`` runs transformations in order: the updates of one are the
"gradients" of the next, and the chain's state is the tuple of their states.

A learning rate is a number (or a scalar array) or a schedule: a callable
``step -> lr`` where ``step`` is the int32 count of updates applied so far,
starting at 0 (see ``gdlab.optim.schedules``). Every builder rejects, with a
``ValueError`` naming the argument, a concrete learning rate, coefficient or weight
decay that is not a real number (``None``, a string, a complex number, a bool), or is
NaN, ±inf or out of its range; traced values (``train.sweep`` vmaps over the learning
rate) and, for a learning rate, schedules are accepted as they are. Every ``init``
rejects parameters that are not floating point.

Modelled on ``jax.example_libraries.optimizers`` (the optimizer triple, stated once).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

Params = Any  # a pytree of arrays
Updates = Any  # a pytree shaped like Params: the signed step added to the params
OptState = Any  # a NamedTuple (or a tuple of them, for a chain) of arrays

Schedule = Callable[[jax.Array], jax.Array]
"""``step -> lr``: ``step`` is the int32 number of updates applied so far (0 first)."""

LearningRate = float | jax.Array | Schedule


class InitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class UpdateFn(Protocol):
    def __call__(
        self, grads: Updates, state: OptState, params: Params | None = None
    ) -> tuple[Updates, OptState]: ...


class Optimizer(NamedTuple):
    """A pure optimizer or gradient transformation: ``init(params) -> state`` and
    ``update(grads, state, params=None) -> (updates, new_state)``."""

    init: InitFn  # params -> the initial state
    update: UpdateFn  # (grads, state, params=None) -> (signed updates, new state)


class EmptyState(NamedTuple):
    """The state of a stateless transformation (it has no fields)."""


def apply_updates(params: Params, updates: Updates) -> Params:
    """``w_new = w_old + u`` for every leaf, keeping each param leaf's dtype.

    The updates are already signed (``u = −α · ∂J/∂w`` for gradient descent). ``ValueError``
    when a leaf of ``updates`` has another shape than its param's (NumPy would broadcast
    it, and the param would silently change shape).
    """
    for w, u in zip(jax.tree.leaves(params), jax.tree.leaves(updates), strict=False):
        if jnp.shape(w) != jnp.shape(u):  # (a different structure: tree.map below says so)
            raise ValueError(f"apply_updates: an update of shape {jnp.shape(u)} for a param of "
                             f"shape {jnp.shape(w)}; updates must have the params' shapes")
    return jax.tree.map(
        lambda w, u: jnp.asarray(w + u, dtype=jnp.result_type(w)), params, updates
    )


def chain(*transforms: Optimizer) -> Optimizer:
    """Compose transformations: updates flow through each in order.

    ``chain(clip_by_global_norm(1.0), add_weight_decay(1e-4), gd(0.1))`` clips the
    gradient, adds ``1e-4 · w`` to it, then takes the gradient-descent step. The
    state is ``tuple(t.init(params) for t in transforms)``.
    """

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params=None):
        if len(state) != len(transforms):
            raise ValueError(
                f"chain state has {len(state)} entries but the chain has "
                f"{len(transforms)} transforms; build the state with the same chain's init"
            )
        updates = grads
        new_state = []
        for transform, inner_state in zip(transforms, state):
            updates, inner_state = transform.update(updates, inner_state, params)
            new_state.append(inner_state)
        return updates, tuple(new_state)

    return Optimizer(init, update)


def global_norm(tree: Any) -> jax.Array:
    """``sqrt(Σ_leaves Σ x²)``: the 2-norm of all leaves taken as one vector."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves))


def learning_rate_at(learning_rate: LearningRate, count: jax.Array) -> jax.Array:
    """The learning rate for the update after ``count`` updates: ``schedule(count)``
    for a schedule, the number itself otherwise."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


# ----------------------------------------------------------------- internal helpers


def zero_count() -> jax.Array:
    """The initial step count: int32 scalar 0."""
    return jnp.zeros([], jnp.int32)


MAX_COUNT = int(np.iinfo(np.int32).max)
"""The largest step count: the int32 maximum, where ``increment`` saturates."""


def increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at ``MAX_COUNT`` instead of wrapping."""
    return jnp.where(count < MAX_COUNT, count + 1, count)


def check_floating(params: Params) -> None:
    """Raise ``ValueError`` when a leaf of ``params`` is not floating point: an integer
    weight would round every step to nothing (or to garbage, dividing by ε)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"the optimizers update floating-point parameters only; the "
                             f"leaf {jax.tree_util.keystr(path) or '(the root)'} is {dtype}")


def like(x: jax.Array, ref: jax.Array) -> jax.Array:
    """``x`` cast to ``ref``'s dtype (a float64 schedule must not promote float32 leaves)."""
    return jnp.asarray(x, dtype=jnp.result_type(ref))


def check_number(name: str, value: Any, *, low: float = 0.0, high: float | None = None,
                 low_open: bool = False, high_open: bool = True, schedule: bool = False,
                 none: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a real number (or array of them), finite and
    inside its interval.

    Checked: Python and NumPy numbers, NumPy arrays and concrete (non-traced) JAX
    arrays, every element; NaN and ±inf always fail, and so do a bool, a complex
    number, a string, ``None`` (unless ``none``) and a callable (unless ``schedule``:
    a learning rate may be a schedule, accepted as it is). Not checked: traced values
    (``train.sweep`` vmaps over the learning rate, so it arrives as a
    ``jax.core.Tracer``).
    """
    if isinstance(value, jax.core.Tracer) or (value is None and none) or (
            callable(value) and schedule):
        return
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    if high is None:
        accepted = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        accepted = f"a finite number in {lo}{low:g}, {high:g}{hi}"
    if schedule:
        accepted += " or a schedule (step -> value)"
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be {accepted}, not a bool; got {value!r}")
    if isinstance(value, numbers.Real):
        values = np.asarray([float(value)])
    elif isinstance(value, (np.ndarray, jax.Array)):
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            return  # spread over hosts: reading it here would need every process
        dtype = np.dtype(value.dtype)
        if dtype == np.bool_:
            raise ValueError(f"{name} must be {accepted}, not a bool; got {value!r}")
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise ValueError(f"{name} must be {accepted}; got an array of {dtype}")
        values = np.asarray(value, dtype=np.float64).ravel()
    else:
        raise ValueError(f"{name} must be {accepted}; got {value!r}")
    too_low = values <= low if low_open else values < low
    if high is None:
        too_high = np.zeros_like(too_low)
    else:
        too_high = values >= high if high_open else values > high
    bad = ~np.isfinite(values) | too_low | too_high  # NaN fails every comparison: caught here
    if bad.any():
        shown = float(values[np.argmax(bad)])
        raise ValueError(f"{name} must be {accepted}; got {shown}")
