"""Flags shared by the training experiments, and what they build: data, model, loss, optimizer.

Each experiment calls the ``define_*`` functions it needs at import time and
the builders in ``main``; the builders turn flag values into gdlab objects and
bad combinations into one-sentence ``UsageError``s.
"""

from __future__ import annotations

from absl import flags

from experiments import _cli
from gdlab import data, descent, layers, losses, optim

FLAGS = flags.FLAGS


def define_data_flags(default: str = "digits") -> None:
    flags.DEFINE_enum("dataset", default, list(data.DATASETS),
                      "Data set: bundled (digits, diabetes), generated (houses, moons, spirals), "
                      "or the user's own (mnist IDX files in --data_dir, csv via --csv_path).")
    flags.DEFINE_string("data_dir", None, "Folder holding the MNIST IDX files (--dataset=mnist).")
    flags.DEFINE_string("csv_path", None, "The CSV table to learn from (--dataset=csv).")
    flags.DEFINE_string("target", None, "Name of the target column (--dataset=csv).")
    flags.DEFINE_integer("seed", 0, "Seed for the split, the initial weights and the shuffles.")


def define_model_flags() -> None:
    flags.DEFINE_enum("model", "mlp", ["mlp", "linear"],
                      "mlp (hidden layers) or linear (no hidden layer, regression's model).")
    _cli.define_int_list("hidden", "64", "Hidden layer sizes of the MLP, comma-separated.")
    flags.DEFINE_enum("activation", "relu", [a for a in layers.ACTIVATIONS if a != "softmax"],
                      "Hidden activation of the MLP.")
    flags.DEFINE_enum("loss", "auto", ["auto", *losses.LOSSES],
                      "Loss: auto (xent for classification, mse for regression), mse, huber, "
                      "xent or bce (two classes).")
    flags.DEFINE_enum("grad", "manual", ["manual", "autodiff", "custom_vjp"],
                      "How gradients are computed: hand-written backprop (manual), jax.grad "
                      "(autodiff), or the manual rules through jax.custom_vjp.")


def define_descent_flags(*, descent_default: str = "minibatch", batch_size: int = 32,
                         optimizer: str = "momentum", lr: float = 0.05, epochs: int = 20) -> None:
    flags.DEFINE_enum("descent", descent_default, list(descent.MODES),
                      "batch (all examples per step), sgd (one) or minibatch (--batch_size).")
    flags.DEFINE_integer("batch_size", batch_size, "Examples per step for --descent=minibatch.")
    flags.DEFINE_enum("optimizer", optimizer, list(optim.OPTIMIZERS), "The update rule.")
    flags.DEFINE_float("lr", lr, "Learning rate α (> 0).")
    flags.DEFINE_enum("schedule", "constant", list(optim.SCHEDULES),
                      "Learning-rate schedule over the whole run.")
    flags.DEFINE_float("momentum", 0.9, "β of momentum and nesterov.")
    flags.DEFINE_float("weight_decay", 0.0, "L2 coefficient (decoupled for adamw); 0 for none.")
    flags.DEFINE_integer("epochs", epochs, "Passes over the training set.", lower_bound=1)


def load_dataset() -> data.Dataset:
    """The data set the flags name; bad files and arguments raise DataError (exit 2)."""
    kwargs = {"seed": FLAGS.seed}
    if FLAGS.dataset == "mnist":
        if not FLAGS.data_dir:
            raise _cli.UsageError("--dataset=mnist needs --data_dir, a folder with the MNIST IDX files")
        kwargs["data_dir"] = FLAGS.data_dir
    elif FLAGS.dataset == "csv":
        if not FLAGS.csv_path or not FLAGS.target:
            raise _cli.UsageError("--dataset=csv needs --csv_path=FILE and --target=COLUMN")
        kwargs.update(csv_path=FLAGS.csv_path, target=FLAGS.target)
    return data.load(FLAGS.dataset, **kwargs)


def loss_name(ds: data.Dataset) -> str:
    """The loss for the data set: ``--loss`` checked against the task, or the task's default."""
    name = FLAGS.loss
    if name == "auto":
        return "xent" if ds.task == "classification" else "mse"
    if ds.task == "regression" and name in ("xent", "bce"):
        raise _cli.UsageError(f"--loss={name} needs class labels, but {ds.name} is a regression "
                              "data set; use --loss=mse or --loss=huber")
    if ds.task == "classification" and name in ("mse", "huber"):
        raise _cli.UsageError(f"--loss={name} is for regression, but {ds.name} is a classification "
                              "data set; use --loss=xent or --loss=bce")
    if name == "bce" and ds.num_classes != 2:
        raise _cli.UsageError(f"--loss=bce needs two classes, but {ds.name} has {ds.num_classes}; "
                              "use --loss=xent")
    return name


def build_model(ds: data.Dataset, loss: str):
    """The ``--model`` for this data set, with as many outputs as the loss needs."""
    from gdlab import models

    outputs = 1 if loss == "bce" else ds.num_outputs
    if FLAGS.model == "linear":
        return models.linear(outputs)
    return models.mlp([*_cli.int_list(FLAGS.hidden), outputs], FLAGS.activation)


def batch_size(ds: data.Dataset) -> int:
    """The batch size ``--descent`` implies; ``--batch_size`` must fit the training set."""
    if FLAGS.descent == "minibatch" and not 1 <= FLAGS.batch_size <= ds.n_train:
        raise _cli.UsageError(f"--batch_size must be between 1 and {ds.n_train} (the training set "
                              f"size of {ds.name}), got {FLAGS.batch_size}")
    return descent.batch_size_for(FLAGS.descent, ds.n_train, FLAGS.batch_size)


def check_descent_flags() -> None:
    _cli.positive_float("lr", FLAGS.lr)
    if not 0.0 <= FLAGS.momentum < 1.0:
        raise _cli.UsageError(f"--momentum must lie in [0, 1), got {FLAGS.momentum}")
    if FLAGS.weight_decay < 0:
        raise _cli.UsageError(f"--weight_decay must be >= 0, got {FLAGS.weight_decay}")


def build_optimizer(lr, total_steps: int) -> optim.Optimizer:
    """``--optimizer`` with ``--schedule`` over ``total_steps``, ``--momentum`` and ``--weight_decay``."""
    rate = lr if FLAGS.schedule == "constant" else optim.get_schedule(FLAGS.schedule, lr, total_steps)
    kwargs = {}
    if FLAGS.optimizer in ("momentum", "nesterov"):
        kwargs["momentum"] = FLAGS.momentum
    if FLAGS.weight_decay > 0 or FLAGS.optimizer == "adamw":
        kwargs["weight_decay"] = FLAGS.weight_decay
    return optim.get(FLAGS.optimizer, rate, **kwargs)
