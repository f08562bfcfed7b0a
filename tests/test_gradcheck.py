"""Tests for gdlab.gradcheck: every layer and loss passes in float64 and float32, random
MLPs pass, a deliberately broken backward FAILS on the right row, the comparison math,
leaf paths and the JSON report (the command line is tested in test_exp_gradcheck.py)."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdlab import gradcheck, layers, losses, models, tolerances
from gdlab.tolerances import Tolerance

F64 = jnp.float64
SMALL_MLP = {"hidden": (6,), "batch_size": 4, "input_dim": 3, "num_classes": 3}

# ------------------------------------------------------------------------ helpers


def row_prefix(name: str) -> str:
    """The path prefix of ``check_all``'s rows for a layer or loss name."""
    if name == "l2":
        return "penalty/l2"
    if name in gradcheck.LOSS_NAMES:
        return f"loss/{name}/"
    return f"{name}/"


def assert_json_report(report: dict, dtype: str):
    assert {"passed", "dtype", "leaves"} <= set(report)
    assert report["dtype"] == dtype and isinstance(report["passed"], bool)
    assert report["leaves"]
    for leaf in report["leaves"]:
        assert {"path", "shape", "max_abs_err", "max_rel_err", "passed"} <= set(leaf)
        assert isinstance(leaf["path"], str) and isinstance(leaf["passed"], bool)
        assert all(isinstance(n, int) for n in leaf["shape"])
        assert math.isfinite(leaf["max_abs_err"]) and math.isfinite(leaf["max_rel_err"])
    assert report["passed"] == all(leaf["passed"] for leaf in report["leaves"])


def _scaled_tanh(scale):
    """tanh whose hand-written backward is off by a factor ``scale``."""

    def fn(x):
        y = jnp.tanh(x)
        return y, y

    return layers.stateless("tanh", fn, lambda y, dy: scale * dy * (1.0 - y * y))


def _dense_with(transform, out_dim=3):
    """dense whose backward passes dW through ``transform``."""
    d = layers.dense(out_dim, dtype=F64)

    def backward(params, x, dy):
        dparams, dx = d.backward(params, x, dy)
        return {**dparams, "w": transform(dparams["w"])}, dx

    return layers.Layer(d.init, d.forward, backward, "dense")


def _layer_inputs(layer, in_dim=3, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    _, params, _ = layer.init(jax.random.PRNGKey(seed), (in_dim,))
    params = jax.tree.map(lambda p: p + 0.5 * rng.normal(size=p.shape), params)
    x = jnp.asarray(rng.normal(size=(batch, in_dim)))
    out = jax.eval_shape(lambda: layer.forward(params, {}, x)[0]).shape
    return params, x, jnp.asarray(rng.normal(size=out))


def _by_path(rows):
    return {row.path: row for row in rows}


def _xent_problem(model, batch, in_dim=4, classes=3):
    """``(params, state, x, y)``: ``model`` initialised for ``in_dim`` features and a random
    batch of normal inputs with labels below ``classes``."""
    _, params, state = model.init(jax.random.PRNGKey(0), (in_dim,))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(batch, in_dim)))
    y = jnp.asarray(rng.integers(0, classes, size=batch))
    return params, state, x, y


# ----------------------------------------------------------------------------- check_all


def test_check_all_float64_passes_every_row_for_every_name():
    # float32 over every name is test_cli_layers_all_float32_passes
    report_f64 = gradcheck.check_all(dtype="float64")
    assert report_f64.dtype == "float64"
    assert report_f64.passed
    assert all(leaf.passed for leaf in report_f64.leaves)
    assert report_f64.worst_rel_err <= 1e-10
    assert report_f64.worst_rel_err == max(leaf.vs_autodiff.max_rel_err for leaf in report_f64.leaves)
    for leaf in report_f64.leaves:  # finite differences agree too
        assert leaf.manual_vs_fd.passed and leaf.autodiff_vs_fd.passed
    paths = [leaf.path for leaf in report_f64.leaves]
    for name in gradcheck.CHECK_NAMES:
        assert any(p.startswith(row_prefix(name)) for p in paths), name
    # single layers have a row for their input, and one per parameter leaf
    assert {"dense/x", "dense/params/w", "dense/params/b", "layer_norm/params/scale",
            "layer_norm/params/shift", "flatten/x", "serial/params/layers/0/w"} <= set(paths)
    assert {leaf.path: leaf.shape for leaf in report_f64.leaves}["flatten/x"] == (4, 2, 3, 2)
    # the new layers: state is never a row, integer token ids have no input row
    assert {"conv2d/x", "conv2d/params/w", "conv2d/params/b", "max_pool/x", "avg_pool/x",
            "global_avg_pool/x", "batch_norm_train/params/scale", "batch_norm_eval/x",
            "batch_norm_train_masked/x", "embedding/params/table", "attention/params/query/w",
            "attention_causal/params/out/w", "residual/params/body/layers/0/w",
            "parallel_sum/params/branches/1/layers/2/b", "parallel_concat/x",
            "transformer_block/params/layers/0/body/layers/1/key/w",
            "loss/xent_tokens/preds"} <= set(paths)
    assert not any(p.startswith("embedding/x") or "mean" in p or "var" in p for p in paths)


def test_check_all_rows_do_not_depend_on_the_dtype():
    names = ["dense", "batch_norm_train", "embedding", "residual", "xent_tokens", "l2"]
    f32, f64 = (gradcheck.check_all(dtype=dt, names=names) for dt in ("float32", "float64"))
    assert f32.dtype == "float32" and f32.passed and f64.passed, f32.table()
    assert [leaf.path for leaf in f32.leaves] == [leaf.path for leaf in f64.leaves]
    assert [leaf.shape for leaf in f32.leaves] == [leaf.shape for leaf in f64.leaves]


@pytest.mark.parametrize("seed", [3, 4, 7, 10])
def test_float32_attention_passes_whatever_the_seed(seed):
    # Seeds whose float32 attention gradients have entries that cancel to near zero beside
    # entries of size ~30: manual and jax.grad differ there by rounding alone (both agree
    # with float64 finite differences), which an element-wise floor called a failure.
    report = gradcheck.check_all(dtype="float32", seed=seed,
                                 names=["attention", "attention_causal"])
    assert report.passed, report.table()
    assert report.worst_rel_err > 1e-4  # entries beyond the element-wise rtol, yet passing


def test_check_all_subset_and_errors():
    report = gradcheck.check_all(names=["relu", "bce"])
    assert [leaf.path for leaf in report.leaves] == ["relu/x", "loss/bce/preds"]
    assert report.passed
    with pytest.raises(ValueError, match="unknown layer or loss 'conv'"):
        gradcheck.check_all(names=["dense", "conv"])
    with pytest.raises(ValueError, match="unknown model 'rnn'"):
        gradcheck.check_random_model("rnn")
    with pytest.raises(ValueError, match="no tolerances for dtype 'float16'"):
        gradcheck.check_all(dtype="float16")


# ---------------------------------------------------------------------- random MLPs


@pytest.mark.parametrize("loss", ["mse", "huber", "xent", "bce"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_check_random_mlp_float64(activation, loss):
    report = gradcheck.check_random_mlp(activation=activation, loss=loss, **SMALL_MLP)
    assert report.passed, report.table()
    assert report.worst_rel_err <= 1e-10
    assert [leaf.path for leaf in report.leaves] == [
        "layers/0/b", "layers/0/w", "layers/2/b", "layers/2/w"]
    out = 1 if loss == "bce" else SMALL_MLP["num_classes"]
    assert report.leaves[3].shape == (SMALL_MLP["hidden"][0], out)


@pytest.mark.parametrize("model", ["cnn", "transformer"])
def test_check_random_cnn_and_transformer(model):
    """The random CNN (batch statistics, pools) and causal transformer pass in float64 and
    float32; their rows are parameter leaves only (never batch-norm statistics)."""
    report = gradcheck.check_random_model(model, dtype="float64")
    assert report.passed, report.table()
    assert report.worst_rel_err <= 1e-10
    _, params, state, _, _ = gradcheck.random_problem(model)
    assert [leaf.path for leaf in report.leaves] == gradcheck.leaf_paths(params)
    if model == "cnn":
        assert jax.tree_util.tree_leaves(state)  # it has state, and none of it was checked
    report32 = gradcheck.check_random_model(model, dtype="float32")
    assert report32.passed, report32.table()


@pytest.mark.parametrize("activation, loss", [
    ("relu", "xent"), ("tanh", "bce"), ("sigmoid", "mse"), ("gelu", "huber"),
])
def test_check_random_mlp_float32(activation, loss):
    report = gradcheck.check_random_mlp(activation=activation, loss=loss, dtype="float32",
                                        **SMALL_MLP)
    assert report.dtype == "float32"
    assert report.passed, report.table()


# ------------------------------------------------------------ broken backwards FAIL


@pytest.mark.parametrize("scale", [1.01, 0.99, -1.0])
def test_broken_activation_fails(scale):
    layer = _scaled_tanh(scale)
    params, x, dy = _layer_inputs(layer)
    rows = gradcheck.check_layer(layer, params, {}, x, dy, name="tanh")
    assert [r.path for r in rows] == ["tanh/x"]
    (row,) = rows
    assert not row.passed
    assert not row.vs_autodiff.passed and not row.manual_vs_fd.passed
    assert row.autodiff_vs_fd.passed  # the reference itself is right
    rel = abs(scale - 1.0) / (abs(scale) + 1.0)  # |s·g − g| / (|s·g| + |g|)
    assert row.vs_autodiff.max_rel_err == pytest.approx(rel, rel=1e-6)
    # and the correct tanh passes on the same inputs
    (good,) = gradcheck.check_layer(layers.tanh(), params, {}, x, dy, name="tanh")
    assert good.passed


@pytest.mark.parametrize("transform", [
    pytest.param(lambda dw: 1.01 * dw, id="dW_scaled"),
    pytest.param(lambda dw: dw.T, id="dW_transposed"),
])
def test_broken_dense_fails_on_w_only(transform):
    layer = _dense_with(transform)
    params, x, dy = _layer_inputs(layer, in_dim=3)  # W is 3×3, so dW.T has the right shape
    rows = _by_path(gradcheck.check_layer(layer, params, {}, x, dy, name="dense"))
    assert set(rows) == {"dense/params/b", "dense/params/w", "dense/x"}
    assert not rows["dense/params/w"].passed
    assert rows["dense/params/b"].passed and rows["dense/x"].passed


def test_broken_layer_inside_model_fails_on_earlier_layers():
    """A wrong activation backward corrupts the gradients of every layer before it (in the
    forward order), never those after it."""
    model = layers.serial(layers.dense(5, dtype=F64), _scaled_tanh(1.01), layers.dense(3, dtype=F64))
    report = gradcheck.check_model(model, losses.get("xent"), *_xent_problem(model, batch=6))
    rows = _by_path(report.leaves)
    assert not report.passed
    assert not rows["layers/0/w"].passed and not rows["layers/0/b"].passed
    assert rows["layers/2/w"].passed and rows["layers/2/b"].passed
    table = report.table()
    assert "FAIL" in table and "2/4 rows pass" in table


def test_broken_loss_fails():
    mse = losses.mse()
    wrong = losses.Loss(mse.forward, lambda r, g=1.0: 1.01 * mse.backward(r, g), "mse")
    rng = np.random.default_rng(0)
    preds, targets = jnp.asarray(rng.normal(size=(4, 2))), jnp.asarray(rng.normal(size=(4, 2)))
    (row,) = gradcheck.check_loss(wrong, preds, targets, 1.5)
    assert row.path == "loss/mse/preds" and not row.passed
    (good,) = gradcheck.check_loss(mse, preds, targets, 1.5)
    assert good.passed


def test_report_passed_is_all_rows():
    ok = gradcheck.Comparison(0.0, 0.0, True)
    bad = gradcheck.Comparison(1.0, 0.5, False)
    rows = (gradcheck.LeafCheck("a", (2,), ok, ok, ok), gradcheck.LeafCheck("b", (), ok, bad, ok))
    report = gradcheck.Report("float64", rows)
    assert not report.passed and not rows[1].passed and rows[0].passed
    assert gradcheck.Report("float64", rows[:1]).passed
    assert gradcheck.Report("float64", ()).passed  # no rows, nothing failed
    lines = report.table().splitlines()
    assert lines[0].split()[0] == "path" and set(lines[1]) <= {"-", " "}
    assert lines[2].split()[0] == "a" and lines[2].endswith("pass")
    assert lines[3].split()[:2] == ["b", "scalar"] and lines[3].endswith("FAIL")
    assert lines[-1].startswith("float64: 1/2 rows pass")


# ------------------------------------------------------------------ comparison math


def test_compare_hand_made_arrays():
    a = np.array([1.0, 2.0, 0.0, -3.0])
    b = np.array([1.0, 2.5, 0.0, -3.0])
    # worst: |2 − 2.5| = 0.5, relative 0.5 / (2 + 2.5); the 0 vs 0 entry has relative error 0
    c = gradcheck.compare(a, b, Tolerance(rtol=0.1, atol=0.0))
    assert c.max_abs_err == 0.5
    assert c.max_rel_err == pytest.approx(0.5 / 4.5, rel=1e-15)
    assert not c.passed  # 0.5 > 0.1 · 4.5
    assert gradcheck.compare(a, b, Tolerance(rtol=0.12, atol=0.0)).passed  # 0.5 ≤ 0.54
    # the absolute floor is atol times the leaf's largest entry, 3: 0.5 ≤ 0.17 · 3
    assert gradcheck.compare(a, b, Tolerance(rtol=0.0, atol=0.17)).passed
    assert not gradcheck.compare(a, b, Tolerance(rtol=0.0, atol=0.16)).passed


def test_compare_near_zero_and_empty():
    tol = tolerances.ANALYTIC["float64"]
    c = gradcheck.compare([1e-13], [0.0], tol)  # within atol, but relative error 1
    assert c.passed and c.max_rel_err == 1.0 and c.max_abs_err == 1e-13
    assert not gradcheck.compare([1e-11], [0.0], tol).passed
    empty = gradcheck.compare(np.zeros(0), np.zeros(0), tol)
    assert empty.passed and empty.max_abs_err == 0.0 and empty.max_rel_err == 0.0
    # float32 inputs are compared in float64
    c32 = gradcheck.compare(np.float32([1.0]), np.float32([1.0 + 2**-23]), tol)
    assert c32.max_abs_err == 2**-23


def test_compare_uses_the_stated_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b[:25] = a[:25] * (1 + 1e-9)
    tol = Tolerance(rtol=1e-3, atol=1e-4)
    c = gradcheck.compare(a, b, tol)
    diff, scale = np.abs(a - b), np.abs(a) + np.abs(b)
    assert c.max_abs_err == diff.max()
    assert c.max_rel_err == (diff / scale).max()
    size = max(1.0, np.abs(a).max(), np.abs(b).max())
    assert c.passed == bool(np.all(diff <= tol.atol * size + tol.rtol * scale))
    for factor in (0.5, 100.0):  # leaves smaller and larger than 1
        c = gradcheck.compare(factor * a, factor * b, tol)
        size = max(1.0, factor * np.abs(a).max(), factor * np.abs(b).max())
        assert c.passed == bool(np.all(factor * diff <= tol.atol * size + tol.rtol * factor * scale))


def test_compare_absolute_floor_grows_with_the_leafs_largest_entry():
    tol = tolerances.ANALYTIC["float32"]  # rtol 1e-4, atol 1e-6
    # an entry of 1e-3 off by 5e-5: beside entries of 1 that is a real error ...
    assert not gradcheck.compare([1.0, 1e-3], [1.0, 1e-3 + 5e-5], tol).passed
    # ... beside entries of 100 it is under an ulp-scale error of them (atol · 100 = 1e-4)
    assert gradcheck.compare([100.0, 1e-3], [100.0, 1e-3 + 5e-5], tol).passed
    assert not gradcheck.compare([100.0, 1e-3], [100.0, 1e-3 + 2e-4], tol).passed
    # the large entries themselves are still held to rtol
    assert not gradcheck.compare([100.0, 1e-3], [100.03, 1e-3], tol).passed
    # an infinity would make every bound infinite: it fails, as NaN does
    for bad in (np.inf, -np.inf, np.nan):
        assert not gradcheck.compare([bad, 1.0], [5.0, 1.0], tol).passed
        assert not gradcheck.compare([5.0, 1.0], [bad, 1.0], tol).passed
    assert not gradcheck.compare([np.inf], [np.inf], tol).passed


def test_finite_differences_closed_form():
    """Central differences of f(θ) = Σ a·w³ + sin(b)·c: ∂/∂w = 3a·w², ∂/∂b = cos(b)·c."""
    rng = np.random.default_rng(0)
    a, c = rng.normal(size=(3, 2)), rng.normal(size=4)
    args = {"w": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.asarray(rng.normal(size=4))}

    def f(p):
        return jnp.sum(a * p["w"] ** 3) + jnp.sum(jnp.sin(p["b"]) * c)

    fd = gradcheck.finite_differences(f, args, chunk=4)  # 10 coordinates over 3 chunks
    tol = tolerances.FINITE_DIFF["float64"]
    np.testing.assert_allclose(fd["w"], 3 * a * np.asarray(args["w"]) ** 2, rtol=tol.rtol, atol=tol.atol)
    np.testing.assert_allclose(fd["b"], np.cos(np.asarray(args["b"])) * c, rtol=tol.rtol, atol=tol.atol)


# ------------------------------------------------------------------ paths and JSON


def test_leaf_paths():
    model = models.mlp([4, 2], "tanh")
    _, params, _ = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), (3,)))
    assert gradcheck.leaf_paths(params) == ["layers/0/b", "layers/0/w", "layers/2/b", "layers/2/w"]
    assert gradcheck.leaf_paths({"params": {"scale": 1.0}, "x": (2.0, 3.0)}) == [
        "params/scale", "x/0", "x/1"]


def test_json_report():
    checked = gradcheck.check_all(dtype="float64", names=["dense", "relu", "xent", "l2"])
    report = json.loads(checked.to_json())
    assert_json_report(report, "float64")
    assert report["passed"] is True
    assert len(report["leaves"]) == len(checked.leaves) == 7  # dense x, w, b; relu; xent; l2 w, b
    first, row = report["leaves"][0], checked.leaves[0]
    assert first["path"] == row.path and first["shape"] == list(row.shape)
    assert first["max_rel_err"] == row.vs_autodiff.max_rel_err
    assert report["tolerances"]["analytic"] == {"rtol": 1e-10, "atol": 1e-12}


# ------------------------------------------------------------ mixed precision (bfloat16)


@pytest.mark.parametrize("model", gradcheck.MODELS)
def test_mixed_precision_check_passes_for_every_model(model):
    """bfloat16 compute from float32 params, manual and jax.grad against float64: every leaf
    within tolerances.MIXED or (batch norm, attention) as close as jax.grad's own."""
    report = gradcheck.check_random_model(model, mixed="bfloat16")
    assert report.passed, report.table()
    assert report.compute_dtype == "bfloat16" and report.tolerance == tolerances.MIXED["bfloat16"]
    for leaf in report.leaves:  # rounded for real, and no leaf worse than bfloat16 allows
        assert 0 < leaf.manual_err <= max(tolerances.MIXED["bfloat16"],
                                          tolerances.MIXED_RATIO * leaf.autodiff_err)
    assert json.loads(report.to_json())["passed"] is True
    summary = report.table().splitlines()[-1]  # each gradient's worst, named
    assert "rows pass" in summary
    assert (f"worst manual {max(leaf.manual_err for leaf in report.leaves):.2e}, jax.grad "
            f"{max(leaf.autodiff_err for leaf in report.leaves):.2e}") in summary


def test_mixed_precision_errors_are_relative_to_the_float64_gradient():
    """Each row's error is ‖g − g64‖ / ‖g64‖, recomputed here from the gradients themselves:
    bfloat16 manual and jax.grad from float32 params, and jax.grad in float64."""
    from gdlab import backprop

    model = models.mlp([6, 3], "tanh")
    params, state, x, y = _xent_problem(model, batch=16)
    report = gradcheck.check_mixed_precision(model, losses.get("xent"), params, state, x, y)

    def grads(method, dtype, compute=None):
        vg = backprop.value_and_grad(model, losses.get("xent"), method, compute_dtype=compute)
        cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, dtype), t)  # noqa: E731
        fn = jax.jit(lambda p, s, xs, ys: vg(p, s, xs, ys)[1])  # compiled, as the check's
        return jax.tree_util.tree_leaves(fn(cast(params), cast(state), cast(x), y))

    with jax.default_matmul_precision("highest"):
        reference = [np.asarray(g, np.float64) for g in grads("autodiff", jnp.float64)]
        mixed = {m: grads(m, jnp.float32, jnp.bfloat16) for m in ("manual", "autodiff")}
    for row, r, gm, ga in zip(report.leaves, reference, mixed["manual"], mixed["autodiff"]):
        for got, g in ((row.manual_err, gm), (row.autodiff_err, ga)):
            want = np.linalg.norm(np.asarray(g, np.float64) - r) / np.linalg.norm(r)
            assert want > 1e-5  # bfloat16 rounding, so ‖g‖ and ‖g64‖ differ visibly
            assert got == pytest.approx(want, rel=1e-6), row.path


def test_mixed_precision_check_catches_a_wrong_backward():
    """dW off by 10% is far beyond bfloat16's rounding: the dense layer's W fails, its b not."""
    model = layers.serial(_dense_with(lambda dw: 1.1 * dw, out_dim=5), layers.tanh(),
                          layers.dense(3))
    report = gradcheck.check_mixed_precision(model, losses.get("xent"),
                                             *_xent_problem(model, batch=32))
    rows = _by_path(report.leaves)
    assert not report.passed
    assert not rows["layers/0/w"].passed and rows["layers/0/b"].passed
    assert rows["layers/2/w"].passed and rows["layers/2/b"].passed


# ------------------------------------------------- which comparison decides what


def test_an_error_finite_differences_cannot_see_still_fails_against_jax_grad():
    """A backward off by a relative 1e-8 in float64 is inside the finite-difference
    tolerance (1e-6) but far outside manual-vs-jax.grad's (1e-10): the row fails, on that
    comparison alone."""
    layer = _scaled_tanh(1.0 + 1e-8)
    params, x, dy = _layer_inputs(layer)
    (row,) = gradcheck.check_layer(layer, params, {}, x, dy, name="tanh")
    assert row.manual_vs_fd.passed and row.autodiff_vs_fd.passed
    assert not row.vs_autodiff.passed
    assert not row.passed


def test_float64_finite_differences_catch_an_error_of_1e_4():
    """Against float64 finite differences (rtol 1e-6) a backward off by a relative 1e-4
    fails on its own, whatever jax.grad says."""
    layer = _scaled_tanh(1.0002)
    params, x, dy = _layer_inputs(layer)
    (row,) = gradcheck.check_layer(layer, params, {}, x, dy, name="tanh")
    assert not row.manual_vs_fd.passed
    assert row.autodiff_vs_fd.passed


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_a_row_passes_only_when_all_three_comparisons_pass(failing):
    ok = gradcheck.Comparison(0.0, 0.0, True)
    bad = gradcheck.Comparison(1.0, 0.5, False)
    comparisons = [ok, ok, ok]
    comparisons[failing] = bad
    row = gradcheck.LeafCheck("w", (2,), *comparisons)
    assert not row.passed
    assert not gradcheck.Report("float64", (row,)).passed
    assert row.to_dict()["passed"] is False
    assert gradcheck.LeafCheck("w", (2,), ok, ok, ok).passed


def test_report_rows_name_each_comparison_by_what_it_compares():
    """In the table and the JSON, the finite-difference columns belong to manual and to
    jax.grad, each its own."""
    vs_ad = gradcheck.Comparison(1e-3, 2e-3, False)
    man_fd = gradcheck.Comparison(3e-3, 4e-3, False)
    ad_fd = gradcheck.Comparison(5e-9, 6e-9, True)
    report = gradcheck.Report("float64", (gradcheck.LeafCheck("w", (2, 3), vs_ad, man_fd, ad_fd),))
    (leaf,) = json.loads(report.to_json())["leaves"]
    assert (leaf["max_abs_err"], leaf["max_rel_err"]) == (1e-3, 2e-3)
    assert leaf["finite_differences"] == {
        "manual": {"max_abs_err": 3e-3, "max_rel_err": 4e-3, "passed": False},
        "autodiff": {"max_abs_err": 5e-9, "max_rel_err": 6e-9, "passed": True}}
    header, _, row, _ = report.table().splitlines()
    columns = [c.strip() for c in header.split("  ") if c.strip()]
    values = dict(zip(columns, row.split()))
    assert values["rel err"] == "2.00e-03"
    assert values["rel err vs FD"] == "4.00e-03"
    assert values["jax.grad vs FD"] == "6.00e-09"
    assert values["shape"] == "2x3" and values["result"] == "FAIL"


def test_json_report_states_the_tolerances_it_applied():
    report = json.loads(gradcheck.Report("float32", ()).to_json())
    assert report["dtype"] == "float32"
    assert report["tolerances"] == {"analytic": {"rtol": 1e-4, "atol": 1e-6},
                                    "finite_differences": {"rtol": 2e-3, "atol": 1e-5},
                                    "fd_step": 1e-5}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("g", [1.0, 1e-7, 1e-10])
def test_broken_dense_fails_however_small_the_gradient(dtype, g):
    """The verdict does not depend on the loss's units: a sign error in dW fails as well when
    every gradient is 1e-7 times smaller (below float32's absolute tolerance of 1e-6)."""
    layer = _dense_with(lambda dw: -dw)
    params, x, dy = _layer_inputs(layer, in_dim=3)
    rows = _by_path(gradcheck.check_layer(layer, params, {}, x, g * dy, dtype=dtype,
                                          name="dense"))
    assert not rows["dense/params/w"].passed
    assert rows["dense/params/b"].passed and rows["dense/x"].passed


def test_compare_floor():
    """``floor`` sets the absolute tolerance's reference below a leaf's largest entry."""
    tol = Tolerance(rtol=1e-4, atol=1e-6)
    assert gradcheck.compare([3e-7], [-3e-7], tol).passed  # within 1e-6 of the default floor 1
    assert not gradcheck.compare([3e-7], [-3e-7], tol, floor=1e-6).passed
