"""Descent modes: batch sizes, shuffled epochs, the masked last batch."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose
from hypothesis import given
from hypothesis import strategies as st

from gdlab import backprop, descent, losses, models, optim, tolerances, train

F64_TOL = tolerances.ANALYTIC["float64"]


def test_batch_size_for_each_mode():
    assert descent.batch_size_for("batch", 100) == 100
    assert descent.batch_size_for("sgd", 100) == 1
    assert descent.batch_size_for("minibatch", 100, 32) == 32
    for bad in (0, 101, None):
        with pytest.raises(ValueError, match="batch_size"):
            descent.batch_size_for("minibatch", 100, bad)
    with pytest.raises(ValueError, match="batch, sgd, minibatch"):
        descent.batch_size_for("newton", 100)


# jitted, as training draws them: eagerly each of its ops would compile a program of its
# own for every (N, B) hypothesis draws (integer ops: the same values either way)
_epoch_batches = jax.jit(descent.epoch_batches, static_argnums=(1, 2))


@given(n=st.integers(1, 40), b=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_every_example_seen_exactly_once_per_epoch(n, b, seed):
    b = min(b, n)
    indices, weights = _epoch_batches(jax.random.PRNGKey(seed), n, b)
    assert indices.shape == weights.shape == (-(-n // b), b)
    chex.assert_shape([indices, weights], (-(-n // b), b))
    real = np.asarray(indices)[np.asarray(weights) > 0]
    assert sorted(real.tolist()) == list(range(n))
    assert float(np.asarray(weights).sum()) == n  # on the host: no program per shape
    assert np.all((np.asarray(indices) >= 0) & (np.asarray(indices) < n))


@pytest.mark.parametrize("batch_size", [0, 9])
def test_epoch_batches_refuses_a_batch_outside_1_to_n(batch_size):
    """B > N cut the padded permutation into rows of B: a reshape error, not a sentence."""
    with pytest.raises(ValueError, match=f"between 1 and num_examples \\(8\\), got {batch_size}"):
        descent.epoch_batches(None, 8, batch_size)


def test_new_order_every_epoch_from_the_key():
    a, _ = descent.epoch_batches(jax.random.PRNGKey(0), 50, 10)
    b, _ = descent.epoch_batches(jax.random.PRNGKey(0), 50, 10)
    c, _ = descent.epoch_batches(jax.random.PRNGKey(1), 50, 10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    in_order, _ = descent.epoch_batches(None, 50, 10)
    np.testing.assert_array_equal(np.asarray(in_order).ravel(), np.arange(50))


def test_training_epochs_draw_fresh_keys(key):
    """The epoch splits the state's key: the next epoch shuffles with a new one."""
    model = models.linear(1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(3), (8, 2), jnp.float64)
    y = x.sum(axis=1, keepdims=True)
    state = train.create_state(model, optim.gd(0.1), key, (2,))
    epoch = jax.jit(train.make_epoch(model, losses.get("mse"), optim.gd(0.1), num_examples=8,
                                     batch_size=1))
    keys = [np.asarray(state.key)]
    for _ in range(3):
        state, _ = epoch(state, x, y)
        keys.append(np.asarray(state.key))
    assert len({k.tobytes() for k in keys}) == 4
    assert int(state.step) == 24


def test_masked_partial_batch_gradient_is_mean_over_real_examples(key):
    """Padding with weight 0 contributes nothing: the gradient equals the one on the real rows."""
    model = models.mlp([5, 3], "tanh", dtype=jnp.float64)
    _, params, state = model.init(key, (4,))
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 4), jnp.float64)
    y = jnp.array([0, 2, 1, 1, 0, 2])
    real = 4
    padded_x = x.at[real:].set(x[:2])  # padding rows repeat earlier examples
    weights = jnp.array([1, 1, 1, 1, 0, 0], jnp.float64)
    for method in backprop.METHODS:
        vg = backprop.value_and_grad(model, losses.get("xent"), method)
        (v_masked, _), g_masked = vg(params, state, padded_x, y, weights)
        (v_real, _), g_real = vg(params, state, x[:real], y[:real])
        assert abs(float(v_masked) - float(v_real)) < 1e-12
        assert_tree_allclose(g_masked, g_real, dtype=jnp.float64)
        chex.assert_tree_all_finite(g_masked)
        chex.assert_trees_all_close(g_masked, g_real, rtol=F64_TOL.rtol, atol=F64_TOL.atol)


def test_minibatch_with_b_equal_n_is_batch_gradient_descent_step_for_step(key):
    """Minibatch descent with B = N retraces full-batch GD written out with jax.grad."""
    model = models.mlp([6, 1], "tanh", dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(2), (20, 3), jnp.float64)
    y = jnp.sin(x.sum(axis=1, keepdims=True))
    loss = losses.get("mse")
    lr = 0.2
    n = x.shape[0]

    batch_size = descent.batch_size_for("minibatch", n, n)
    assert batch_size == descent.batch_size_for("batch", n)
    result_params = []
    state = train.create_state(model, optim.gd(lr), key, (3,))
    params = state.params
    epoch = jax.jit(train.make_epoch(model, loss, optim.gd(lr), num_examples=n,
                                     batch_size=batch_size))
    for _ in range(5):
        state, _ = epoch(state, x, y)
        result_params.append(state.params)

    def objective(p):
        return jnp.mean((model.forward(p, state.model_state, x)[0] - y) ** 2)

    for expected_step in range(5):
        params = jax.tree.map(lambda w, g: w - lr * g, params, jax.grad(objective)(params))
        assert_tree_allclose(result_params[expected_step], params, dtype=jnp.float64)
        chex.assert_trees_all_close(result_params[expected_step], params,
                                    rtol=F64_TOL.rtol, atol=F64_TOL.atol)


# ----------------------------------------------------------------------------- the shuffle


@pytest.mark.parametrize("n", [1, 2, 3, 255, 256, 257, 1000, 1797, 4096])
def test_permutation_is_the_stable_sort_rounds_of_its_random_bits(n):
    """The packed single-array sorts equal NumPy's stable argsort of each round's random
    high bits, applied round after round (ties keep the previous round's order)."""
    key = jax.random.PRNGKey(n)
    rounds = descent.shuffle_rounds(n)
    position_bits = max(1, (n - 1).bit_length())
    high = np.asarray(jax.random.bits(key, (rounds, n), jnp.uint32)) >> position_bits
    order = np.arange(n)
    for r in range(rounds):
        order = order[np.argsort(high[r], kind="stable")]
    got = np.asarray(descent.permutation(key, n))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, order)
    assert sorted(got.tolist()) == list(range(n))
    np.testing.assert_array_equal(got, np.asarray(jax.jit(descent.permutation, static_argnums=1)(key, n)))


def test_shuffle_rounds_carry_three_log2_n_random_bits():
    """As jax.random.permutation's bound: Σ rounds · (32 − ⌈log₂ N⌉) ≥ 3·log₂ N, with no
    round to spare; beyond PACKED_MAX_EXAMPLES the shuffle defers to JAX's."""
    assert [descent.shuffle_rounds(n) for n in (1, 2, 256, 257, 1797, 4096, 60000, 2**20)] == \
        [1, 1, 1, 2, 2, 2, 3, 5]
    for n in [2, 3, 100, 256, 257, 1000, 1449, 4096, 65536, 65537, 10**6, 2**20]:
        rounds = descent.shuffle_rounds(n)
        free = 32 - (n - 1).bit_length()
        assert rounds * free >= 3 * np.log2(n) > (rounds - 1) * free
    assert descent.shuffle_rounds(2**20 + 1) is None


def test_permutation_defers_to_jax_beyond_the_packed_range(monkeypatch):
    key = jax.random.PRNGKey(7)
    monkeypatch.setattr(descent, "PACKED_MAX_EXAMPLES", 40)
    np.testing.assert_array_equal(descent.permutation(key, 50), jax.random.permutation(key, 50))
    assert not np.array_equal(descent.permutation(key, 40), jax.random.permutation(key, 40))


def test_permutation_is_uniform():
    """Chi-square against the uniform distribution (fixed keys: the outcome is fixed):
    all 24 orders of 4 rows, and where row 0 lands among 300 (two sort rounds)."""
    from scipy import stats

    keys = jax.random.split(jax.random.PRNGKey(11), 24_000)
    perms = np.asarray(jax.vmap(lambda k: descent.permutation(k, 4))(keys))
    codes = perms @ np.array([64, 16, 4, 1])
    counts = np.unique(codes, return_counts=True)[1]
    assert len(counts) == 24
    assert stats.chisquare(counts).pvalue > 1e-3

    n = 300
    assert descent.shuffle_rounds(n) == 2
    perms = np.asarray(jax.vmap(lambda k: descent.permutation(k, n))(keys[:3000]))
    where_row_0 = np.argmax(perms == 0, axis=1)
    counts = np.bincount(where_row_0 // 30, minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3
    # and each position holds each row equally often: the mean row index is (n − 1)/2
    assert abs(perms.mean(axis=0) - (n - 1) / 2).max() < 4 * n / np.sqrt(12 * 3000)


def test_epoch_plan_draws_distinct_keys_and_the_shuffle_from_one_key():
    key = jax.random.PRNGKey(5)
    next_key, indices, weights, step_keys = descent.epoch_plan(key, 50, 10)
    assert indices.shape == weights.shape == (5, 10) and step_keys.shape[0] == 5
    drawn = [np.asarray(next_key), *np.asarray(step_keys), np.asarray(key)]
    assert len({k.tobytes() for k in drawn}) == 7
    assert sorted(np.asarray(indices).ravel().tolist()) == list(range(50))
    assert not np.array_equal(np.asarray(indices).ravel(), np.arange(50))
    in_order = descent.epoch_plan(key, 50, 10, shuffle=False)
    np.testing.assert_array_equal(np.asarray(in_order[1]).ravel(), np.arange(50))
    # the shuffle flag changes the order only, not the keys
    np.testing.assert_array_equal(in_order[0], next_key)
    np.testing.assert_array_equal(in_order[3], step_keys)
    again = descent.epoch_plan(key, 50, 10)
    np.testing.assert_array_equal(again[1], indices)


def test_the_shuffle_key_is_none_of_the_keys_handed_on():
    """The shuffle draws from its own key: not the next epoch's key (which that epoch will
    split again), nor a step's key, nor the state's key itself."""
    key = jax.random.PRNGKey(5)
    next_key, indices, _, step_keys = descent.epoch_plan(key, 50, 10)
    for other in [key, next_key, *step_keys]:
        assert not np.array_equal(descent.epoch_batches(other, 50, 10)[0], indices)
    _, shuffle_key, _ = jax.random.split(key, 3)
    np.testing.assert_array_equal(descent.epoch_batches(shuffle_key, 50, 10)[0], indices)
