r"""Sweep learning rates: train one model with many α at once and say which ones work.

    python -m experiments.lr_sweep --workdir=runs/lr_sweep      # houses, linear, mse, batch gd
    python -m experiments.lr_sweep --dataset=digits --model=mlp --lrs=0.01,0.1,1,10 --epochs=20

Every learning rate starts from the same initial weights (--seed) and all of
them train together in one compiled program (``gdlab.train.sweep``, a vmap).
Each gets a verdict, "converged", "too slow" or "diverged", by the rule in
``gdlab.analysis`` (printed with the table and stored in sweep.json). For a
linear model under MSE the stability bound 2/λmax of batch gradient descent is
computed from the data and set beside the first learning rate that diverged.

Writes to --workdir: config.json (every flag), sweep.json (learning rates, final
losses, verdicts, the rule, loss curves, divergence steps, the bound) and
sweep.png (final loss against α; curves of a too-small, a good and a too-large α).
"""

from __future__ import annotations

import math
import os
import sys
import time

from absl import flags

from experiments import _builders, _cli
from gdlab import descent
from gdlab.data import DataError

_builders.define_data_flags(default="houses")
_builders.define_model_flags()
_cli.define_device_flags()
flags.FLAGS.set_default("model", "linear")  # houses' textbook model, where 2/λmax is known
flags.DEFINE_enum("descent", "batch", list(descent.MODES),
                  "batch (all examples per step), sgd (one) or minibatch (--batch_size).")
flags.DEFINE_integer("batch_size", 32, "Examples per step for --descent=minibatch.")
_builders.define_optimizer_flags(optimizer="gd", optimizer_help="The update rule, at every α.")
flags.DEFINE_integer("epochs", 100, "Passes over the training set, for every α.", lower_bound=1)
flags.DEFINE_list("lrs", None, "Learning rates to try, comma-separated (sorted, duplicates "
                  "dropped), e.g. --lrs=0.01,0.1,1; replaces --lr_min/--lr_max/--num.")
flags.DEFINE_float("lr_min", 0.001, "Smallest learning rate of the log-spaced grid.")
flags.DEFINE_float("lr_max", 2.0, "Largest learning rate of the log-spaced grid.")
flags.DEFINE_integer("num", 160, "Number of log-spaced learning rates from --lr_min to --lr_max "
                     "(160 from 0.001 to 2: neighbours 5% apart), 2 to 1,000,000.")
flags.DEFINE_string("workdir", "runs/lr_sweep", "Folder for config.json, sweep.json, sweep.png.")
flags.adopt_module_key_flags(_builders)  # list the shared flags in --help
flags.adopt_module_key_flags(_cli)

FLAGS = flags.FLAGS

MAX_NUM = 1_000_000
"""The most rates ``--num`` makes: the grid is built (and every rate trained) before a
larger sweep could be refused for its memory; a million spans float32's range 0.02% apart."""


def learning_rates() -> list[float]:
    """The grid the flags ask for, ascending; one sentence for a bad one."""
    if FLAGS.lrs is not None:
        for name in ("lr_min", "lr_max", "num"):
            if _cli.given(name):
                raise _cli.UsageError(f"give either --lrs or --lr_min/--lr_max/--num, not both "
                                      f"(got --lrs and --{name})")
        if not FLAGS.lrs:
            raise _cli.UsageError("--lrs must list at least one learning rate, e.g. --lrs=0.01,0.1,1")
        rates = _cli.positive_float_list("lrs", FLAGS.lrs)
        return sorted(set(rates))
    _cli.positive_float("lr_min", FLAGS.lr_min)
    _cli.positive_float("lr_max", FLAGS.lr_max)
    if not FLAGS.lr_min < FLAGS.lr_max:
        raise _cli.UsageError(f"--lr_min must be smaller than --lr_max, got --lr_min={FLAGS.lr_min} "
                              f"--lr_max={FLAGS.lr_max}")
    if FLAGS.num < 2:
        raise _cli.UsageError(f"--num must be at least 2 (the grid includes both ends), got {FLAGS.num}")
    if FLAGS.num > MAX_NUM:
        raise _cli.UsageError(f"--num must be at most {MAX_NUM:,} learning rates, got {FLAGS.num:,}")
    import numpy as np

    return [float(v) for v in np.geomspace(FLAGS.lr_min, FLAGS.lr_max, FLAGS.num)]


def _number(value) -> float | None:
    """A float for JSON: None for NaN and infinities, 6 significant digits."""
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _plan_sweep(lrs):
    """``(data set, (loss name, batch size, model, total steps))`` the flags give, checked."""

    def plan(ds):  # the data set, or an image folder's shapes before it is read
        loss_name = _builders.loss_name(ds)
        batch_size = _builders.batch_size(ds)
        model = _builders.build_model(ds, loss_name)
        total_steps = _cli.check_steps(f"--epochs={FLAGS.epochs}", FLAGS.epochs
                                       * descent.steps_per_epoch(ds.n_train, batch_size))
        _builders.check_memory(model, _builders.build_optimizer(lrs[0], total_steps), ds,
                               batch_size, configs=len(lrs), epochs_kept=FLAGS.epochs)
        return loss_name, batch_size, model, total_steps

    ds = _builders.load_dataset(before_reading=plan)
    return ds, plan(ds)


def main(argv):
    del argv
    mesh = _cli.start_devices()  # first: jax.distributed must start before anything else
    error, digest = None, None
    try:
        lrs = learning_rates()
        _builders.check_optimizer_flags()
        ds, (loss_name, batch_size, model, total_steps) = _plan_sweep(lrs)
        digest = lambda: _builders.data_digest(ds)  # noqa: E731 (hashed only when distributed)
    except (_cli.UsageError, DataError) as e:
        error = e
    # every process of a distributed run: the same flags and data, or all stop (exit 2)
    _cli.check_same_run(error, **{"the data read (its digest)": digest})

    def make_optimizer(lr):  # lr: one of the sweep's learning rates, traced
        return _builders.build_optimizer(lr, total_steps)

    workdir, _lock = _cli.prepare_workdir(FLAGS.workdir)  # held until the process ends
    # process 0 reports and writes; the others train their share and write a throwaway folder
    workdir, _scratch = _cli.output_dir(workdir)
    say = print if _scratch is None else (lambda *a, **k: None)

    import jax
    import numpy as np

    from gdlab import analysis, data, losses, theory, train
    from gdlab.records import environment, write_json_atomic
    from gdlab.plots import sweep as sweep_plots

    loss = losses.get(loss_name)
    x, y = ds.x_train, ds.y_train
    say(f"{data.describe(ds)}; {model.name}; {loss_name} loss; {FLAGS.descent} descent "
          f"(B={batch_size}); {_builders.describe_optimizer()}; {len(lrs)} learning rates from "
          f"{lrs[0]:.4g} to {lrs[-1]:.4g}; {FLAGS.epochs} epochs; {FLAGS.grad} gradients on "
          f"{jax.default_backend()}")

    # J0: the loss at the initial weights every learning rate starts from (same key as sweep's).
    key = jax.random.PRNGKey(FLAGS.seed)
    variables = train.init_model(model, key, ds.input_shape)  # (params, model state)
    initial_loss = float(train.jit_evaluate(model, loss)(*variables, x, y)["loss"])

    started = time.perf_counter()
    result = train.sweep(model, loss, make_optimizer, lrs, (x, y), epochs=FLAGS.epochs,
                         batch_size=batch_size, seeds=(FLAGS.seed,), grad=FLAGS.grad,
                         mesh=mesh)
    seconds = time.perf_counter() - started
    curves = np.concatenate([np.full((len(lrs), 1), initial_loss), result.train_loss], axis=1)
    final = result.train_loss[:, -1]
    judged = analysis.lr_verdicts(initial_loss, final, result.diverged)
    rule = analysis.verdict_rule()
    first_bad = analysis.first_diverged(lrs, judged.verdicts)

    bound = None
    factor = theory.stable_lr_factor(FLAGS.optimizer, FLAGS.momentum)
    name = theory.BOUND_NAMES.get(FLAGS.optimizer, "2/λmax")
    if FLAGS.model == "linear" and loss_name == "mse":
        # mse averages over the K outputs too, so each output's Hessian is (2/(N·K))·AᵀA;
        # momentum moves the bound (theory.stable_lr_factor), adaptive rates have none: 2/λmax
        bound = ds.num_outputs * theory.max_stable_lr(x) * (factor or 1.0)
    exact = (FLAGS.descent == "batch" and factor is not None and FLAGS.weight_decay == 0
             and FLAGS.schedule == "constant")

    say(f"\n{'lr':>10}  {'final loss':>12}  verdict")
    for lr, value, verdict in zip(lrs, final, judged.verdicts):
        note = ""
        if lr == first_bad:
            note = "   <- first diverged" + ("" if bound is None else
                                           f"; {name} = {bound:.4g} (ratio {lr / bound:.4g})")
        say(f"{lr:>10.4g}  {value:>12.4g}  {verdict}{note}")
    say(f"rule: {rule}")

    picks = analysis.pick_examples(lrs, final, judged.verdicts)
    summary = {
        **_builders.data_summary(ds),
        "model": model.name,
        "loss": loss_name,
        "descent": FLAGS.descent,
        "batch_size": batch_size,
        "optimizer": FLAGS.optimizer,
        "epochs": FLAGS.epochs,
        "seed": FLAGS.seed,
        "rule": rule,
        "converged_fraction": analysis.CONVERGED_FRACTION,
        "initial_loss": initial_loss,
        "best_final_loss": judged.best_final_loss,
        "lrs": lrs,
        "final_losses": [_number(v) for v in final],
        "verdicts": list(judged.verdicts),
        "gap_closed": [_number(v) for v in judged.gap_closed],
        "diverged_at_step": [int(s) if s >= 0 else None for s in result.diverged_at_step],
        "counts": {v: judged.verdicts.count(v) for v in analysis.VERDICTS},
        "first_diverged_lr": first_bad,
        "theoretical_max_lr": bound,
        "first_diverged_over_theoretical": (first_bad / bound if bound and first_bad else None),
        "theory": (None if bound is None else
                   f"{name} with λmax of the linear model's MSE Hessian (2/N)·AᵀA, A = [X 1]: "
                   + (f"the exact stability bound of full-batch {FLAGS.optimizer}"
                      if factor is not None else
                      f"plain gd's exact stability bound, drawn for reference: "
                      f"{FLAGS.optimizer} adapts its steps and has no fixed bound")
                   + ("" if exact or factor is None else
                      "; only a guide here, since this run is not full-batch at a constant "
                      "rate without weight decay")),
        "picked": {role: lrs[k] for role, k in picks.items()},
        "curves": {"epoch": list(range(FLAGS.epochs + 1)),
                   "train_loss": [[_number(v) for v in row] for row in curves]},
        "wall_seconds": seconds,
        **environment(),
    }
    write_json_atomic(os.path.join(workdir, "sweep.json"), summary)
    sweep_plots.plot_lr_sweep(
        lrs, final, judged.verdicts, curves, picks, os.path.join(workdir, "sweep.png"),
        title=f"{model.name} on {ds.name}: {FLAGS.descent} {FLAGS.optimizer}, {FLAGS.epochs} epochs",
        initial_loss=initial_loss, theoretical_max_lr=bound, bound_name=name)

    counts = ", ".join(f"{n} {v}" for v, n in summary["counts"].items())
    say(f"\n{len(lrs)} learning rates x {FLAGS.epochs} epochs in {seconds:.1f} s "
          f"(one compiled program): {counts}")
    if judged.best_final_loss is not None:
        say(f"best: lr {lrs[picks['good']]:.4g} reached loss {judged.best_final_loss:.4g} "
              f"(initial {initial_loss:.4g})")
    say("first diverged lr: " + ("none" if first_bad is None else f"{first_bad:.4g}"))
    if bound is not None:
        ratio = "" if first_bad is None else f"; first diverged / bound = {first_bad / bound:.4g}"
        say(f"stability bound {name} = {bound:.4g}{ratio}"
              + ("" if exact else f" (plain gd's, for reference: {FLAGS.optimizer} has none)"
                 if factor is None else " (exact only for --descent=batch at a constant rate "
                                        "and no --weight_decay)"))
    say(f"outputs in {os.path.abspath(workdir)}: config.json, sweep.json, sweep.png")
    return 0


def cli() -> None:
    """The ``gdlab-lr-sweep`` console command (same as ``python -m experiments.lr_sweep``)."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
