"""Closed forms that experiments and tests compare gradient descent against.

For a linear model ŷ = X·w + b under J = (1/N) Σ (ŷ − y)² (``losses.mse`` with
one output), write A = [X 1] (a column of ones for the bias). Then

- the minimiser is the least-squares solution  [w; b] = argmin ‖A·θ − y‖²;
- the Hessian is constant,  H = (2/N) AᵀA;
- gradient descent θ ← θ − α·H(θ − θ*) contracts along each eigenvector of H by
  |1 − α·λ|, so it converges iff α < 2/λmax: the stability bound.

With momentum (gdlab's convention, v ← β·v + g) the update is a two-step recurrence on
each eigenvector, stable until one of its two roots reaches −1: heavy ball
(θ ← θ − α·v) for α < 2(1+β)/λmax, Nesterov (θ ← θ − α·(g + β·v)) for
α < 2(1+β)/((1+2β)·λmax) (``stable_lr_factor``).
"""

from __future__ import annotations

import numpy as np


def design_matrix(x) -> np.ndarray:
    """A = [X 1], in float64."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def least_squares(x, y) -> tuple[np.ndarray, np.ndarray]:
    """The (w, b) that minimise the mean squared error of ŷ = X·w + b (numpy lstsq)."""
    y = np.asarray(y, np.float64).reshape(len(x), -1)
    theta, *_ = np.linalg.lstsq(design_matrix(x), y, rcond=None)
    return theta[:-1], theta[-1]


def mse_hessian(x) -> np.ndarray:
    """H = (2/N) AᵀA: the Hessian of the linear model's MSE (one output) in (w, b)."""
    a = design_matrix(x)
    return 2.0 / len(a) * a.T @ a


def lambda_max(x) -> float:
    """The largest eigenvalue of ``mse_hessian(x)``."""
    return float(np.linalg.eigvalsh(mse_hessian(x))[-1])


def max_stable_lr(x) -> float:
    """2/λmax: plain gradient descent on the linear MSE converges for α below it."""
    return 2.0 / lambda_max(x)


def input_curvature(x, batch_size: int, *, seed: int = 0, batches: int = 16,
                    rows: int = 4096) -> float:
    """The inputs' curvature at ``batch_size``: λmax of a batch's second moment
    X_bᵀX_b / b (each example flattened), the median over random batches.

    For the linear model's MSE this is half the top eigenvalue of the weights' block of
    ``mse_hessian`` on that batch, and a network's first layer sees the same factor, so a
    step size stable on one data set is too large on inputs of larger curvature. Per batch,
    not over the whole set: a batch of b examples of D independent standardised features
    has λmax of about (1 + √(D/b))², not 1, so a wide table is far sharper per step than
    over all its rows. ``batches`` batches of ``batch_size`` rows (fewer when that would
    pass ``rows`` rows in all), drawn with ``seed``; a batch of ``rows`` or more (full-batch
    descent on a large set) is a random subset of ``rows`` examples. float64 numpy; exact
    eigenvalues where the smaller Gram matrix has at most 512 rows, else 100 power
    iterations (which approach λmax from below).
    """
    x = np.asarray(x).reshape(len(x), -1)
    n = len(x)
    b = max(1, min(int(batch_size), n, rows))
    rng = np.random.default_rng(seed)
    draws = 1 if b == n else max(1, min(batches, rows // b))
    values = []
    for _ in range(draws):
        xb = np.asarray(x if b == n else x[rng.choice(n, b, replace=False)], np.float64)
        if min(xb.shape) <= 512:
            gram = xb @ xb.T if b <= xb.shape[1] else xb.T @ xb
            values.append(float(np.linalg.eigvalsh(gram)[-1]) / b)
            continue
        v = rng.standard_normal(xb.shape[1])
        top = 0.0
        for _ in range(100):
            w = xb.T @ (xb @ v)
            top = float(np.linalg.norm(w))
            if top == 0.0:
                break
            v = w / top
        values.append(top / b)
    return float(np.median(values))


BOUND_NAMES = {"gd": "2/λmax", "momentum": "2(1+β)/λmax", "nesterov": "2(1+β)/((1+2β)λmax)"}
"""The name of each optimizer's stability bound on a quadratic (``stable_lr_factor``)."""


def bound_name(optimizer: str, beta: float = 0.0, over: str = "λmax") -> str | None:
    """``optimizer``'s stability bound in words, ``over`` the curvature (on a learning rate)
    or the learning rate (``over="α"``: a bound on λmax), with β's value: "2(1+β)/α
    (momentum, β = 0.9)"; None for an optimizer with no such bound."""
    if optimizer not in BOUND_NAMES:
        return None
    name = BOUND_NAMES[optimizer].replace("λmax", over)
    return f"{name} ({optimizer})" if optimizer == "gd" else f"{name} ({optimizer}, β = {beta:g})"


def stable_lr_factor(optimizer: str, beta: float = 0.0) -> float | None:
    """``optimizer``'s stability bound on a quadratic as a multiple of plain gd's 2/λmax:
    1 for gd, 1 + β for heavy-ball momentum, (1 + β)/(1 + 2β) for Nesterov (each the α at
    which a root of the recurrence reaches −1); None for an optimizer with no such bound
    (adaptive rates)."""
    factors = {"gd": 1.0, "momentum": 1.0 + beta, "nesterov": (1.0 + beta) / (1.0 + 2.0 * beta)}
    return factors.get(optimizer)
