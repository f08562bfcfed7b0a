"""gdlab/plots/training.py on synthetic histories: which panels, and the data they plot."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
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
    figs = []

    def make(*args, **kwargs):
        figs.append(training.history_figure(*args, **kwargs))
        return figs[-1]

    yield make
    for fig in figs:
        plt.close(fig)


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


def test_sharpness_panel_with_the_two_over_lr_line(figure):
    rows = _history(4)
    for row in rows[::2]:
        row.update(sharpness=5.0 * (1 + row["epoch"]), two_over_lr=40.0)
    axes = _axes(figure(rows, title="eos"))
    assert "sharpness" in axes and len(axes) == 4
    xs, ys = _line(axes["sharpness"], "sharpness λmax")
    np.testing.assert_array_equal(xs, [0, 2, 4])
    np.testing.assert_allclose(ys, [5.0, 15.0, 25.0])
    np.testing.assert_allclose(_line(axes["sharpness"], "2/α (stability bound of GD)")[1], 40.0)


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
