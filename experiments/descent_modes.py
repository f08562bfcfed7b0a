r"""Batch vs stochastic vs mini-batch gradient descent on the same data and budget.

    python -m experiments.descent_modes --workdir=runs/descent_modes
    python -m experiments.descent_modes --dataset=houses --model=linear --lr_batch=0.3 --lr_sgd=0.003

The same model from the same initial weights (--seed) trains three times with
``gdlab.train.fit``, for the same number of epochs, so every mode processes
the same examples: batch makes one update per epoch (B = N), mini-batch
⌈N/B⌉ (B = --batch_size), sgd N (B = 1). Each mode has its own learning rate
(--lr_batch, --lr_minibatch, --lr_sgd): a noisier gradient needs a smaller step,
so the defaults are roughly proportional to B up to the stable limit; give all
three the same value to compare at one step size.

Writes to --workdir: config.json (every flag), modes.json (per mode and epoch:
train and test loss and accuracy, updates made, examples processed, cumulative
training seconds; per mode the batch loss of its updates averaged in
log-spaced bins) and modes.png (loss against updates made, against examples
processed, and against wall time).
"""

from __future__ import annotations

import math
import os
import sys
import time

from absl import flags

from experiments import _builders, _cli
from gdlab import descent, theory

_builders.define_data_flags()
_builders.define_model_flags()
flags.DEFINE_integer("batch_size", 32, "Examples per step of the minibatch mode.")
_builders.define_optimizer_flags(
    optimizer="gd",
    optimizer_help="The update rule of all three modes (plain gd isolates the effect of the mode).")
flags.DEFINE_float("lr_batch", 1.0, "Learning rate of batch descent (B = N).")
flags.DEFINE_float("lr_minibatch", 0.3, "Learning rate of minibatch descent (B = --batch_size).")
flags.DEFINE_float("lr_sgd", 0.01, "Learning rate of stochastic descent (B = 1).")
flags.DEFINE_integer("epochs", 20, "Passes over the training set, the same for every mode.",
                     lower_bound=1)
flags.DEFINE_string("workdir", "runs/descent_modes", "Folder for config.json, modes.json, modes.png.")
flags.adopt_module_key_flags(_builders)  # list the shared flags in --help
flags.adopt_module_key_flags(_cli)

FLAGS = flags.FLAGS

MODES = ("batch", "minibatch", "sgd")

DEFAULT_SHARPNESS = {"xent": 16.0, "bce": 16.0, "mse": 2.0, "huber": 2.0}
"""Per loss, the sharpness at the initial weights (``_builders.initial_sharpness``) up to
which the default rates of gd, momentum and nesterov stand. They were set on digits
(xent), whose MLP starts at 13.5; cross-entropy's curvature falls as the softmax
saturates, so batch descent at lr 1 trains there, 7 times over 2/λmax. MSE's does not:
the MLP on houses starts at 45 and diverged at lr 1 and 0.3, and diabetes' (49) still did
at 2.2/λmax; at 2 the batch rate is 2/λmax, the bound of a quadratic, and every mode
trained on houses, diabetes and a 1,000-column table (270)."""


def scale_rates_to_data(ds, model, loss_name: str, rates: dict) -> str | None:
    """The rates of the modes whose ``--lr_<mode>`` is not given, times
    ``DEFAULT_SHARPNESS[loss]``/λ0 (two significant digits) where the sharpness λ0 at the
    initial weights is above it, for gd, momentum and nesterov; the flags take the scaled
    values (config.json and flags.txt record them). A regression target or a wide table of
    correlated columns makes the step that trains digits diverge in every mode. Returns a
    line saying what was scaled, or None."""
    scaled = [mode for mode in MODES if not _cli.set_anywhere(f"lr_{mode}")]
    if not scaled or FLAGS.optimizer not in theory.BOUND_NAMES:
        return None
    value, reference = _builders.initial_sharpness(ds, model, loss_name), DEFAULT_SHARPNESS[loss_name]
    if not value > reference:  # NaN too: the defaults stand
        return None
    for mode in scaled:
        rates[mode] = _builders.two_digits(rates[mode] * reference / value)
        FLAGS[f"lr_{mode}"].value = rates[mode]
    return (", ".join(f"lr_{mode}={rates[mode]:g}" for mode in scaled)
            + f": the defaults scaled by {reference:g}/{value:.0f}, the sharpness (λmax of the "
              f"{loss_name} loss's Hessian) at the initial weights, where the defaults suit "
              f"{reference:g} or less; --lr_<mode> sets a mode's rate")


KEEP = ("epoch", "step", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "seconds")


def _number(value):
    """JSON-safe: None for NaN and infinities."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _text(value, spec: str) -> str:
    return "nan" if value is None else format(value, spec)


def main(argv):
    del argv
    rates = {mode: _cli.positive_float(f"lr_{mode}", FLAGS[f"lr_{mode}"].value) for mode in MODES}
    _builders.check_optimizer_flags()

    def plan(ds):  # the data set, or an image folder's shapes before it is read
        minibatch = _builders.minibatch_size(ds)
        _cli.check_steps(f"--epochs={FLAGS.epochs} of sgd", FLAGS.epochs * ds.n_train)  # most
        loss_name = _builders.loss_name(ds)
        model = _builders.build_model(ds, loss_name)
        _builders.check_memory(model, _builders.build_optimizer(rates["batch"], FLAGS.epochs),
                               ds, ds.n_train)  # the batch mode's full batch: the most memory
        return minibatch, loss_name, model

    ds = _builders.load_dataset(before_reading=plan)
    minibatch, loss_name, model = plan(ds)
    rates_note = scale_rates_to_data(ds, model, loss_name, rates)
    workdir, _lock = _cli.prepare_workdir(FLAGS.workdir)  # held until the process ends

    import jax

    from gdlab import data, losses, train
    from gdlab.records import environment, write_json_atomic
    from gdlab.plots import modes as modes_plots

    loss = losses.get(loss_name)
    n = ds.n_train
    print(f"{data.describe(ds)}; {model.name}; {loss_name} loss; {_builders.describe_optimizer()}; "
          f"{FLAGS.epochs} epochs per mode; {FLAGS.grad} gradients on {jax.default_backend()}")
    if rates_note:
        print(rates_note)

    key = jax.random.PRNGKey(FLAGS.seed)  # the same initial weights for every mode
    started = time.perf_counter()
    runs = {}
    for mode in MODES:
        batch_size = descent.batch_size_for(mode, n, minibatch)
        steps = descent.steps_per_epoch(n, batch_size)
        optimizer = _builders.build_optimizer(rates[mode], FLAGS.epochs * steps)
        result = train.fit(model, loss, optimizer,
                           (ds.x_train, ds.y_train), epochs=FLAGS.epochs, batch_size=batch_size,
                           key=key, grad=FLAGS.grad, test_data=(ds.x_test, ds.y_test),
                           warm_up=True)  # wall times compared: XLA's first run off the clock
        history, wall = [], 0.0
        for row in result.history:  # epoch 0 (the initial weights) first
            wall += row.get("seconds", 0.0)
            kept = {k: _number(row[k]) for k in KEEP if k in row}
            history.append({**kept, "seconds": row.get("seconds", 0.0), "wall_seconds": wall,
                            "examples": int(modes_plots.examples_after(  # a diverged run
                                row["step"], steps_per_epoch=steps,  # stops mid-epoch
                                batch_size=batch_size, num_examples=n))})
        diverged = (f", diverged at update {result.diverged_at_step}"
                    if result.status == "diverged" else "")
        runs[mode] = {
            "label": f"{mode} (B={batch_size}, lr={rates[mode]:g}{diverged})",
            "lr": rates[mode],
            "batch_size": batch_size,
            "steps_per_epoch": steps,
            "status": result.status,
            "diverged_at_step": result.diverged_at_step,
            "compile_seconds": result.compile_seconds,
            "train_seconds": wall,
            "history": history,
            "curve": modes_plots.binned_curve(result.step_losses, steps_per_epoch=steps,
                                              batch_size=batch_size, num_examples=n),
        }
        last = history[-1]
        print(f"{mode:>9}: B={batch_size:<5} lr={rates[mode]:<8g} {steps:>5} updates/epoch  "
              f"{result.status}  train loss {_text(last['train_loss'], '.4g')} after {last['epoch']} epochs, "
              f"{wall:.2f} s training (+{result.compile_seconds:.2f} s compile)", flush=True)
        first, final = history[0].get("train_loss"), last.get("train_loss")
        advice = _builders.lr_advice(ds, f"lr_{mode}", rates[mode], cnn=False)
        if result.status == "diverged":
            sys.stderr.write(f"warning: {mode} diverged at update {result.diverged_at_step}; "
                             f"--lr_{mode}={rates[mode]:g} is likely too large: {advice}\n")
        elif _builders.loss_rose(first, final):
            sys.stderr.write(f"warning: {mode}'s training loss rose from {first:.4g} to "
                             f"{final:.4g} without diverging; --lr_{mode}={rates[mode]:g} is "
                             f"likely too large: {advice}\n")

    summary = {
        **_builders.data_summary(ds),
        "model": model.name,
        "loss": loss_name,
        "optimizer": FLAGS.optimizer,
        "epochs": FLAGS.epochs,
        "seed": FLAGS.seed,
        "n_train": n,
        "note": ("examples = the examples the updates made so far used: epoch x n_train at "
                 "an epoch's end (every mode sees each example once per epoch); "
                 "step = updates made; wall_seconds = cumulative training time of the epochs, "
                 "without compilation and evaluation; epoch 0 is the shared initial weights; "
                 "curve = the batch loss of each update (taken at the weights of the updates "
                 "before it) averaged in log-spaced bins of the update count: updates and "
                 "examples are the bin means, count the updates in the bin"),
        "modes": runs,
        "wall_seconds": time.perf_counter() - started,
        **environment(),
    }
    write_json_atomic(os.path.join(workdir, "modes.json"), summary)
    modes_plots.plot_modes(runs, os.path.join(workdir, "modes.png"),
                           title=f"{model.name} on {ds.name}: batch vs minibatch vs sgd, "
                                 f"{FLAGS.optimizer}, {FLAGS.epochs} epochs each")

    has_acc = "test_accuracy" in runs["batch"]["history"][0]
    print(f"\n{'mode':>9}  {'B':>5}  {'lr':>7}  {'updates':>8}  {'train loss':>10}  "
          f"{'test loss':>10}  {'test acc' if has_acc else '':>8}  {'train s':>7}  status")
    for mode, run in runs.items():
        last = run["history"][-1]
        acc = _text(last.get("test_accuracy"), ".4f") if has_acc else ""
        print(f"{mode:>9}  {run['batch_size']:>5}  {run['lr']:>7g}  {last['step']:>8}  "
              f"{_text(last['train_loss'], '.4g'):>10}  {_text(last['test_loss'], '.4g'):>10}  {acc:>8}  "
              f"{run['train_seconds']:>7.3f}  {run['status']}")
    print(f"outputs in {os.path.abspath(workdir)}: config.json, modes.json, modes.png")
    return 0


def cli() -> None:
    """The ``gdlab-descent-modes`` console command (same as ``python -m experiments.descent_modes``)."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
