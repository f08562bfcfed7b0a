r"""Train a model by gradient descent and write its metrics, summary and plot.

    python -m experiments.train --workdir=runs/digits
    python -m experiments.train --dataset=houses --model=linear --descent=batch --lr=0.3 --workdir=runs/houses
    python -m experiments.train --model=cnn --workdir=runs/cnn
    python -m experiments.train --model=transformer --dataset=sort --workdir=runs/sort

Writes to --workdir: config.json (every flag), metrics.jsonl and metrics.csv
(one row per evaluated epoch), summary.json (status, final metrics, timing,
device) and loss.png. A diverging run ends with status "diverged" and exit 0.
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from experiments import _builders, _cli

_builders.define_data_flags()
_builders.define_model_flags()
_builders.define_descent_flags()
flags.DEFINE_integer("eval_every", 1, "Evaluate and log every this many epochs.", lower_bound=1)
flags.DEFINE_string("workdir", "runs/train", "Folder for config.json, metrics, summary.json, loss.png.")
flags.adopt_module_key_flags(_builders)  # list the shared flags in --help
flags.adopt_module_key_flags(_cli)

FLAGS = flags.FLAGS

COLUMNS = ["epoch", "step", "train_loss", "test_loss", "train_accuracy", "test_accuracy",
           "batch_loss", "grad_norm", "update_norm", "param_norm", "seconds", "examples_per_second"]


def main(argv):
    del argv
    _builders.apply_model_defaults()
    _builders.check_descent_flags()
    ds = _builders.load_dataset()
    loss_name = _builders.loss_name(ds)
    batch_size = _builders.batch_size(ds)
    model = _builders.build_model(ds, loss_name)
    workdir = _cli.prepare_workdir(FLAGS.workdir)

    import jax

    from gdlab import data, descent, losses, plots, train
    from gdlab.logging import MetricsWriter, environment, progress_line, write_json_atomic

    steps = FLAGS.epochs * descent.steps_per_epoch(ds.n_train, batch_size)
    optimizer = _builders.build_optimizer(FLAGS.lr, steps)
    print(f"{data.describe(ds)}; {model.name}; {FLAGS.descent} descent (B={batch_size}); "
          f"{FLAGS.optimizer} lr={FLAGS.lr}; {FLAGS.grad} gradients on {jax.default_backend()}")

    started = time.perf_counter()
    with MetricsWriter(workdir, COLUMNS) as writer:
        def hook(row, state):
            writer.write(row)
            print(progress_line(row, epochs=FLAGS.epochs), flush=True)

        result = train.fit(model, losses.get(loss_name), optimizer, (ds.x_train, ds.y_train),
                           epochs=FLAGS.epochs, batch_size=batch_size,
                           key=jax.random.PRNGKey(FLAGS.seed), grad=FLAGS.grad,
                           test_data=(ds.x_test, ds.y_test), eval_every=FLAGS.eval_every,
                           hook=hook)
    last = result.history[-1]
    summary = {
        "status": result.status,
        "diverged_at_step": result.diverged_at_step,
        "test_loss": last.get("test_loss"),
        "test_accuracy": last.get("test_accuracy"),
        "train_loss": last["train_loss"],
        "train_accuracy": last.get("train_accuracy"),
        "epochs_run": last["epoch"],
        "steps": last["step"],
        "wall_seconds": time.perf_counter() - started,
        "compile_seconds": result.compile_seconds,
        "examples_per_second": last["examples_per_second"],
        "dataset": data.describe(ds),
        "model": model.name,
        **environment(),
    }
    write_json_atomic(os.path.join(workdir, "summary.json"), summary)
    plots.plot_history(result.history, os.path.join(workdir, "loss.png"),
                       title=f"{model.name} on {ds.name}: {FLAGS.descent} {FLAGS.optimizer}, "
                             f"lr={FLAGS.lr}")
    if result.status == "diverged":
        print(f"diverged at step {result.diverged_at_step}: the loss or the weights stopped being "
              f"finite or blew up (lr={FLAGS.lr} is too large); kept the last finite state")
    else:
        acc = f", test accuracy {summary['test_accuracy']:.4f}" if summary["test_accuracy"] is not None else ""
        print(f"done: test loss {summary['test_loss']:.4g}{acc}")
    print(f"outputs in {os.path.abspath(workdir)}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run(main))
