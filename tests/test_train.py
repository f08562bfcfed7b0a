"""Training: convergence to closed forms, the stability bound, divergence,
manual == autodiff training (MLP, CNN with batch norm, transformer), batch-norm running
statistics over a padded epoch, chunked evaluation, vmapped sweeps, and digits accuracy."""

from __future__ import annotations

import math

import functools
import pathlib

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose

from gdlab import data, descent, layers, losses, models, optim, theory, tolerances, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def houses():
    return data.load("houses", seed=0)


def _linear_params(result):
    layer = result.state.params["layers"][0]
    return np.asarray(layer["w"], np.float64), np.asarray(layer["b"], np.float64)


def test_batch_gd_converges_to_least_squares(houses):
    """Linear regression with MSE, batch GD: the weights reach numpy's lstsq within 1e-4."""
    w_star, b_star = theory.least_squares(houses.x_train, houses.y_train)
    lr = 0.5 * theory.max_stable_lr(houses.x_train)
    result = train.fit(models.linear(1), losses.get("mse"), optim.gd(lr),
                       (houses.x_train, houses.y_train), epochs=300,
                       batch_size=descent.batch_size_for("batch", houses.n_train),
                       key=jax.random.PRNGKey(0))
    assert result.status == "completed"
    w, b = _linear_params(result)
    theta, theta_star = np.append(w, b), np.append(w_star, b_star)
    assert np.linalg.norm(theta - theta_star) / np.linalg.norm(theta_star) < 1e-4


@pytest.mark.parametrize("factor, expected", [(0.9, "completed"), (1.1, "diverged")])
def test_stability_bound_two_over_lambda_max(houses, factor, expected):
    """GD converges just below α = 2/λmax of the loss's Hessian and diverges just above it."""
    x, y = houses.x_train.astype(np.float64), houses.y_train.astype(np.float64)
    lam = theory.lambda_max(x)  # checked against jax.hessian in test_theory.py
    model = models.linear(1, dtype=jnp.float64)
    result = train.fit(model, losses.get("mse"), optim.gd(factor * 2.0 / lam), (x, y),
                       epochs=400, batch_size=x.shape[0], key=jax.random.PRNGKey(0))
    assert result.status == expected
    w, b = _linear_params(result)
    if expected == "completed":
        w_star, b_star = theory.least_squares(x, y)
        np.testing.assert_allclose(np.append(w, b), np.append(w_star, b_star), rtol=1e-6)
        assert result.diverged_at_step is None
    else:
        assert result.diverged_at_step is not None and 1 <= result.diverged_at_step <= 400
        # Training stopped there and kept the last finite state.
        assert result.history[-1]["step"] == result.diverged_at_step - 1
        assert np.all(np.isfinite(w)) and np.all(np.isfinite(b))


def test_non_finite_loss_refuses_that_update_and_keeps_the_state_that_gave_it():
    """A learning rate of 1e30: the first update lands at params ~1e30, whose loss overflows
    to inf; the second update is the refused one, and training stops in epoch 1."""
    x = np.ones((4, 2), np.float32)
    y = np.ones((4, 1), np.float32)
    model, opt = models.linear(1), optim.gd(1e30)
    result = train.fit(model, losses.get("mse"), opt, (x, y), epochs=3, batch_size=2,
                       key=jax.random.PRNGKey(0), blowup=None)
    init = train.create_state(model, opt, jax.random.PRNGKey(0), (2,))
    assert result.status == "diverged"
    assert result.diverged_at_step == 2
    assert [row["epoch"] for row in result.history] == [0, 1]
    assert int(result.state.step) == 1
    # the step losses run up to the refused update: a finite one, then the overflow
    initial = float(losses.get("mse").value(model.forward(init.params, init.model_state, x[:2])[0], y[:2]))
    assert result.step_losses.shape == (2,) and result.step_losses[1] == np.inf
    np.testing.assert_allclose(result.step_losses[0], initial, rtol=1e-6)
    # the kept params are the first update's: θ₀ − α·∂J/∂θ on the first batch (finite, ~1e30)
    kept = jax.tree_util.tree_leaves(result.state.params)
    assert all(np.all(np.isfinite(leaf)) and np.max(np.abs(leaf)) > 1e28 for leaf in kept)


@pytest.mark.parametrize("epochs", [1, 3])
def test_an_epoch_whose_last_update_leaves_a_non_finite_loss_ends_the_run_diverged(epochs):
    """Full batch, lr 1e30: the one update of epoch 1 lands at params ~1e30, whose loss
    overflows. No later update of that epoch sees it, so ``fit`` marks the run as the guard
    would have at the next update (2) and stops there, whether or not epochs remain."""
    x = np.ones((4, 2), np.float32)
    y = np.ones((4, 1), np.float32)
    model, opt = models.linear(1), optim.gd(1e30)
    result = train.fit(model, losses.get("mse"), opt, (x, y), epochs=epochs, batch_size=4,
                       key=jax.random.PRNGKey(0), blowup=None)
    assert result.status == "diverged" and result.diverged_at_step == 2
    assert bool(result.state.health.diverged) and int(result.state.health.diverged_at) == 2
    assert int(result.state.step) == 1 and result.epochs_run == 1
    assert [row["epoch"] for row in result.history] == [0, 1]
    assert result.history[-1]["step"] == result.diverged_at_step - 1
    assert not np.isfinite(result.history[-1]["train_loss"])
    # update 1's loss, then the refused update 2's, which never ran: not a number
    assert result.step_losses.shape == (2,) and np.isfinite(result.step_losses[0])
    assert np.isnan(result.step_losses[1])


def test_a_diverged_epochs_grad_norm_is_its_last_applied_updates():
    """fit's row for the epoch that diverged reports the gradient norm of the last update
    that was applied, as in every other row: a step by step replay of the same epoch.
    (The refused updates, which go on at the kept params, used to replace it: the norm of
    update 10 of 10, which never ran.)"""
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (40, 5)), np.float32)
    y = x @ np.arange(1, 6, dtype=np.float32)[:, None] + 0.1
    model, loss, opt = models.mlp([8, 1], activation="tanh"), losses.get("mse"), optim.gd(3.0)
    result = train.fit(model, loss, opt, (x, y), epochs=2, batch_size=4, key=jax.random.PRNGKey(0))
    assert result.status == "diverged" and 2 <= result.diverged_at_step <= 9, result.diverged_at_step
    step = jax.jit(train.make_step(model, loss, opt))
    state = train.create_state(model, opt, jax.random.PRNGKey(0), (5,))
    key, idx, w, keys = descent.epoch_plan(state.key, 40, 4)
    state, norms = state.replace(key=key), []
    for i in range(result.diverged_at_step - 1):  # the updates fit applied
        state, metrics = step(state, x[idx[i]], y[idx[i]], w[i], keys[i])
        norms.append(float(metrics.grad_norm))
    assert result.history[-1]["grad_norm"] == pytest.approx(norms[-1], rel=1e-5)
    assert result.history[-1]["step"] == result.diverged_at_step - 1


def test_an_epoch_whose_every_update_is_refused_has_no_grad_norm():
    """Full-batch gd that diverges: the epoch of the refused update applied none, so its
    row's grad_norm is NaN (null in the files), not the 0 the carry starts from, which
    reads like a stationary point."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    lam = theory.lambda_max(x)
    result = train.fit(models.linear(1), losses.get("mse"), optim.gd(3.0 * 2 / lam), (x, y),
                       epochs=50, batch_size=40, key=jax.random.PRNGKey(0))
    assert result.status == "diverged"
    last = result.history[-1]
    assert last["step"] == result.diverged_at_step - 1 and math.isnan(last["grad_norm"])
    assert all(np.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 for r in result.history[1:-1])


def test_sweep_marks_a_last_epoch_overflow_as_fit_does():
    # One full-batch epoch at lr 1e37: the update overflows the params and no later update
    # of the run sees it; fit and sweep must both call it diverged at update 2.
    rng = np.random.default_rng(0)
    x = 3 * rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    model, loss = models.linear(1), losses.get("mse")
    swept = train.sweep(model, loss, optim.gd, [0.01, 1e37], (x, y), epochs=1, batch_size=16)
    for k, lr in enumerate([0.01, 1e37]):
        fitted = train.fit(model, loss, optim.gd(lr), (x, y), epochs=1, batch_size=16,
                           key=jax.random.PRNGKey(0))
        assert bool(swept.diverged[k]) == (fitted.status == "diverged")
        assert int(swept.diverged_at_step[k]) == (fitted.diverged_at_step or -1)
    assert list(swept.diverged_at_step) == [-1, 2] and np.isnan(swept.train_loss[1, 0])


def test_a_last_update_that_blows_the_loss_up_ends_the_run_diverged_in_fit_and_sweep():
    """One full-batch epoch at lr 1e6 on a linear least-squares problem: the only update
    multiplies J by about 1e13, finite. No later update's guard sees it, so fit and sweep
    both mark the run as the guard would have at update 2 (it was 'completed'); a rate
    whose last loss stays under blowup·J₀ completes, and an earlier epoch's blow-up is left
    to the next update's guard."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(32, 1))).astype(np.float32)
    model, loss = models.linear(1), losses.get("mse")
    rates = [0.1, 1e6]
    swept = train.sweep(model, loss, optim.gd, rates, (x, y), epochs=1, batch_size=32)
    for k, lr in enumerate(rates):
        fitted = train.fit(model, loss, optim.gd(lr), (x, y), epochs=1, batch_size=32,
                           key=jax.random.PRNGKey(0))
        j0, j1 = fitted.history[0]["train_loss"], fitted.history[1]["train_loss"]
        assert np.isfinite(j1)
        assert (fitted.status == "diverged") == (j1 > train.DEFAULT_BLOWUP * j0) == (lr == 1e6)
        assert fitted.diverged_at_step == (2 if lr == 1e6 else None)
        assert int(swept.diverged_at_step[k]) == (fitted.diverged_at_step or -1)
    # with a later epoch, the guard of its first update refuses it: diverged at 2 as well
    fitted = train.fit(model, loss, optim.gd(1e6), (x, y), epochs=2, batch_size=32,
                       key=jax.random.PRNGKey(0))
    assert fitted.status == "diverged" and fitted.diverged_at_step == 2
    assert fitted.step_losses[1] > train.DEFAULT_BLOWUP * fitted.history[0]["train_loss"]


def test_blow_up_is_measured_against_the_initial_loss_on_all_the_data():
    # SGD where the first example is already fitted (loss ~1e-9): against that one loss an
    # ordinary later example (~0.1) looked like a 1e6-fold blow-up.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2)).astype(np.float32)
    model, loss = models.linear(1), losses.get("mse")
    params, state = train.init_model(model, jax.random.PRNGKey(0), (2,))
    noise = np.array([[1e-4]] * 7 + [[1.0]], np.float32) * rng.normal(size=(8, 1))
    y = np.asarray(model.forward(params, state, jnp.asarray(x))[0]) + noise.astype(np.float32)
    result = train.fit(model, loss, optim.gd(0.01), (x, y), epochs=3, batch_size=1,
                       key=jax.random.PRNGKey(0))
    assert result.status == "completed"
    assert result.step_losses.min() < 1e-7 * result.step_losses.max()  # what used to trip it
    np.testing.assert_allclose(float(result.state.health.reference_loss),
                               result.history[0]["train_loss"], rtol=1e-6)
    swept = train.sweep(model, loss, optim.gd, [0.01], (x, y), epochs=3, batch_size=1)
    assert not swept.diverged[0]
    # a real blow-up is still caught, against the same reference
    exploded = train.fit(model, loss, optim.gd(30.0), (x, y), epochs=3, batch_size=1,
                         key=jax.random.PRNGKey(0))
    assert exploded.status == "diverged"
    assert np.isfinite(exploded.step_losses).all()  # by the blow-up rule, before any overflow


def test_a_warmed_up_fit_trains_exactly_as_one_without():
    # warm_up runs the epoch once on a copy, off the clock, and throws the result away
    x, y = _small_problem(jnp.float32, 24)
    model, loss, opt = models.mlp([8, 3], "tanh"), losses.get("xent"), optim.momentum(0.1)
    runs = [train.fit(model, loss, opt, (x, y), epochs=2, batch_size=8, key=jax.random.PRNGKey(1),
                      warm_up=warm) for warm in (False, True)]
    assert_tree_allclose(runs[1].state.params, runs[0].state.params, rtol=0, atol=0)
    assert [r["step"] for r in runs[1].history] == [0, 3, 6]
    np.testing.assert_array_equal(runs[1].step_losses, runs[0].step_losses)


def test_fit_leaves_every_state_a_caller_holds_readable():
    # Each epoch donates its input: fit must not consume the caller's state, nor the states
    # it hands to hook and after_epoch.
    x, y = _small_problem(jnp.float32, 24)
    model, loss, opt = models.mlp([8, 3], "tanh"), losses.get("xent"), optim.momentum(0.1)
    fit = functools.partial(train.fit, model, loss, opt, (x, y), batch_size=8,
                            key=jax.random.PRNGKey(1))
    seen = []
    first = fit(epochs=2, hook=lambda row, state: seen.append(state),
                after_epoch=lambda epoch, state: seen.append(state) and None)
    resumed = fit(epochs=3, state=first.state, start_epoch=2)
    straight = fit(epochs=3)
    for held in [first.state, *seen]:
        jax.tree.map(np.asarray, held)  # raises if any buffer was donated away
    assert [int(s.step) for s in seen] == [0, 3, 3, 6, 6]
    assert_tree_allclose(resumed.state.params, straight.state.params, rtol=0, atol=0)


def _small_problem(dtype, n):
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    x = jax.random.normal(k1, (n, 3), dtype)
    y = jax.random.randint(k2, (n,), 0, 3)
    return x, y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode, n, batch, epochs", [
    ("batch", 40, None, 50),
    ("sgd", 50, None, 1),
    ("minibatch", 100, 10, 5),
])
def test_manual_and_autodiff_training_agree_after_50_steps(dtype, mode, n, batch, epochs):
    x, y = _small_problem(dtype, n)
    model = models.mlp([8, 3], "tanh", dtype=dtype)
    batch_size = descent.batch_size_for(mode, n, batch)
    finals = {}
    for grad in ("manual", "autodiff", "custom_vjp"):
        result = train.fit(model, losses.get("xent"), optim.momentum(0.1), (x, y), epochs=epochs,
                           batch_size=batch_size, key=jax.random.PRNGKey(1), grad=grad)
        assert int(result.state.step) == 50
        finals[grad] = result.state.params
    tol = tolerances.ANALYTIC[dtype]
    assert_tree_allclose(finals["manual"], finals["autodiff"], rtol=tol.rtol, atol=tol.atol)
    assert_tree_allclose(finals["custom_vjp"], finals["autodiff"], rtol=tol.rtol, atol=tol.atol)


def test_vmapped_sweep_of_8_learning_rates_equals_8_runs(houses):
    x, y = houses.x_train[:200].astype(np.float64), houses.y_train[:200].astype(np.float64)
    lrs = [0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.8, 1.5]
    model = models.linear(1, dtype=jnp.float64)
    result = train.sweep(model, losses.get("mse"), lambda lr: optim.momentum(lr, beta=0.5),
                         lrs, (x, y), epochs=6, batch_size=32, seeds=(3,))
    assert result.train_loss.shape == (8, 6)
    for k, lr in enumerate(lrs):
        single = train.fit(model, losses.get("mse"), optim.momentum(lr, beta=0.5), (x, y),
                           epochs=6, batch_size=32, key=jax.random.PRNGKey(3))
        assert bool(result.diverged[k]) == (single.status == "diverged")
        if single.status == "diverged":
            assert result.diverged_at_step[k] == single.diverged_at_step
        else:
            curve = [row["train_loss"] for row in single.history[1:]]  # after epochs 1, 2, ...
            np.testing.assert_allclose(result.train_loss[k], curve, rtol=1e-10)
        assert_tree_allclose(jax.tree.map(lambda a, k=k: a[k], result.params), single.state.params,
                             dtype=jnp.float64)
    assert result.diverged[-1] and not result.diverged[2]


def test_sweep_over_seeds_and_rates_tracks_divergence_per_configuration(houses):
    x, y = houses.x_train[:100], houses.y_train[:100]
    result = train.sweep(models.linear(1), losses.get("mse"), optim.gd, [0.1, 5.0], (x, y),
                         epochs=30, batch_size=100, seeds=(0, 1))
    np.testing.assert_array_equal(result.learning_rates, [0.1, 5.0, 0.1, 5.0])
    np.testing.assert_array_equal(result.seeds, [0, 0, 1, 1])
    np.testing.assert_array_equal(result.diverged, [False, True, False, True])
    assert np.all(np.isnan(result.train_loss[1, -1])) and np.isfinite(result.train_loss[0, -1])
    assert np.all(result.diverged_at_step[[0, 2]] == -1) and np.all(result.diverged_at_step[[1, 3]] > 0)


def test_mlp_reaches_95_percent_on_digits_within_30_epochs():
    ds = data.load("digits", seed=0)
    rows = []
    result = train.fit(models.mlp([64, 10], "relu"), losses.get("xent"), optim.momentum(0.05),
                       (ds.x_train, ds.y_train), epochs=30, batch_size=32,
                       key=jax.random.PRNGKey(0), test_data=(ds.x_test, ds.y_test),
                       hook=lambda row, state: rows.append(row))
    assert result.status == "completed"
    assert len(rows) == 31 and rows == result.history
    assert [row["epoch"] for row in rows] == list(range(31))  # epoch 0: the initial params
    init = train.create_state(models.mlp([64, 10], "relu"), optim.momentum(0.05),
                              jax.random.PRNGKey(0), (64,))
    initial = train.make_evaluate(models.mlp([64, 10], "relu"), losses.get("xent"))(
        init.params, init.model_state, ds.x_train, ds.y_train)
    np.testing.assert_allclose(rows[0]["train_loss"], initial["loss"], rtol=1e-6)
    assert rows[0]["step"] == 0 and "grad_norm" not in rows[0]
    assert result.step_losses.shape == (30 * 45,)  # ⌈1438 / 32⌉ = 45 updates per epoch
    assert result.history[-1]["test_accuracy"] >= 0.95
    # The history's accuracy is the model's: recompute it independently.
    logits = models.mlp([64, 10], "relu").forward(result.state.params, result.state.model_state,
                                                  jnp.asarray(ds.x_test))[0]
    acc = float(np.mean(np.argmax(np.asarray(logits), axis=1) == ds.y_test))
    assert abs(acc - result.history[-1]["test_accuracy"]) < 1e-6


def _curves(model, x, y, *, epochs, batch_size, lr, dtype):
    """Per-step losses of the same training run with each gradient method."""
    out = {}
    for grad in ("manual", "autodiff"):
        state = train.create_state(model, optim.adam(lr), jax.random.PRNGKey(2), x.shape[1:])
        epoch = jax.jit(train.make_epoch(model, losses.get("xent"), optim.adam(lr),
                                         num_examples=x.shape[0], batch_size=batch_size,
                                         grad=grad))
        steps = []
        for _ in range(epochs):
            state, m = epoch(state, x, y)
            steps.append(np.asarray(m.loss))
        out[grad] = (np.concatenate(steps), state)
    return out


def test_cnn_and_transformer_loss_curves_agree_across_gradient_methods():
    """Manual and autodiff training of the CNN (batch norm, padded last batch) and of the
    transformer give the same loss curves to float32 rounding."""
    rng = np.random.default_rng(0)
    x_img = jnp.asarray(rng.normal(size=(44, 6, 6, 1)), jnp.float32)
    y_img = jnp.asarray(rng.integers(0, 3, size=44))
    x_tok = jnp.asarray(rng.integers(0, 5, size=(40, 5)))
    y_tok = jnp.sort(x_tok, axis=1)
    cases = [
        (models.cnn(3, channels=(4, 8)), x_img, y_img, 16),
        (models.transformer(5, 5, max_len=5, width=16, depth=1, num_heads=2), x_tok, y_tok, 16),
    ]
    for model, x, y, batch in cases:
        curves = _curves(model, x, y, epochs=3, batch_size=batch, lr=3e-3, dtype=jnp.float32)
        manual, auto = curves["manual"], curves["autodiff"]
        assert manual[0].shape == (9,) and manual[0][-1] < manual[0][0]  # it learns
        np.testing.assert_allclose(manual[0], auto[0], rtol=2e-4, atol=1e-6)
        assert_tree_allclose(manual[1].model_state, auto[1].model_state, rtol=2e-4, atol=1e-5)


def test_batch_norm_running_statistics_see_only_the_real_examples_of_a_padded_epoch(key):
    """N = 10, B = 4: the last batch holds 2 real examples and 2 padding rows (weight 0).
    After one epoch the running statistics equal the momentum average of the real
    examples' batch statistics, computed here by replaying the epoch's shuffle."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -2.0]
    y = rng.integers(0, 2, size=10)
    momentum = 0.9
    model = layers.serial(layers.batch_norm(momentum=momentum, dtype=jnp.float64),
                          layers.dense(2, dtype=jnp.float64))
    opt = optim.gd(0.1)
    state = train.create_state(model, opt, key, (3,))
    epoch = jax.jit(train.make_epoch(model, losses.get("xent"), opt, num_examples=10,
                                     batch_size=4))
    new_state, _ = epoch(state, jnp.asarray(x), jnp.asarray(y))
    # the epoch's shuffle, as make_epoch draws it from the state's key
    _, indices, weights, _ = descent.epoch_plan(state.key, 10, 4)
    mean, var = np.zeros(3), np.ones(3)
    for idx, w in zip(np.asarray(indices), np.asarray(weights)):
        real = x[idx[w > 0]]
        mean = momentum * mean + (1 - momentum) * real.mean(axis=0)
        var = momentum * var + (1 - momentum) * real.var(axis=0)
    assert np.asarray(weights)[-1].tolist() == [1.0, 1.0, 0.0, 0.0]
    bn = new_state.model_state["layers"][0]
    np.testing.assert_allclose(bn["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(bn["var"], var, rtol=1e-12)


def test_chunked_evaluation_equals_one_pass(key):
    """The evaluation in chunks (the last one masked) gives the one-pass loss and accuracy,
    in evaluation mode (batch norm on its running statistics)."""
    model = models.cnn(4, channels=(3,), dtype=jnp.float64)
    _, params, state = model.init(key, (5, 5, 1))
    state = jax.tree.map(lambda s: s + 0.3, state)  # non-trivial running statistics
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(23, 5, 5, 1)))
    y = jnp.asarray(rng.integers(0, 4, size=23))
    whole = train.make_evaluate(model, losses.get("xent"))(params, state, x, y)
    chunked = jax.jit(train.make_evaluate(model, losses.get("xent"), batch_size=7))(
        params, state, x, y)
    assert_tree_allclose(chunked, whole, rtol=1e-12, atol=1e-14)
    logits = model.forward(params, state, x)[0]
    np.testing.assert_allclose(whole["accuracy"], np.mean(np.argmax(logits, -1) == y))


def test_train_state_holds_model_state_and_health(key):
    model = models.cnn(2, channels=(3,))
    state = train.create_state(model, optim.adam(1e-3), key, (4, 4, 1))
    assert set(state.model_state["layers"][1]) == {"mean", "var"}
    assert not bool(state.health.diverged) and int(state.health.diverged_at) == -1
    # the optimizer sees the params only: its state mirrors them, never the model state
    assert (jax.tree_util.tree_structure(state.opt_state.mu)
            == jax.tree_util.tree_structure(state.params))


def test_epoch_metrics_are_the_norms_they_name(key):
    """Two gd steps in order: the last update's gradient norm and the epoch's displacement."""
    model = models.mlp([4, 2], "tanh", dtype=jnp.float64)
    x, y = _small_problem(jnp.float64, 8)
    y = y % 2
    lr = 0.3
    opt = optim.gd(lr)
    state = train.create_state(model, opt, key, (3,))
    epoch = jax.jit(train.make_epoch(model, losses.get("xent"), opt, num_examples=8,
                                     batch_size=4, shuffle=False, norms=True))
    step = jax.jit(train.make_step(model, losses.get("xent"), opt))
    first, m1 = step(state, x[:4], y[:4], None, jax.random.PRNGKey(1))
    second, m2 = step(first, x[4:], y[4:], None, jax.random.PRNGKey(1))
    end, metrics = epoch(state, x, y)
    assert_tree_allclose(end.params, second.params, dtype=jnp.float64)
    # Without norms (the default) the epoch is the same and reports the losses only.
    plain = jax.jit(train.make_epoch(model, losses.get("xent"), opt, num_examples=8,
                                     batch_size=4, shuffle=False))
    end_plain, losses_only = plain(state, x, y)
    assert losses_only.grad_norm is None and losses_only.displacement is None
    np.testing.assert_array_equal(losses_only.loss, metrics.loss)
    assert_tree_allclose(end_plain.params, end.params, dtype=jnp.float64)
    np.testing.assert_allclose(metrics.loss, [m1.loss, m2.loss], rtol=1e-12)
    np.testing.assert_allclose(metrics.grad_norm, m2.grad_norm, rtol=1e-12)
    def flat(tree):
        return np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(tree)])

    np.testing.assert_allclose(metrics.displacement,
                               np.linalg.norm(flat(second.params) - flat(state.params)), rtol=1e-12)


@pytest.mark.parametrize("unroll", [2, 3])
def test_unrolled_epoch_takes_the_same_steps(key, unroll):
    """``unroll`` steps per loop iteration (3 does not divide the 5 steps): the same updates,
    the same per-step losses, the same state as one step per iteration."""
    model = models.mlp([6, 3], "tanh", dropout_rate=0.2, dtype=jnp.float64)
    x, y = _small_problem(jnp.float64, 10)
    opt = optim.momentum(0.1)
    state = train.create_state(model, opt, key, (3,))

    def run(u):
        epoch = jax.jit(train.make_epoch(model, losses.get("xent"), opt, num_examples=10,
                                         batch_size=2, unroll=u))
        return epoch(epoch(state, x, y)[0], x, y)

    (one, m1), (many, m2) = run(1), run(unroll)
    np.testing.assert_allclose(m2.loss, m1.loss, rtol=1e-12)
    assert_tree_allclose(many.params, one.params, dtype=jnp.float64)
    assert int(many.step) == int(one.step) == 10


def test_default_unroll_is_one_on_the_cpu_and_for_large_models():
    small = {"w": jnp.zeros((8, 8))}
    assert train.default_unroll(small) == (train.GPU_UNROLL if jax.default_backend() == "gpu"
                                           else 1)
    huge = {"w": jax.ShapeDtypeStruct((train.GPU_UNROLL_MAX_PARAMS + 1,), jnp.float32)}
    assert train.default_unroll(huge) == 1


def test_default_unroll_on_a_gpu_is_shorter_for_models_of_many_arrays(monkeypatch):
    """The GPU rule, on any machine: short steps (few parameter arrays) unroll more."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    arrays = lambda k: {f"a{i}": jnp.zeros((4,)) for i in range(k)}  # noqa: E731
    assert train.default_unroll(arrays(train.GPU_UNROLL_MAX_ARRAYS)) == train.GPU_UNROLL
    assert (train.default_unroll(arrays(train.GPU_UNROLL_MAX_ARRAYS + 1))
            == train.GPU_UNROLL_LONG_STEP < train.GPU_UNROLL)
    huge = {"w": jax.ShapeDtypeStruct((train.GPU_UNROLL_MAX_PARAMS + 1,), jnp.float32)}
    assert train.default_unroll(huge) == 1
    mlp = train.create_state(models.mlp([64, 10], "relu"), optim.momentum(0.1),
                             jax.random.PRNGKey(0), (64,))
    assert train.default_unroll(mlp.params) == train.GPU_UNROLL  # the MLPs of the bench


def test_step_metrics_are_the_norms_they_name(key):
    model = models.mlp([4, 2], "relu", dtype=jnp.float64)
    x, y = _small_problem(jnp.float64, 8)
    y = y % 2
    opt = optim.gd(0.3)
    state = train.create_state(model, opt, key, (3,))
    step = train.jit_step(model, losses.get("xent"), opt)
    old = jax.tree.map(np.array, state.params)  # a copy: the step donates the buffers
    new_state, m = step(state, x, y, None)
    # Params and optimizer state were donated: their old buffers are gone.
    assert all(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(state.params))
    assert all(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(state.opt_state))
    def flat(tree):
        return np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(tree)])

    g = (flat(old) - flat(new_state.params)) / 0.3
    np.testing.assert_allclose(float(m.grad_norm), np.linalg.norm(g), rtol=1e-10)
    np.testing.assert_allclose(float(m.update_norm), 0.3 * np.linalg.norm(g), rtol=1e-10)
    np.testing.assert_allclose(float(m.param_norm), np.linalg.norm(flat(new_state.params)), rtol=1e-12)
    assert int(new_state.step) == 1


def test_dropout_training_uses_a_fresh_key_every_step(key):
    model = models.mlp([16, 3], "relu", dropout_rate=0.5, dtype=jnp.float64)
    x, y = _small_problem(jnp.float64, 8)
    step = jax.jit(train.make_step(model, losses.get("xent"), optim.gd(0.0)))
    state = train.create_state(model, optim.gd(0.0), key, (3,))
    s1, m1 = step(state, x, y, None)
    _, m2 = step(s1, x, y, None)  # lr 0: same params, a new dropout mask
    assert float(m1.loss) != float(m2.loss)


def test_no_optax_import_outside_the_benchmark_peer():
    """We write our own optimizers: only the flax + optax peer of scripts/bench.py imports
    optax, and only the optional ``peer`` extra installs it."""
    import re
    import tomllib

    name = "opt" + "ax"
    pattern = re.compile(rf"^\s*(import|from)\s+{name}\b", re.MULTILINE)
    importers = [
        str(p.relative_to(ROOT)) for folder in ("gdlab", "experiments", "scripts", "tests")
        for p in (ROOT / folder).rglob("*.py") if pattern.search(p.read_text())
    ]
    assert importers == ["scripts/bench.py"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [*project["dependencies"], *(
        r for extra, reqs in extras.items() if extra != "peer" for r in reqs)]
    assert not [r for r in requirements if r.startswith(name)]
    assert any(r.startswith(name) for r in extras["peer"])


# ------------------------------------------------------------- inputs that would be garbage


def _digits_small():
    ds = data.load("digits")
    return ds.x_train[:100], ds.y_train[:100]


@pytest.mark.parametrize("change, needle", [
    (lambda x, y: (x[:50], y), "one row per example"),
    (lambda x, y: (x[:, :10], y), None),  # another feature count is a new model: fine
    (lambda x, y: (np.where(np.arange(x.shape[1]) == 3, np.nan, x), y), "NaN or infinite"),
    (lambda x, y: (np.where(np.arange(x.shape[1]) == 3, np.inf, x), y), "NaN or infinite"),
    (lambda x, y: (x + 0j, y), r"x must be real numbers, got dtype complex64"),
    (lambda x, y: (x, np.where(np.arange(len(y)) == 7, 10, y)), "label 10 is outside 0..9"),
    (lambda x, y: (x, np.where(np.arange(len(y)) == 7, -1, y)), "label -1 is outside 0..9"),
    (lambda x, y: (x, y.astype(np.float32)), "must be integers"),
])
def test_fit_refuses_data_that_would_train_on_garbage(change, needle):
    x, y = change(*_digits_small())
    kwargs = dict(epochs=1, batch_size=10, key=jax.random.PRNGKey(0))
    model = models.mlp([8, 10])
    if needle is None:
        train.fit(model, losses.get("xent"), optim.gd(0.1), (x, y), **kwargs)
        return
    with pytest.raises(ValueError, match=needle):
        train.fit(model, losses.get("xent"), optim.gd(0.1), (x, y), **kwargs)
    with pytest.raises(ValueError, match=needle):
        train.sweep(model, losses.get("xent"), optim.gd, [0.1], (x, y), epochs=1, batch_size=10)


@pytest.mark.parametrize("where", ["train_data", "test_data"])
@pytest.mark.parametrize("bad_id", [5, 9])
def test_fit_refuses_token_ids_outside_the_vocabulary(where, bad_id):
    """An id the embedding has no row for gives NaN: a ValueError naming the data, as a
    label outside the classes is, not a run that refuses every update as diverged."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(32, 4)).astype(np.int32)
    bad = x.copy()
    bad[3, 2] = bad_id
    pairs = {"train_data": (x, x[:, ::-1]), "test_data": (x[:8], x[:8, ::-1])}
    pairs[where] = (bad, x[:, ::-1]) if where == "train_data" else (bad[:8], x[:8, ::-1])
    model = models.transformer(5, 5, max_len=4, width=8, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=rf"{where}: the loss at the initial params is NaN"):
        train.fit(model, losses.get("xent"), optim.adam(0.01), pairs["train_data"],
                  test_data=pairs["test_data"], epochs=1, batch_size=8,
                  key=jax.random.PRNGKey(0))
    result = train.fit(model, losses.get("xent"), optim.adam(0.01), (x, x[:, ::-1]),
                       test_data=(x[:8], x[:8, ::-1]), epochs=1, batch_size=8,
                       key=jax.random.PRNGKey(0))
    assert result.status == "completed"


def test_fit_trains_where_a_finite_float_test_outlier_gives_a_nan_test_loss():
    """Only token ids are refused for a NaN initial loss: a finite float test input that
    overflows an MLP (3e38) leaves the run training, its test loss NaN, as before."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    xt = x[:8].copy()
    xt[0, 0] = 3e38
    result = train.fit(models.mlp([16, 2]), losses.get("xent"), optim.gd(0.1), (x, y),
                       test_data=(xt, y[:8]), epochs=2, batch_size=64,
                       key=jax.random.PRNGKey(0))
    assert result.status == "completed"
    assert np.isnan(result.history[0]["test_loss"])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize("kwargs, needle", [
    ({"batch_size": 0}, "batch_size must be an integer in 1..100"),
    ({"batch_size": 101}, "batch_size must be an integer in 1..100"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"eval_every": 0}, "eval_every must be an integer >= 1"),
    ({"start_epoch": 5}, "start_epoch"),
])
def test_fit_refuses_bad_schedules(kwargs, needle):
    x, y = _digits_small()
    args = {"epochs": 2, "batch_size": 10, "key": jax.random.PRNGKey(0), **kwargs}
    with pytest.raises(ValueError, match=needle):
        train.fit(models.mlp([8, 10]), losses.get("xent"), optim.gd(0.1), (x, y), **args)


@pytest.mark.parametrize("loss, model, y_shape, needle", [
    ("mse", models.linear(1), (12, 2), r"targets of shape \(2,\) per example do not match"),
    ("mse", models.linear(2), (12,), r"targets of shape \(\) per example do not match"),
    ("huber", models.linear(1), (12, 3), r"targets of shape \(3,\) per example"),
    ("bce", models.linear(2), (12,), r"targets of shape \(\) per example"),
])
def test_fit_and_sweep_refuse_targets_of_another_size_than_the_outputs(loss, model, y_shape,
                                                                       needle):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), (rng.normal(size=y_shape) > 0).astype(np.float64)
    with pytest.raises(ValueError, match="train_data: " + needle):
        train.fit(model, losses.get(loss), optim.gd(0.1), (x, y), epochs=1, batch_size=4,
                  key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="train_data: " + needle):
        train.sweep(model, losses.get(loss), optim.gd, [0.1], (x, y), epochs=1, batch_size=4)


def test_fit_refuses_test_data_of_another_example_shape():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)).astype(np.float32), rng.normal(size=12).astype(np.float32)
    kwargs = dict(epochs=1, batch_size=4, key=jax.random.PRNGKey(0))
    mse = losses.get("mse")
    with pytest.raises(ValueError, match=r"test_data: examples of shape \(2,\) differ"):
        train.fit(models.linear(1), mse, optim.gd(0.1), (x, y), test_data=(x[:, :2], y),
                  **kwargs)
    # (N,) and (N, 1) targets of a one-output model are the same targets
    flat, column = (train.fit(models.linear(1), mse, optim.gd(0.1), (x, t), test_data=(x, t),
                              **kwargs) for t in (y, y[:, None]))
    dense = train.init_model(models.linear(1), jax.random.PRNGKey(0), (3,))[0]["layers"][0]
    w, b = np.asarray(dense["w"], np.float64), np.asarray(dense["b"], np.float64)
    assert flat.history[0]["train_loss"] == pytest.approx(np.mean((x @ w + b - y[:, None]) ** 2),
                                                          rel=1e-5)
    assert flat.history[-1]["test_rmse"] == pytest.approx(column.history[-1]["test_rmse"],
                                                          rel=1e-6)


def test_fit_evaluates_test_sequences_of_another_length_on_the_same_params():
    """A transformer's params do not depend on the sequence length (up to max_len): test
    sequences shorter than the training ones are evaluated, not refused."""
    rng = np.random.default_rng(8)
    model = models.transformer(7, 7, max_len=8, width=16, depth=1, num_heads=2)
    x = rng.integers(0, 7, (16, 8)).astype(np.int32)
    xt = rng.integers(0, 7, (8, 6)).astype(np.int32)
    result = train.fit(model, losses.get("xent"), optim.gd(0.1), (x, np.sort(x, axis=1)),
                       epochs=1, batch_size=8, key=jax.random.PRNGKey(0),
                       test_data=(xt, np.sort(xt, axis=1)))
    start = train.create_state(model, optim.gd(0.1), jax.random.PRNGKey(0), (8,))
    want = train.make_evaluate(model, losses.get("xent"))(start.params, start.model_state, xt,
                                                          np.sort(xt, axis=1))
    assert result.history[0]["test_loss"] == pytest.approx(float(want["loss"]), rel=1e-5)


def test_fit_refuses_a_state_of_another_model_and_sweep_bad_rates():
    x, y = _digits_small()
    other = train.create_state(models.mlp([8, 10]), optim.gd(0.1), jax.random.PRNGKey(0), (32,))
    with pytest.raises(ValueError, match="params do not fit"):
        train.fit(models.mlp([8, 10]), losses.get("xent"), optim.gd(0.1), (x, y), epochs=1,
                  batch_size=10, key=jax.random.PRNGKey(0), state=other)
    for rates in ([0.1, -0.1], [float("nan")], [float("inf")], []):
        with pytest.raises(ValueError, match="learning_rates must be finite numbers > 0"):
            train.sweep(models.mlp([8, 10]), losses.get("xent"), optim.gd, rates, (x, y),
                        epochs=1, batch_size=10)
    with pytest.raises(ValueError, match="bce labels must be 0 or 1"):
        train.fit(models.mlp([8, 1]), losses.get("bce"), optim.gd(0.1), (x, y), epochs=1,
                  batch_size=10, key=jax.random.PRNGKey(0))


def test_a_second_sweep_reuses_the_compiled_program():
    """Same model, optimizer builder, data shape and configuration count: no new trace, even
    for other learning rates and seeds."""
    x, y = _digits_small()
    model = models.mlp([8, 10])
    traces = []

    def optimizer_for(lr):
        traces.append(lr)  # runs only while tracing
        return optim.gd(lr)

    args = (model, losses.get("xent"), optimizer_for)
    first = train.sweep(*args, [0.1, 0.2], (x, y), epochs=2, batch_size=20)
    assert len(traces) == 1
    again = train.sweep(*args, [0.3, 0.05], (x, y), epochs=2, batch_size=20, seeds=(4,))
    assert len(traces) == 1
    single = train.fit(model, losses.get("xent"), optim.gd(0.3), (x, y), epochs=2,
                       batch_size=20, key=jax.random.PRNGKey(4))
    np.testing.assert_allclose(again.train_loss[0], [r["train_loss"] for r in single.history[1:]],
                               rtol=1e-5)
    assert not np.allclose(first.train_loss, again.train_loss)
    train.sweep(*args, [0.1, 0.2, 0.3], (x, y), epochs=2, batch_size=20)  # K = 3: a new program
    assert len(traces) == 2


def test_regression_rmse_in_target_units_chunked_or_not(key):
    """evaluate's RMSE is √mean(((p − t)·scale)²), the same in chunks as in one pass."""
    model = models.linear(2, dtype=jnp.float64)
    _, params, state = model.init(key, (3,))
    rng = np.random.default_rng(5)
    x, y = jnp.asarray(rng.normal(size=(23, 3))), jnp.asarray(rng.normal(size=(23, 2)))
    scale = np.asarray([2.0, 0.5])
    preds = np.asarray(model.forward(params, state, x)[0])
    expected = np.sqrt(np.mean(((preds - np.asarray(y)) * scale) ** 2))
    for batch in (1024, 7):
        out = train.make_evaluate(model, losses.get("mse"), batch_size=batch,
                                  target_scale=scale)(params, state, x, y)
        assert set(out) == {"loss", "rmse"}
        np.testing.assert_allclose(out["rmse"], expected, rtol=1e-12)


def test_jit_evaluate_is_kept_per_model_loss_and_scale_and_fit_after_fit_compiles_it_once(key):
    """jit_evaluate gives make_evaluate's values, the same function for the same model, loss
    and target scale (a number or one per output alike), so a second fit compiles no new
    evaluation program."""
    model = models.linear(2, dtype=jnp.float64)
    _, params, state = model.init(key, (3,))
    rng = np.random.default_rng(6)
    x, y = jnp.asarray(rng.normal(size=(23, 3))), jnp.asarray(rng.normal(size=(23, 2)))
    mse = losses.get("mse")
    for scale in (None, 2.5, np.asarray([2.0, 0.5])):
        kept = train.jit_evaluate(model, mse, target_scale=scale)
        assert train.jit_evaluate(model, mse, target_scale=scale) is kept
        assert_tree_allclose(kept(params, state, x, y), train.make_evaluate(
            model, mse, target_scale=scale)(params, state, x, y), rtol=1e-15, atol=0)
    assert train.jit_evaluate(model, mse, target_scale=2.5) is train.jit_evaluate(
        model, mse, target_scale=np.float32(2.5))
    assert train.jit_evaluate(model, mse, target_scale=2.5) is not train.jit_evaluate(model, mse)
    net = models.mlp([8, 3], "tanh")
    xent = losses.get("xent")
    xs, ys = rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 3, 40)
    fits = [train.fit(net, xent, optim.gd(0.1), (xs, ys), epochs=1, batch_size=8,
                      key=jax.random.PRNGKey(seed), test_data=(xs[:9], ys[:9]))
            for seed in (0, 1)]
    assert train.jit_evaluate(net, xent)._cache_size() == 2  # the train and test shapes, once
    assert fits[0].history[0]["train_loss"] != fits[1].history[0]["train_loss"]


def test_mixed_precision_fit_trains_digits_and_keeps_float32_master_params():
    ds = data.load("digits", seed=0)
    kw = dict(epochs=8, batch_size=32, key=jax.random.PRNGKey(0), test_data=(ds.x_test, ds.y_test))
    model = models.mlp([64, 10], "relu")
    mixed = train.fit(model, losses.get("xent"), optim.momentum(0.05), (ds.x_train, ds.y_train),
                      compute_dtype=jnp.bfloat16, **kw)
    full = train.fit(model, losses.get("xent"), optim.momentum(0.05), (ds.x_train, ds.y_train), **kw)
    assert mixed.status == "completed"
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(mixed.state.params))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(mixed.state.opt_state)
               if jnp.issubdtype(a.dtype, jnp.floating))  # the velocity, in full precision
    assert mixed.history[-1]["test_accuracy"] >= 0.95
    assert abs(mixed.history[-1]["test_accuracy"] - full.history[-1]["test_accuracy"]) <= 0.02
    # the same steps from the same start, only rounded: the first losses nearly agree
    np.testing.assert_allclose(mixed.step_losses[:5], full.step_losses[:5], rtol=2e-2)
    assert not np.array_equal(mixed.step_losses, full.step_losses)


def test_compute_dtype_and_a_value_and_grad_of_ones_own_are_not_both_taken():
    from gdlab import backprop

    model = models.mlp([4, 2], "relu")
    vg = backprop.value_and_grad(model, losses.get("xent"))
    with pytest.raises(ValueError, match="not both"):
        train.make_epoch(model, losses.get("xent"), optim.gd(0.1), num_examples=8,
                         batch_size=4, value_and_grad=vg, compute_dtype=jnp.bfloat16)


def test_make_epoch_refuses_data_of_another_length_and_fit_a_start_epoch_without_state():
    """An epoch over num_examples rows given x of another length would gather clamped (so
    repeated) rows or skip some; fit(start_epoch=k) without the state saved after epoch k
    would train fresh parameters and label them as a resumed run."""
    model, loss, opt = layers.dense(1), losses.get("mse"), optim.gd(0.1)
    x, y = jnp.ones((6, 3)), jnp.ones((6, 1))
    state = train.create_state(model, opt, jax.random.PRNGKey(0), (3,))
    for n in (12, 3):
        epoch = jax.jit(train.make_epoch(model, loss, opt, num_examples=n, batch_size=3))
        with pytest.raises(ValueError, match=rf"num_examples={n}\) got x with 6 rows"):
            epoch(state, x, y)
    with pytest.raises(ValueError, match="start_epoch=2 resumes a run: pass the state"):
        train.fit(model, loss, opt, (x, y), epochs=3, batch_size=3, key=jax.random.PRNGKey(0),
                  start_epoch=2)


def test_memory_estimate_evaluates_no_more_rows_than_the_data_has():
    """The evaluation chunk is EVAL_BATCH rows, or the largest split when smaller: six
    1500×2000 pictures were estimated as if 1,024 were evaluated at once (30× too much)."""
    model, opt = models.mlp([32, 10]), optim.gd(0.1)

    def need(rows):
        return train.estimate_memory(model, opt, (64,), batch_size=8, eval_rows=rows)

    assert need(None) == need(train.EVAL_BATCH) == need(10 * train.EVAL_BATCH)
    per_row = (need(512) - need(6)) / (512 - 6)
    assert per_row > 0 and need(train.EVAL_BATCH) - need(6) == per_row * (train.EVAL_BATCH - 6)
    assert need(6) < need(None) and need(0) == need(1)


def _scripted_run(batch_losses, *, blowup=train.DEFAULT_BLOWUP, reference=math.nan):
    """The guard around a fake step that adds 1 to every param and reports as its loss the
    batch's x (call k gets batch_losses[k], whatever the state): the states after each call."""
    model = models.linear(1, dtype=jnp.float64)
    state = train.create_state(model, optim.gd(0.1), jax.random.PRNGKey(0), (2,))
    if not math.isnan(reference):
        state = train.with_reference_loss(state, reference)

    def step(state, x, y, weights=None, key=None):
        new = state.replace(step=state.step + 1,
                            params=jax.tree.map(lambda p: p + 1.0, state.params))
        return new, (x[0, 0],)

    guarded = jax.jit(train.guard(step, blowup=blowup))
    states = []
    for value in batch_losses:
        x = jnp.full((1, 2), value, jnp.float64)
        state, _ = guarded(state, x, x[:, :1])
        states.append(state)
    return states


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_guard_refuses_a_non_finite_loss_and_every_later_update(bad):
    """Update 2's loss is not a number: it and updates 3 and 4 (finite losses, at the kept
    params) are refused; the state is the one after update 1."""
    first, *_, last = _scripted_run([1.0, bad, 1.0, 1.0])
    assert bool(last.health.diverged) and int(last.health.diverged_at) == 2
    assert int(last.step) == 1
    np.testing.assert_array_equal(last.params["layers"][0]["w"], first.params["layers"][0]["w"])


def test_guard_takes_the_first_steps_loss_as_reference_when_none_is_set():
    states = _scripted_run([2.0, 3.0, 2.5e6, 1.0])
    assert float(states[0].health.reference_loss) == 2.0
    assert int(states[-1].health.diverged_at) == 3 and int(states[-1].step) == 2


def test_guard_blow_up_is_strictly_more_than_blowup_times_the_reference():
    last = _scripted_run([1.0, 1.0, 1.0], blowup=1.0)[-1]
    assert not bool(last.health.diverged) and int(last.step) == 3
    last = _scripted_run([1.0, 1.001], blowup=1.0)[-1]  # (the guard compares in float32)
    assert bool(last.health.diverged) and int(last.health.diverged_at) == 2


def test_guard_does_not_call_a_small_loss_after_a_zero_reference_a_blow_up():
    """A run that starts at J = 0 exactly (a perfect initial fit): blow-up is measured
    against max(reference, 1e-8), so a loss of 1e-3 is not a million-fold blow-up."""
    last = _scripted_run([1e-3, 1e-3], reference=0.0)[-1]
    assert not bool(last.health.diverged) and int(last.step) == 2


def _ones():
    return np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)


def test_the_last_epoch_is_evaluated_whatever_eval_every():
    x, y = _ones()
    result = train.fit(models.linear(1), losses.get("mse"), optim.gd(0.01), (x, y), epochs=3,
                       batch_size=2, key=jax.random.PRNGKey(0), eval_every=2)
    assert [row["epoch"] for row in result.history] == [0, 2, 3]


def test_after_epoch_true_at_the_last_epoch_still_completes():
    x, y = _ones()
    result = train.fit(models.linear(1), losses.get("mse"), optim.gd(0.01), (x, y), epochs=2,
                       batch_size=2, key=jax.random.PRNGKey(0), after_epoch=lambda e, s: e == 2)
    assert result.status == "completed" and result.epochs_run == 2


def test_a_state_passed_in_keeps_its_blow_up_reference():
    x, y = _ones()
    fit = lambda **kw: train.fit(models.linear(1), losses.get("mse"), optim.gd(0.01), (x, y),  # noqa: E731
                                 epochs=1, batch_size=2, key=jax.random.PRNGKey(0), **kw)
    first = fit()
    second = fit(state=first.state)
    assert second.history[0]["train_loss"] < first.history[0]["train_loss"]
    assert float(second.state.health.reference_loss) == float(first.state.health.reference_loss)


def test_batch_loss_is_the_mean_of_the_epochs_step_losses():
    x, y = _ones()
    result = train.fit(models.linear(1), losses.get("mse"), optim.gd(0.01), (x, y), epochs=2,
                       batch_size=1, key=jax.random.PRNGKey(0))
    per_epoch = result.step_losses.reshape(2, 4)
    np.testing.assert_allclose([r["batch_loss"] for r in result.history[1:]],
                               per_epoch.mean(axis=1), rtol=1e-6)


def test_a_resumed_run_that_diverges_keeps_the_step_losses_up_to_the_refused_update():
    """Resume after epoch 1 (4 updates of SGD) with lr 1e30: update 5 lands at ~1e30, whose
    loss overflows; update 6 is refused. This call ran updates 5 and 6: two step losses."""
    x, y = _ones()
    model, loss = models.linear(1), losses.get("mse")
    first = train.fit(model, loss, optim.gd(0.01), (x, y), epochs=1, batch_size=1,
                      key=jax.random.PRNGKey(0))
    rest = train.fit(model, loss, optim.gd(1e30), (x, y), epochs=3, batch_size=1,
                     key=jax.random.PRNGKey(0), state=first.state, start_epoch=1, blowup=None)
    assert rest.status == "diverged" and rest.diverged_at_step == 6
    assert rest.step_losses.shape == (2,)
    assert np.isfinite(rest.step_losses[0]) and not np.isfinite(rest.step_losses[1])


def test_an_unevaluated_epoch_that_overflows_the_params_ends_the_run_there():
    """eval_every=2: epoch 1 is not evaluated, but its only update overflowed the params;
    the run ends diverged in epoch 1 (at update 2), not an epoch of refusals later."""
    x, y = _ones()
    result = train.fit(models.linear(1), losses.get("mse"), optim.gd(1e30), (x, y), epochs=3,
                       batch_size=4, key=jax.random.PRNGKey(0), blowup=None, eval_every=2)
    assert result.status == "diverged" and result.diverged_at_step == 2
    assert result.epochs_run == 1 and [r["epoch"] for r in result.history] == [0, 1]


def test_create_state_trains_on_the_other_half_of_the_key():
    key = jax.random.PRNGKey(4)
    state = train.create_state(models.linear(1), optim.gd(0.1), key, (2,))
    _, k_train = jax.random.split(key)
    np.testing.assert_array_equal(state.key, k_train)
    params, _ = train.init_model(models.linear(1), key, (2,))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params),
                                                    jax.tree.leaves(state.params)))


def test_sweep_refuses_bad_seeds_and_a_zero_rate():
    """Seeds must be integers in 0..2**32-1 and learning rates > 0; 2**32-1 is a seed."""
    x, y = _digits_small()
    args = (models.mlp([8, 10]), losses.get("xent"), optim.gd)
    for seeds in ([-1], [2**32], [1.5], [], np.zeros(0, np.int64)):
        with pytest.raises(ValueError, match="seeds must be integers in 0..2\\*\\*32-1"):
            train.sweep(*args, [0.1], (x, y), epochs=1, batch_size=50, seeds=seeds)
    with pytest.raises(ValueError, match="learning_rates must be finite numbers > 0"):
        train.sweep(*args, [0.1, 0.0], (x, y), epochs=1, batch_size=50)
    result = train.sweep(*args, [0.1], (x, y), epochs=1, batch_size=50, seeds=[2**32 - 1])
    np.testing.assert_array_equal(result.seeds, [2**32 - 1])
    assert np.all(np.isfinite(result.train_loss))


@pytest.mark.parametrize("grad", ["manual", "custom_vjp", "autodiff"])
def test_float64_data_trains_a_float32_model_as_numpy_does(grad):
    # float64 arrays (NumPy's default) on a float32 model: the forward pass runs in float64,
    # and every gradient method hands the optimizer float32 gradients, as jax.grad does
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 3)), rng.integers(0, 3, 12)
    model, lr = models.linear(3), 0.5
    key = jax.random.PRNGKey(0)
    result = train.fit(model, losses.get("xent"), optim.gd(lr), (x, y), epochs=3,
                       batch_size=12, key=key, grad=grad)
    params = train.create_state(model, optim.gd(lr), key, (3,)).params["layers"][0]
    w, b = np.asarray(params["w"]), np.asarray(params["b"])
    assert w.dtype == np.float32
    for _ in range(3):  # batch gradient descent: the mean softmax cross-entropy's gradient
        z = x @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        dz = (p - np.eye(3)[y]) / len(y)
        w = (w - lr * (x.T @ dz).astype(np.float32)).astype(np.float32)
        b = (b - lr * dz.sum(axis=0).astype(np.float32)).astype(np.float32)
    got = result.state.params["layers"][0]
    assert got["w"].dtype == got["b"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got["w"]), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["b"]), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grad", ["manual", "custom_vjp"])
def test_float32_data_trains_a_bfloat16_model_as_autodiff_does(grad):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(12, 3)).astype(np.float32), rng.integers(0, 3, 12)
    model = models.mlp([4, 3], dtype=jnp.bfloat16)
    runs = {g: train.fit(model, losses.get("xent"), optim.adam(0.01), (x, y), epochs=2,
                         batch_size=5, key=jax.random.PRNGKey(0), grad=g)
            for g in (grad, "autodiff")}
    for leaf in jax.tree.leaves(runs[grad].state.params):
        assert leaf.dtype == jnp.bfloat16
    for a, b in zip(jax.tree.leaves(runs[grad].state.params),
                    jax.tree.leaves(runs["autodiff"].state.params)):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(runs[grad].step_losses, runs["autodiff"].step_losses, rtol=1e-2)


def test_fit_reports_rmse_with_a_target_scale_per_position_and_output(key):
    """A target scale shaped like each example's outputs, (T, D), scales each of them, as
    make_evaluate does, in fit and in jit_evaluate alike."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(16, 4, 3)).astype(np.float32)
    y = rng.normal(size=(16, 4, 2)).astype(np.float32)
    model = layers.serial(layers.dense(2))
    _, params, state = model.init(key, (4, 3))
    mse = losses.get("mse")
    for scale in (np.arange(1.0, 9.0).reshape(4, 2), np.asarray([[1.0], [2.0]]).repeat(2, 0)):
        want = train.make_evaluate(model, mse, target_scale=scale)(params, state, x, y)
        got = train.jit_evaluate(model, mse, target_scale=scale)(params, state, x, y)
        np.testing.assert_allclose(got["rmse"], want["rmse"], rtol=1e-6)
    result = train.fit(model, mse, optim.gd(0.1), (x, y), epochs=1, batch_size=8, key=key,
                       target_scale=np.full((4, 2), 3.0))
    first = result.history[0]
    assert first["train_rmse"] == pytest.approx(3.0 * np.sqrt(first["train_loss"]), rel=1e-5)
