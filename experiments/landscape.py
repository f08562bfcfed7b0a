r"""Descending a hill in the fog: gradient-descent paths on 2-D landscapes.

    python -m experiments.landscape --workdir=runs/landscape
    python -m experiments.landscape --functions=bowl,rosenbrock,himmelblau --momentum=0.9
    python -m experiments.landscape --functions=bowl --lrs=0.05,0.19,0.21 --steps=40

Gradient descent only feels the slope under its feet. By default it runs plain
GD on a quadratic bowl with unequal curvatures, f = ½(x² + 10y²), from the
same start at three learning rates: too small, good and too large, each given
as a multiple of 2/λmax (λmax the largest curvature, 10: GD converges iff
α < 2/λmax = 0.2). --functions adds Rosenbrock's valley and Himmelblau's four
minima (a row each, their λmax taken at their minimum), --momentum > 0 adds a
panel of momentum runs beside each GD panel; the gradients are hand-written.

Writes to --workdir: config.json (every flag), landscape.json (per function:
λmax and 2/λmax; per path: the learning rate and its ratio to 2/λmax, final
point and loss, nearest minimum, whether and when it diverged) and
landscape.png (per function: contours, minima and paths for each optimizer,
and the loss along every path against the step).
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from experiments import _cli
from gdlab import landscapes

ROLES = ("too small", "good", "too large")
"""What each function's own three learning rates show (``Landscape.lrs``)."""

flags.DEFINE_list("functions", ["bowl"],
                  f"Landscapes to descend, comma-separated, one row of panels each, from: "
                  f"{', '.join(landscapes.LANDSCAPES)}.")
flags.DEFINE_list("lrs", [], "Learning rates α (> 0) used on every function, comma-separated; "
                  "empty: each function's own three (too small, good, too large).")
flags.DEFINE_float("momentum", 0.0, "β of momentum runs drawn in a panel of their own beside "
                   "plain GD, in [0, 1); 0: plain GD only.")
flags.DEFINE_integer("steps", None, "Updates per path, 1 to 100000; unset: each function's own "
                     "(bowl 60, rosenbrock 2000, himmelblau 100).", lower_bound=1,
                     upper_bound=100_000)
flags.DEFINE_string("workdir", "runs/landscape", "Folder for config.json, landscape.json, "
                    "landscape.png.")

FLAGS = flags.FLAGS


def _functions() -> list[str]:
    names = [n.strip() for n in FLAGS.functions if n.strip()]
    unknown = [n for n in names if n not in landscapes.LANDSCAPES]
    if not names:
        raise _cli.UsageError(f"--functions must name at least one of: "
                              f"{', '.join(landscapes.LANDSCAPES)}")
    if unknown:
        raise _cli.UsageError(f"--functions: unknown function {unknown[0]!r}; choose from: "
                              f"{', '.join(landscapes.LANDSCAPES)}")
    return list(dict.fromkeys(names))


def _lrs() -> list[float] | None:
    if not FLAGS.lrs:
        return None
    return _cli.positive_float_list("lrs", FLAGS.lrs)


def _point(p) -> str:
    return f"({p[0]:.3g}, {p[1]:.3g})"


def main(argv):
    del argv
    names = _functions()
    lrs_flag = _lrs()
    beta = FLAGS.momentum
    if not (0.0 <= beta < 1.0):
        raise _cli.UsageError(f"--momentum must lie in [0, 1) (0: plain GD only), got {beta}")
    workdir, _lock = _cli.prepare_workdir(FLAGS.workdir)  # held until the process ends

    import jax.numpy as jnp
    import numpy as np

    from gdlab import optim, theory
    from gdlab.records import environment, write_json_atomic
    from gdlab.plots import landscape as landscape_plots

    optimizers = [("gd", None, "plain GD", optim.gd)]
    if beta > 0:
        optimizers.append(("momentum", beta, f"momentum β={beta:g}",
                           lambda lr: optim.momentum(lr, beta=beta)))

    started = time.perf_counter()
    figure_rows, summary = [], []
    for name in names:
        fn = landscapes.get(name)
        lrs = lrs_flag or list(fn.lrs)
        roles = ROLES if lrs_flag is None else (None,) * len(lrs)
        steps = FLAGS.steps or fn.steps
        lam = landscapes.lambda_max(fn, fn.minima[0])
        bound = 2.0 / lam
        panels, rows = [], []
        for opt_name, opt_beta, title, make in optimizers:
            paths = landscapes.sweep(fn, fn.start, make, lrs, steps, dtype=jnp.float32)
            # heavy ball on a quadratic is stable up to 2(1+β)/λmax, plain GD up to 2/λmax;
            # the roles (too small, good, too large) are plain GD's
            kind = "gd" if opt_beta is None else "momentum"
            own_bound = bound * theory.stable_lr_factor(kind, opt_beta or 0.0)
            bound_name = theory.BOUND_NAMES[kind]
            runs = []
            for i, (lr, role) in enumerate(zip(lrs, roles)):
                role = role if opt_beta is None else None
                points = np.asarray(paths.points[i], np.float64)
                diverged = bool(paths.diverged[i])
                at = int(paths.diverged_at[i]) if diverged else None
                minimum, dist = landscapes.nearest_minimum(fn, points[-1])
                label = (f"{role}: " if role else "") + (
                    f"α = {lr:g} = {lr / own_bound:.3g}·{bound_name}")
                label += f", diverged at step {at}" if diverged else ""
                runs.append(landscape_plots.Run(points=points, losses=np.asarray(paths.losses[i]),
                                                label=label, color=i, diverged_at=at))
                rows.append({
                    "optimizer": opt_name,
                    "beta": opt_beta,
                    "lr": lr,
                    "bound": own_bound,
                    "lr_over_bound": lr / own_bound,
                    "role": role,
                    "steps": steps,
                    "final_point": points[-1].tolist(),
                    "final_loss": float(paths.losses[i, -1]),
                    "nearest_minimum": list(minimum),
                    "distance_to_minimum": dist,
                    "diverged": diverged,
                    "diverged_at_step": at,
                })
                print(f"{name:>10}  {title:<16} {label:<50} final ({points[-1, 0]:+.4f}, "
                      f"{points[-1, 1]:+.4f})  f={rows[-1]['final_loss']:.3g}")
            panels.append((title, runs))
        figure_rows.append(landscape_plots.Row(
            landscape=fn, optimizers=panels,
            note=f"2/λmax = {bound:.3g} (λmax = {lam:.4g} at the minimum {_point(fn.minima[0])})"
                 + (f"; momentum's 2(1+β)/λmax = {bound * (1 + beta):.3g}" if beta > 0 else "")))
        summary.append({"name": name, "formula": fn.formula, "minima": [list(m) for m in fn.minima],
                        "minimum_value": fn.minimum_value, "box": list(fn.box),
                        "start": list(fn.start), "lambda_max": lam,
                        "lambda_max_at": list(fn.minima[0]), "stability_bound": bound,
                        "runs": rows})

    result = {
        "functions": summary,
        "escape_factor": landscapes.ESCAPE,
        "divergence": "a path stops at the first update that leaves its plotting box scaled by "
                      "escape_factor about its centre (that point kept) or goes non-finite "
                      "(that point dropped)",
        "stability_bound": "2/lambda_max, lambda_max the largest eigenvalue of f's Hessian at "
                           "lambda_max_at: plain GD on a quadratic converges iff lr < 2/lambda_max; "
                           "each run's bound is its optimizer's: 2(1+beta)/lambda_max for "
                           "momentum (heavy ball), and its role (too small, good, too large) is "
                           "given for plain GD only",
        "wall_seconds": time.perf_counter() - started,
        **environment(),
    }
    write_json_atomic(os.path.join(workdir, "landscape.json"), result)
    if len(names) == 1 and beta == 0:
        title = f"Gradient descent on the {names[0]}, f = {figure_rows[0].landscape.formula}"
    else:
        title = ("Descending in the fog: plain gradient descent"
                 + (f" and momentum β={beta:g}" if beta > 0 else "") + "; colour = learning rate α")
    landscape_plots.plot_landscapes(figure_rows, os.path.join(workdir, "landscape.png"),
                                    title=title)
    print(f"outputs in {os.path.abspath(workdir)}")
    return 0


def cli() -> None:
    """The ``gdlab-landscape`` console command (same as ``python -m experiments.landscape``)."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
