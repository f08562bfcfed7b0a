r"""The edge of stability: full-batch gradient descent drives the sharpness up to 2/η.

    python -m experiments.edge_of_stability --workdir=runs/eos
    python -m experiments.edge_of_stability --lrs=0.4 --steps=1000 --minibatch_size=0

On a quadratic, gradient descent with step η is stable only while the top Hessian
eigenvalue λmax (the *sharpness*) stays below 2/η. On a neural network, full-batch
gradient descent first raises λmax (progressive sharpening) until it reaches 2/η,
and then, instead of diverging, keeps it hovering there while the loss keeps
falling, non-monotonically: the edge of stability (Cohen, Kaur, Li, Kolter &
Talwalkar 2021). Mini-batch SGD at the same η settles below 2/η.

Plain ``gd`` (no momentum) trains a tanh MLP with MSE on one-hot targets, on a
fixed subset of the digits, from the same initial weights (LeCun-normal with
variance scaled by --init_variance: a small init starts the sharpness well below
2/η) at each learning rate; every --sharpness_every steps it measures the loss
and λmax (Lanczos on Hessian-vector products through the hand-written backward,
warm-started from the last top eigenvector; ``gdlab.curvature``). gdlab's mse
averages over the 10 outputs as well as the examples, so its learning rates are
5 times those of the ½·Σ(p − t)² convention, and its sharpness 1/5 as large: 2/η
moves with them.

Writes to --workdir: config.json (every flag), eos.json (per run: lr,
sharpness_init, sharpness_last_third_median, two_over_lr, final_loss, steps and
the curves; the mini-batch run under "minibatch") and eos.png (sharpness against
step with a 2/η line per learning rate; loss against step).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

from absl import flags

from experiments import _builders, _cli

SCALINGS = ("global", "per_pixel")

flags.DEFINE_list("lrs", ["0.4", "0.45", "0.5", "0.55"], "Learning rates η of the full-batch "
                  "gd runs, comma-separated (each > 0).")
flags.DEFINE_integer("steps", 4000, "Gradient-descent updates per run.", lower_bound=1)
flags.DEFINE_integer("sharpness_every", 20, "Measure the loss and λmax every this many steps "
                     "(it must divide --steps).", lower_bound=1)
flags.DEFINE_integer("examples", 1000, "Training examples of digits used, a fixed subset "
                     "(the whole batch of every full-batch step).", lower_bound=2)
_cli.define_int_list("hidden", "200,200", "Hidden layer sizes of the tanh MLP, comma-separated.")
flags.DEFINE_float("init_variance", 0.5, "Initial weight variance as a multiple of LeCun's "
                   "1/fan_in (normal; biases 0). Smaller starts the sharpness lower.")
flags.DEFINE_enum("pixel_scaling", "per_pixel", list(SCALINGS), "Digits' pixels: per_pixel "
                  "(each standardised alone) or global (one mean and std).")
flags.DEFINE_integer("minibatch_size", 20, "Batch size of the mini-batch SGD comparison run "
                     "(random batches without replacement); 0: no comparison.", lower_bound=0)
flags.DEFINE_float("minibatch_lr", None, "Learning rate of the mini-batch run; unset: the "
                   "middle one of --lrs.")
flags.DEFINE_float("tol", 1e-3, "Each λmax estimate (Lanczos, warm-started) stops when the "
                   "top Ritz pair's residual ‖Hu − θu‖ is at most this fraction of θ.")
flags.DEFINE_integer("max_iters", 30, "Most Hessian-vector products per λmax estimate (the "
                     "Lanczos basis size).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed for the subset, the initial weights, the mini-batches and "
                     "the first direction of the λmax estimates.")
flags.DEFINE_string("workdir", "runs/edge_of_stability", "Folder for config.json, eos.json and "
                    "eos.png.")

flags.adopt_module_key_flags(_cli)  # --hidden and --overwrite in --help

FLAGS = flags.FLAGS

EDGE_BAND = (0.9, 1.2)
"""λmax at the edge of stability: within this band of 2/η (median over the last third)."""
BELOW = 0.5
"""Progressive sharpening starts from below: λmax at step 0 under this fraction of 2/η."""


@dataclasses.dataclass(frozen=True)
class Config:
    """One edge-of-stability experiment (the flags, checked)."""

    lrs: tuple[float, ...] = (0.4, 0.45, 0.5, 0.55)
    steps: int = 4000
    sharpness_every: int = 20
    examples: int = 1000
    hidden: tuple[int, ...] = (200, 200)
    init_variance: float = 0.5
    pixel_scaling: str = "per_pixel"
    minibatch_size: int = 20       # 0: no mini-batch comparison
    minibatch_lr: float | None = None  # None: the middle one of lrs
    tol: float = 1e-3
    max_iters: int = 30
    seed: int = 0


def config_from_flags() -> Config:
    """The flags as a ``Config``; one sentence (exit 2) for a bad value."""
    lrs = _cli.positive_float_list("lrs", FLAGS.lrs) if FLAGS.lrs else []
    if not lrs:
        raise _cli.UsageError("--lrs must list at least one learning rate, e.g. --lrs=0.4,0.5")
    if FLAGS.steps % FLAGS.sharpness_every:
        raise _cli.UsageError(f"--sharpness_every={FLAGS.sharpness_every} must divide "
                              f"--steps={FLAGS.steps}")
    _cli.positive_float("init_variance", FLAGS.init_variance)
    _cli.positive_float("tol", FLAGS.tol)
    if FLAGS.tol >= 1:
        raise _cli.UsageError(f"--tol must be below 1 (a fraction of λmax), got {FLAGS.tol:g}")
    _cli.check_steps(f"--steps={FLAGS.steps}", FLAGS.steps)
    if FLAGS.minibatch_lr is not None:
        _cli.positive_float("minibatch_lr", FLAGS.minibatch_lr)
        if FLAGS.minibatch_size == 0:
            raise _cli.UsageError("--minibatch_lr sets the mini-batch run's learning rate, but "
                                  "--minibatch_size=0 turns that run off: give one or the other")
    if FLAGS.minibatch_size > FLAGS.examples:
        raise _cli.UsageError(f"--minibatch_size must be at most --examples={FLAGS.examples}, "
                              f"got {FLAGS.minibatch_size}")
    return Config(lrs=tuple(sorted(set(lrs))), steps=FLAGS.steps,
                  sharpness_every=FLAGS.sharpness_every, examples=FLAGS.examples,
                  hidden=tuple(_cli.int_list(FLAGS.hidden)), init_variance=FLAGS.init_variance,
                  pixel_scaling=FLAGS.pixel_scaling, minibatch_size=FLAGS.minibatch_size,
                  minibatch_lr=FLAGS.minibatch_lr, tol=FLAGS.tol, max_iters=FLAGS.max_iters,
                  seed=_cli.check_seed(FLAGS.seed))


def _number(value) -> float | None:
    """A float for JSON: None for NaN and infinities, 6 significant digits."""
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


def summarize(lr: float, steps: int, every: int, path, seconds: float) -> dict:
    """One run's eos.json entry from its ``SharpnessPath``."""
    import numpy as np

    sharpness, loss = np.asarray(path.sharpness, np.float64), np.asarray(path.loss, np.float64)
    measured = np.arange(len(sharpness)) * every
    last_third = sharpness[measured >= 2 * steps / 3]
    median = float(np.median(last_third))
    two_over_lr = 2.0 / lr
    return {
        "lr": lr,
        "two_over_lr": two_over_lr,
        "sharpness_init": _number(sharpness[0]),
        "sharpness_last_third_median": _number(median),
        "ratio_init": _number(sharpness[0] / two_over_lr),
        "ratio_last_third": _number(median / two_over_lr),
        "started_below": bool(sharpness[0] < BELOW * two_over_lr),
        "at_edge": bool(EDGE_BAND[0] * two_over_lr <= median <= EDGE_BAND[1] * two_over_lr),
        "initial_loss": _number(loss[0]),
        "final_loss": _number(loss[-1]),
        "diverged": bool(not np.all(np.isfinite(loss))),
        "diverged_by_step": (int(measured[np.argmin(np.isfinite(loss))])
                             if not np.all(np.isfinite(loss)) else None),
        "steps": steps,
        "hvp_per_estimate": float(np.mean(path.iterations)),
        "estimates_converged": float(np.mean(path.converged)),
        "seconds": seconds,
        "curve": {"step": measured.tolist(), "loss": [_number(v) for v in loss],
                  "sharpness": [_number(v) for v in sharpness]},
    }


def load_digits(config: Config):
    """The digits ``config`` asks for; a UsageError when --examples exceeds the training set."""
    from gdlab import data

    ds = data.load("digits", seed=config.seed, standardize=config.pixel_scaling)
    if config.examples > ds.n_train:
        raise _cli.UsageError(f"--examples must be at most {ds.n_train} (the digits training "
                              f"set), got {config.examples}")
    return ds


def run(config: Config, workdir: str, *, dataset=None, say=print) -> dict:
    """Train every run of ``config``, write eos.json and eos.png into ``workdir``; the summary.

    ``dataset``: the digits already loaded by ``load_digits(config)`` (loaded here if None).
    """
    import jax
    import jax.numpy as jnp

    from gdlab import curvature, losses, models
    from gdlab.layers import initializers
    from gdlab.records import environment, write_json_atomic
    from gdlab.plots import plot_edge_of_stability

    ds = load_digits(config) if dataset is None else dataset
    x, labels = curvature.fixed_subset(jnp.asarray(ds.x_train), jnp.asarray(ds.y_train),
                                       config.examples, seed=config.seed)
    y = jax.nn.one_hot(labels, ds.num_classes, dtype=jnp.float32)  # MSE on one-hot targets
    lecun = initializers.variance_scaling("lecun", "normal")
    scale = math.sqrt(config.init_variance)

    def w_init(key, shape, dtype=jnp.float32):  # Var[w] = init_variance / fan_in
        return scale * lecun(key, shape, dtype)

    model = models.mlp([*config.hidden, ds.num_classes], "tanh", w_init=w_init)
    loss = losses.mse()
    k_init, k_path = jax.random.split(jax.random.PRNGKey(config.seed))
    _, params, state = model.init(k_init, ds.input_shape)
    options = {"steps": config.steps, "every": config.sharpness_every, "tol": config.tol,
               "max_iters": config.max_iters}
    say(f"{config.examples} digits ({config.pixel_scaling} pixels); {model.name}, init variance "
        f"{config.init_variance:g}/fan_in; mse on one-hot targets; {config.steps} steps of plain "
        f"gd per run, λmax every {config.sharpness_every}; {jax.default_backend()}")

    def one(path_fn, lr):
        t0 = time.perf_counter()
        out = jax.block_until_ready(path_fn(params, state, x, y, jnp.float32(lr), k_path))
        return summarize(lr, config.steps, config.sharpness_every, out, time.perf_counter() - t0)

    started = time.perf_counter()
    full_batch = curvature.make_sharpness_path(model, loss, **options)
    say(f"\n{'η':>7} {'2/η':>7} {'λ0':>7} {'λ0·η/2':>7} {'λ last⅓':>8} {'·η/2':>6} "
        f"{'J0':>8} {'J end':>9} {'s':>6}")
    runs = []
    for lr in config.lrs:
        runs.append(one(full_batch, lr))
        _print_row(say, runs[-1])
    minibatch = None
    if config.minibatch_size:
        lr = config.minibatch_lr or config.lrs[(len(config.lrs) - 1) // 2]
        minibatch = one(curvature.make_sharpness_path(model, loss, batch_size=config.minibatch_size,
                                                      **options), lr)
        minibatch["batch_size"] = config.minibatch_size
        _print_row(say, minibatch, f" (mini-batch B={config.minibatch_size})")
    seconds = time.perf_counter() - started

    summary = {
        "dataset": f"digits, {config.examples} training examples ({config.pixel_scaling} pixels)",
        "model": model.name,
        "init": f"normal, variance {config.init_variance:g}/fan_in (LeCun's × "
                f"{config.init_variance:g}), biases 0",
        "loss": "mse on one-hot targets: mean over examples and the 10 outputs",
        "optimizer": "gd (w ← w − η·∂J/∂w, manual gradients), full batch",
        "sharpness": f"λmax of the Hessian of J on the same examples: Lanczos on "
                     f"forward-over-reverse Hessian-vector products through the manual backward, "
                     f"warm-started from the last top eigenvector, stopping at a Ritz residual "
                     f"of {config.tol:g}·λ or {config.max_iters} products",
        "rule": f"started below: λ0 < {BELOW}·2/η; at the edge: median λmax over the last third "
                f"of the steps in [{EDGE_BAND[0]}, {EDGE_BAND[1]}]·2/η",
        "steps": config.steps,
        "sharpness_every": config.sharpness_every,
        "runs": runs,
        "minibatch": minibatch,
        "at_edge_count": sum(r["started_below"] and r["at_edge"] for r in runs),
        "wall_seconds": seconds,
        **environment(),
    }
    write_json_atomic(os.path.join(workdir, "eos.json"), summary)
    plot_edge_of_stability(runs, os.path.join(workdir, "eos.png"), minibatch=minibatch,
                           title=f"Edge of stability: {model.name} on {config.examples} digits, "
                                 f"mse, full-batch gd (Cohen et al. 2021)")
    return summary


def _cell(value, width: int, decimals: int) -> str:
    """``value`` in ``width`` characters: fixed-point with ``decimals``, or in e-notation
    where that would be wider (a loss of 10⁶ from a large --init_variance, 2/η of a tiny
    η), so the columns stay under their headers."""
    if value is None:
        return "nan".rjust(width)
    text = f"{value:>{width}.{decimals}f}"
    digits = width - 4
    while len(text) > width and digits >= 1:
        text, digits = f"{value:>{width}.{digits}g}", digits - 1
    return text


def _print_row(say, r, note=""):
    say(f"{r['lr']:>7.4g} {_cell(r['two_over_lr'], 7, 3)} {_cell(r['sharpness_init'], 7, 3)} "
        f"{_cell(r['ratio_init'], 7, 2)} {_cell(r['sharpness_last_third_median'], 8, 3)} "
        f"{_cell(r['ratio_last_third'], 6, 3)} {_cell(r['initial_loss'], 8, 4)} "
        f"{_cell(r['final_loss'], 9, 5)} {r['seconds']:>6.1f}{note}", flush=True)
    if r["diverged"]:
        say(f"        η={r['lr']:g} diverged: the loss was no longer finite by step "
            f"{r['diverged_by_step']}; η is far beyond 2/λmax", flush=True)


def main(argv):
    del argv
    config = config_from_flags()
    ds = load_digits(config)
    from gdlab import models, optim

    _builders.check_memory(models.mlp([*config.hidden, ds.num_classes], "tanh"),
                           optim.get("gd", max(config.lrs)), ds, config.examples,
                           basis_vectors=config.max_iters)  # the Lanczos basis
    workdir, _lock = _cli.prepare_workdir(FLAGS.workdir)  # held until the process ends
    summary = run(config, workdir, dataset=ds)
    print(f"\n{summary['at_edge_count']} of {len(summary['runs'])} learning rates started below "
          f"{BELOW}·2/η and ended at the edge of stability; {summary['wall_seconds']:.0f} s")
    print(f"outputs in {os.path.abspath(workdir)}: config.json, eos.json, eos.png")
    return 0


def cli() -> None:
    """The ``gdlab-edge-of-stability`` console command (same as
    ``python -m experiments.edge_of_stability``)."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
