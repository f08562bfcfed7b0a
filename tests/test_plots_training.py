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
