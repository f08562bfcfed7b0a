r"""Curvature of the loss: Hessian-vector products through the hand-written backward, and λmax.

The Hessian H = ∇²J(θ) of a model with P parameters has P² entries, far too many
to form, but its product with one direction v costs about one more gradient::

    H·v = d/dε ∇J(θ + ε·v) |_{ε=0}

the directional derivative of the gradient. Here the gradient is gdlab's
*manual* backprop (``gdlab.backprop.manual``: the forward pass keeps residuals,
the backward passes apply the chain rule by hand), and ``jax.jvp`` pushes the
tangent v through all of it: forward-mode over reverse-mode ("forward-over-reverse",
Pearlmutter 1994). Every hand-written backward is therefore differentiated once
more, and the tests check H·v against ``jax.hessian`` of the autodiff loss for
every layer family.

From products alone, the top of the spectrum:

- ``power_iteration``: v ← Hv/‖Hv‖, λ = vᵀHv, until λ changes by at most ``tol``
  (relative) or ``max_iters`` products; the eigenvalue largest in magnitude,
  converged when the residual ‖Hv − λv‖ is small too (λ also settles, at no
  eigenvalue, when λ and −λ share the largest magnitude). ``top_eigenvalue`` runs
  it again on a shifted H when that eigenvalue is negative or λ settled without
  converging, so it gives λmax.
- ``lanczos``: a Krylov basis with full reorthogonalisation and the Ritz values of
  its tridiagonal matrix (Lanczos 1950); the ``k`` algebraically largest
  eigenvalues, until their residuals fall below ``tol``.

``make_sharpness`` puts them together for a model: λmax of the training loss on a
fixed batch (``fixed_subset``), jitted; ``make_sharpness_path`` runs plain gradient
descent and measures λmax every few steps, in one compiled program. λmax is the
*sharpness*: full-batch gradient descent with step η is stable on a quadratic only
while λmax < 2/η, and on neural networks it rises until it reaches 2/η and then
hovers there, the *edge of stability* (Cohen, Kaur, Li, Kolter & Talwalkar 2021,
"Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability").

Conventions: batch norm is differentiated in training mode (``train=True``, the
batch's own statistics) and its running statistics are not updated; dropout in
training mode needs a fixed ``key`` (one fixed mask), or ``train=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gdlab import backprop, descent, optim
from gdlab.layers import Layer
from gdlab.losses import Loss
from gdlab.types import Array, Params, PRNGKey, State

MatVec = Callable[[Array], Array]
"""A symmetric linear map on flat vectors, u ↦ H·u."""

METHODS = ("power", "lanczos")


class Eigen(NamedTuple):
    """One eigenpair estimate, from ``power_iteration`` or ``top_eigenvalue``."""

    value: Array       # λ, the Rayleigh quotient vᵀHv of the last iterate
    vector: Array      # unit eigenvector estimate (flat, or shaped like the params)
    iterations: Array  # int32: products H·v computed
    converged: Array   # bool: the tolerance was met before the iteration cap


class Eigens(NamedTuple):
    """The top-k eigenpair estimates, from ``lanczos``."""

    values: Array      # (k,) Ritz values, largest first
    vectors: Array     # (k, P) unit Ritz vectors (or params-shaped leaves with a k axis)
    residuals: Array   # (k,) ‖H·u_i − θ_i·u_i‖: some eigenvalue of H lies this close to θ_i
    iterations: Array  # int32: products H·v computed (the Krylov dimension)
    converged: Array   # bool: every residual met the tolerance (or the space was exhausted)


# --------------------------------------------------------------------- Hessian-vector products


def _hvp(model: Layer, loss: Loss, train: bool):
    """The H·v function of ``make_hvp``, not jitted."""
    value_and_grad = backprop.manual(model, loss)

    def hvp(params: Params, state: State, x: Array, y: Array, v: Params,
            weights: Array | None = None, *, key: PRNGKey | None = None) -> Params:
        def grad(p):
            return value_and_grad(p, state, x, y, weights, key=key, train=train)[1]  # ∇J(p)

        return jax.jvp(grad, (params,), (v,))[1]

    return hvp


def make_hvp(model: Layer, loss: Loss, *, train: bool = True):
    """``hvp(params, state, x, y, v, weights=None, *, key=None) -> H·v``, shaped like ``params``,
    jitted (called eagerly, each of its hundreds of operations would compile on its own).

    H·v = d/dε ∇J(θ + ε·v)|₀: ``jax.jvp`` of the manual gradient (forward-over-reverse).
    ``v`` is shaped like ``params``. ``state`` is read, never updated; ``train``
    (static) picks batch statistics (True) or running statistics (False) for batch
    norm; ``key`` fixes the dropout mask in training mode.
    """
    return jax.jit(_hvp(model, loss, train))


@partial(jax.jit, static_argnames=("model", "loss", "train"))
def hvp(model: Layer, loss: Loss, params: Params, state: State, x: Array, y: Array, v: Params,
        weights: Array | None = None, *, key: PRNGKey | None = None, train: bool = True) -> Params:
    """H·v for one direction, as ``make_hvp(model, loss, train=train)(params, ...)`` computes it;
    jitted, compiled once per model, loss, ``train`` and argument shapes."""
    return _hvp(model, loss, train)(params, state, x, y, v, weights, key=key)


def linearized_hvp(model: Layer, loss: Loss, params: Params, state: State, x: Array, y: Array,
                   weights: Array | None = None, *, key: PRNGKey | None = None,
                   train: bool = True, weight_decay: float = 0.0,
                   weight_decay_mask=None) -> tuple[MatVec, Callable[[Array], Params]]:
    """``(matvec, unravel)``: u ↦ H·u on flat vectors of length P, for many products at θ.

    The same forward-over-reverse product, but ``jax.linearize`` runs the primal
    forward and backward pass once; each product is then a tangent pass only.
    ``unravel`` turns a flat vector back into a params-shaped pytree.

    ``weight_decay`` c > 0: the Hessian of J + (c/2)·‖w‖² over the leaves
    ``weight_decay_mask`` marks (every leaf when None; a mask as in ``gdlab.optim``),
    the objective whose gradient an optimizer with a coupled L2 decay follows
    (``optim.add_weight_decay``, ``optim.get(..., weight_decay=c)`` but for adamw):
    H + c·I on the decayed leaves.
    """
    value_and_grad = backprop.manual(model, loss)
    flat, unravel = ravel_pytree(params)
    decay = (optim.add_weight_decay(weight_decay, mask=weight_decay_mask) if weight_decay
             else None)

    def flat_grad(theta):
        p = unravel(theta)
        g = value_and_grad(p, state, x, y, weights, key=key, train=train)[1]
        if decay is not None:  # the optimizer's own rule: g + c·w on the masked leaves
            g = decay.update(g, decay.init(p), p)[0]
        return ravel_pytree(g)[0]

    _, matvec = jax.linearize(flat_grad, flat)
    return matvec, unravel


# ---------------------------------------------------------------------------- eigenvalues


def _unit(v: Array) -> Array:
    return v / jnp.linalg.norm(v)


def _check_tol(tol) -> None:
    """A ValueError unless ``tol``, a fraction of the eigenvalue, lies in (0, 1): from 1 on,
    any Rayleigh quotient would pass for converged."""
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), a fraction of the eigenvalue, got {tol}")


def power_iteration(matvec: MatVec, v0: Array, *, tol: float = 1e-3, max_iters: int = 100,
                    shift: float | Array = 0.0) -> Eigen:
    """The eigenvalue of largest magnitude of a symmetric H, from products alone; jittable.

    v ← H·v/‖H·v‖ and λ = vᵀ·H·v (v a unit vector), stopping once λ settles,
    |λ_t − λ_{t−1}| ≤ tol·|λ_t|, or after ``max_iters`` products. It has converged
    when λ settled and the residual ‖H·v − λ·v‖ ≤ √tol·|λ_t| (λ then lies within the
    residual of an eigenvalue). The Rayleigh quotient's error shrinks like (λ₂/λ₁)^{2t},
    twice as fast as the vector's, so a close second eigenvalue slows the vector,
    not λ; the error left can still be 1/(1 − (λ₂/λ₁)²) times the last change. When
    two eigenvalues share the largest magnitude (λ and −λ, as at a saddle) the vector
    never settles but λ does, anywhere in [−λ, λ]: the residual stays large, and the
    run stops there, not converged. Warm-start ``v0`` from a previous
    ``vector`` when H changes little. ``shift`` σ iterates on H − σI instead (the
    value returned is still H's: λ + σ). The returned vector is the next iterate
    H·v/‖H·v‖; H = 0 gives λ = 0.
    """
    if max_iters < 1:
        raise ValueError(f"power_iteration needs max_iters >= 1, got {max_iters}")
    _check_tol(tol)
    v = _unit(v0)
    nan = jnp.array(jnp.nan, v.dtype)

    def cond(carry):
        i, _, _, done, _ = carry
        return (i < max_iters) & ~done

    def body(carry):
        i, v, lam_prev, _, _ = carry
        w = matvec(v) - shift * v                   # (H − σI)·v
        lam = jnp.vdot(v, w)                        # Rayleigh quotient vᵀ(H − σI)v
        norm = jnp.linalg.norm(w)
        zero = norm == 0                            # (H − σI)·v = 0: an exact eigenvector
        v_next = jnp.where(zero, v, w / jnp.where(zero, 1, norm))
        # ‖w − λv‖² = ‖w‖² − λ² for a unit v with vᵀw = λ
        residual = jnp.sqrt(jnp.maximum(norm * norm - lam * lam, 0))
        settled = jnp.abs(lam - lam_prev) <= tol * jnp.abs(lam + shift)
        converged = zero | (settled & (residual <= jnp.sqrt(tol) * jnp.abs(lam)))
        return i + 1, v_next, lam, zero | settled, converged

    false = jnp.array(False)
    i, v, lam, _, converged = jax.lax.while_loop(
        cond, body, (jnp.array(0, jnp.int32), v, nan, false, false))
    return Eigen(value=lam + shift, vector=v, iterations=i, converged=converged)


def top_eigenvalue(matvec: MatVec, v0: Array, *, tol: float = 1e-3,
                   max_iters: int = 100) -> Eigen:
    """λmax, the algebraically largest eigenvalue of a symmetric H, by power iteration; jittable.

    Power iteration finds the eigenvalue of largest magnitude. When that one is
    negative (λmin, with |λmin| > λmax), a second run on H − λmin·I, whose spectrum
    is [0, λmax − λmin], finds λmax from the same ``v0``. When the first run's λ
    settled without converging (λ and −λ share the largest magnitude), the second
    runs on H + ρ·I, ρ = ‖H·v‖ ≈ that magnitude, whose top eigenvalue λmax + ρ is
    then the largest in magnitude. A first run stopped by ``max_iters`` (a slow
    spectrum) is returned as it is, not converged. ``max_iters`` caps each run;
    ``iterations`` counts both runs (and the product that measures ρ).
    """
    first = power_iteration(matvec, v0, tol=tol, max_iters=max_iters)
    negative = first.converged & (first.value < 0)
    stalled = ~first.converged & (first.iterations < max_iters)

    def shifted(first):
        shift, extra = jax.lax.cond(
            negative, lambda: (first.value, 0),
            lambda: (-jnp.linalg.norm(matvec(first.vector)), 1))   # −ρ, ρ ≈ max |λ|
        out = power_iteration(matvec, v0, tol=tol, max_iters=max_iters, shift=shift)
        return out._replace(iterations=first.iterations + out.iterations + extra)

    return jax.lax.cond(negative | stalled, shifted, lambda first: first, first)


def lanczos(matvec: MatVec, v0: Array, *, k: int = 1, tol: float = 1e-6,
            max_iters: int = 50) -> Eigens:
    """The ``k`` largest eigenvalues of a symmetric H by the Lanczos method; jittable.

    Builds an orthonormal Krylov basis q₀ = v0/‖v0‖, q_{j+1} ∝ H·q_j − α_j q_j − β_{j−1} q_{j−1}
    (fully reorthogonalised against every earlier q, twice, so rounding never
    brings back converged directions), in which H is the tridiagonal T with
    α_j = q_jᵀHq_j on the diagonal and β_j = ‖…‖ beside it. T's eigenvalues θ_i
    (Ritz values) approach H's extreme eigenvalues; the Ritz vector u_i = Q·s_i has
    residual ‖H·u_i − θ_i·u_i‖ = β_j·|s_i[j]|, which bounds |θ_i − λ| for some λ.
    Stops when all top-k residuals are ≤ tol·|θ₁|, when the Krylov space is exhausted
    (β = 0: then exact; values beyond its dimension are NaN), or after ``max_iters``
    products (at most P).

    One starting vector sees each eigenvalue once: a repeated eigenvalue (a linear
    model's Hessian repeats each one per output) shows once among the k, and the
    values after it are the next distinct ones, each a true eigenpair (small residual,
    ``converged``) but not the k largest counted with multiplicity. λmax (k = 1) is
    unaffected. Below float32 (bfloat16 parameters) the basis is kept in float32, each
    product taken in the parameters' dtype: reorthogonalising in bfloat16 would lose the
    basis, and there is no bfloat16 eigensolver.
    """
    _check_tol(tol)
    n = v0.shape[0]
    m = min(int(max_iters), n)
    if not 1 <= k <= m:
        raise ValueError(f"lanczos needs 1 <= k <= min(max_iters, P) = {m}, got k={k}")
    own = v0.dtype
    dtype = jnp.promote_types(own, jnp.float32)
    if dtype != own:
        product = matvec

        def matvec(v):
            return product(v.astype(own)).astype(dtype)
    q0 = _unit(v0.astype(dtype))
    idx = jnp.arange(m)

    def ritz(alpha, beta, j):
        """Eigen-decomposition of the active (j+1)×(j+1) block of T, padded to m×m with
        decoupled diagonal entries below every active eigenvalue (Gershgorin), ascending."""
        active = idx <= j
        bound = jnp.max(jnp.where(active, jnp.abs(alpha), 0)) + 2 * jnp.max(
            jnp.where(idx < j, jnp.abs(beta), 0))
        diag = jnp.where(active, alpha, -bound - 1)
        off = jnp.where(idx[:-1] < j, beta[:-1], 0)
        t = jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)
        return jnp.linalg.eigh(t)

    def cond(carry):
        j, *_, done = carry
        return (j < m) & ~done

    def body(carry):
        j, basis, alpha, beta, q, _ = carry
        basis = basis.at[j].set(q)
        w = matvec(q)
        a = jnp.vdot(q, w)
        w = w - basis.T @ (basis @ w)               # against every q so far (α_j q_j included)
        w = w - basis.T @ (basis @ w)               # twice: orthogonal to working precision
        b = jnp.linalg.norm(w)
        alpha, beta = alpha.at[j].set(a), beta.at[j].set(b)
        theta, s = ritz(alpha, beta, j)
        top = jnp.arange(m - 1, m - 1 - k, -1)      # the k largest, descending
        res = b * jnp.abs(s[j, top])
        scale = jnp.max(jnp.abs(theta[top]))
        exhausted = b <= 10 * jnp.finfo(dtype).eps * jnp.maximum(scale, jnp.abs(a))
        done = exhausted | ((j + 1 >= k) & jnp.all(res <= tol * scale))
        q_next = jnp.where(exhausted, q, w / jnp.where(exhausted, 1, b))
        return j + 1, basis, alpha, beta, q_next, done

    init = (jnp.array(0, jnp.int32), jnp.zeros((m, n), dtype), jnp.zeros((m,), dtype),
            jnp.zeros((m,), dtype), q0, jnp.array(False))
    j, basis, alpha, beta, _, done = jax.lax.while_loop(cond, body, init)
    theta, s = ritz(alpha, beta, j - 1)
    top = jnp.arange(m - 1, m - 1 - k, -1)
    vectors = s[:, top].T @ basis                    # (k, P): u_i = Q·s_i (rows of Q beyond j are 0)
    residuals = beta[j - 1] * jnp.abs(s[j - 1, top])
    found = jnp.arange(k) < j                        # an exhausted space of dimension j < k
    return Eigens(values=jnp.where(found, theta[top], jnp.nan), vectors=vectors.astype(own),
                  residuals=residuals, iterations=j, converged=done)


# ---------------------------------------------------------------------- sharpness of a model


def fixed_subset(x: Array, y: Array, size: int, *, seed: int = 0) -> tuple[Array, Array]:
    """Up to ``size`` examples of ``(x, y)``, drawn once without replacement by ``seed`` (on the
    host: a fixed choice of data, in the original order): the batch on which sharpness is
    measured, so that estimates at different steps compare."""
    n = x.shape[0]
    if size >= n:
        return x, y
    idx = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    return x[idx], y[idx]


def random_direction(key: PRNGKey, params: Params) -> Params:
    """A unit vector (‖v‖₂ = 1 over all leaves), shaped like ``params``: a starting point."""
    flat, unravel = ravel_pytree(params)
    return unravel(_unit(jax.random.normal(key, flat.shape, flat.dtype)))


def make_sharpness(model: Layer, loss: Loss, *, method: str = "power", k: int = 1,
                   tol: float = 1e-3, max_iters: int = 100, train: bool = True,
                   weight_decay: float = 0.0, weight_decay_mask=None):
    """``sharpness(params, state, x, y, v0, weights=None, key=None)``, jitted: the top of the
    Hessian spectrum of J on the batch ``(x, y)`` (use a ``fixed_subset``).

    ``method="power"`` gives an ``Eigen`` (λmax as ``value``, by ``top_eigenvalue``),
    ``"lanczos"`` an ``Eigens`` (the ``k`` largest, by ``lanczos``); vectors come back
    shaped like ``params`` (with a leading k axis for Lanczos). ``v0`` (params-shaped)
    starts the iteration: ``random_direction`` at first, then the previous vector
    (a warm start). The primal pass runs once per call (``linearized_hvp``); every
    product is a tangent pass through the hand-written backward. ``weight_decay`` and
    ``weight_decay_mask``: the coupled L2 term an optimizer adds, as in ``linearized_hvp``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown eigenvalue method {method!r}; choose one of: {', '.join(METHODS)}")
    _check_tol(tol)  # now, not at the first call

    def sharpness(params, state, x, y, v0, weights=None, key=None):
        matvec, unravel = linearized_hvp(model, loss, params, state, x, y, weights, key=key,
                                         train=train, weight_decay=weight_decay,
                                         weight_decay_mask=weight_decay_mask)
        start = ravel_pytree(v0)[0]
        if method == "power":
            out = top_eigenvalue(matvec, start, tol=tol, max_iters=max_iters)
            return out._replace(vector=unravel(out.vector))
        out = lanczos(matvec, start, k=k, tol=tol, max_iters=max_iters)
        return out._replace(vectors=jax.vmap(unravel)(out.vectors))

    return jax.jit(sharpness)


@partial(jax.jit, static_argnames=("model", "loss", "train"))
def dense_hessian(model: Layer, loss: Loss, params: Params, state: State, x: Array, y: Array,
                  weights: Array | None = None, *, key: PRNGKey | None = None,
                  train: bool = True) -> Array:
    """The full (P, P) Hessian, one product per column (H·e_i): for small models and checks.
    Jitted, compiled once per model, loss, ``train`` and argument shapes."""
    matvec, _ = linearized_hvp(model, loss, params, state, x, y, weights, key=key, train=train)
    p = ravel_pytree(params)[0]
    return jax.vmap(matvec)(jnp.eye(p.shape[0], dtype=p.dtype)).T


# ------------------------------------------------------------- sharpness along a descent path


class SharpnessPath(NamedTuple):
    """Plain gradient descent with the sharpness measured every few steps (``make_sharpness_path``).

    Index i of the per-measurement arrays is step i·every (0: the initial weights).
    """

    loss: Array        # (M + 1,) J on the whole measurement set (x, y) at each measured step
    sharpness: Array   # (M + 1,) λmax there (Lanczos or power iteration, warm-started)
    iterations: Array  # (M + 1,) Hessian-vector products each estimate took
    converged: Array   # (M + 1,) bool: its tolerance was met within the cap
    params: Params     # the final parameters


def make_sharpness_path(model: Layer, loss: Loss, *, steps: int, every: int,
                        batch_size: int | None = None, method: str = "lanczos",
                        tol: float = 1e-3, max_iters: int = 30):
    """``path(params, state, x, y, lr, key) -> SharpnessPath``, one jitted program.

    ``steps`` updates of plain gradient descent w ← w − η·∂J/∂w (manual gradients) on
    ``(x, y)``: the whole set each step (``batch_size=None``: full-batch GD), or ``batch_size``
    examples drawn at random without replacement each step (mini-batch SGD; ``key`` draws
    them). Every ``every`` steps (a ``lax.scan`` of ``every`` updates), J and λmax of the
    training-mode loss on the whole of ``(x, y)``: λmax by ``method`` ("lanczos", or "power"
    for ``top_eigenvalue``), warm-started from the previous top eigenvector (the first from a
    random direction drawn by ``key``). Lanczos is the default: at the edge of stability the
    next eigenvalues crowd λmax (λ₂/λ₁ ≈ 0.98), where power iteration creeps and its
    Rayleigh-quotient test stops early (1.5% low at tol 1e-3), while a Lanczos Ritz value
    with residual r is within r²/gap.
    ``lr`` is an argument, so other learning rates reuse the compiled program. The model
    state (batch norm's statistics) follows the training steps. Dropout draws a mask per
    training step, and one fixed mask (from ``key``) for every measurement, so the
    measured J and λmax are of one function along the path.

    Full-batch GD on a quadratic is stable only while λmax < 2/η; on a neural network
    λmax first rises (progressive sharpening) and then hovers at 2/η, the edge of
    stability (Cohen et al. 2021). Mini-batch SGD settles below 2/η.
    """
    if steps < 1 or every < 1 or steps % every:
        raise ValueError(f"make_sharpness_path needs steps >= 1 that every ({every}) divides, "
                         f"got steps={steps}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, int) or batch_size < 1):
        raise ValueError(f"make_sharpness_path batch_size must be None (full batch) or an int "
                         f">= 1, got {batch_size!r}")
    from gdlab import optim

    value_and_grad = backprop.manual(model, loss)
    # built now: a bad method or tol is refused here, not at the first call
    estimate = make_sharpness(model, loss, method=method, tol=tol, max_iters=max_iters)

    def run(params, state, x, y, lr, key):
        optimizer = optim.gd(lr)
        n = x.shape[0]
        if batch_size is not None and batch_size > n:  # static: checked as it traces
            raise ValueError(f"make_sharpness_path batch_size={batch_size} exceeds the {n} "
                             f"examples it draws from without replacement")

        def step(carry, k):
            params, state, opt_state = carry
            k_batch, k_dropout = jax.random.split(k)  # each key used once
            if batch_size is None:
                xb, yb = x, y
            else:
                idx = descent.permutation(k_batch, n)[:batch_size]  # without replacement
                xb, yb = x[idx], y[idx]
            (_, state), grads = value_and_grad(params, state, xb, yb, train=True,  # ∂J/∂w
                                               key=k_dropout)
            updates, opt_state = optimizer.update(grads, opt_state, params)  # −η·∂J/∂w
            return (optim.apply_updates(params, updates), state, opt_state), None

        def measure(params, state, v):
            out = estimate(params, state, x, y, v, key=mask)
            if method == "lanczos":  # the top Ritz pair
                out = Eigen(value=out.values[0], vector=jax.tree.map(lambda a: a[0], out.vectors),
                            iterations=out.iterations, converged=out.converged)
            value = loss.value(model.forward(params, state, x, train=True, key=mask)[0], y)
            return value, out

        def chunk(carry, inputs):
            """Measure at the current weights, then take ``every`` steps (none after the last
            measurement): one copy of the measurement in the program, not two."""
            params, state, opt_state, v = carry
            i, k = inputs
            value, out = measure(params, state, v)

            def advance(c):
                return jax.lax.scan(step, c, jax.random.split(k, every))[0]

            params, state, opt_state = jax.lax.cond(i < num_chunks, advance, lambda c: c,
                                                    (params, state, opt_state))
            return ((params, state, opt_state, out.vector),
                    (value, out.value, out.iterations, out.converged))

        num_chunks = steps // every
        # the start vector, the steps' keys, and dropout's one fixed mask for every measurement
        k_v0, k_steps, mask = jax.random.split(key, 3)
        carry = (params, state, optimizer.init(params), random_direction(k_v0, params))
        inputs = (jnp.arange(num_chunks + 1), jax.random.split(k_steps, num_chunks + 1))
        (params, *_), (values, lams, iters, conv) = jax.lax.scan(chunk, carry, inputs)
        return SharpnessPath(loss=values, sharpness=lams, iterations=iters, converged=conv,
                             params=params)

    return jax.jit(run)
