"""gdlab.theory: the linear model's closed forms (least squares, its MSE Hessian and
λmax) against jax, and each optimizer's stability bound on a quadratic against gdlab's
own optimizer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdlab import data, losses, models, optim, theory


@pytest.fixture(scope="module")
def houses():
    ds = data.load("houses", seed=0)
    return ds.x_train.astype(np.float64), ds.y_train.astype(np.float64)


def _linear_mse(x, y):
    """J(θ) of gdlab's linear model and MSE loss, θ = [w; b] flat (the order of [X 1])."""
    model = models.linear(1, dtype=jnp.float64)
    _, p0, s0 = model.init(jax.random.PRNGKey(0), (x.shape[1],))
    (layer,) = p0["layers"]
    assert set(layer) == {"w", "b"} and layer["w"].shape == (x.shape[1], 1)

    def loss(theta):
        params = {**p0, "layers": [{"w": theta[:-1].reshape(-1, 1), "b": theta[-1:]}]}
        return losses.get("mse").value(model.forward(params, s0, x)[0], y)
    return jnp.zeros(x.shape[1] + 1, jnp.float64), loss


def test_mse_hessian_and_lambda_max_are_jax_hessians_of_the_models_loss(houses):
    x, y = houses
    flat0, loss = _linear_mse(x, y)
    hessian = np.asarray(jax.hessian(loss)(flat0))
    np.testing.assert_allclose(theory.mse_hessian(x), hessian, rtol=1e-10, atol=1e-12)
    lam = theory.lambda_max(x)
    assert abs(np.linalg.eigvalsh(hessian)[-1] - lam) < 1e-8 * lam
    assert theory.max_stable_lr(x) == 2.0 / lam


def test_least_squares_zeroes_the_gradient_of_the_models_loss(houses):
    x, y = houses
    w, b = theory.least_squares(x, y)
    assert w.shape == (x.shape[1], 1) and b.shape == (1,)
    _, loss = _linear_mse(x, y)
    theta = jnp.asarray(np.append(w, b))
    grad = np.asarray(jax.grad(loss)(theta))
    scale = np.asarray(jax.grad(loss)(jnp.zeros_like(theta)))  # the gradient at θ = 0
    assert np.max(np.abs(grad)) < 1e-9 * np.max(np.abs(scale))


@pytest.mark.parametrize("name, beta", [("gd", 0.0), ("momentum", 0.5), ("momentum", 0.9),
                                        ("nesterov", 0.5), ("nesterov", 0.9)])
def test_stable_lr_factor_is_where_the_optimizer_starts_to_diverge_on_a_quadratic(name, beta):
    """gdlab's own optimizer on J = ½λw² for 2,000 steps: it converges at 0.99× its bound
    (theory.stable_lr_factor · 2/λ) and diverges at 1.01× (|w| from 1 shrinks or grows)."""
    lam = 3.0
    bound = theory.stable_lr_factor(name, beta) * 2.0 / lam
    for scale, converges in ((0.99, True), (1.01, False)):
        opt = optim.get(name, scale * bound, **({} if name == "gd" else {"momentum": beta}))

        def run(w, opt=opt):
            def step(carry, _):
                w, state = carry
                updates, state = opt.update(lam * w, state, w)   # ∇J = λw
                return (optim.apply_updates(w, updates), state), None
            return jax.lax.scan(step, (w, opt.init(w)), None, length=2000)[0][0]

        w = float(jax.jit(run)(jnp.array([1.0]))[0])
        assert (abs(w) < 1.0) == converges, (name, beta, scale, w)
    assert theory.stable_lr_factor("adam") is None



def test_bound_names_say_the_bound_each_optimizer_has():
    assert theory.bound_name("gd") == "2/λmax (gd)"
    assert theory.bound_name("momentum", 0.9, "α") == "2(1+β)/α (momentum, β = 0.9)"
    assert theory.bound_name("nesterov", 0.5, "α") == "2(1+β)/((1+2β)α) (nesterov, β = 0.5)"
    assert theory.bound_name("adam") is None and theory.stable_lr_factor("adam") is None


def test_input_curvature_over_all_rows_is_half_the_weight_block_of_the_mse_hessian(houses):
    x, _ = houses
    # a batch of every row: one estimate, λmax of XᵀX/N; mse_hessian's weight block is 2·XᵀX/N
    weights = theory.mse_hessian(x)[:-1, :-1]
    expected = np.linalg.eigvalsh(weights)[-1] / 2
    assert theory.input_curvature(x, len(x)) == pytest.approx(expected, rel=1e-12)
    assert theory.input_curvature(x, 10 ** 9) == pytest.approx(expected, rel=1e-12)


def test_input_curvature_of_one_example_is_its_squared_norm():
    x = np.random.default_rng(0).normal(size=(40, 7))
    x *= np.sqrt(5.0) / np.linalg.norm(x, axis=1, keepdims=True)  # every ‖x‖² = 5
    assert theory.input_curvature(x, 1) == pytest.approx(5.0, rel=1e-12)


def test_input_curvature_per_batch_grows_with_width_as_random_matrix_theory_says():
    """b examples of D independent standard features: XᵀX/b has λmax ≈ (1 + √(D/b))²
    (Marchenko–Pastur's edge), far above the whole set's 1 when D ≫ b."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 1000))
    per_batch = theory.input_curvature(x, 32, seed=1)
    assert per_batch == pytest.approx((1 + np.sqrt(1000 / 32)) ** 2, rel=0.15)
    # over all 2,000 rows the edge is (1 + √(1000/2000))² ≈ 2.9: the power iteration's
    whole = theory.input_curvature(x, 2000)
    top = np.linalg.eigvalsh(x.T @ x / len(x))[-1]
    assert whole == pytest.approx(top, rel=0.02) and whole <= top * (1 + 1e-9)
