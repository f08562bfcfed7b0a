r"""Why backpropagation: the naive gradient costs P² where backprop costs P.

    python -m experiments.backprop_cost --workdir=runs/backprop_cost
    python -m experiments.backprop_cost --depths=1,2,4,8 --width=32 --batch_size=256 --repeats=5

For tanh MLPs of growing depth at a fixed width (one output, mean squared
error, float64) it times one full gradient three ways: central finite
differences (2P sequential forward passes), manual backprop (one forward, one
backward) and jax.grad; counts their operations as XLA compiles them; fits the
log-log slopes of seconds and of operations against P (finite differences 2,
backprop 1) and checks that the finite-difference gradient equals backprop's.

The sizes are chosen so compute dominates: every layer is the same
(--input_dim defaults to --width), so a forward pass costs ∝ depth ∝ P,
overheads included, and a batch of 256 makes the smallest backprop call
several times its fixed cost of dispatch. On small, shallow models the fixed
costs dominate and the slopes come out far below 2 and 1.

Writes to --workdir: config.json (every flag), cost.json (per size: P, seconds
and operations per method, ratio, the FD check; the fitted slopes and
intercepts; device and versions) and cost.png. Timings: warm-up and compile off
the clock, block_until_ready, the median of ≥ --repeats runs, sizes timed in
turn so a change of machine load hits them all, and on the CPU each call run
in the calling thread (no asynchronous dispatch, whose thread wake-ups a busy
machine bills mostly to the smallest calls).
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from experiments import _cli

OUTPUTS = 1        # regression outputs
RUN_SECONDS = 0.02
"""A timed run repeats a call until it lasts this long."""
METHOD_SECONDS_PER_REPEAT = 0.6
"""A fast method is timed in more rounds until its runs add up to this × --repeats seconds."""
REFERENCE_SLOPES = {"finite_differences": 2, "backprop": 1, "autodiff": 1}
"""What the theory says: 2P forward passes of cost ∝ P, against a forward and a backward pass."""

_cli.define_int_list("depths", "1,2,3,4,6,8",
                     "Hidden layers of the MLPs to time, comma-separated, one MLP each (P ≈ "
                     "depth·(width + 1)·width); the defaults give P from 1,089 to 8,481.")
flags.DEFINE_integer("width", 32, "Units in every hidden layer.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Examples in the batch each gradient is taken on.",
                     lower_bound=1)
flags.DEFINE_integer("input_dim", None, "Features per example; unset: --width, so the first "
                     "layer costs what every other does.", lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Timed runs (at least) per method and size; the median is "
                     "reported.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed for the weights and the random batch (size i uses seed + i).")
flags.DEFINE_string("workdir", "runs/backprop_cost", "Folder for config.json, cost.json, cost.png.")
flags.adopt_module_key_flags(_cli)  # --depths is defined there: list it in --help

FLAGS = flags.FLAGS


def _depths(width: int, input_dim: int) -> list[int]:
    from gdlab import cost

    depths = sorted(set(_cli.int_list(FLAGS.depths)))
    if len(depths) < 2:
        raise _cli.UsageError("--depths needs at least two different depths to fit a slope, "
                              "e.g. --depths=1,2,4")
    from gdlab.gradcheck import FD_MAX_PARAMS

    too_big = [d for d in depths if cost.param_count(
        width, depth=d, input_dim=input_dim, outputs=OUTPUTS) > FD_MAX_PARAMS]
    if too_big:
        p = cost.param_count(width, depth=too_big[0], input_dim=input_dim, outputs=OUTPUTS)
        raise _cli.UsageError(
            f"--depths: depth {too_big[0]} at --width={width} gives P={p:,} parameters, over the "
            f"{FD_MAX_PARAMS:,} allowed: finite differences need 2P forward passes per gradient, "
            f"so their time grows as P²")
    return depths


def _check_batch(width: int, depth: int, input_dim: int) -> None:
    """One sentence (exit 2) when the deepest MLP's batch would not fit in the device's
    memory: its inputs, and the forward values (each layer's pre- and post-activation) that
    a forward and a backward pass hold, float64, a few times over."""
    per_example = input_dim + 2 * (depth * width + OUTPUTS)
    _cli.check_half_memory(3 * 8 * FLAGS.batch_size * per_example,
                           f"--batch_size={FLAGS.batch_size:,}: the batch and its forward values "
                           f"take", "use a smaller --batch_size")


def main(argv):
    del argv
    width = FLAGS.width
    input_dim = FLAGS.input_dim or width
    depths = _depths(width, input_dim)
    _cli.check_seed(FLAGS.seed)
    if FLAGS.seed + len(depths) - 1 > _cli.SEED_MAX:  # size i uses seed + i
        raise _cli.UsageError(f"--seed must be at most {_cli.SEED_MAX - len(depths) + 1} for "
                              f"{len(depths)} depths (the i-th size uses seed + i), got "
                              f"{FLAGS.seed}")
    _check_batch(width, max(depths), input_dim)
    workdir, _lock = _cli.prepare_workdir(FLAGS.workdir)  # held until the process ends

    import jax

    # Each call runs in the calling thread, not handed to a dispatch thread: on a busy CPU
    # the wake-up of that thread would be billed to every call, most to the smallest.
    jax.config.update("jax_cpu_enable_async_dispatch", False)

    from gdlab import cost
    from gdlab.records import environment, write_json_atomic
    from gdlab.plots import cost as cost_plots

    started = time.perf_counter()
    print(f"tanh MLPs of width {width} and depth {', '.join(map(str, depths))}, input {input_dim}, "
          f"{OUTPUTS} output, batch {FLAGS.batch_size}, float64, on {jax.default_backend()}; "
          f"median of ≥ {FLAGS.repeats} runs", flush=True)
    results = cost.measure_sizes(
        [(width, d) for d in depths], input_dim=input_dim, outputs=OUTPUTS,
        batch_size=FLAGS.batch_size, repeats=FLAGS.repeats, seed=FLAGS.seed,
        min_seconds=RUN_SECONDS, min_method_seconds=METHOD_SECONDS_PER_REPEAT * FLAGS.repeats,
        progress=lambda line: print(f"  {line}", flush=True))
    print(f"{'depth':>6} {'P':>8} {'FD s':>10} {'backprop s':>11} {'jax.grad s':>11} "
          f"{'FD/backprop':>12} {'FD flops':>10} {'bp flops':>10}  FD == backprop")
    for r in results:
        s, f = r.seconds, r.flops
        print(f"{r.depth:>6} {r.params:>8,} {s['finite_differences']:>10.3g} {s['backprop']:>11.3g} "
              f"{s['autodiff']:>11.3g} {r.fd_over_backprop:>12,.0f} "
              f"{f['finite_differences']:>10.3g} {f['backprop']:>10.3g}  "
              f"{'yes' if r.fd_matches_backprop else 'NO'} (rel err {r.fd_max_rel_err:.1e})")

    fits = {measure: cost.fits(results, measure=measure) for measure in ("seconds", "flops")}
    summary = {
        "model": {"activation": "tanh", "width": width, "depths": depths, "input_dim": input_dim,
                  "outputs": OUTPUTS, "batch_size": FLAGS.batch_size, "loss": "mse",
                  "dtype": "float64", "grows": "depth"},
        "sizes": [
            {"width": r.width, "depth": r.depth, "params": r.params,
             "forward_passes_fd": r.forward_passes_fd, "seconds": r.seconds, "runs": r.runs,
             "flops": {m: _number(v) for m, v in r.flops.items()},
             "fd_over_backprop": r.fd_over_backprop, "fd_max_rel_err": r.fd_max_rel_err,
             "fd_matches_backprop": r.fd_matches_backprop}
            for r in results
        ],
        "params": [r.params for r in results],
        "slopes": {m: fit[0] for m, fit in fits["seconds"].items()},
        "flop_slopes": {m: None if fit is None else fit[0] for m, fit in fits["flops"].items()},
        "fits": {measure: {m: None if fit is None else {"slope": fit[0], "intercept": fit[1]}
                           for m, fit in by_method.items()}
                 for measure, by_method in fits.items()},
        "reference_slopes": REFERENCE_SLOPES,
        "fit": "least squares through (ln P, ln y) over every size; slopes: y = measured seconds "
               "per gradient; flop_slopes: y = operations per gradient as XLA counts them (finite "
               "differences: 2P × one forward pass)",
        "timing": {"repeats": FLAGS.repeats, "statistic": "median", "run_seconds": RUN_SECONDS,
                   "min_seconds_per_method": METHOD_SECONDS_PER_REPEAT * FLAGS.repeats,
                   "cpu_async_dispatch": False,
                   "warm_up": "one untimed call compiles first", "block_until_ready": True,
                   "order": "per method, the sizes in turn, round after round"},
        "wall_seconds": time.perf_counter() - started,
        **environment(),
    }
    write_json_atomic(os.path.join(workdir, "cost.json"), summary)
    cost_plots.plot_cost(
        [r.params for r in results],
        {m: [r.seconds[m] for r in results] for m in cost.METHODS}, fits["seconds"],
        os.path.join(workdir, "cost.png"),
        flops={m: [r.flops[m] for r in results] for m in cost.METHODS},
        flop_fits=fits["flops"], reference_slopes=REFERENCE_SLOPES,
        title=f"Gradient cost against parameter count: tanh MLPs of width {width}, depth "
              f"{depths[0]}–{depths[-1]}, batch {FLAGS.batch_size}, float64, "
              f"{summary['device']}")
    slope, flop = summary["slopes"], summary["flop_slopes"]
    print(f"log-log slopes of measured seconds: finite differences {slope['finite_differences']:.2f}, "
          f"backprop {slope['backprop']:.2f}, jax.grad {slope['autodiff']:.2f} (theory 2, 1, 1)")
    if all(v is not None for v in flop.values()):
        print(f"log-log slopes of XLA's operation counts: finite differences "
              f"{flop['finite_differences']:.2f}, backprop {flop['backprop']:.2f}, "
              f"jax.grad {flop['autodiff']:.2f}")
    print(f"at P={results[-1].params:,} finite differences take {results[-1].fd_over_backprop:,.0f}× "
          f"as long as backprop; {summary['wall_seconds']:.0f} s in all")
    print(f"outputs in {os.path.abspath(workdir)}")
    return 0


def _number(value: float) -> float | None:
    """JSON-safe: None for NaN (no operation count on this backend)."""
    return None if value != value else value


def cli() -> None:
    """The ``gdlab-backprop-cost`` console command (same as ``python -m experiments.backprop_cost``)."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
