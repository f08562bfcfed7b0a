r"""Train a model by gradient descent and write its metrics, checkpoints, summary and plot.

    python -m experiments.train --workdir=runs/digits
    python -m experiments.train --dataset=houses --model=linear --descent=batch --lr=0.3 --workdir=runs/houses
    python -m experiments.train --model=cnn --workdir=runs/cnn
    python -m experiments.train --model=transformer --dataset=sort --workdir=runs/sort
    python -m experiments.train --workdir=runs/digits --resume      # continue after a stop

Writes to --workdir: config.json and flags.txt (every flag; --flagfile=flags.txt
replays the run), metrics.jsonl and metrics.csv (one row per evaluated epoch),
TensorBoard event files, checkpoints/ (the whole training state, for --resume
and experiments.evaluate), summary.json (status, final metrics, timing, device,
versions) and loss.png. A diverging run ends with status "diverged" and exit 0;
SIGINT or SIGTERM finish the epoch, checkpoint, and end with status
"interrupted" and exit 130 or 143.
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from experiments import _builders, _cli
from gdlab import descent
from gdlab.data import DataError

_builders.define_data_flags()
_builders.define_model_flags(model_defaults=True)
_builders.define_descent_flags()
_cli.define_device_flags()
flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16"], "Dtype of each step's "
                  "forward and backward pass. bfloat16: mixed precision (float32 master params, "
                  "loss and update, the matmuls in bfloat16): faster on GPUs with bfloat16 "
                  "tensor cores, slower on most CPUs.")
flags.DEFINE_integer("eval_every", 1, "Evaluate and log every this many epochs.", lower_bound=1)
flags.DEFINE_integer("sharpness_every", 0, "Every this many epochs (of those evaluated), log "
                     "the sharpness λmax (top Hessian eigenvalue, on a fixed subset, of the "
                     "training loss plus the L2 term a --weight_decay adds to the gradient; "
                     "gdlab.curvature) and, for gd, momentum and nesterov, the optimizer's "
                     "stability bound on λmax (2/α for gd, 2(1+β)/α for momentum); 0: off.",
                     lower_bound=0)
flags.DEFINE_integer("sharpness_examples", 1000, "Training examples (a fixed subset) on which "
                     "--sharpness_every measures λmax.", lower_bound=1)
flags.DEFINE_string("workdir", "runs/train", "Folder for the run's outputs (see the module doc); "
                    "~ and $VARS are expanded. It must be new or empty unless --resume or "
                    "--overwrite.")
flags.DEFINE_bool("resume", False, "Continue the run in --workdir from its latest checkpoint "
                  "(same flags required); with no checkpoint there, start it.")
flags.DEFINE_integer("checkpoint_every", 1, "Checkpoint every this many epochs (and always at "
                     "the end and when interrupted).", lower_bound=1)
flags.DEFINE_float("checkpoint_seconds", 60.0, "At most one periodic checkpoint per this many "
                   "seconds; 0 for every --checkpoint_every epochs.", lower_bound=0.0)
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept (the newest).", lower_bound=1)
flags.DEFINE_bool("quiet", False, "Print nothing but errors and the final line.")
flags.adopt_module_key_flags(_builders)  # list the shared flags in --help
flags.adopt_module_key_flags(_cli)

FLAGS = flags.FLAGS

COLUMNS = ["epoch", "step", "train_loss", "test_loss", "train_accuracy", "test_accuracy",
           "train_rmse", "test_rmse", "batch_loss", "grad_norm", "displacement", "param_norm", "learning_rate",
           "seconds", "examples_per_second", "sharpness", "stability_bound"]
TIMING = ("seconds", "examples_per_second")
"""Row fields that differ between identical runs."""

OUTPUTS = ("metrics.jsonl", "metrics.csv", "summary.json", "loss.png")
"""The files a run writes into its workdir besides config.json and flags.txt (and its
TensorBoard event files and checkpoints/)."""

EXTREME_INPUT = 20.0
"""Inputs beyond this |x| (after scaling) are named as a likely cause of divergence."""


def collapsed(rows, num_classes: int) -> bool:
    """The "degraded" rule: the final test accuracy fell below 1.5× chance after the best
    one had been above 3× chance (chance = 1/classes; so never for two or three classes,
    where 3× chance is 1 or more)."""
    accuracies = [r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None]
    if not accuracies or num_classes < 2:
        return False
    chance = 1.0 / num_classes
    return max(accuracies) > 3 * chance and accuracies[-1] < 1.5 * chance


def restore_checkpoint(workdir: str, model, optimizer, ds) -> tuple:
    """``--resume``: ``(state, epoch, metrics rows kept, the meta record this program keeps:
    wall seconds trained, devices and the data's digest)`` of ``workdir``'s latest
    checkpoint, or ``()`` when it has none (or no --resume). A UsageError when it cannot be
    read, or does not fit this run's model, optimizer and data (the data changed: one more
    category column)."""
    from gdlab import checkpoint, train

    for name in OUTPUTS:  # replaced at the run's end or on the way: a folder there would
        path = os.path.join(workdir, name)  # end it in a traceback, perhaps hours later
        if os.path.isdir(path) and not os.path.islink(path):
            raise _cli.UsageError(f"--resume: {path} is a folder where the run writes its "
                                  f"{name}; move it out of the way to go on")
    try:
        if not FLAGS.resume or checkpoint.latest_epoch(workdir) is None:
            return ()
        meta = checkpoint.read_meta(workdir)
        state = checkpoint.restore(workdir)
    except checkpoint.CheckpointError as e:
        _cli.fail_now(f"--resume: {e}")
    try:
        train.check_state_fit(model, optimizer, state, ds.input_shape)
    except ValueError as e:
        raise _cli.UsageError(f"--resume: the checkpoint in {workdir} does not fit this run "
                              f"({e}); have the data, the flags or gdlab's version changed "
                              f"since it was saved?") from None
    from gdlab.records import check_rows

    kept = meta.get("meta", {})  # wall seconds, devices, data: absent in older checkpoints
    check_rows(workdir, meta["metrics_rows"])  # before anything in the workdir is written
    return state, meta["epoch"], meta["metrics_rows"], kept


def plan_run(ds):
    """``(loss name, batch size, model, total steps, optimizer, lr note)`` the flags give
    for ``ds`` (a data set, or its shapes before reading), checked: one sentence (exit 2)
    for bad flags or a run that does not fit in memory. The note says how the default
    learning rate was scaled to the data (``_builders.scale_lr_to_data``), or is None."""
    _builders.apply_model_defaults()
    loss_name = _builders.loss_name(ds)
    batch_size = _builders.batch_size(ds)
    model = _builders.build_model(ds, loss_name)
    lr_note = _builders.scale_lr_to_data(ds, batch_size, model, loss_name)
    _builders.check_descent_flags()
    total_steps = _cli.check_steps(f"--epochs={FLAGS.epochs}",
                                   FLAGS.epochs * descent.steps_per_epoch(ds.n_train, batch_size))
    optimizer = _builders.build_optimizer(FLAGS.lr, total_steps)
    _builders.check_memory(model, optimizer, ds, batch_size)
    return loss_name, batch_size, model, total_steps, optimizer, lr_note


def main(argv):
    del argv
    mesh = _cli.start_devices()  # first: jax.distributed must start before anything else
    primary = _cli.is_primary()  # process 0 writes the workdir; the others write nothing
    error, digest = None, None
    try:
        _cli.seconds("checkpoint_seconds", FLAGS.checkpoint_seconds)
        # image data a user brings: the CNN; an image folder's run is sized before it is read
        ds = _builders.load_dataset(model_by_data=True, before_reading=plan_run)
        loss_name, batch_size, model, total_steps, optimizer, lr_note = plan_run(ds)
        digest = _builders.data_digest(ds)  # checkpoints and summary.json keep it
    except (_cli.UsageError, DataError) as e:
        error = e
    # every process of a distributed run: the same flags and data, or all stop (exit 2)
    _cli.check_same_run(error, **{"the data read (its digest)": digest})
    resumed = []  # --resume: (state, epoch, metrics rows, meta) of the latest checkpoint
    workdir, _lock = _cli.prepare_workdir(
        FLAGS.workdir, resume=FLAGS.resume,
        check=lambda folder: resumed.extend(restore_checkpoint(folder, model, optimizer, ds)),
        # ... and the same checkpoint to go on from (a --workdir that is not shared has
        # another), agreed on before process 0 writes config.json into the workdir
        agree=lambda: {"the checkpoint --resume found in --workdir": [
            int(resumed[1]), int(resumed[0].step)] if resumed else None})
    # where this process writes: the workdir, or (processes other than 0) a throwaway folder
    outdir, _scratch = _cli.output_dir(workdir)
    signals = _cli.Signals().install()
    say = (lambda *a, **k: None) if FLAGS.quiet or not primary else print

    import jax
    import jax.numpy as jnp

    from gdlab import checkpoint, data, losses, optim, plots, theory, train
    from gdlab.records import (MetricsWriter, TensorBoard, environment, eta_seconds, progress_line,
                               provenance, write_json_atomic)

    rate = _builders.learning_rate(FLAGS.lr, total_steps)
    loss = losses.get(loss_name)
    state, start_epoch, rows_kept, kept = resumed or (None, 0, None, {})
    wall_before = kept.get("wall_seconds", 0.0)
    data_warnings = list(ds.info.get("warnings", ()))  # summary.json's, with the run's own
    devices = mesh.size if mesh is not None else 1
    if state is not None:
        say(f"resuming {workdir} after epoch {start_epoch} (step {int(state.step)})")
        if kept.get("devices", devices) != devices and primary:
            sys.stderr.write(f"warning: --resume: the run trained on {kept['devices']} "
                             f"device{'s' if kept['devices'] > 1 else ''} and goes on on "
                             f"{devices}: its gradients are now summed in another order, so "
                             f"it will be close to, not bitwise, the run it would have been\n")
        if kept.get("data_digest", digest) != digest:  # older checkpoints have none
            # a warning, not a refusal, as in evaluate: another machine's NumPy may round the
            # scaling otherwise; summary.json keeps it among the data's warnings
            data_warnings.append(
                f"--resume: the data ({FLAGS.dataset}) as read now is not what the run trained "
                f"on up to epoch {start_epoch} (its checkpoint's data_digest): it changed "
                f"since, or was read on another machine; the run goes on on the data read now")
            if primary:
                sys.stderr.write(f"warning: {data_warnings[-1]}\n")
    elif FLAGS.resume:
        say(f"--resume: {workdir} has no checkpoint yet; starting the run")
    if lr_note:
        say(lr_note)
    say(f"{data.describe(ds)}; {model.name}; {FLAGS.descent} descent (B={batch_size}); "
        f"{_builders.describe_optimizer()}, lr={FLAGS.lr}; {FLAGS.grad} gradients"
        + (" in bfloat16 (mixed precision)" if FLAGS.compute_dtype == "bfloat16" else "")
        + f" on {jax.default_backend()}")
    y_scale = _builders.target_scale(ds)

    started = time.perf_counter()
    last_save = [time.perf_counter()]
    first_end = [None]  # (epoch, clock) when the first epoch trained here ended
    # resumed: TensorBoard drops what the stopped run logged after its checkpoint, and all
    # of it when --resume found no checkpoint and starts over
    purge = int(state.step) + 1 if start_epoch else (0 if FLAGS.resume else None)
    tensorboard = TensorBoard(outdir, purge_step=purge)
    sharpness = sharpness_probe(model, loss, ds) if FLAGS.sharpness_every else None
    # λmax < bound·(1/α): the optimizer's stability on a quadratic (None for adaptive ones)
    bound = theory.stable_lr_factor(FLAGS.optimizer, FLAGS.momentum)
    # process 0 keeps the run's rows; any other process writes its scratch folder afresh
    with MetricsWriter(outdir, COLUMNS, keep_rows=rows_kept if primary else None) as writer:
        def hook(row, state):
            # the rate of the last step taken (of the first, at epoch 0)
            row["learning_rate"] = float(optim.learning_rate_at(rate, max(int(state.step) - 1, 0)))
            if FLAGS.sharpness_every and row["epoch"] % FLAGS.sharpness_every == 0:
                row["sharpness"] = sharpness(state)  # λmax on the fixed subset
                if bound is not None:  # gd is stable while λmax < 2/α, momentum 2(1+β)/α
                    row["stability_bound"] = bound * 2.0 / row["learning_rate"]
            writer.write(row)
            tensorboard.write(row, int(state.step))
            now = time.perf_counter()
            eta = None
            if row["epoch"] > start_epoch:
                eta = eta_seconds(row["epoch"], row["seconds"], epochs=FLAGS.epochs,
                                  first_end=first_end[0], now=now)
            say(progress_line(row, epochs=FLAGS.epochs, elapsed=now - started, eta=eta), flush=True)

        def after_epoch(epoch, state):
            if first_end[0] is None:
                first_end[0] = (epoch, time.perf_counter())
            # every process stops at the same epoch, whichever got the signal (a process
            # that stopped alone would leave the others waiting in the next all-reduce)
            stop = not _cli.all_processes_agree(signals.received is None)
            due = epoch % FLAGS.checkpoint_every == 0 and (
                time.perf_counter() - last_save[0] >= FLAGS.checkpoint_seconds)
            if primary and (stop or due or epoch == FLAGS.epochs):
                checkpoint.save(workdir, state, epoch=epoch, metrics_rows=writer.rows,
                                keep=FLAGS.keep_checkpoints,  # the run's time, over resumes
                                meta={"wall_seconds": wall_before + time.perf_counter() - started,
                                      "devices": devices, "data_digest": digest})
                last_save[0] = time.perf_counter()
            return stop

        say("compiling the epoch program ...", flush=True)
        result = train.fit(model, loss, optimizer, (ds.x_train, ds.y_train),
                           epochs=FLAGS.epochs, batch_size=batch_size,
                           key=jax.random.PRNGKey(FLAGS.seed), grad=FLAGS.grad,
                           test_data=(ds.x_test, ds.y_test), eval_every=FLAGS.eval_every,
                           state=state, start_epoch=start_epoch, hook=hook,
                           after_epoch=after_epoch, target_scale=y_scale, mesh=mesh,
                           compute_dtype=(None if FLAGS.compute_dtype == "float32"
                                          else jnp.bfloat16))
    signals.uninstall()  # no epoch left to finish: a signal now stops the program at once
    tensorboard.close()
    status = "interrupted" if result.status == "stopped" else result.status
    rows = _read_rows(outdir)
    last = rows[-1] if rows else {}
    if status == "completed" and ds.task == "classification" and collapsed(rows, ds.num_classes):
        status = "degraded"
    max_x = {split: ds.info.get(f"max_abs_x_{split}") for split in ("train", "test")}
    summary = {
        "status": status,
        "diverged_at_step": result.diverged_at_step,
        "test_loss": last.get("test_loss"),
        "test_accuracy": last.get("test_accuracy"),
        "test_rmse": last.get("test_rmse"),
        "train_loss": last.get("train_loss"),
        "train_accuracy": last.get("train_accuracy"),
        "epochs_run": result.epochs_run,
        "steps": int(result.state.step),
        "wall_seconds": wall_before + time.perf_counter() - started,  # earlier parts too
        "compile_seconds": result.compile_seconds,
        "examples_per_second": last.get("examples_per_second"),
        **_builders.data_summary(ds, digest),
        "data_warnings": data_warnings,
        "model": model.name,
        "checkpoint_epoch": checkpoint.latest_epoch(workdir),
        "max_abs_x_train": max_x["train"],
        "max_abs_x_test": max_x["test"],
        **provenance(),
        **environment(),
    }
    write_json_atomic(os.path.join(outdir, "summary.json"), summary)
    if rows:
        plots.plot_history(rows, os.path.join(outdir, "loss.png"),
                           title=f"{model.name} on {ds.name}: {FLAGS.descent} {FLAGS.optimizer}, "
                                 f"lr={FLAGS.lr}",
                           step_losses=result.step_losses, diverged_at_step=result.diverged_at_step,
                           bound_name=theory.bound_name(FLAGS.optimizer, FLAGS.momentum, "α"))
    # every process of an interrupted run exits as interrupted: those that got no signal
    # themselves (their peers did) as if terminated, 128 + SIGTERM
    interrupted_code = signals.exit_code or 128 + 15
    if not primary:  # process 0 reports
        return interrupted_code if status == "interrupted" else 0
    if status == "interrupted":
        print(f"interrupted after epoch {summary['epochs_run']}: checkpoint saved; continue with "
              f"--resume (outputs in {workdir})")
        return interrupted_code
    if status == "diverged":
        extreme = {s: v for s, v in max_x.items() if v is not None and v > EXTREME_INPUT}
        if extreme:
            cause = ("the inputs are extreme (largest |x| " + ", ".join(
                f"{v:.3g} in {s}" for s, v in extreme.items()) + "): fix their scaling before "
                f"blaming lr={FLAGS.lr}")
        else:
            cause = f"lr={FLAGS.lr} is likely too large: {_builders.lr_advice(ds, 'lr', FLAGS.lr)}"
        print(f"diverged at step {result.diverged_at_step}: the loss stopped being "
              f"finite or blew up; kept the state before that update; {cause}")
    elif status == "degraded":
        best = max(r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None)
        print(f"degraded: test accuracy fell to {summary['test_accuracy']:.4f}, near chance "
              f"({1 / ds.num_classes:.3f}), after reaching {best:.4f}; lower --lr or check the data")
    else:
        acc = f", test accuracy {summary['test_accuracy']:.4f}" if summary["test_accuracy"] is not None else ""
        rmse = f", test RMSE {summary['test_rmse']:.4g}" if summary["test_rmse"] is not None else ""
        loss_text = "nan" if summary["test_loss"] is None else f"{summary['test_loss']:.4g}"
        print(f"done: test loss {loss_text}{acc}{rmse}")
        first, final = (rows[0].get("train_loss"), last.get("train_loss")) if rows else (None, None)
        if _builders.loss_rose(first, final):
            sys.stderr.write(f"warning: the training loss rose from {first:.4g} to {final:.4g} "
                             f"without diverging; lr={FLAGS.lr} is likely too large: "
                             f"{_builders.lr_advice(ds, 'lr', FLAGS.lr)}\n")
    say(f"outputs in {os.path.abspath(workdir)}")
    return 0


def sharpness_probe(model, loss, ds):
    """``probe(state) -> λmax``: the top Hessian eigenvalue of the training-mode loss (plus
    the L2 term of a coupled --weight_decay, the objective the optimizer descends) on a fixed
    subset of --sharpness_examples training examples, by Lanczos on Hessian-vector products
    through the manual backward (``gdlab.curvature``), compiled once. Every probe starts
    from the same seeded direction, not from the previous eigenvector: λmax is then a
    function of the state alone, so a resumed run logs the same values bit for bit."""
    import jax

    from gdlab import curvature

    x, y = curvature.fixed_subset(jax.numpy.asarray(ds.x_train), jax.numpy.asarray(ds.y_train),
                                  FLAGS.sharpness_examples, seed=FLAGS.seed)
    coupled = FLAGS.optimizer != "adamw"  # adamw's decay is decoupled: no term of the loss
    estimate = curvature.make_sharpness(
        model, loss, method="lanczos", tol=1e-4, max_iters=50,
        weight_decay=FLAGS.weight_decay if coupled else 0.0,
        weight_decay_mask=_builders.WEIGHT_DECAY_ON[FLAGS.weight_decay_on])
    key = jax.random.PRNGKey(FLAGS.seed)  # one fixed dropout mask, if the model has dropout

    def probe(state):
        v0 = curvature.random_direction(key, state.params)
        return float(estimate(state.params, state.model_state, x, y, v0, key=key).values[0])

    return probe


def _read_rows(workdir):
    from gdlab.records import read_jsonl

    return read_jsonl(os.path.join(workdir, "metrics.jsonl"))


def cli() -> None:
    """The ``gdlab-train`` console command."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
