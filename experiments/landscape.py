r"""Descending a hill in the fog: gradient-descent paths on 2-D landscapes.

    python -m experiments.landscape --workdir=runs/landscape
    python -m experiments.landscape --functions=bowl --lrs=0.05,0.19,0.21 --momentum=0

Gradient descent only feels the slope under its feet. For each function (a
quadratic bowl with unequal curvatures, Rosenbrock's valley, Himmelblau's four
minima) it runs plain GD, and momentum, from the function's start point at
several learning rates (by default each function's own: too small, good, too
large), with the hand-written gradient.

Writes to --workdir: config.json (every flag), landscape.json (per path: final
point and loss, nearest minimum, whether and when it diverged) and
landscape.png (one panel per function: contours, minima, the paths).
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from experiments import _cli
from gdlab import landscapes

flags.DEFINE_list("functions", list(landscapes.LANDSCAPES),
                  f"Landscapes to descend, comma-separated, from: {', '.join(landscapes.LANDSCAPES)}.")
flags.DEFINE_list("lrs", [], "Learning rates α (> 0) used on every function, comma-separated; "
                  "empty: each function's own three (too small, good, too large).")
flags.DEFINE_float("momentum", 0.9, "β of the momentum runs, in [0, 1); 0 runs plain GD only.")
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

    from gdlab import optim
    from gdlab.logging import environment, write_json_atomic
    from gdlab.plots import landscape as landscape_plots

    optimizers = [("gd", None, optim.gd)]
    if beta > 0:
        optimizers.append(("momentum", beta, lambda lr: optim.momentum(lr, beta=beta)))

    started = time.perf_counter()
    panels, summary = [], []
    for name in names:
        fn = landscapes.get(name)
        lrs = lrs_flag or list(fn.lrs)
        steps = FLAGS.steps or fn.steps
        runs, rows = [], []
        for style, (opt_name, opt_beta, make) in enumerate(optimizers):
            paths = landscapes.sweep(fn, fn.start, make, lrs, steps, dtype=jnp.float32)
            for i, lr in enumerate(lrs):
                points = np.asarray(paths.points[i], np.float64)
                diverged = bool(paths.diverged[i])
                minimum, dist = landscapes.nearest_minimum(fn, points[-1])
                label = f"GD α={lr:g}" if opt_beta is None else f"momentum β={opt_beta:g}, α={lr:g}"
                runs.append({"points": points, "color": i, "style": style,
                             "label": label + (" (diverged)" if diverged else "")})
                rows.append({
                    "optimizer": opt_name,
                    "beta": opt_beta,
                    "lr": lr,
                    "steps": steps,
                    "final_point": points[-1].tolist(),
                    "final_loss": float(paths.losses[i, -1]),
                    "nearest_minimum": list(minimum),
                    "distance_to_minimum": dist,
                    "diverged": diverged,
                    "diverged_at_step": int(paths.diverged_at[i]) if diverged else None,
                })
                print(f"{name:>10}  {label:<28} final ({points[-1, 0]:+.4f}, {points[-1, 1]:+.4f})"
                      f"  f={rows[-1]['final_loss']:.3g}"
                      + (f"  diverged at step {rows[-1]['diverged_at_step']}" if diverged else ""))
        panels.append((fn, runs))
        summary.append({"name": name, "formula": fn.formula, "minima": [list(m) for m in fn.minima],
                        "minimum_value": fn.minimum_value, "box": list(fn.box),
                        "start": list(fn.start), "runs": rows})

    result = {
        "functions": summary,
        "escape_factor": landscapes.ESCAPE,
        "divergence": "a path stops at the first update that leaves its plotting box scaled by "
                      "escape_factor about its centre (that point kept) or goes non-finite "
                      "(that point dropped)",
        "wall_seconds": time.perf_counter() - started,
        **environment(),
    }
    write_json_atomic(os.path.join(workdir, "landscape.json"), result)
    momentum_note = f" and momentum β={beta:g} (dashed)" if beta > 0 else ""
    landscape_plots.plot_landscapes(
        panels, os.path.join(workdir, "landscape.png"),
        title=f"Descending in the fog: gradient descent (solid){momentum_note}; "
              f"colour = learning rate α")
    print(f"outputs in {os.path.abspath(workdir)}")
    return 0


def cli() -> None:
    """The ``gdlab-landscape`` console command (same as ``python -m experiments.landscape``)."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
