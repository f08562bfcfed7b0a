r"""Why backpropagation: the naive gradient costs P² where backprop costs P.

    python -m experiments.backprop_cost --workdir=runs/backprop_cost
    python -m experiments.backprop_cost --widths=8,16,32,64 --batch_size=64 --repeats=5

For tanh MLPs of growing width (two hidden layers, one output, mean squared
error, float64) it times one full gradient three ways: central finite
differences (2P sequential forward passes), manual backprop (one forward, one
backward) and jax.grad; fits the log-log slope of time against P (finite
differences ≈ 2, backprop ≈ 1 once compute outweighs per-call overhead) and
checks that the finite-difference gradient equals backprop's.

Writes to --workdir: config.json (every flag), cost.json (per size: P, seconds
per method, ratio, the FD check; slopes over all sizes and over the larger half;
device and versions) and cost.png. Timings: warm-up and compile off the clock,
block_until_ready, median of --repeats runs.
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from experiments import _cli

DEPTH = 2          # hidden layers
OUTPUTS = 1        # regression outputs
MAX_PARAMS = 100_000
"""The largest model allowed: finite differences there take 2·10⁵ forward passes per gradient."""

_cli.define_int_list("widths", "4,8,16,32,64,128",
                     "Hidden widths of the MLPs to time, comma-separated (P ≈ width² + "
                     "(input_dim + 3)·width); the defaults give P from 93 to 18,817.")
flags.DEFINE_integer("batch_size", 32, "Examples in the batch each gradient is taken on.",
                     lower_bound=1)
flags.DEFINE_integer("input_dim", 16, "Features per example.", lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Timed runs per method and size; the median is reported.",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed for the weights and the random batch (size i uses seed + i).")
flags.DEFINE_string("workdir", "runs/backprop_cost", "Folder for config.json, cost.json, cost.png.")
flags.adopt_module_key_flags(_cli)  # --widths is defined there: list it in --help

FLAGS = flags.FLAGS


def _widths() -> list[int]:
    from gdlab import cost

    widths = sorted(set(_cli.int_list(FLAGS.widths)))
    if len(widths) < 2:
        raise _cli.UsageError("--widths needs at least two different widths to fit a slope, "
                              "e.g. --widths=4,8,16")
    too_big = [w for w in widths if cost.param_count(
        w, depth=DEPTH, input_dim=FLAGS.input_dim, outputs=OUTPUTS) > MAX_PARAMS]
    if too_big:
        p = cost.param_count(too_big[0], depth=DEPTH, input_dim=FLAGS.input_dim, outputs=OUTPUTS)
        raise _cli.UsageError(
            f"--widths: width {too_big[0]} gives P={p:,} parameters, over the {MAX_PARAMS:,} allowed: "
            f"finite differences need 2P forward passes per gradient, so their time grows as P²")
    return widths


def main(argv):
    del argv
    widths = _widths()
    _cli.check_seed(FLAGS.seed + len(widths) - 1, "seed")  # size i uses seed + i
    workdir, _lock = _cli.prepare_workdir(FLAGS.workdir)  # held until the process ends

    import jax

    from gdlab import cost
    from gdlab.logging import environment, write_json_atomic
    from gdlab.plots import cost as cost_plots

    started = time.perf_counter()
    print(f"tanh MLP, {DEPTH} hidden layers, input {FLAGS.input_dim}, {OUTPUTS} output, "
          f"batch {FLAGS.batch_size}, float64, on {jax.default_backend()}; median of "
          f"{FLAGS.repeats} runs")
    print(f"{'width':>6} {'P':>8} {'FD s':>10} {'backprop s':>11} {'jax.grad s':>11} "
          f"{'FD/backprop':>12}  FD == backprop")
    results = []
    for i, width in enumerate(widths):
        r = cost.measure_size(width, depth=DEPTH, input_dim=FLAGS.input_dim, outputs=OUTPUTS,
                              batch_size=FLAGS.batch_size, repeats=FLAGS.repeats,
                              seed=FLAGS.seed + i)
        results.append(r)
        s = r.seconds
        print(f"{width:>6} {r.params:>8,} {s['finite_differences']:>10.3g} {s['backprop']:>11.3g} "
              f"{s['autodiff']:>11.3g} {r.fd_over_backprop:>12,.0f}  "
              f"{'yes' if r.fd_matches_backprop else 'NO'} (rel err {r.fd_max_rel_err:.1e})",
              flush=True)

    fits = {m: cost.fit_slope([r.params for r in results], [r.seconds[m] for r in results])
            for m in cost.METHODS}
    larger = results[len(results) // 2:]
    slopes_larger = cost.slopes(larger) if len(larger) >= 2 else None
    summary = {
        "model": {"activation": "tanh", "depth": DEPTH, "input_dim": FLAGS.input_dim,
                  "outputs": OUTPUTS, "batch_size": FLAGS.batch_size, "loss": "mse",
                  "dtype": "float64"},
        "sizes": [
            {"width": r.width, "params": r.params, "forward_passes_fd": r.forward_passes_fd,
             "seconds": r.seconds, "fd_over_backprop": r.fd_over_backprop,
             "fd_max_rel_err": r.fd_max_rel_err, "fd_matches_backprop": r.fd_matches_backprop}
            for r in results
        ],
        "params": [r.params for r in results],
        "slopes": {m: fit[0] for m, fit in fits.items()},
        "slopes_larger_half": slopes_larger,
        "larger_half_params": [r.params for r in larger],
        "timing": {"repeats": FLAGS.repeats, "statistic": "median",
                   "warm_up": "one untimed call compiles first", "block_until_ready": True},
        "wall_seconds": time.perf_counter() - started,
        **environment(),
    }
    write_json_atomic(os.path.join(workdir, "cost.json"), summary)
    cost_plots.plot_cost(
        [r.params for r in results],
        {m: [r.seconds[m] for r in results] for m in cost.METHODS}, fits,
        os.path.join(workdir, "cost.png"), larger_slopes=slopes_larger,
        title=f"Gradient cost against parameter count: tanh MLP, depth {DEPTH}, "
              f"batch {FLAGS.batch_size}, {summary['device']}")
    slope = summary["slopes"]
    print(f"log-log slopes over all sizes: finite differences {slope['finite_differences']:.2f}, "
          f"backprop {slope['backprop']:.2f}, jax.grad {slope['autodiff']:.2f}")
    if slopes_larger:
        print(f"over the larger half (P ≥ {larger[0].params:,}): finite differences "
              f"{slopes_larger['finite_differences']:.2f}, backprop {slopes_larger['backprop']:.2f}, "
              f"jax.grad {slopes_larger['autodiff']:.2f}")
    print(f"at P={results[-1].params:,} finite differences take {results[-1].fd_over_backprop:,.0f}× "
          f"as long as backprop")
    print(f"outputs in {os.path.abspath(workdir)}")
    return 0


def cli() -> None:
    """The ``gdlab-backprop-cost`` console command (same as ``python -m experiments.backprop_cost``)."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
