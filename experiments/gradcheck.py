r"""Check manual backprop against jax.grad and finite differences.

    python -m experiments.gradcheck --hidden=32,32 --activation=tanh --loss=xent --dtype=float64
    python -m experiments.gradcheck --layers=all --dtype=float64 --json_out=check.json
    python -m experiments.gradcheck --model=cnn        # or --model=transformer
    python -m experiments.gradcheck --model=cnn --mixed=bfloat16   # mixed precision vs float64

Prints one row per parameter leaf (or, with --layers, per layer and loss
input/parameter) and exits 0 when every row passes, 1 when any fails, 2 on bad flags.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from experiments import _cli
from gdlab import layers, losses
from gdlab.records import write_text_atomic

flags.DEFINE_integer("seed", 0, "Seed for the random model, inputs and targets.")
flags.DEFINE_enum("model", "mlp", ["mlp", "cnn", "transformer"],
                  "The random model to check: mlp (--hidden, --activation, --loss, --input_dim), "
                  "cnn (two conv/batch-norm/pool stages on 8x8x1 images) or transformer (two "
                  "causal blocks on length-6 sequences); cnn and transformer use --loss=xent "
                  "and --num_classes symbols or classes, in training mode.")
_cli.define_int_list("hidden", "32,32", "Hidden layer sizes of the MLP, comma-separated.")
flags.DEFINE_enum("activation", "tanh", [a for a in layers.ACTIVATIONS if a != "softmax"],
                  "Hidden activation of the MLP.")
flags.DEFINE_enum("loss", "xent", list(losses.LOSSES), "Loss: mse, huber, xent (softmax "
                  "cross-entropy, integer labels) or bce (sigmoid binary cross-entropy).")
flags.DEFINE_enum("dtype", "float64", ["float32", "float64"],
                  "Dtype of the manual and jax.grad gradients; finite differences are always float64.")
flags.DEFINE_enum("mixed", None, ["bfloat16"], "Check mixed precision instead: each gradient "
                  "(manual and jax.grad) computed in this dtype from float32 params, the loss in "
                  "float32, against the float64 one, leaf by leaf in norm (tolerances.MIXED).")
flags.DEFINE_integer("batch_size", 16, "Examples in the random batch.", lower_bound=1)
flags.DEFINE_integer("input_dim", 8, "Features per example.", lower_bound=1)
flags.DEFINE_integer("num_classes", 5, "Classes (outputs) for --loss=xent; mse and huber use "
                     "this many outputs too, bce uses 1.", lower_bound=2)
flags.DEFINE_string("layers", "", "Instead of the MLP, check single layers and losses: 'all', or "
                    "a comma-separated list of names (e.g. dense,gelu,xent).")
flags.DEFINE_string("json_out", None, "Also write the report as JSON to this path.")
flags.DEFINE_string("workdir", None, "Optional folder for config.json (every flag), flags.txt "
                    "(to replay them with --flagfile) and gradcheck.json (the report).")
flags.adopt_module_key_flags(_cli)  # --hidden is defined there

FLAGS = flags.FLAGS


def main(argv):
    del argv
    import jax

    _cli.check_seed(FLAGS.seed)
    jax.config.update("jax_enable_x64", True)  # float64 references and finite differences
    from gdlab import gradcheck

    names = None
    if FLAGS.layers:
        names = gradcheck.CHECK_NAMES if FLAGS.layers == "all" else [
            n.strip() for n in FLAGS.layers.split(",") if n.strip()]
        unknown = [n for n in names if n not in gradcheck.CHECK_NAMES]
        if unknown or not names:
            raise _cli.UsageError(
                f"--layers={FLAGS.layers}: unknown name {unknown[0] if unknown else '(empty)'!r}; "
                f"use 'all' or names from: {', '.join(gradcheck.CHECK_NAMES)}")
    if FLAGS.model != "mlp" and FLAGS.loss != "xent":
        raise _cli.UsageError(f"--model={FLAGS.model} is checked with --loss=xent, got "
                              f"--loss={FLAGS.loss}")
    if FLAGS.mixed and names is not None:
        raise _cli.UsageError("--mixed checks a model (--model), not --layers")
    _check_unused_flags(names)
    if names is None:
        _check_size(gradcheck)
    json_out = _cli.output_file("json_out", FLAGS.json_out, "gradcheck.json")  # before the check
    if json_out is not None:
        _check_json_out_spares_runs(json_out)
    if FLAGS.workdir is not None:
        FLAGS.workdir, _lock = _cli.prepare_workdir(FLAGS.workdir)  # held until the process ends

    if names is not None:
        report = gradcheck.check_all(dtype=FLAGS.dtype, seed=FLAGS.seed, names=names)
    else:
        report = gradcheck.check_random_model(
            FLAGS.model, hidden=_cli.int_list(FLAGS.hidden), activation=FLAGS.activation,
            loss=FLAGS.loss, dtype=FLAGS.dtype, batch_size=FLAGS.batch_size,
            input_dim=FLAGS.input_dim, num_classes=FLAGS.num_classes, seed=FLAGS.seed,
            mixed=FLAGS.mixed)
    print(report.table())
    outputs = [json_out] if json_out is not None else []
    if FLAGS.workdir is not None:
        outputs.append(os.path.join(FLAGS.workdir, "gradcheck.json"))
    for path in outputs:
        try:
            write_text_atomic(path, report.to_json() + "\n")
        except OSError as e:
            raise _cli.UsageError(f"{path}: cannot write the report there ({e.strerror})") from None
        print(f"wrote {os.path.abspath(path)}")
    return 0 if report.passed else 1


MLP_FLAGS = ("hidden", "activation", "input_dim")
"""The flags that shape the random MLP alone: the CNN's and the transformer's inputs are fixed."""

MODEL_FLAGS = ("model", *MLP_FLAGS, "loss", "batch_size", "num_classes")
"""The flags of the random model (and its batch), which --layers does not check."""


def _check_unused_flags(names) -> None:
    """One sentence (exit 2) for a flag the requested check would ignore, so that a report
    that passes is never taken for one of a model it did not build."""
    if names is not None:
        unused, why = [n for n in MODEL_FLAGS if _cli.given(n)], (
            "--layers checks single layers and losses on random inputs of their own")
    elif FLAGS.model != "mlp":
        unused, why = [n for n in MLP_FLAGS if _cli.given(n)], (
            f"--model={FLAGS.model} checks a {FLAGS.model} of a fixed shape")
    elif FLAGS.loss == "bce" and _cli.given("num_classes"):
        unused, why = ["num_classes"], "--loss=bce checks an MLP of one output (one logit)"
    else:
        unused, why = [], ""
    if FLAGS.mixed and _cli.given("dtype"):
        unused, why = unused or ["dtype"], why or (
            "--mixed computes in bfloat16 from float32 params, against float64")
    if unused:
        raise _cli.UsageError(f"{why}, so {', '.join('--' + n for n in unused)} would be "
                              f"ignored; leave {'it' if len(unused) == 1 else 'them'} out")


def _check_json_out_spares_runs(json_out: str) -> None:
    """One sentence (exit 2) when --json_out would write over a file of a run: one already in
    a run's folder (its metrics, its summary), or the config.json or flags.txt that
    --workdir is about to hold."""
    from gdlab.workdir import RUN_MARKS, resolve

    path = os.path.abspath(json_out)
    folder = os.path.dirname(path)
    ours = (os.path.abspath(resolve(FLAGS.workdir)) if FLAGS.workdir else None)
    if folder == ours and os.path.basename(path) in RUN_MARKS:
        raise _cli.UsageError(f"--json_out={FLAGS.json_out} is the {os.path.basename(path)} "
                              f"this run writes into --workdir; give another file name")
    if (os.path.exists(path) and folder != ours
            and all(os.path.exists(os.path.join(folder, m)) for m in RUN_MARKS)):
        raise _cli.UsageError(f"--json_out={FLAGS.json_out} would replace a file of the run in "
                              f"{folder}; give a path outside that run's folder")


def _check_size(gradcheck) -> None:
    """One sentence (exit 2) for a model too large to check by finite differences, or a batch
    whose finite differences would not fit in the device's memory."""
    spec = {"loss": FLAGS.loss, "num_classes": FLAGS.num_classes}
    if FLAGS.model == "mlp":
        spec.update(hidden=_cli.int_list(FLAGS.hidden), activation=FLAGS.activation,
                    input_dim=FLAGS.input_dim)
    count, need = gradcheck.problem_size(FLAGS.model, batch_size=FLAGS.batch_size, **spec)
    if count > gradcheck.FD_MAX_PARAMS:
        shrink = "--hidden or --input_dim" if FLAGS.model == "mlp" else "--num_classes"
        raise _cli.UsageError(
            f"the random {FLAGS.model} has {count:,} parameters, over the "
            f"{gradcheck.FD_MAX_PARAMS:,} gradcheck takes: finite differences need two forward "
            f"passes per parameter; use a smaller {shrink}")
    _cli.check_half_memory(need, f"--batch_size={FLAGS.batch_size:,}: the finite differences "
                                 f"hold {min(gradcheck.FD_CHUNK, count)} perturbed copies of the "
                                 f"batch's forward values at once,", "use a smaller --batch_size")


def cli() -> None:
    """The ``gdlab-gradcheck`` console command (same as ``python -m experiments.gradcheck``)."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
