"""Matplotlib figures, one module per experiment family; each returns nothing and writes a PNG.

Every figure has a title, labelled axes, and a legend where it draws several lines.
The Agg backend is forced: no display is needed.
"""

import matplotlib

matplotlib.use("Agg")

from gdlab.plots.common import save
from gdlab.plots.training import plot_history

__all__ = ["plot_history", "save"]
