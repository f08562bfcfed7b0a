r"""Reload a training run from its workdir and evaluate its latest checkpoint.

    python -m experiments.evaluate --workdir=runs/digits

Rebuilds the data set and model from the run's config.json, restores the
checkpoint's TrainState and prints the train and test metrics in evaluation
mode. For a finished run they equal those in its summary.json; when the data
read now is not what the checkpoint was trained on (its data_digest, or for a
checkpoint older than that record summary.json's), a warning says so. Writes
nothing.
It takes only --workdir and --epoch: the data and model flags it defines are
the run's, read from config.json, so one given on the command line is refused
rather than silently replaced.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from experiments import _builders, _cli

_builders.define_data_flags()
_builders.define_model_flags()
_builders.define_descent_flags()
flags.DEFINE_string("workdir", None, "The folder of a run of experiments.train.")
flags.DEFINE_integer("epoch", None, "Which checkpoint (an epoch number); the latest by default.")
# (not _cli's key flags: --overwrite and the model's list flags are the run's, refused here)

FLAGS = flags.FLAGS


OWN_FLAGS = ("workdir", "epoch")
"""The flags a user gives evaluate; every other flag of this program comes from the run."""


def main(argv):
    del argv
    given = sorted(name for name in _cli.config_dict()
                   if name not in OWN_FLAGS and FLAGS[name].present)
    if given:
        raise _cli.UsageError(
            f"evaluate takes only --workdir and --epoch: the data, model and training flags "
            f"are the run's own, read from its config.json, so "
            f"{', '.join('--' + n for n in given)} would be ignored; to use other data or "
            f"another model, train a run with them")
    if not FLAGS.workdir:
        raise _cli.UsageError("--workdir must name the folder of a training run")
    workdir = _cli.expand("workdir", FLAGS.workdir)
    config_path = os.path.join(workdir, "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise _cli.UsageError(f"--workdir={workdir}: no config.json there; is it the workdir "
                              "of experiments.train?") from None
    except (OSError, ValueError) as e:
        raise _cli.UsageError(f"{config_path} cannot be read ({e})") from None
    _cli.restore_flags(config, config_path, skip=("workdir", "epoch"))  # the run's own flags
    ds = _builders.load_dataset()
    loss_name = _builders.loss_name(ds)
    model = _builders.build_model(ds, loss_name)

    from gdlab import checkpoint, losses, train

    try:  # the newest, read with its epoch (a run saving beside may replace it meanwhile)
        epoch, state = (checkpoint.latest(workdir) if FLAGS.epoch is None
                        else (FLAGS.epoch, checkpoint.restore(workdir, FLAGS.epoch)))
    except FileNotFoundError as e:
        raise _cli.UsageError(str(e)) from None
    except checkpoint.CheckpointError as e:
        _cli.fail_now(str(e))
    trained_on, source = _trained_on(workdir, epoch)
    if trained_on is not None and trained_on != _builders.data_digest(ds):
        sys.stderr.write(  # a warning, not a refusal: another machine's NumPy may round the
            f"warning: the data ({ds.name}) as read now is not what the run trained on "  # scaling
            f"up to epoch {epoch} ({source}'s data_digest): it changed since, or was read on "
            f"another machine; these metrics are not the run's own\n")
    try:
        train.check_params_fit(model, state.params, ds.input_shape)
    except ValueError as e:
        raise _cli.UsageError(f"{workdir}: {e}; have the data or gdlab's version changed since "
                              f"the run?") from None
    evaluate = train.jit_evaluate(model, losses.get(loss_name),
                                  target_scale=_builders.target_scale(ds))
    print(f"{workdir}: {model.name}, checkpoint of epoch {epoch} (step {int(state.step)})")
    for split, (x, y) in (("train", (ds.x_train, ds.y_train)), ("test", (ds.x_test, ds.y_test))):
        metrics = evaluate(state.params, state.model_state, x, y)
        print(f"{split}: " + "  ".join(f"{k} {float(v):.6g}" for k, v in metrics.items()))
    return 0


def _trained_on(workdir: str, epoch: int) -> tuple[str | None, str]:
    """``(digest, where it was read)``: the digest of the data the checkpoint of ``epoch``
    was trained on, kept in its meta record (a run resumed on changed data has checkpoints
    of both); for a checkpoint older than that record, the one in the run's summary.json.
    None when neither has one (a run not finished, or older than the digest), or when the
    checkpoint's record can no longer be read (pruned since its state was read)."""
    from gdlab import checkpoint

    try:
        kept = checkpoint.read_meta(workdir, epoch).get("meta")
    except (checkpoint.CheckpointError, FileNotFoundError, ValueError):
        # a run saving beside pruned it since its state was read: what it was trained on
        # is unknown (summary.json's may be another data set's: a run resumed on changed data)
        return None, "its checkpoint"
    digest = kept.get("data_digest") if isinstance(kept, dict) else None
    if isinstance(digest, str):
        return digest, "its checkpoint"
    try:
        with open(os.path.join(workdir, "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None, "summary.json"
    digest = summary.get("data_digest") if isinstance(summary, dict) else None
    return (digest if isinstance(digest, str) else None), "summary.json"


def cli() -> None:
    """The ``gdlab-evaluate`` console command."""
    sys.exit(_cli.run(main))


if __name__ == "__main__":
    cli()
