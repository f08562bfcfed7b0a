"""2-D landscapes: hand-written gradients against jax.grad, the known minima,
and descent paths against closed forms, momentum, and divergence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

from gdlab import landscapes, optim

NAMES = list(landscapes.LANDSCAPES)
GRAD_RTOL = 1e-10      # hand-written gradient vs jax.grad, float64
MIN_GRAD_ATOL = 1e-9   # |∇f| at a known minimum (Himmelblau's are rounded to float64)
MIN_VALUE_ATOL = 1e-20  # f at a known minimum, above its stated value
CLOSED_FORM_RTOL = 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_jax_grad(name, key):
    fn = landscapes.get(name)
    x0, x1, y0, y1 = fn.box
    u = jax.random.uniform(key, (64, 2), jnp.float64)
    points = jnp.stack([x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]], axis=-1)
    manual = jax.vmap(fn.grad)(points)
    auto = jax.vmap(jax.grad(fn.value))(points)
    assert manual.dtype == jnp.float64
    assert rel_err(manual, auto) <= GRAD_RTOL


@pytest.mark.parametrize("name", NAMES)
def test_value_and_grad_broadcast_over_a_grid(name):
    fn = landscapes.get(name)
    grid = jnp.zeros((3, 5, 2), jnp.float64) + jnp.array([0.3, -0.7])
    assert fn.value(grid).shape == (3, 5)
    assert fn.grad(grid).shape == (3, 5, 2)
    np.testing.assert_allclose(fn.value(grid), fn.value(jnp.array([0.3, -0.7])))


@pytest.mark.parametrize("name", NAMES)
def test_known_minima_are_stationary_with_the_stated_value(name):
    fn = landscapes.get(name)
    assert fn.minima
    for m in fn.minima:
        p = jnp.asarray(m, jnp.float64)
        assert np.max(np.abs(np.asarray(fn.grad(p)))) <= MIN_GRAD_ATOL
        assert abs(float(fn.value(p)) - fn.minimum_value) <= MIN_VALUE_ATOL
        x0, x1, y0, y1 = fn.box
        assert x0 < m[0] < x1 and y0 < m[1] < y1  # visible in the plot
    # Nothing on a coarse grid of the box lies below the stated minimum.
    x0, x1, y0, y1 = fn.box
    gx, gy = jnp.meshgrid(jnp.linspace(x0, x1, 101), jnp.linspace(y0, y1, 101))
    assert float(jnp.min(fn.value(jnp.stack([gx, gy], -1)))) >= fn.minimum_value


def test_rosenbrock_and_bowl_parameters_move_the_minimum():
    assert landscapes.rosenbrock(a=2.0).minima == ((2.0, 4.0),)
    bowl = landscapes.bowl(a=2.0, b=8.0)
    np.testing.assert_allclose(bowl.grad(jnp.array([1.0, 1.0], jnp.float64)), [2.0, 8.0])
    assert bowl.lrs[1] < 2.0 / 8.0 < bowl.lrs[2]  # "good" is stable, "too large" is not


def test_get_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown landscape"):
        landscapes.get("volcano")
    with pytest.raises(ValueError, match="positive"):
        landscapes.bowl(a=0.0)


def test_gd_on_the_bowl_matches_the_closed_form():
    """x_t = (1 − α·a)ᵗ x₀ and y_t = (1 − α·b)ᵗ y₀, coordinate by coordinate."""
    a, b, alpha, steps = 1.0, 10.0, 0.15, 40
    fn = landscapes.bowl(a, b)
    start = jnp.array([-4.5, 2.0], jnp.float64)
    path = landscapes.descend(fn, start, optim.gd(alpha), steps)
    t = np.arange(steps + 1)
    expected = np.stack([(1 - alpha * a) ** t * -4.5, (1 - alpha * b) ** t * 2.0], axis=-1)
    assert path.points.shape == (steps + 1, 2) and path.losses.shape == (steps + 1,)
    assert path.points.dtype == jnp.float64
    np.testing.assert_allclose(path.points, expected, rtol=CLOSED_FORM_RTOL, atol=1e-300)
    np.testing.assert_allclose(path.losses, fn.value(jnp.asarray(expected)), rtol=CLOSED_FORM_RTOL)
    assert not bool(path.diverged) and int(path.diverged_at) == -1


def test_momentum_converges_on_the_bowl():
    fn = landscapes.bowl()
    start = jnp.asarray(fn.start, jnp.float64)
    path = landscapes.descend(fn, start, optim.momentum(0.1, beta=0.9), 500)
    assert not bool(path.diverged)
    assert np.linalg.norm(np.asarray(path.points[-1])) < 1e-6
    # Momentum on this bowl beats plain GD at the same small α over the same steps.
    gd_path = landscapes.descend(fn, start, optim.gd(0.02), 100)
    mom_path = landscapes.descend(fn, start, optim.momentum(0.02, beta=0.9), 100)
    assert float(mom_path.losses[-1]) < float(gd_path.losses[-1])


def test_too_large_lr_on_the_bowl_diverges_and_stops():
    """α > 2/max(a, b): the steep coordinate grows by |1 − α·b| > 1 per step."""
    fn = landscapes.bowl(1.0, 10.0)
    alpha = 1.25 * 2.0 / 10.0
    path = landscapes.descend(fn, jnp.asarray(fn.start, jnp.float64), optim.gd(alpha), 100)
    assert bool(path.diverged)
    k = int(path.diverged_at)
    assert 1 <= k <= 100
    points = np.asarray(path.points)
    assert np.all(np.isfinite(points)) and np.all(np.isfinite(np.asarray(path.losses)))
    lo, hi = (np.asarray(c) for c in landscapes.escape_box(fn.box))
    assert np.any((points[k] < lo) | (points[k] > hi))          # the far point is kept
    assert np.all((points[:k] >= lo) & (points[:k] <= hi))      # everything before is inside
    np.testing.assert_array_equal(points[k:], np.broadcast_to(points[k], points[k:].shape))
    # Until it stopped the path follows the closed form (−1.5)ᵗ·y₀ on the steep axis.
    t = np.arange(k + 1)
    np.testing.assert_allclose(points[: k + 1, 1], (1 - alpha * 10.0) ** t * fn.start[1],
                               rtol=CLOSED_FORM_RTOL)


def test_a_non_finite_step_is_dropped():
    fn = landscapes.himmelblau()
    start = jnp.asarray(fn.start, jnp.float64)
    path = landscapes.descend(fn, start, optim.gd(1e200), 5)  # f of the first step overflows
    assert bool(path.diverged) and int(path.diverged_at) == 1
    np.testing.assert_array_equal(path.points, np.broadcast_to(np.asarray(start), (6, 2)))
    assert np.all(np.isfinite(np.asarray(path.losses)))


def test_sweep_matches_descend_per_learning_rate():
    fn = landscapes.himmelblau()
    lrs = [0.002, 0.01, 0.05]  # the last diverges with momentum
    swept = landscapes.sweep(fn, fn.start, lambda lr: optim.momentum(lr, beta=0.9), lrs, 50,
                             dtype=jnp.float64)
    assert swept.points.shape == (3, 51, 2) and swept.diverged.shape == (3,)
    for i, lr in enumerate(lrs):
        one = landscapes.descend(fn, jnp.asarray(fn.start, jnp.float64),
                                 optim.momentum(lr, beta=0.9), 50)
        assert bool(swept.diverged[i]) == bool(one.diverged) == (i == 2)
        if not bool(one.diverged):  # vmap may round differently: agree to ~1e-9, not bits
            np.testing.assert_allclose(swept.points[i], one.points, rtol=1e-9, atol=1e-9)


def test_default_learning_rates_behave_as_labelled():
    """With plain GD, each landscape's default 'good' lr ends lower than its 'too small'
    (too slow) and its 'too large' (oscillating or diverging) ones."""
    for name in NAMES:
        fn = landscapes.get(name)
        small, good, large = (
            float(landscapes.descend(fn, jnp.asarray(fn.start, jnp.float64), optim.gd(lr),
                                     fn.steps).losses[-1])
            for lr in fn.lrs)
        assert good < small and good < large, name
        # and the labels match the bound at the (first) minimum: good below 2/λmax, too
        # large above it (Rosenbrock's 'good' was 1.0016·2/λmax and ended in a 2-cycle)
        bound = 2.0 / landscapes.lambda_max(fn, fn.minima[0])
        assert fn.lrs[0] < fn.lrs[1] < bound < fn.lrs[2], name


def test_zero_steps_and_default_dtype():
    fn = landscapes.bowl()
    path = landscapes.descend(fn, (1.0, 1.0), optim.gd(0.1), 0)
    assert path.points.shape == (1, 2) and path.points.dtype == jnp.float32
    np.testing.assert_array_equal(path.points[0], [1.0, 1.0])


def test_nearest_minimum():
    fn = landscapes.himmelblau()
    m, d = landscapes.nearest_minimum(fn, (3.1, 2.0))
    assert m == (3.0, 2.0) and d == pytest.approx(0.1)


@pytest.mark.parametrize("name, point, expected", [
    ("bowl", (0.0, 0.0), 10.0),           # ½(x² + 10y²): the Hessian is diag(1, 10) everywhere
    ("bowl", (-4.5, 2.0), 10.0),
    # Rosenbrock at (1, 1): [[802, −400], [−400, 200]], λ = 501 + √(301² + 400²)
    ("rosenbrock", (1.0, 1.0), 501.0 + (301.0**2 + 400.0**2) ** 0.5),
    # Himmelblau at (3, 2): 2JᵀJ with J = [[6, 1], [1, 4]]: [[74, 20], [20, 34]], λ = 54 + √800
    ("himmelblau", (3.0, 2.0), 54.0 + 800.0**0.5),
])
def test_lambda_max_is_the_top_hessian_eigenvalue(name, point, expected):
    assert landscapes.lambda_max(landscapes.get(name), point) == pytest.approx(expected, rel=1e-12)
    assert landscapes.lambda_max(landscapes.bowl(a=3.0, b=2.0), point) == pytest.approx(3.0)


def test_escape_box_is_the_box_scaled_about_its_centre():
    """An off-centre box (0..2 by 1..5, centre (1, 3), half-sizes 1 and 2) scaled by 10
    about its centre: x in [−9, 11], y in [−17, 23]; and a path stops on leaving it."""
    lo, hi = landscapes.escape_box((0.0, 2.0, 1.0, 5.0), 10.0)
    np.testing.assert_allclose(np.asarray(lo), [-9.0, -17.0])
    np.testing.assert_allclose(np.asarray(hi), [11.0, 23.0])
    # Rosenbrock's box (−2..2, −1..3) scaled by 2 about (0, 1): y in [−3, 5]. At x = 0,
    # ∂f/∂y = 2b·y, so GD with α·2b = 2.2 sends y = 3 to 3·(1 − 2.2) = −3.6 in one update:
    # outside [−3, 5] (but inside a box centred at the origin, or one twice as large).
    fn = landscapes.rosenbrock()
    path = landscapes.descend(fn, jnp.array([0.0, 3.0], jnp.float64), optim.gd(2.2 / 200.0), 3,
                              escape=2.0)
    assert float(path.points[1, 1]) == pytest.approx(-3.6, rel=1e-12)
    assert bool(path.diverged) and int(path.diverged_at) == 1


def test_nearest_minimum_finds_each_of_himmelblaus_four():
    fn = landscapes.himmelblau()
    for m in fn.minima:
        found, d = landscapes.nearest_minimum(fn, (m[0] + 0.1, m[1] - 0.05))
        assert found == m and d == pytest.approx((0.1 ** 2 + 0.05 ** 2) ** 0.5)


def test_bowl_formula_writes_coefficients_as_one_does():
    assert landscapes.bowl().formula == "½(x² + 10y²)"
    assert landscapes.bowl(2.5, 1.0).formula == "½(2.5x² + y²)"
