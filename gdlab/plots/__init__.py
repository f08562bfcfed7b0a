"""Matplotlib figures, one module per experiment family.

Each ``plot_*`` function writes a PNG and returns nothing; where a figure's data
deserves a test, a ``*_figure`` function beside it builds the same figure and
returns it open (``matplotlib.figure.Figure``), so tests can read what each
line plots. Every figure has a title, labelled axes, and a legend where it
draws several lines. Figures are made without pyplot (``common.figure``): no display
is needed, and the caller's matplotlib backend is left as it is.
"""

from gdlab.plots.common import save
from gdlab.plots.eos import plot_edge_of_stability
from gdlab.plots.training import plot_history

__all__ = ["plot_edge_of_stability", "plot_history", "save"]
