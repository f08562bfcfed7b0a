"""The training curves of one run."""

from __future__ import annotations

import matplotlib.pyplot as plt

from gdlab.plots.common import decorate, save


def plot_history(history: list[dict], path, *, title: str) -> None:
    """Train/test loss against epoch, and accuracy beside it when there is one."""
    epochs = [row["epoch"] for row in history]
    has_acc = any("train_accuracy" in row for row in history)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(epochs, [row["train_loss"] for row in history], marker=".", label="train loss")
    if any("test_loss" in row for row in history):
        ax.plot(epochs, [row.get("test_loss") for row in history], marker=".", label="test loss")
    decorate(ax, xlabel="epoch", ylabel="loss J(θ)", title="loss", ylog=True)
    if has_acc:
        ax = axes[0, 1]
        ax.plot(epochs, [row["train_accuracy"] for row in history], marker=".", label="train accuracy")
        if any("test_accuracy" in row for row in history):
            ax.plot(epochs, [row.get("test_accuracy") for row in history], marker=".",
                    label="test accuracy")
        decorate(ax, xlabel="epoch", ylabel="accuracy", title="accuracy")
    fig.suptitle(title)
    save(fig, path)
