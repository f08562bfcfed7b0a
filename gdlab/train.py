"""Training: a jitted update step, a whole epoch as one scanned program, ``fit`` and ``sweep``.

The step is the seed's update rule with the gradient from backprop::

    (loss, model_state), g = value_and_grad(params, model_state, batch)  # ∂J/∂w, manual or jax.grad
    updates, opt_state = optimizer.update(g, opt_state, params)
    params = apply_updates(params, updates)       # w_new = w_old − α · ∂J/∂w for gd

An epoch shuffles the training set (``gdlab.descent``) and runs every step in
one ``lax.scan``, with the data on the device. Everything that changes is one
pytree, ``TrainState``: params, model state, optimizer state, key, step and the
divergence record. A step whose loss is not finite, or exceeds ``blowup`` times
the reference loss (the training-set loss at the initial params in ``fit`` and
``sweep``, else the first step's), marks the run *diverged*: that update and every
later one are refused, so the state stays at the one that gave the bad loss (its
params are non-finite when an update overflowed them), and the step is recorded.
``sweep`` runs many learning rates (and seeds) at once with ``vmap``, tracking
divergence per configuration.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from gdlab import backprop, descent, optim
from gdlab.layers import Layer, init_shapes
from gdlab.losses import Loss
from gdlab.types import Array, Params, PRNGKey, State

DEFAULT_BLOWUP = 1e6
"""A loss this many times the reference loss (the initial one) counts as diverged: a
geometric blow-up takes hundreds of steps to reach inf, but only tens to get here."""


@flax.struct.dataclass
class Health:
    """The divergence record: whether, and at which update, training went bad."""

    diverged: Array        # bool scalar: some step went non-finite or blew up
    diverged_at: Array     # int32: the 1-based number of the update that went bad, −1 if none
    reference_loss: Array  # what blow-up is relative to: the training-set loss at the initial
                           # params (fit, sweep), else the first step's loss; NaN until set

    @classmethod
    def initial(cls) -> Health:
        return cls(jnp.array(False), jnp.array(-1, jnp.int32), jnp.array(jnp.nan, jnp.float32))


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree (one checkpoint, exact resume)."""

    step: Array        # int32 scalar: number of updates applied so far
    params: Params     # the model's trained parameters
    model_state: State  # the model's non-trainable state (batch-norm running statistics)
    opt_state: Any     # the optimizer's state (a NamedTuple, or a tuple of them)
    key: PRNGKey       # split at every epoch (shuffling, dropout keys of its steps), never reused
    health: Health     # the divergence record


class StepMetrics(NamedTuple):
    """What one update reports (``make_step``): four numbers, each a reduction over the params."""

    loss: Array         # J on the step's batch, before the update
    grad_norm: Array    # ‖∂J/∂θ‖₂ over all leaves
    update_norm: Array  # ‖θ_new − θ_old‖₂
    param_norm: Array   # ‖θ_new‖₂


class EpochMetrics(NamedTuple):
    """What a scanned epoch reports (``make_epoch``). Per step only the loss, which the step
    computes anyway. The two norms only when asked (``norms=True``), once per epoch, so no
    step pays an extra pass over the params; None otherwise."""

    loss: Array                  # (steps,) J on each step's batch, before its update
    grad_norm: Array | None      # ‖∂J/∂θ‖₂ of the epoch's last update
    displacement: Array | None   # ‖θ_end − θ_start‖₂: how far the epoch moved the params


def init_model(model: Layer, key: PRNGKey, in_shape: Sequence[int]) -> tuple[Params, State]:
    """The initial ``(params, model_state)`` that ``create_state`` starts from for ``key``."""
    k_init, _ = jax.random.split(key)
    _, params, model_state = model.init(k_init, tuple(in_shape))
    return params, model_state


def create_state(model: Layer, optimizer: optim.Optimizer, key: PRNGKey,
                 in_shape: Sequence[int]) -> TrainState:
    """Initial params and model state (from one half of ``key``) and optimizer state;
    the other half of ``key`` trains."""
    _, k_train = jax.random.split(key)
    params, model_state = init_model(model, key, in_shape)
    return TrainState(step=jnp.array(0, jnp.int32), params=params, model_state=model_state,
                      opt_state=optimizer.init(params), key=k_train, health=Health.initial())


def _update(model: Layer, loss: Loss, optimizer: optim.Optimizer, grad: str,
            value_and_grad: backprop.ValueAndGrad | None = None, compute_dtype=None):
    """``update(state, x, y, weights, key) -> (state, loss, grads, updates)``: the seed's rule
    on one batch, with nothing else computed (``make_step`` and ``make_epoch`` share it).
    ``value_and_grad`` replaces ``backprop.value_and_grad(model, loss, grad, compute_dtype=...)``
    (the data-parallel one of ``gdlab.parallel`` adds an all-reduce)."""
    if value_and_grad is None:
        value_and_grad = backprop.value_and_grad(model, loss, grad, compute_dtype=compute_dtype)
    elif compute_dtype is not None:
        raise ValueError("give compute_dtype or value_and_grad, not both: build the "
                         "value_and_grad in mixed precision (backprop.mixed_precision)")

    def update(state: TrainState, x: Array, y: Array, weights: Array | None = None,
               key: PRNGKey | None = None):
        if key is None:  # dropout's key: split off the state's key
            next_key, key = jax.random.split(state.key)
        else:
            next_key = state.key
        (value, model_state), grads = value_and_grad(state.params, state.model_state, x, y,
                                                     weights, key=key, train=True)  # ∂J/∂θ
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optim.apply_updates(state.params, updates)  # θ ← θ + u  (u = −α·g for gd)
        new_state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                                  opt_state=opt_state, key=next_key)
        return new_state, value, grads, updates

    return update


def make_step(model: Layer, loss: Loss, optimizer: optim.Optimizer, *, grad: str = "manual",
              compute_dtype=None):
    """``step(state, x, y, weights=None, key=None) -> (state, StepMetrics)``: one update on one batch.

    ``grad`` chooses how ∂J/∂θ is computed: ``"manual"`` (hand-written backprop),
    ``"custom_vjp"`` or ``"autodiff"`` (``jax.grad``); ``compute_dtype`` (e.g.
    ``jnp.bfloat16``) computes it in mixed precision (``backprop.mixed_precision``: forward
    and backward in that dtype, the loss in float32, the update on the float32 master
    params). The forward pass runs in
    training mode and its new model state (batch-norm statistics) is kept; without
    a ``key``, the state's key is split for dropout. The metrics cost three
    reductions over the params; the scanned epoch (``make_epoch``) skips them.
    Wrap it in ``jax.jit`` (``donate_argnums=0`` lets XLA update the state in place).
    """
    update = _update(model, loss, optimizer, grad, compute_dtype=compute_dtype)

    def step(state: TrainState, x: Array, y: Array, weights: Array | None = None,
             key: PRNGKey | None = None):
        new_state, value, grads, updates = update(state, x, y, weights, key)
        return new_state, StepMetrics(loss=value, grad_norm=optim.global_norm(grads),
                                      update_norm=optim.global_norm(updates),
                                      param_norm=optim.global_norm(new_state.params))

    return step


def jit_step(model: Layer, loss: Loss, optimizer: optim.Optimizer, *, grad: str = "manual",
             compute_dtype=None):
    """``make_step`` compiled, donating the state: params and optimizer state are
    updated in place, so the state passed in must not be used again."""
    return jax.jit(make_step(model, loss, optimizer, grad=grad, compute_dtype=compute_dtype),
                   donate_argnums=0)


def _blown_up(loss, reference, blowup: float | None):
    """Whether ``loss`` is past the guard's limit, ``blowup`` times the ``reference`` loss
    (never, for ``blowup=None``); traceable, a bool array."""
    if blowup is None:
        return jnp.zeros((), bool)
    return jnp.asarray(loss) > blowup * jnp.maximum(reference, 1e-8)


def guard(step_fn, *, blowup: float | None = DEFAULT_BLOWUP):
    """Wrap a step so that a bad update is refused and recorded in ``state.health``.

    ``step_fn(state, x, y, weights, key)`` returns ``(new_state, out)`` with the batch
    loss first in ``out`` (``out[0]``, e.g. ``StepMetrics.loss``); so does the guarded step.
    The update is bad when its loss, J at the params *before* it, is not finite or
    exceeds ``blowup`` times ``state.health.reference_loss`` (``fit`` and ``sweep`` set
    it to the training-set loss at the initial params; left NaN, the first step's loss
    becomes the reference: with small batches one batch's loss can be far below the
    data's, see ``with_reference_loss``). A bad update and every later one are
    refused: the state keeps the params (and model state and step) that gave the bad
    loss, with ``diverged_at`` the 1-based number of the refused update; its optimizer
    state is not meaningful after that (a diverged state is never saved or resumed).
    The check reads only the loss the step computed anyway, and the refusal is a
    select that XLA fuses into the update itself: it costs no extra pass over the
    params. Params made non-finite by one
    update (an overflow from a finite loss) show in the next update's loss, which
    is then the one refused.
    """

    def guarded(state, x, y, weights=None, key=None):
        new_state, out = step_fn(state, x, y, weights, key)
        health = state.health
        loss = out[0].astype(jnp.float32)
        reference = jnp.where(jnp.isnan(health.reference_loss), loss, health.reference_loss)
        bad = ~jnp.isfinite(loss) | _blown_up(loss, reference, blowup)
        diverged = health.diverged | bad
        health = Health(
            diverged=diverged,
            diverged_at=jnp.where(bad & ~health.diverged, state.step + 1, health.diverged_at),
            reference_loss=reference,
        )
        # Refused: params, model state, step and key stay. The optimizer state is left to
        # run on (a diverged run is never resumed or saved): selecting it too would make
        # XLA copy it every step, as the update reads the old moments twice.
        kept = jax.tree.map(lambda old, new: jnp.where(diverged, old, new),
                            state.replace(opt_state=()), new_state.replace(opt_state=()))
        return kept.replace(health=health, opt_state=new_state.opt_state), out

    return guarded


def make_guarded_step(model: Layer, loss: Loss, optimizer: optim.Optimizer, *,
                      grad: str = "manual", blowup: float | None = DEFAULT_BLOWUP,
                      value_and_grad: backprop.ValueAndGrad | None = None, compute_dtype=None):
    """``step(state, x, y, weights, key) -> (state, (loss, grads))``: the guarded update that
    ``make_epoch`` scans, with no reduction beyond the loss (see ``guard``)."""
    update = _update(model, loss, optimizer, grad, value_and_grad, compute_dtype)

    def step(state, x, y, weights=None, key=None):
        new_state, value, grads, _ = update(state, x, y, weights, key)
        return new_state, (value, grads)

    return guard(step, blowup=blowup)


GPU_UNROLL = 8
"""Steps per iteration of the scanned epoch's loop on a GPU, for models of at most
``GPU_UNROLL_MAX_ARRAYS`` parameter arrays and ``GPU_UNROLL_MAX_PARAMS`` parameters. There
every loop iteration costs about 5 µs of its own (measured on an H200: 26.8 µs a step at
the tiny MLP unrolled 1, 21.2 µs unrolled 4), a large share of a small model's step;
unrolling takes most of it away. Unrolled 8, the tiny and medium MLPs' steps (16- and
128-step epochs) were another 2–5% faster than unrolled 4, and no slower than unrolled
16, in one H200 run; the medium MLP's epoch then took 4.6 s to compile against 2.9. On a
CPU unrolling gains nothing, and a large model's step dwarfs it."""

GPU_UNROLL_LONG_STEP = 4
"""``GPU_UNROLL`` for models of more than ``GPU_UNROLL_MAX_ARRAYS`` parameter arrays,
whose steps are long (each array has its forward op, its gradient and its update): there
the loop's own cost is a sliver of the step, while compiling grows with the unroll (the
small transformer's epoch, 36 arrays: 7.0 s to compile unrolled 4, 12.2 s unrolled 8,
and its step took 273 µs unrolled 4 and 329 µs unrolled 8, in two H200 runs)."""

GPU_UNROLL_MAX_ARRAYS = 16

GPU_UNROLL_MAX_PARAMS = 1 << 24


def default_unroll(params) -> int:
    """``make_epoch``'s ``unroll`` when none is given. On a GPU: ``GPU_UNROLL`` for a model of
    at most ``GPU_UNROLL_MAX_ARRAYS`` parameter arrays, ``GPU_UNROLL_LONG_STEP`` for one of
    more, 1 for one of more than ``GPU_UNROLL_MAX_PARAMS`` parameters. On a CPU: 1."""
    leaves = jax.tree.leaves(params)
    if jax.default_backend() != "gpu" or sum(leaf.size for leaf in leaves) > GPU_UNROLL_MAX_PARAMS:
        return 1
    return GPU_UNROLL if len(leaves) <= GPU_UNROLL_MAX_ARRAYS else GPU_UNROLL_LONG_STEP


def make_epoch(model: Layer, loss: Loss, optimizer: optim.Optimizer, *, num_examples: int,
               batch_size: int, grad: str = "manual", shuffle: bool = True,
               blowup: float | None = DEFAULT_BLOWUP, norms: bool = False,
               unroll: int | None = None, compute_dtype=None,
               value_and_grad: backprop.ValueAndGrad | None = None,
               place_batches: Callable[[Array, Array], tuple[Array, Array]] | None = None):
    """``epoch(state, x, y) -> (state, EpochMetrics)``.

    One pass over the ``num_examples`` rows of ``x``/``y`` in shuffled batches
    of ``batch_size`` (the last one masked), as a single ``lax.scan`` of guarded
    updates; jit it once and call it every epoch. Each step reports its loss.
    With ``norms`` the epoch also reports the gradient norm of its last applied update
    (0 when it applied none: it diverged at its first; ``fit`` reports NaN then) and its
    displacement ‖θ_end − θ_start‖ (``fit`` asks for them): that costs a copy of the
    params, the last gradient carried through the loop (a select per step keeps it from
    refused updates) and two reductions over the params, once per epoch. ``unroll`` steps
    run in each iteration of the loop (``lax.scan``'s unroll; None: ``default_unroll``).
    ``compute_dtype``: mixed precision, as in ``make_step``.

    ``gdlab.parallel`` runs the same epoch on many devices through the last two
    arguments: ``value_and_grad`` replaces the gradient (to add an all-reduce), and
    ``place_batches(indices, weights)`` maps the epoch's ``(steps, B)`` batch plan to
    the one this program uses (a device's columns, or the plan with a sharding).
    """
    guarded = make_guarded_step(model, loss, optimizer, grad=grad, blowup=blowup,
                                value_and_grad=value_and_grad, compute_dtype=compute_dtype)

    def epoch(state: TrainState, x: Array, y: Array):
        if x.shape[0] != num_examples or y.shape[0] != num_examples:  # shapes are static
            raise ValueError(f"make_epoch(num_examples={num_examples}) got x with "
                             f"{x.shape[0]} rows and y with {y.shape[0]}: an epoch passes "
                             f"over all num_examples rows, no more, no fewer")
        # What the epoch draws from the state's key: the next epoch's key, the shuffle and
        # a key per step, all here at once, so the scanned step does no PRNG work of its own.
        key, indices, weights, step_keys = descent.epoch_plan(state.key, num_examples,
                                                              batch_size, shuffle=shuffle)
        if place_batches is not None:
            indices, weights = place_batches(indices, weights)
        start = state.params
        state = state.replace(key=key)
        steps = unroll if unroll is not None else default_unroll(state.params)

        def body(carry, batch):
            state, last = carry
            idx, w, k = batch
            state, (value, grads) = guarded(state, x[idx], y[idx], w, k)
            if norms:  # the last applied update's gradient rides in the carry; a refused
                # update's (and those after it, at the kept params) does not replace it
                last = jax.tree.map(lambda old, new: jnp.where(state.health.diverged, old, new),
                                    last, grads)
            return (state, last), value

        no_grads = jax.tree.map(jnp.zeros_like, state.params) if norms else None
        (state, grads), values = jax.lax.scan(body, (state, no_grads),
                                              (indices, weights, step_keys), unroll=steps)
        if not norms:
            return state, EpochMetrics(loss=values, grad_norm=None, displacement=None)
        moved = jax.tree.map(jnp.subtract, state.params, start)
        return state, EpochMetrics(loss=values, grad_norm=optim.global_norm(grads),
                                   displacement=optim.global_norm(moved))

    return epoch


def predictions_accuracy(loss: Loss, preds: Array, y: Array,
                         weights: Array | None = None) -> Array | None:
    """Classification accuracy for ``xent`` (argmax; per token for sequences) and ``bce``
    (logit > 0), as a mean over examples weighted by ``weights``; None for regression."""
    if loss.name == "xent":
        correct = jnp.argmax(preds, axis=-1) == y
    elif loss.name == "bce":
        correct = (preds.reshape(y.shape) > 0) == (y > 0.5)
    else:
        return None
    correct = correct.astype(preds.dtype).reshape(correct.shape[0], -1)
    per_example = jnp.mean(correct, axis=1)  # the share of its tokens right
    if weights is None:
        return jnp.mean(per_example)
    return jnp.sum(weights * per_example) / jnp.sum(weights)


EVAL_BATCH = 1024
"""Examples per forward pass when evaluating: a data set is evaluated in chunks of this
size (the last one masked), so its activations never have to fit in memory at once."""


def make_evaluate(model: Layer, loss: Loss, *, batch_size: int = EVAL_BATCH, target_scale=None):
    """``evaluate(params, model_state, x, y) -> {"loss", "accuracy" | "rmse"}`` in evaluation
    mode (no dropout, batch norm on its running statistics), over the whole of ``x``.

    Classification (xent, bce) reports the accuracy; regression the root mean squared
    error, in the target's own units when ``target_scale`` (a number, or one per output)
    undoes a standardised target: √mean(((p − t)·scale)²).

    Up to ``batch_size`` examples go through in one pass; more are split into
    chunks of ``batch_size`` (one ``lax.scan``), the last padded and masked, and
    the weighted chunk results add up to the same means.
    """

    def metrics(params, model_state, x, y, weights=None):
        preds = model.forward(params, model_state, x, train=False)[0]
        out = {"loss": loss.value(preds, y, weights)}
        accuracy = predictions_accuracy(loss, preds, y, weights)
        if accuracy is not None:
            out["accuracy"] = accuracy
        else:  # regression: the squared error, averaged like the loss; rmse is its root
            scale = 1.0 if target_scale is None else jnp.asarray(target_scale, preds.dtype)
            err = (preds - y.reshape(preds.shape).astype(preds.dtype)) * scale
            per_example = jnp.mean(jnp.square(err).reshape(err.shape[0], -1), axis=1)
            w = jnp.ones_like(per_example) if weights is None else weights.astype(preds.dtype)
            out["squared_error"] = jnp.sum(w * per_example) / jnp.sum(w)
        return out

    def finish(out):
        if "squared_error" in out:  # after the chunks are combined: the root of the mean
            out = dict(out)
            out["rmse"] = jnp.sqrt(out.pop("squared_error"))
        return out

    def evaluate(params, model_state, x, y):
        return finish(combined(params, model_state, x, y))

    def combined(params, model_state, x, y):
        x, y = jnp.asarray(x), jnp.asarray(y)
        n = x.shape[0]
        if n <= batch_size:
            return metrics(params, model_state, x, y)
        idx, w = descent.epoch_batches(None, n, batch_size)  # (chunks, B) in order, last masked

        def chunk(total, batch):
            i, w_i = batch
            out = metrics(params, model_state, x[i], y[i], w_i)
            real = jnp.sum(w_i)  # this chunk's real examples; its share of the mean is real / n
            return jax.tree.map(lambda t, v: t + (real.astype(v.dtype) / n) * v, total, out), None

        zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(metrics, params, model_state,
                                                           x[:batch_size], y[:batch_size]))
        return jax.lax.scan(chunk, zero, (idx, w))[0]

    return evaluate


def jit_evaluate(model: Layer, loss: Loss, *, target_scale=None):
    """``make_evaluate(model, loss, target_scale=...)`` jitted, and kept: the same model, loss
    and target scale get the same function back, so its compiled programs (one per data
    shape) serve every later call, ``fit`` after ``fit``."""
    if target_scale is None:
        return _evaluate_program(model, loss, None)
    scale = np.asarray(target_scale, np.float64)  # its shape kept: (T, D) per position and output
    return _evaluate_program(model, loss, (scale.shape, tuple(float(v) for v in scale.ravel())))


_param_norm = jax.jit(optim.global_norm)
"""‖θ‖ for ``fit``'s rows: one program (called eagerly, each leaf's square, sum and add
would compile on its own)."""


@functools.lru_cache(maxsize=8)
def _evaluate_program(model: Layer, loss: Loss,
                      target_scale: tuple[tuple[int, ...], tuple[float, ...]] | None):
    scale = None if target_scale is None else np.reshape(target_scale[1], target_scale[0])
    return jax.jit(make_evaluate(model, loss, target_scale=scale))


# --- inputs that would train on garbage -----------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_schedule(num_examples: int, *, batch_size, epochs, eval_every=1, start_epoch=0):
    """``ValueError`` naming the argument unless 1 ≤ batch_size ≤ N, epochs ≥ 1,
    eval_every ≥ 1 and 0 ≤ start_epoch ≤ epochs."""
    if not _is_int(batch_size) or not 1 <= batch_size <= num_examples:
        raise ValueError(f"batch_size must be an integer in 1..{num_examples} (the number of "
                         f"training examples), got {batch_size!r}")
    if not _is_int(epochs) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not _is_int(eval_every) or eval_every < 1:
        raise ValueError(f"eval_every must be an integer >= 1, got {eval_every!r}")
    if not _is_int(start_epoch) or not 0 <= start_epoch <= epochs:
        raise ValueError(f"start_epoch must be an integer in 0..{epochs} (epochs), "
                         f"got {start_epoch!r}")


def check_data(model: Layer, loss: Loss, data, name: str = "train_data"):
    """``(x, y)`` as device arrays, after checking that they can train ``model`` with ``loss``.

    Raises ``ValueError`` naming ``name`` when x and y differ in length, x does not
    fit the model, either holds complex numbers, NaN or infinity, labels are not integers in
    0..C−1 (xent; C the model's outputs) or 0/1 (bce), or an example's targets (mse,
    huber, bce) are not as many values as the model's outputs.
    """
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (x, y) of arrays") from None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: x and y must have one row per example, got {x.shape[:1]} "
                         f"rows of x and {y.shape[:1]} of y")
    if x.shape[0] < 1:
        raise ValueError(f"{name} is empty")
    for part, values in (("x", x), ("y", y)):
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise ValueError(f"{name}: {part} must be numbers, got dtype {values.dtype}")
        if np.iscomplexobj(values):
            raise ValueError(f"{name}: {part} must be real numbers, got dtype {values.dtype}")
        if np.issubdtype(values.dtype, np.inexact) and not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: {part} contains NaN or infinite values")
    try:
        out_shape = init_shapes(model, x.shape[1:])[0]
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: examples of shape {x.shape[1:]} do not fit {model.name}: "
                         f"{e}") from None
    if (loss.name in ("mse", "bce") or loss.name.startswith("huber")) and (
            int(np.prod(y.shape[1:])) != int(np.prod(out_shape))):
        raise ValueError(f"{name}: targets of shape {y.shape[1:]} per example do not match "
                         f"{model.name}'s outputs {tuple(out_shape)}: {loss.name} compares "
                         f"them value for value")
    if loss.name == "xent":
        classes = out_shape[-1]
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name}: xent labels must be integers 0..{classes - 1}, "
                             f"got dtype {y.dtype}")
        if y.shape[1:] != tuple(out_shape[:-1]):
            raise ValueError(f"{name}: labels of shape {y.shape[1:]} per example do not match "
                             f"{model.name}'s outputs {tuple(out_shape)}")
        if y.min() < 0 or y.max() >= classes:
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise ValueError(f"{name}: label {bad} is outside 0..{classes - 1} "
                             f"({model.name} has {classes} outputs)")
    elif loss.name == "bce" and not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{name}: bce labels must be 0 or 1")
    return jnp.asarray(x), jnp.asarray(y)


def check_initial_loss(row: dict, model: Layer, inputs: dict) -> None:
    """``ValueError`` naming ``train_data`` or ``test_data`` when its loss at finite initial
    params is NaN and its inputs are integers (token ids): integer ids are finite, so the
    model cannot take them, as an embedding given a token id outside its vocabulary (a row
    of NaN) cannot. Training would refuse every update and call the run diverged.
    ``inputs`` maps ``"train"`` and ``"test"`` to their inputs (None without test data).
    Float inputs are left alone: finite but huge ones may overflow to NaN (a test split's
    outlier), and the run trains and reports that loss as before."""
    if not np.isfinite(row["param_norm"]):
        return
    for name in ("train", "test"):
        x = inputs.get(name)
        if x is None or not jnp.issubdtype(x.dtype, jnp.integer):
            continue
        if np.isnan(row.get(f"{name}_loss", 0.0)):
            raise ValueError(f"{name}_data: the loss at the initial params is NaN: {model.name} "
                             f"cannot take these inputs (a token id outside an embedding's "
                             f"vocabulary, 0..V-1, gives NaN)")


def _same_shapes(expected, given) -> bool:
    """Whether two pytrees have one structure and leaves of the same shapes."""
    return jax.tree_util.tree_structure(expected) == jax.tree_util.tree_structure(given) and all(
        tuple(np.shape(a)) == tuple(np.shape(b))
        for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(given)))


def check_params_fit(model: Layer, params, in_shape) -> None:
    """``ValueError`` unless ``params`` are shaped like ``model``'s on examples of ``in_shape``."""
    if not _same_shapes(init_shapes(model, tuple(in_shape))[1], params):
        raise ValueError(f"the given state's params do not fit {model.name} on examples of "
                         f"shape {tuple(in_shape)}")


def check_state_fit(model: Layer, optimizer: optim.Optimizer, state: TrainState,
                    in_shape) -> None:
    """``ValueError`` unless ``state`` could have come from ``create_state(model, optimizer,
    ...)`` on examples of ``in_shape``: its params fit the model and its optimizer state is
    the one ``optimizer`` keeps (momentum's velocity, Adam's two moments, ...)."""
    check_params_fit(model, state.params, in_shape)
    if not _same_shapes(jax.eval_shape(optimizer.init, state.params), state.opt_state):
        raise ValueError(f"the given state's optimizer state "
                         f"({type(state.opt_state).__name__}) is not the one this optimizer "
                         f"keeps ({type(jax.eval_shape(optimizer.init, state.params)).__name__})")


def _bytes(tree) -> int:
    return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
               for leaf in jax.tree_util.tree_leaves(tree))


def estimate_memory(model: Layer, optimizer: optim.Optimizer, in_shape, *, batch_size: int,
                    input_dtype=jnp.float32, data_bytes: int = 0, configs: int = 1,
                    eval_rows: int | None = None) -> int:
    """Bytes a training run needs on its device, estimated from shapes alone (nothing runs).

    Per configuration (``configs`` of them in a vmapped sweep): params, gradients,
    updates and the new params (4× the params), the optimizer and model state,
    and twice the activations one training step keeps for its backward pass (the
    residuals, and the cotangents flowing back); plus the data set once
    (``data_bytes``) and one evaluation chunk's activations: ``EVAL_BATCH`` rows, or the
    largest split's ``eval_rows`` when fewer (six pictures are not evaluated 1,024 at a time).
    """
    _, params, state = init_shapes(model, tuple(in_shape))
    opt_state = jax.eval_shape(optimizer.init, params)

    def residual_bytes(batch):
        x = jax.ShapeDtypeStruct((batch, *in_shape), input_dtype)
        out = jax.eval_shape(lambda p, s, x: model.forward(p, s, x, train=True,
                                                           key=jax.random.PRNGKey(0)),
                             params, state, x)
        return _bytes(out[0]) + _bytes(out[2])

    per_config = 4 * _bytes(params) + _bytes(opt_state) + _bytes(state) + 2 * residual_bytes(
        batch_size)
    chunk = EVAL_BATCH if eval_rows is None else max(1, min(EVAL_BATCH, eval_rows))
    return configs * per_config + data_bytes + residual_bytes(chunk)


def device_memory() -> int | None:
    """Bytes of memory on the default device: the accelerator's limit, or the machine's RAM."""
    device = jax.devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # not every backend reports
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    from gdlab.records import host_memory

    return host_memory()


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What ``fit`` returns."""

    state: TrainState              # the final state (on divergence: the one that gave the bad loss)
    history: list[dict]            # one row per evaluated epoch (and epoch 0), see ``fit``
    status: str                    # "completed", "diverged" or "stopped" (by after_epoch)
    diverged_at_step: int | None   # the refused update, when diverged
    compile_seconds: float         # time to compile the epoch program (and warm it up)
    step_losses: np.ndarray        # the batch loss of every update this call ran, in order;
                                   # on divergence up to and including the refused one
    epochs_run: int = 0            # the last epoch trained (start_epoch when none was)


def fit(
    model: Layer,
    loss: Loss,
    optimizer: optim.Optimizer,
    train_data: tuple[Array, Array],
    *,
    epochs: int,
    batch_size: int,
    key: PRNGKey,
    grad: str = "manual",
    test_data: tuple[Array, Array] | None = None,
    eval_every: int = 1,
    blowup: float | None = DEFAULT_BLOWUP,
    state: TrainState | None = None,
    start_epoch: int = 0,
    hook: Callable[[dict, TrainState], None] | None = None,
    after_epoch: Callable[[int, TrainState], bool | None] | None = None,
    target_scale=None,
    mesh: Mesh | None = None,
    compute_dtype=None,
    warm_up: bool = False,
) -> FitResult:
    """Train for ``epochs`` epochs of mini-batches of ``batch_size`` (N for batch GD, 1 for SGD).

    Each epoch is one compiled call. The history starts with a row for epoch 0
    (the initial params: ``epoch``, ``step``, the evaluation metrics and
    ``param_norm``) when training starts from scratch; then every ``eval_every``
    epochs (and at the last) it gets a row: ``epoch``, ``step``, ``train_loss``
    (J on the whole training set), ``batch_loss`` (mean of the epoch's step
    losses), ``train_accuracy``, ``test_loss``, ``test_accuracy`` (classification
    only, test only with ``test_data``), ``train_rmse``, ``test_rmse`` (regression
    only, in the target's units when ``target_scale`` undoes its standardisation),
    ``grad_norm`` (‖∂J/∂θ‖ of the epoch's last applied update; NaN when every update of
    the epoch was refused), ``displacement``
    (‖θ_end − θ_start‖ over the epoch), ``param_norm``, ``seconds`` (training time
    of the epoch) and ``examples_per_second``. ``hook(row, state)`` is called
    with each row. Training stops at the first diverged epoch. Blow-up (see
    ``guard``) is measured against epoch 0's ``train_loss``; a ``state`` passed in
    keeps the reference it already has (a resumed run, its original one).

    Each epoch consumes its input state (its buffers are donated to the next), so
    ``fit`` works on a copy of the ``state`` passed in and hands ``hook`` and
    ``after_epoch`` copies too: every state a caller holds stays readable.

    With a ``mesh`` (``gdlab.parallel.make_mesh``), every batch is split over its
    devices (data parallelism, see ``gdlab.parallel``); the state comes back
    replicated on the mesh and the history is the same as on one device.

    ``warm_up=True`` runs the compiled epoch once on a copy of the state (result
    discarded) before training, and counts it in ``compile_seconds``: XLA's first run
    of a program pays one-off costs (tens of ms on a CPU), which would otherwise
    land in epoch 1's ``seconds``. It costs one epoch of compute; use it when the
    epochs' times are compared (``experiments.descent_modes``).

    ``compute_dtype`` (e.g. ``jnp.bfloat16``) trains in mixed precision: each step's
    forward and backward pass in that dtype from float32 master params, the loss and
    the update in float32 (see ``make_step``); evaluation stays in the params' dtype.

    To resume, pass the ``state`` saved after epoch ``start_epoch`` (see
    ``gdlab.checkpoint``): epochs ``start_epoch + 1 … epochs`` run exactly as
    they would have without the stop. ``after_epoch(epoch, state)`` is called
    after every epoch (after ``hook``); when it returns True training stops there
    with status ``"stopped"`` (how an interrupted run finishes its epoch).

    Raises ``ValueError`` naming the argument for inputs that would train on
    garbage: mismatched or non-finite data, labels outside the model's classes,
    integer inputs whose loss at the initial params is NaN (token ids outside the vocabulary),
    a batch size outside 1..N, epochs or eval_every below 1.
    """
    x, y = check_data(model, loss, train_data, "train_data")
    n = x.shape[0]
    check_schedule(n, batch_size=batch_size, epochs=epochs, eval_every=eval_every,
                   start_epoch=start_epoch)
    test = None if test_data is None else check_data(model, loss, test_data, "test_data")
    if test is not None and test[0].shape[1:] != x.shape[1:] and not _same_shapes(
            init_shapes(model, x.shape[1:])[1:], init_shapes(model, test[0].shape[1:])[1:]):
        # another shape is fine where the params are the same (a longer or shorter sequence)
        raise ValueError(f"test_data: examples of shape {test[0].shape[1:]} differ from "
                         f"train_data's {x.shape[1:]}, on which the model is built")
    if state is None and start_epoch:
        raise ValueError(f"start_epoch={start_epoch} resumes a run: pass the state saved after "
                         f"that epoch (without one, fit starts from epoch 0)")
    if state is None:
        state = create_state(model, optimizer, key, x.shape[1:])
    else:
        check_state_fit(model, optimizer, state, x.shape[1:])
        state = _copy(state)  # each epoch consumes (donates) its input: keep the caller's
    if mesh is None:
        epoch_fn = make_epoch(model, loss, optimizer, num_examples=n, batch_size=batch_size,
                              grad=grad, blowup=blowup, norms=True, compute_dtype=compute_dtype)
    else:
        from gdlab import parallel

        epoch_fn = parallel.make_epoch(model, loss, optimizer, mesh, num_examples=n,
                                       batch_size=batch_size, grad=grad, blowup=blowup,
                                       norms=True, compute_dtype=compute_dtype)
        state, x, y, test = parallel.replicate((state, x, y, test), mesh)
    evaluate = jit_evaluate(model, loss, target_scale=target_scale)

    def evaluated(epoch, state):
        row = {"epoch": epoch, "step": int(state.step)}
        row.update({f"train_{k}": float(v)
                    for k, v in evaluate(state.params, state.model_state, x, y).items()})
        if test is not None:
            row.update({f"test_{k}": float(v)
                        for k, v in evaluate(state.params, state.model_state, *test).items()})
        return row

    history: list[dict] = []
    if start_epoch == 0:
        row = evaluated(0, state)  # where descent starts: the initial loss
        row["param_norm"] = float(_param_norm(state.params))
        check_initial_loss(row, model, {"train": x, "test": None if test is None else test[0]})
        history.append(row)
        # blow-up is relative to the initial loss on all the data, not on the first batch
        state = jax.jit(with_reference_loss)(state, row["train_loss"])
        if mesh is not None:
            state = parallel.replicate(state, mesh)  # as the epoch program expects it
        if hook is not None:
            hook(row, _copy(state))
    t0 = time.perf_counter()
    compiled = jax.jit(epoch_fn, donate_argnums=(0,)).lower(state, x, y).compile()
    if warm_up:  # the first run's one-off costs, off the epochs' clock
        jax.block_until_ready(compiled(_copy(state), x, y))
    compile_seconds = time.perf_counter() - t0
    first_step = int(state.step)
    step_losses: list[np.ndarray] = []
    stopped = False
    epochs_run = start_epoch
    for epoch in range(start_epoch + 1, epochs + 1):
        step_before = int(state.step)  # the state is donated to the epoch: read it first
        t0 = time.perf_counter()
        state, metrics = compiled(state, x, y)
        jax.block_until_ready(state)
        seconds = time.perf_counter() - t0
        epochs_run = epoch
        diverged = bool(state.health.diverged)
        if not diverged and not np.isfinite(float(metrics.displacement)):
            # the epoch's last update left non-finite params: the guard would refuse the
            # next update on its loss, but no update of this epoch comes after it
            state, diverged = _diverged_after(state), True
        values = np.asarray(metrics.loss)
        if diverged:  # keep the losses up to the refused update
            values = values[:max(0, int(state.health.diverged_at) - first_step
                                 - sum(map(len, step_losses)))]
        step_losses.append(values)
        if epoch % eval_every and epoch != epochs and not diverged:
            if after_epoch is not None and after_epoch(epoch, _copy(state)):
                stopped = True
                break
            continue
        row = evaluated(epoch, state)
        if not diverged and (not np.isfinite(row["train_loss"]) or (  # finite params, bad loss
                epoch == epochs and bool(_blown_up(row["train_loss"], state.health.reference_loss,
                                                   blowup)))):
            # (or the run's last update blew the loss up: no later update's guard sees it)
            state, diverged = _diverged_after(state), True
        with warnings.catch_warnings():  # an epoch whose losses were all refused: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            row["batch_loss"] = float(np.nanmean(values)) if values.size else float("nan")
        # an epoch whose every update was refused has no last update: its norm is NaN
        applied = int(state.step) - step_before
        grad_norm = float(metrics.grad_norm) if applied else float("nan")
        row.update(grad_norm=grad_norm, displacement=float(metrics.displacement),
                   param_norm=float(_param_norm(state.params)),
                   seconds=seconds, examples_per_second=n / seconds)
        history.append(row)
        # one copy for both callbacks: the next epoch consumes the original
        handed = None if hook is None and after_epoch is None else _copy(state)
        if hook is not None:
            hook(row, handed)
        if diverged:
            break
        if after_epoch is not None and after_epoch(epoch, handed) and epoch != epochs:
            stopped = True
            break
    if bool(state.health.diverged) and (
            sum(map(len, step_losses)) < int(state.health.diverged_at) - first_step):
        # marked after its epoch (_diverged_after): the refused update never ran, and its
        # loss, J at the non-finite params the last update left, is not a number
        step_losses.append(np.full(1, np.nan, np.float32))
    status = "diverged" if bool(state.health.diverged) else "stopped" if stopped else "completed"
    return FitResult(
        state=state,
        history=history,
        status=status,
        diverged_at_step=int(state.health.diverged_at) if bool(state.health.diverged) else None,
        compile_seconds=compile_seconds,
        step_losses=np.concatenate(step_losses) if step_losses else np.zeros(0, np.float32),
        epochs_run=epochs_run,
    )


def _diverged_after(state: TrainState, late=True) -> TrainState:
    """``state`` marked diverged at the next update where ``late`` (a bool, traced or not)
    and it has not diverged yet, as the guard would mark it when that update's loss came
    out non-finite (so ``diverged_at`` − 1 is still the state's step)."""
    health = state.health
    late = jnp.asarray(late) & ~health.diverged
    return state.replace(health=health.replace(
        diverged=health.diverged | late,
        diverged_at=jnp.where(late, jnp.asarray(state.step + 1, jnp.int32), health.diverged_at)))


def _copy(state: TrainState) -> TrainState:
    """A copy of ``state`` on the same devices: what ``fit`` hands out (to its caller's
    callbacks) while the next epoch consumes the original."""
    return jax.tree.map(jnp.copy, state)


def with_reference_loss(state: TrainState, loss) -> TrainState:
    """``state`` whose blow-up reference is ``loss`` (the training-set loss at the initial
    params), unless it already has one (a resumed run keeps its own). Traceable."""
    health = state.health
    reference = jnp.where(jnp.isnan(health.reference_loss),
                          jnp.asarray(loss, health.reference_loss.dtype), health.reference_loss)
    return state.replace(health=health.replace(reference_loss=reference))


@functools.lru_cache(maxsize=8)
def _sweep_program(model, loss, optimizer_for, in_shape, num_examples, batch_size, epochs, grad,
                   blowup, mesh):
    """The jitted, vmapped run of ``sweep``, one per configuration of its arguments, so a
    second sweep of the same model, optimizer builder (the same function object), data
    shape and number of configurations reuses the compiled program instead of compiling
    again; other learning rates or seeds are just other inputs."""
    run = make_run(model, loss, optimizer_for, in_shape=in_shape, num_examples=num_examples,
                   batch_size=batch_size, epochs=epochs, grad=grad, blowup=blowup)
    if mesh is None:
        return jax.jit(jax.vmap(run, in_axes=(0, 0, None, None)))
    from gdlab import parallel

    return jax.jit(parallel.sweep_program(run, mesh))


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What ``sweep`` returns: K = len(seeds)·len(learning_rates) configurations."""

    learning_rates: np.ndarray  # (K,) the learning rate of each configuration
    seeds: np.ndarray           # (K,) its seed
    train_loss: np.ndarray      # (K, epochs) J on the training set after each epoch; NaN once diverged
    diverged: np.ndarray        # (K,) bool
    diverged_at_step: np.ndarray  # (K,) int, −1 when it did not diverge
    params: Params              # final params (diverged: those that gave the refused loss,
                                # non-finite after an overflow), every leaf with a leading K axis
    model_state: State          # the model state beside them, likewise


def make_run(model: Layer, loss: Loss, optimizer_for: Callable[[Array], optim.Optimizer], *,
             in_shape: Sequence[int], num_examples: int, batch_size: int, epochs: int,
             grad: str = "manual", blowup: float | None = DEFAULT_BLOWUP):
    """``run(lr, key, x, y) -> (TrainState, train-loss curve (epochs,))``: a whole
    training run as one traceable function, for ``jit`` and ``vmap`` over ``lr``/``key``.

    The curve holds J on the training set after each epoch, NaN once diverged.
    """
    evaluate = make_evaluate(model, loss)

    def run(lr, key, x, y):
        optimizer = optimizer_for(lr)
        epoch_fn = make_epoch(model, loss, optimizer, num_examples=num_examples,
                              batch_size=batch_size, grad=grad, blowup=blowup)
        state = create_state(model, optimizer, key, in_shape)
        initial = evaluate(state.params, state.model_state, x, y)["loss"]
        state = with_reference_loss(state, initial)  # as fit: blow-up against J(θ₀)

        def body(state, epoch):
            state, _ = epoch_fn(state, x, y)
            train_loss = evaluate(state.params, state.model_state, x, y)["loss"]
            # as fit: an epoch's last update that left J non-finite diverged at the next one,
            # and so did the run's last update if it blew J up
            state = _diverged_after(state, ~jnp.isfinite(train_loss) | (
                (epoch == epochs - 1) & _blown_up(train_loss, state.health.reference_loss, blowup)))
            return state, jnp.where(state.health.diverged, jnp.nan, train_loss)

        return jax.lax.scan(body, state, jnp.arange(epochs))

    return run


def sweep(
    model: Layer,
    loss: Loss,
    optimizer_for: Callable[[Array], optim.Optimizer],
    learning_rates: Sequence[float],
    train_data: tuple[Array, Array],
    *,
    epochs: int,
    batch_size: int,
    seeds: Sequence[int] = (0,),
    grad: str = "manual",
    blowup: float | None = DEFAULT_BLOWUP,
    mesh: Mesh | None = None,
) -> SweepResult:
    """Train every (seed, learning rate) pair at once: one ``vmap``-ed, compiled program.

    ``optimizer_for(lr)`` builds the optimizer for a (traced) learning rate,
    e.g. ``lambda lr: optim.gd(lr)``. Configuration k trains as
    ``fit(..., key=jax.random.PRNGKey(seed_k))`` with ``optimizer_for(lr_k)``
    would: the same batches, keys and updates, the same numbers up to rounding (the
    batched program may order a reduction differently: in float32 the parameters
    can differ from ``fit``'s in the last bits, 1e-7 to 1e-6 after two epochs of
    the tiny MLP); divergence is tracked per configuration. Raises ``ValueError`` for the
    inputs ``fit`` refuses, for learning rates that are not finite and > 0, and for seeds
    that are not integers in 0..2**32−1 (``PRNGKey``'s range).

    With a ``mesh`` the configurations are split over its devices (and processes),
    each training its share with no communication; K is padded to a multiple of the
    device count with copies of the last configuration, which are dropped after.
    """
    x, y = check_data(model, loss, train_data, "train_data")
    check_schedule(x.shape[0], batch_size=batch_size, epochs=epochs)
    rates = np.asarray(learning_rates, dtype=np.float64).ravel()
    if rates.size == 0 or not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError(f"learning_rates must be finite numbers > 0, got {list(learning_rates)}")
    seed_values = np.asarray(seeds).ravel()
    if (seed_values.size == 0 or not np.issubdtype(seed_values.dtype, np.integer)
            or np.any(seed_values < 0) or np.any(seed_values >= 2**32)):
        raise ValueError(f"seeds must be integers in 0..2**32-1, got {list(seeds)}")
    dtype = jax.tree_util.tree_leaves(init_shapes(model, x.shape[1:])[1])[0].dtype
    grid_seeds, grid_lrs = np.meshgrid(np.asarray(seeds), np.asarray(learning_rates), indexing="ij")
    grid_seeds, grid_lrs = grid_seeds.ravel(), grid_lrs.ravel()
    program = _sweep_program(model, loss, optimizer_for, tuple(x.shape[1:]), x.shape[0],
                             batch_size, epochs, grad, blowup, mesh)
    k = grid_lrs.size
    lrs = np.asarray(grid_lrs, dtype)
    keys = np.asarray(jax.vmap(jax.random.PRNGKey)(jnp.asarray(grid_seeds)))
    if mesh is None:
        state, curves = program(lrs, keys, x, y)
    else:
        from gdlab import parallel

        extra = -k % mesh.size  # pad with the last configuration, dropped below
        lrs, keys = (np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) for a in (lrs, keys))
        configs = parallel.configs_mesh(mesh)
        state, curves = program(parallel.shard_rows(lrs, configs),
                                parallel.shard_rows(keys, configs),
                                *parallel.replicate((x, y), configs))
        state, curves = jax.tree.map(lambda a: a[:k], parallel.fetch((state, curves)))
    return SweepResult(
        learning_rates=grid_lrs,
        seeds=grid_seeds,
        train_loss=np.asarray(curves),
        diverged=np.asarray(state.health.diverged),
        diverged_at_step=np.asarray(state.health.diverged_at),
        params=state.params,
        model_state=state.model_state,
    )
