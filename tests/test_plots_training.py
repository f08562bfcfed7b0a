"""gdlab/plots/training.py on synthetic histories: which panels, and the data they plot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gdlab.plots import training

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(epochs: int = 5, *, epoch0: bool = True, accuracy: bool = True) -> list[dict]:
    """Rows like ``train.fit``'s: epoch 0 without gradient keys, then one row per epoch."""
    rows = []
    for epoch in range(0 if epoch0 else 1, epochs + 1):
        row = {"epoch": epoch, "step": 10 * epoch, "train_loss": 2.0 / (1 + epoch),
               "test_loss": 2.2 / (1 + epoch), "param_norm": 3.0 + epoch}
        if accuracy:
            row.update(train_accuracy=1 - 0.5 / (1 + epoch), test_accuracy=1 - 0.6 / (1 + epoch))
        if epoch:
            row.update(grad_norm=1.0 / epoch, displacement=0.1, seconds=0.5)
        rows.append(row)
    return rows


def _axes(fig) -> dict:
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


def _line(ax, label: str):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return np.asarray(line.get_xdata(), np.float64), np.asarray(line.get_ydata(), np.float64)


@pytest.fixture
def figure():
    return training.history_figure


def test_loss_from_epoch_0_with_integer_ticks_accuracy_and_gradient_norm(figure):
    rows = _history(5)
    axes = _axes(figure(rows, title="run"))
    assert set(axes) == {"loss", "accuracy", "gradient norm"}
    xs, ys = _line(axes["loss"], "train loss")
    np.testing.assert_array_equal(xs, np.arange(6))  # epoch 0, the initial loss, first
    np.testing.assert_allclose(ys, [r["train_loss"] for r in rows])
    np.testing.assert_allclose(_line(axes["loss"], "test loss")[1], [r["test_loss"] for r in rows])
    assert axes["loss"].get_yscale() == "log"
    ticks = [t for t in axes["loss"].get_xticks() if -0.5 <= t <= 5.5]
    assert ticks and all(float(t).is_integer() for t in ticks)
    xs, ys = _line(axes["gradient norm"], "‖∂J/∂θ‖ (batch gradient)")
    np.testing.assert_array_equal(xs, np.arange(1, 6))  # epoch 0 has no gradient
    np.testing.assert_allclose(ys, [1.0 / e for e in range(1, 6)])
    assert axes["gradient norm"].get_xlim() == axes["loss"].get_xlim()  # one epoch span
    np.testing.assert_allclose(_line(axes["accuracy"], "test accuracy")[1],
                               [r["test_accuracy"] for r in rows])


def test_old_rows_without_epoch_0_gradients_or_accuracy(figure):
    rows = [{k: v for k, v in row.items() if k != "grad_norm"}
            for row in _history(3, epoch0=False, accuracy=False)]
    rows[1]["test_loss"] = None  # a null in a metrics file: a gap, not a crash
    axes = _axes(figure(rows, title="old"))
    assert set(axes) == {"loss"}
    xs, ys = _line(axes["loss"], "test loss")
    np.testing.assert_array_equal(xs, [1, 2, 3])
    assert math.isnan(ys[1]) and ys[0] == pytest.approx(1.1)


def test_sharpness_panel_with_the_optimizers_stability_bound(figure):
    rows = _history(4)
    for row in rows[::2]:
        row.update(sharpness=5.0 * (1 + row["epoch"]), stability_bound=40.0)
    axes = _axes(figure(rows, title="eos", bound_name="2(1+β)/α (momentum, β = 0.9)"))
    assert "sharpness" in axes and len(axes) == 4
    xs, ys = _line(axes["sharpness"], "sharpness λmax")
    np.testing.assert_array_equal(xs, [0, 2, 4])
    np.testing.assert_allclose(ys, [5.0, 15.0, 25.0])
    np.testing.assert_allclose(
        _line(axes["sharpness"], "stability bound 2(1+β)/α (momentum, β = 0.9)")[1], 40.0)


@pytest.mark.parametrize("diverged_at, first", [(4, 1), (50, 47)])  # a fresh and a resumed run
def test_diverged_run_shows_each_update_up_to_the_refused_one(figure, diverged_at, first):
    rows = _history(1, accuracy=False)
    steps = np.array([1.0, 10.0, 1e3, 1e6])
    axes = _axes(figure(rows, title="boom", step_losses=steps, diverged_at_step=diverged_at))
    ax = axes[f"up to the divergence (update {diverged_at})"]
    xs, ys = _line(ax, "batch loss of each update")
    np.testing.assert_array_equal(xs, np.arange(first, diverged_at + 1))
    np.testing.assert_allclose(ys, steps)
    vx, _ = _line(ax, f"diverged: update {diverged_at} refused")
    np.testing.assert_array_equal(vx, [diverged_at, diverged_at])
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [diverged_at]
    assert list(marks[0].get_ydata()) == [1e6]
    assert ax.get_yscale() == "log"


def test_a_non_finite_refused_loss_is_a_gap_and_no_divergence_panel_without_divergence(figure):
    rows = _history(1, accuracy=False)
    axes = _axes(figure(rows, title="nan", step_losses=[1.0, 2.0, math.inf], diverged_at_step=3))
    ax = axes["up to the divergence (update 3)"]
    _, ys = _line(ax, "batch loss of each update")
    assert ys[:2].tolist() == [1.0, 2.0] and math.isnan(ys[2])
    assert not [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    axes = _axes(figure(rows, title="fine", step_losses=[1.0, 0.5], diverged_at_step=None))
    assert not any(title.startswith("up to the divergence") for title in axes)


def test_plot_history_writes_a_png(tmp_path):
    path = tmp_path / "loss.png"
    training.plot_history(_history(2), path, title="png", step_losses=[3.0, 2.0],
                          diverged_at_step=None)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_a_loss_that_reaches_exactly_zero_stays_on_its_log_axis(figure):
    """A least-squares fit that ends at J = 0 (float rounding): the panels keep their log
    axis (one zero made them linear, flattening 19 decades onto 0), and the zeros are drawn
    at a marked floor a decade below the smallest positive value."""
    rows = _history(6)
    for row, loss in zip(rows, [2.0, 1e-3, 1e-9, 4e-19, 0.0, 0.0, 0.0]):
        row["train_loss"] = row["test_loss"] = loss
    rows[-1]["grad_norm"] = 0.0
    axes = _axes(figure(rows, title="exact fit"))
    assert axes["loss"].get_yscale() == "log" and axes["gradient norm"].get_yscale() == "log"
    np.testing.assert_allclose(_line(axes["loss"], "train loss")[1],
                               [2.0, 1e-3, 1e-9, 4e-19, 4e-20, 4e-20, 4e-20])
    _, floor = _line(axes["loss"], "exactly 0, drawn at 4e-20")
    np.testing.assert_allclose(floor, 4e-20)
    assert axes["loss"].get_ylim()[0] < 4e-20
    grads = [r["grad_norm"] for r in rows[1:]]
    np.testing.assert_allclose(_line(axes["gradient norm"], "‖∂J/∂θ‖ (batch gradient)")[1],
                               [*grads[:-1], min(grads[:-1]) / 10])
    # nothing to floor: no line for it; a negative value: a linear axis, values as they are
    assert not [ln for ln in _axes(figure(_history(3), title="t"))["loss"].get_lines()
                if ln.get_label().startswith("exactly 0")]
    rows = _history(3)
    rows[2]["train_loss"] = -1.0
    axes = _axes(figure(rows, title="t"))
    assert axes["loss"].get_yscale() == "linear" and _line(axes["loss"], "train loss")[1][2] == -1


def test_a_sweep_whose_best_rates_fit_exactly_draws_every_one(monkeypatch):
    """lr_sweep's figure: converged rates whose final loss is 0 are drawn at the floor (they
    vanished from the log axis), on both panels."""
    from gdlab.plots import sweep

    kept = {}
    monkeypatch.setattr(sweep, "save", lambda fig, path: kept.setdefault("fig", fig))
    curves = np.array([[2.0, 1.0, 0.5, 0.25], [2.0, 1e-6, 1e-14, 0.0], [2.0, 1e-3, 0.0, 0.0],
                       [2.0, 50.0, np.nan, np.nan]])
    sweep.plot_lr_sweep([0.01, 0.1, 0.3, 9.0], [0.25, 0.0, 0.0, np.nan],
                        ["too slow", "converged", "converged", "diverged"], curves,
                        {"too small": 0, "good": 1, "too large": 3}, "unused.png",
                        title="t", initial_loss=2.0)
    left, right = kept["fig"].axes
    (converged,) = [c for c in left.collections if c.get_label() == "converged"]
    np.testing.assert_allclose(converged.get_offsets()[:, 1], [0.025, 0.025])
    assert next(ln.get_label() for ln in left.get_lines()) == "exactly 0, drawn at 0.025"
    np.testing.assert_allclose(_line(right, "good: α = 0.1 (converged)")[1],
                               [2.0, 1e-6, 1e-14, 1e-15])
    assert "exactly 0, drawn at 1e-15" in [ln.get_label() for ln in right.get_lines()]


def test_the_edge_of_stability_figure_claims_only_what_its_runs_show(monkeypatch):
    """The sharpness panel's title counts the runs at the edge (it claimed the edge
    whatever the data), and a diverged run says so in its label, with a ✕ at its last
    finite loss."""
    from gdlab.plots import eos

    kept = {}
    monkeypatch.setattr(eos, "save", lambda fig, path: kept.setdefault("fig", fig))

    def run(lr, losses, **verdicts):
        return {"lr": lr, "two_over_lr": 2 / lr, **verdicts,
                "curve": {"step": [0, 10, 20], "sharpness": [1.0, 2.0, None], "loss": losses}}

    runs = [run(0.5, [1.0, 0.5, 0.4], started_below=True, at_edge=False, diverged=False),
            run(40.0, [1.0, 1e20, None], started_below=False, at_edge=False, diverged=True,
                diverged_by_step=20)]
    eos.plot_edge_of_stability(runs, "unused.png", title="t")
    left, right = kept["fig"].axes
    assert left.get_title() == "sharpness: 0 of 2 full-batch runs rise to 2/η and hover"
    labels = [ln.get_label() for ln in right.get_lines()]
    assert "gd η = 0.5" in labels and "gd η = 40 (diverged by step 20)" in labels
    (cross,) = [ln for ln in right.get_lines() if ln.get_marker() == "x"]
    assert (list(cross.get_xdata()), list(cross.get_ydata())) == ([10.0], [1e20])


def test_every_epoch_panel_spans_the_runs_epochs_and_rows_are_drawn_in_epoch_order(figure):
    """Rows out of order (a resumed run's file) are drawn by epoch, each curve its own
    key's values, and every epoch panel shows epoch 0 to the last, the same span."""
    rows = _history(4)
    shuffled = [rows[i] for i in (3, 0, 4, 2, 1)]
    axes = _axes(figure(shuffled, title="order"))
    xs, ys = _line(axes["loss"], "train loss")
    np.testing.assert_array_equal(xs, np.arange(5))
    np.testing.assert_allclose(ys, [2.0 / (1 + e) for e in range(5)])
    np.testing.assert_allclose(_line(axes["accuracy"], "train accuracy")[1],
                               [1 - 0.5 / (1 + e) for e in range(5)])
    lo, hi = axes["loss"].get_xlim()
    assert lo < 0 and hi > 4
    for name in ("accuracy", "gradient norm"):
        assert axes[name].get_xlim() == (lo, hi)


def test_losses_that_are_all_exactly_zero_draw_on_a_linear_axis(figure):
    rows = _history(2, accuracy=False)
    for row in rows:
        row["train_loss"] = row["test_loss"] = 0.0
    axes = _axes(figure(rows, title="zero"))
    assert axes["loss"].get_yscale() == "linear"
    np.testing.assert_array_equal(_line(axes["loss"], "train loss")[1], [0.0, 0.0, 0.0])


def _kept_figure(monkeypatch, module):
    kept = {}
    monkeypatch.setattr(module, "save", lambda fig, path: kept.setdefault("fig", fig))
    return kept


def test_edge_of_stability_panels_sharpness_with_2_over_eta_and_loss_on_a_log_axis(monkeypatch):
    """Left: each run's sharpness and a dashed line at 2/η in its colour (a mini-batch run at
    a full-batch rate adds none of its own); right: each run's loss, log scale."""
    from gdlab.plots import eos

    kept = _kept_figure(monkeypatch, eos)

    def run(lr, sharpness, loss):
        return {"lr": lr, "two_over_lr": 2 / lr,
                "curve": {"step": [0, 10, 20], "sharpness": sharpness, "loss": loss}}

    runs = [run(0.5, [1.0, 2.0, 3.5], [1.0, 0.5, 0.25]), run(0.25, [1.0, 4.0, 7.5], [1.0, 0.8, 0.6])]
    minibatch = {**run(0.5, [0.5, 0.6, 0.7], [1.0, 0.9, 0.7]), "batch_size": 8}
    eos.plot_edge_of_stability(runs, "unused.png", title="t", minibatch=minibatch)
    left, right = kept["fig"].axes
    np.testing.assert_allclose(_line(left, "gd η = 0.5")[1], [1.0, 2.0, 3.5])
    np.testing.assert_allclose(_line(left, "gd η = 0.25")[1], [1.0, 4.0, 7.5])
    np.testing.assert_allclose(_line(right, "gd η = 0.25")[1], [1.0, 0.8, 0.6])
    levels = sorted(float(ln.get_ydata()[0]) for ln in left.get_lines()
                    if ln.get_linestyle() == "--" and len(ln.get_xdata()) == 2)
    assert levels == [4.0, 8.0]  # 2/0.5 and 2/0.25, once each
    assert right.get_yscale() == "log"
    # at a rate of its own, the mini-batch run's 2/η is drawn too
    kept.clear()
    eos.plot_edge_of_stability(runs, "unused.png", title="t", minibatch={**minibatch, "lr": 0.2,
                                                                         "two_over_lr": 10.0})
    left = kept["fig"].axes[0]
    levels = sorted(float(ln.get_ydata()[0]) for ln in left.get_lines()
                    if ln.get_linestyle() == "--" and len(ln.get_xdata()) == 2)
    assert levels == [4.0, 8.0, 10.0]


def test_sweep_figure_axes_lines_and_where_diverged_rates_are_drawn(monkeypatch):
    """Left: log-log, J₀ as a horizontal line, the stability bound as a vertical line at
    its learning rate, diverged rates at three times the largest finite loss; right: the
    picked runs' curves."""
    from gdlab.plots import sweep

    kept = _kept_figure(monkeypatch, sweep)
    curves = np.array([[2.0, 1.5, 1.2], [2.0, 0.5, 0.1], [2.0, 40.0, np.nan]])
    sweep.plot_lr_sweep([0.01, 0.1, 5.0], [1.2, 0.1, np.nan],
                        ["too slow", "converged", "diverged"], curves,
                        {"too small": 0, "good": 1, "too large": 2}, "unused.png",
                        title="t", initial_loss=2.0, theoretical_max_lr=0.7)
    left, right = kept["fig"].axes
    assert left.get_xscale() == "log" and left.get_yscale() == "log"
    assert right.get_yscale() == "log"
    np.testing.assert_allclose(_line(left, "initial loss J₀ = 2")[1], [2.0, 2.0])
    np.testing.assert_allclose(_line(left, "2/λmax = 0.7")[0], [0.7, 0.7])
    (trend,) = [ln for ln in left.get_lines() if ln.get_color() == "0.6"]  # the rates that ran
    np.testing.assert_allclose(np.column_stack(trend.get_data()), [[0.01, 1.2], [0.1, 0.1]])
    (diverged,) = [c for c in left.collections if c.get_label() == "diverged (drawn at top)"]
    offsets = diverged.get_offsets()
    assert not np.ma.is_masked(offsets)
    np.testing.assert_allclose(np.ma.getdata(offsets), [[5.0, 3.0 * 2.0]])
    np.testing.assert_allclose(_line(right, "too small: α = 0.01 (too slow)")[1], curves[0])
    np.testing.assert_allclose(_line(right, "good: α = 0.1 (converged)")[1], curves[1])


def test_cost_figure_fitted_lines_and_ratio_panel():
    """Each fitted power law t = e^c·P^k is drawn through its own values; the ratio panel
    shows finite differences / backprop, in seconds and in operations, beside 2P/3."""
    from gdlab.plots import cost

    p = [100, 1000, 10000]
    seconds = {"finite_differences": [2e-3, 2e-1, 20.0], "backprop": [1e-3, 1e-2, 1e-1]}
    flops = {"finite_differences": [6e4, 6e6, 6e8], "backprop": [3e2, 3e3, 3e4]}
    fits = {"finite_differences": (2.0, math.log(2e-7)), "backprop": (1.0, math.log(1e-5))}
    flop_fits = {"finite_differences": (2.0, math.log(6.0)), "backprop": (1.0, math.log(3.0))}
    fig = cost.cost_figure(p, seconds, fits, title="t", flops=flops, flop_fits=flop_fits)
    time_ax, flop_ax, ratio_ax = fig.axes
    for ax, values in ((time_ax, seconds), (flop_ax, flops)):
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(dashed) == 2
        for line, method in zip(dashed, ("finite_differences", "backprop")):
            xs, ys = (np.asarray(v, np.float64) for v in line.get_data())
            np.testing.assert_allclose(np.interp(p, xs, ys), values[method], rtol=1e-2)
            np.testing.assert_allclose([xs[0], xs[-1]], [100, 10000])
    np.testing.assert_allclose(_line(ratio_ax, "measured seconds: finite differences / backprop")[1],
                               [2.0, 20.0, 200.0])
    np.testing.assert_allclose(_line(ratio_ax, "operations: finite differences / backprop")[1],
                               [200.0, 2000.0, 20000.0])
    xs, ys = _line(ratio_ax, "estimate 2P/3 (2P forward passes vs about 3)")
    np.testing.assert_allclose(ys, 2 * xs / 3)
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in fig.axes)


def test_modes_figure_loss_axes_are_logarithmic_and_the_wall_panel_plots_each_loss():
    from gdlab.plots import modes

    history = [{"epoch": e, "step": 5 * e, "examples": 50 * e, "wall_seconds": 0.5 * e,
                "train_loss": 1.0 / (1 + e), "test_loss": 2.0 / (1 + e)} for e in range(3)]
    curve = modes.binned_curve([1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1],
                               steps_per_epoch=5, batch_size=10, num_examples=50)
    fig = modes.modes_figure({"sgd": {"label": "sgd", "history": history, "curve": curve}},
                             title="t")
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log", "log"]
    wall = fig.axes[2]
    np.testing.assert_allclose(_line(wall, "sgd: train")[1], [1.0, 0.5, 1.0 / 3])
    np.testing.assert_allclose(_line(wall, "sgd: test")[1], [2.0, 1.0, 2.0 / 3])
    np.testing.assert_allclose(_line(wall, "sgd: train")[0], [0.0, 0.5, 1.0])


def test_landscape_figure_marks_a_diverged_path_where_it_leaves_and_its_last_loss():
    """A path that leaves the view at update 2 is marked ✕ on the box's edge where it
    crosses it, and its loss curve ends at that update, marked there."""
    from gdlab import landscapes
    from gdlab.plots import landscape

    bowl = landscapes.bowl()  # box x in [-5, 5], y in [-3, 3]
    run = landscape.Run(points=np.array([[0.0, 1.0], [2.0, 1.0], [20.0, 1.0], [40.0, 1.0]]),
                        losses=np.array([1.0, 2.0, 50.0, 900.0]), label="lr 1", color=0,
                        diverged_at=2)
    fig = landscape.landscape_figure([landscape.Row(landscape=bowl, optimizers=[("gd", [run])])],
                                     title="t", grid=20)
    contour_ax, loss_ax = [ax for ax in fig.axes if ax.get_visible()]
    (mark,) = [ln for ln in contour_ax.get_lines() if ln.get_marker() == "X"]
    np.testing.assert_allclose(np.column_stack(mark.get_data()), [[5.0, 1.0]])
    xs, ys = _line(loss_ax, "lr 1")
    np.testing.assert_array_equal(xs, [0, 1, 2])
    np.testing.assert_allclose(ys, [1.0, 2.0, 50.0])  # f − f*, with f* = 0 for the bowl
    (end,) = [ln for ln in loss_ax.get_lines() if ln.get_marker() == "X"]
    np.testing.assert_allclose(np.column_stack(end.get_data()), [[2.0, 50.0]])


def _points_under_a_legend(fig) -> list[str]:
    """The labels of the lines that have a drawn point under one of ``fig``'s legends."""
    fig.draw_without_rendering()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    boxes = [legend.get_window_extent() for legend in legends]
    covered = []
    for ax in fig.axes:
        for line in ax.get_lines():
            xy = np.column_stack([np.asarray(v, np.float64) for v in line.get_data()])
            xy = line.get_transform().transform(xy[np.isfinite(xy).all(axis=1)])
            shown = [p for p in xy if ax.bbox.contains(*p)]
            if any(box.contains(*p) for box in boxes for p in shown):
                covered.append(line.get_label())
    return covered


def _modes_runs(losses_at: dict, epochs: int = 20, n: int = 1000) -> dict:
    """Runs shaped like descent_modes' on ``n`` examples: per mode (batch size, loss of
    the weights after u updates as a function of u), its rows and binned curve."""
    from gdlab.plots import modes

    runs = {}
    for mode, (b, loss) in losses_at.items():
        steps = -(-n // b)
        history = [{"epoch": e, "step": e * steps, "examples": e * n, "wall_seconds": 0.01 * e,
                    "train_loss": loss(e * steps), "test_loss": 1.2 * loss(e * steps)}
                   for e in range(epochs + 1)]
        curve = modes.binned_curve([loss(u) for u in range(epochs * steps)],
                                   steps_per_epoch=steps, batch_size=b, num_examples=n)
        runs[mode] = {"label": f"{mode} (B={b})", "history": history, "curve": curve}
    return runs


def test_the_modes_legend_covers_no_loss_the_figure_draws():
    """descent_modes' defaults end with a mini-batch run near 1e-2 after a few hundred
    updates: the lower-left corner of the update panel, where its legend sat."""
    from gdlab.plots import modes

    runs = _modes_runs({"batch": (1000, lambda u: 3.0 / (1 + u) ** 0.9),
                        "minibatch": (32, lambda u: 3.0 / (1 + u) ** 0.9),
                        "sgd": (1, lambda u: 3.0 / (1 + u / 30) ** 0.9)})
    assert _points_under_a_legend(modes.modes_figure(runs, title="t")) == []


def test_a_batch_loss_of_exactly_zero_stays_on_the_modes_log_axes():
    """A diverging sgd run's saturated softmax gives one example a loss of exactly 0.0
    in float32: drawn at a floor, marked, not as a plunge off the axis."""
    from gdlab.plots import modes

    runs = _modes_runs({"sgd": (1, lambda u: [3.0, 0.0, 3e5, 7e4][u] if u < 4 else 1e7)},
                       epochs=1, n=4)
    fig = modes.modes_figure(runs, title="t")
    for ax in fig.axes[:2]:
        (floor,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("exactly 0")]
        ys = np.concatenate([np.asarray(ln.get_ydata(), np.float64) for ln in ax.get_lines()])
        assert ys[np.isfinite(ys)].min() > 0
        ys = _line(ax, "sgd (B=1): batch loss of its updates")[1]
        assert ys[1] == floor.get_ydata()[0] < 3.0
def test_landscape_legends_sit_below_the_x_labels_and_the_exit_mark_is_whole():
    """The default figure's diverged path leaves through the bottom edge: its ✕ there is
    drawn whole, not cut in half by the panel; each legend stays clear of its x label."""
    from gdlab import landscapes
    from gdlab.plots import landscape

    bowl = landscapes.bowl()  # box x in [-5, 5], y in [-3, 3]
    run = landscape.Run(points=np.array([[-4.5, 2.0], [-4.0, -2.2], [-3.5, 2.4], [-3.0, -3.5]]),
                        losses=np.array([30.0, 40.0, 50.0, 900.0]), label="too large",
                        color=0, diverged_at=3)
    fig = landscape.landscape_figure([landscape.Row(landscape=bowl, optimizers=[("gd", [run])])],
                                     title="t", grid=20)
    fig.draw_without_rendering()
    contour_ax, loss_ax = [ax for ax in fig.axes if ax.get_visible()]
    for ax in (contour_ax, loss_ax):
        label = ax.xaxis.label.get_window_extent()
        assert not label.overlaps(ax.get_legend().get_window_extent()), ax.xaxis.label.get_text()
    (mark,) = [ln for ln in contour_ax.get_lines() if ln.get_marker() == "X"]
    assert mark.get_data()[1][0] == pytest.approx(-3.0)  # on the bottom edge
    assert not mark.get_clip_on()


def test_a_short_sweeps_curves_are_drawn_against_whole_epochs(monkeypatch):
    """Three epochs, the last one's loss gone: the epoch axis ticks whole epochs only."""
    from gdlab.plots import sweep

    kept = _kept_figure(monkeypatch, sweep)
    curves = np.array([[2.0, 1.0, 0.5, 0.2], [2.0, 40.0, 900.0, np.nan]])
    sweep.plot_lr_sweep([0.1, 5.0], [0.2, np.nan], ["converged", "diverged"], curves,
                        {"good": 0, "too large": 1}, "unused.png", title="t", initial_loss=2.0)
    right = kept["fig"].axes[1]
    kept["fig"].draw_without_rendering()
    lo, hi = right.get_xlim()
    ticks = [t for t in right.get_xticks() if lo <= t <= hi]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
