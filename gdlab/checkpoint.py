"""Checkpoints of the whole ``TrainState``, with orbax, for exact resume.

A checkpoint is one folder ``WORKDIR/checkpoints/<epoch>/`` holding

- ``state``: every array of the ``TrainState`` (params, model state, optimizer
  state, key, step, divergence record), written by orbax;
- ``meta``: a JSON record: the epoch, the number of metrics rows written up to
  it, the state's tree structure (so ``restore`` rebuilds the exact
  ``TrainState`` with its NamedTuples, without being told the model), and
  whatever the caller adds (the run's configuration).

orbax writes each checkpoint into a temporary folder and renames it into place
when complete, so a partial checkpoint is never visible: a run killed while
saving leaves the previous checkpoint as the latest. Only finite, non-diverged
states are saved. Restoring the state saved after epoch k and training on with
the same program gives bitwise the same parameters as never stopping.

::

    checkpoint.save(workdir, state, epoch=5)
    state = checkpoint.restore(workdir)          # the latest TrainState
    params = checkpoint.load_params(workdir)     # its params alone
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging as std_logging
import os
from typing import Any, ClassVar

import jax
import numpy as np

from gdlab.records import first_line, to_json
from gdlab.workdir import WorkdirMoved, check_in_place, is_locked

FOLDER = "checkpoints"


class CheckpointError(Exception):
    """A checkpoint folder that cannot be read; its message is one sentence naming it."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (a full disk, a read-only or vanished folder):
    the checkpoints saved before it are kept; orbax's half-written folder is removed when
    the run resumes. Its message is one sentence naming it."""


def stderr_fd() -> int:
    """The file descriptor of the program's standard error, also while a checkpoint is
    read or written with it silenced (a signal handler's message must still be seen)."""
    return _Silenced.saved_fds[-1] if _Silenced.saved_fds else 2


class _Silenced:
    """Standard error (file descriptor 2) sent to /dev/null while orbax reads or writes:
    after a failed read its abandoned array reads print their own copies of the error
    from other threads and from the garbage collector, and a failed write logs its
    thread's. On a failure they are collected before standard error comes back; the
    failure itself is raised as one ``CheckpointError``. ``stderr_fd`` meanwhile gives
    the real standard error."""

    saved_fds: ClassVar[list[int]] = []

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self.saved = os.dup(2)
        _Silenced.saved_fds.append(self.saved)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, kind, error, traceback):
        import gc
        import sys
        import time

        if kind is not None:  # let the abandoned reads finish failing, out of sight
            hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
            try:
                gc.collect()
                time.sleep(0.2)
                gc.collect()
            finally:
                sys.unraisablehook = hook
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        _Silenced.saved_fds.remove(self.saved)
        os.close(self.saved)
        return False


@contextlib.contextmanager
def _reading(workdir, epoch):
    """Reading the checkpoint of ``epoch`` with orbax, standard error silenced: whatever
    fails (orbax and tensorstore raise many kinds) is one ``CheckpointError``."""
    try:
        with _Silenced():
            yield
    except Exception as error:
        folder = os.path.join(directory(workdir), str(epoch))
        raise CheckpointError(
            f"the checkpoint {folder} cannot be read ({_first_line(error)}); remove that "
            f"folder to fall back to the one before it, or start over with --overwrite") from None


LISTING_ATTEMPTS = 5
"""How many times a reader lists the checkpoints when one vanishes while they are listed."""


def directory(workdir: str | os.PathLike) -> str:
    """``WORKDIR/checkpoints`` as an absolute path (orbax wants one)."""
    return os.path.join(os.path.abspath(os.fspath(workdir)), FOLDER)


@contextlib.contextmanager
def _manager(workdir, *, keep: int | None = None, write: bool = False):
    """An orbax manager, open for the ``with`` block; only a writer (the run holding the
    workdir's lock) may clean up temporary folders, which a reader could otherwise delete
    under a run saving one. Meanwhile orbax's absl log lines are off: a reader's (it warns
    that it is read-only, and its threads log a damaged ``_CHECKPOINT_METADATA`` that it
    then reads past) all of them, a writer's but errors."""
    import orbax.checkpoint as ocp

    from absl import logging as absl_logging

    # absl's verbosity flag, and the levels it sets on the absl and root loggers (a
    # program's own logging.basicConfig level, not only the flag, comes back afterwards)
    loggers = [std_logging.getLogger("absl"), std_logging.getLogger()]
    verbosity, levels = absl_logging.get_verbosity(), [lg.level for lg in loggers]
    absl_logging.set_verbosity(absl_logging.ERROR if write else absl_logging.FATAL)
    try:
        extra = {}
        if jax.process_count() > 1:  # each process reads on its own, process 0 alone writes:
            me = jax.process_index()  # no barrier waits for processes that never call
            extra["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me})
            if write:
                os.makedirs(directory(workdir), exist_ok=True)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=write and not extra,
                                               read_only=not write,
                                               enable_async_checkpointing=False,
                                               cleanup_tmp_directories=write, **extra)
        for attempt in range(LISTING_ATTEMPTS):
            try:
                manager = ocp.CheckpointManager(directory(workdir), options=options,
                                                item_names=("state", "meta"))
                break
            except FileNotFoundError:
                # orbax lists the step folders, then reads each one's time: a run saving
                # beside a reader may remove its oldest in between; list them again
                if write or attempt + 1 == LISTING_ATTEMPTS:
                    raise
        with manager:
            yield manager
    finally:
        absl_logging.set_verbosity(verbosity)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# --- the tree structure, as JSON ------------------------------------------------------

def _class_path(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_class(path: str):
    module, _, name = path.partition(":")
    if module != "gdlab" and not module.startswith("gdlab."):
        raise ValueError(f"checkpoint names the class {path!r}, which is not gdlab's")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def skeleton(tree) -> Any:
    """A JSON description of ``tree``'s structure and leaf shapes/dtypes."""
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return {"dataclass": _class_path(tree),
                "fields": {f.name: skeleton(getattr(tree, f.name))
                           for f in dataclasses.fields(tree)}}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # a NamedTuple
        return {"namedtuple": _class_path(tree),
                "fields": {name: skeleton(getattr(tree, name)) for name in tree._fields}}
    if isinstance(tree, dict):
        if not all(isinstance(k, str) for k in tree):
            raise ValueError("checkpoints hold dicts with string keys only")
        return {"dict": {k: skeleton(v) for k, v in tree.items()}}
    if isinstance(tree, (tuple, list)):
        return {type(tree).__name__: [skeleton(v) for v in tree]}
    if tree is None:
        return {"none": None}
    if hasattr(tree, "dtype") and jax.dtypes.issubdtype(tree.dtype, jax.dtypes.prng_key):
        # a typed key (jax.random.key): its dtype names no NumPy type; keep its impl
        return {"key": {"shape": list(np.shape(tree)), "impl": str(jax.random.key_impl(tree))}}
    dtype = tree.dtype if hasattr(tree, "dtype") else np.asarray(tree).dtype
    return {"leaf": {"shape": list(np.shape(tree)), "dtype": str(dtype)}}


def abstract(desc) -> Any:
    """The tree ``skeleton`` described, with ``jax.ShapeDtypeStruct`` leaves."""
    kind = next(iter(desc))
    value = desc[kind]
    if kind == "leaf":
        return jax.ShapeDtypeStruct(tuple(value["shape"]), np.dtype(value["dtype"]))
    if kind == "none":
        return None
    if kind == "key":
        dtype = jax.eval_shape(lambda: jax.random.key(0, impl=value["impl"])).dtype
        return jax.ShapeDtypeStruct(tuple(value["shape"]), dtype)
    if kind == "dict":
        return {k: abstract(v) for k, v in value.items()}
    if kind in ("tuple", "list"):
        items = [abstract(v) for v in value]
        return tuple(items) if kind == "tuple" else items
    cls = _load_class(desc[kind])
    fields = {k: abstract(v) for k, v in desc["fields"].items()}
    return cls(**fields)


# --- save and restore -----------------------------------------------------------------

def is_good(state) -> bool:
    """True when ``state`` may be saved as the latest good one: not diverged, all finite."""
    if bool(np.asarray(state.health.diverged)):
        return False
    leaves = jax.tree_util.tree_leaves((state.params, state.model_state, state.opt_state))
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in leaves
               if np.issubdtype(np.asarray(x).dtype, np.inexact))


def _local(tree):
    """In a multi-process run, every array as numpy: this process's copy of a replicated
    one (orbax saves host arrays from one process; device arrays it would gather)."""
    if jax.process_count() == 1:
        return tree
    from gdlab import parallel

    return parallel.fetch(tree)


def save(workdir, state, *, epoch: int, metrics_rows: int = 0, meta: dict | None = None,
         keep: int | None = 3) -> str:
    """Save ``state`` (a ``gdlab.train.TrainState``) as the checkpoint of ``epoch``;
    keep the newest ``keep`` checkpoints (None: all). Returns the checkpoint's folder.

    Raises ``ValueError`` for a diverged or non-finite state: a checkpoint is
    always a state worth resuming from, ``WorkdirError`` when the workdir this
    process locked was moved or deleted (``workdir.check_in_place``), and
    ``CheckpointWriteError`` when orbax could not write it. In a
    multi-process run only process 0 calls it (the state is replicated: it saves its
    own copy).
    """
    import orbax.checkpoint as ocp

    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"checkpoint epoch must be an integer >= 0, got {epoch!r}")
    if keep is not None and (isinstance(keep, bool) or keep < 1):
        raise ValueError(f"keep must be None or an integer >= 1, got {keep!r}")
    check_in_place(directory(workdir))  # the run's workdir moved away: not recreated here
    state = _local(state)
    if not is_good(state):
        raise ValueError("refusing to checkpoint a diverged or non-finite training state")
    try:  # now, not in orbax's writer thread (a traceback there, and a half-written step)
        meta = json.loads(to_json(dict(meta or {})))
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint meta must be JSON: {e}") from None
    record = {"epoch": int(epoch), "metrics_rows": int(metrics_rows),
              "structure": skeleton(state), "meta": meta}
    folder = os.path.join(directory(workdir), str(int(epoch)))
    try:
        with _Silenced(), _manager(workdir, keep=keep, write=True) as mngr:
            mngr.save(int(epoch), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                           meta=ocp.args.JsonSave(record)),
                      force=True)
            mngr.wait_until_finished()
    except Exception as error:  # a full disk, a folder made read-only or moved meanwhile
        _check_not_moved(workdir, epoch)  # moved while it was saved: say that
        raise CheckpointWriteError(f"the checkpoint {folder} could not be written "
                                   f"({_first_line(error)})") from None
    _check_not_moved(workdir, epoch)
    return folder


def _check_not_moved(workdir, epoch: int) -> None:
    """``check_in_place`` after a save: a workdir moved or deleted while orbax saved into
    it was recreated by orbax at the old path; what the save put there goes again (only
    that, and the folders it leaves empty, unless another run holds the old path now)
    before the ``WorkdirMoved`` is raised."""
    try:
        check_in_place(directory(workdir))
    except WorkdirMoved:
        import shutil

        if is_locked(workdir):  # another run took the old path meanwhile: its files stay
            raise
        for name in (f"{int(epoch)}.orbax-checkpoint-tmp", str(int(epoch))):
            shutil.rmtree(os.path.join(directory(workdir), name), ignore_errors=True)
        for empty in (directory(workdir), os.path.dirname(directory(workdir))):
            try:
                os.rmdir(empty)
            except OSError:
                break
        raise


def _first_line(error: BaseException) -> str:
    """``Type: the first line of its message`` (at most 200 characters of it)."""
    name = type(error).__name__
    return f"{name}: {first_line(error)}" if str(error).strip() else name


def epochs(workdir) -> list[int]:
    """The epochs that have a complete checkpoint, oldest first (none: [])."""
    if not os.path.isdir(directory(workdir)):
        if os.path.exists(directory(workdir)):
            raise CheckpointError(f"{directory(workdir)} is a file, not a folder of checkpoints")
        return []
    with _manager(workdir) as mngr:
        return sorted(int(s) for s in mngr.all_steps())


def latest_epoch(workdir) -> int | None:
    """The newest checkpointed epoch, or None."""
    found = epochs(workdir)
    return found[-1] if found else None


def read_meta(workdir, epoch: int | None = None) -> dict:
    """The JSON record of a checkpoint (the latest by default)."""
    import orbax.checkpoint as ocp

    epoch = _epoch_or_latest(workdir, epoch)
    with _reading(workdir, epoch):
        with _manager(workdir) as mngr:
            record = mngr.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        record = record["meta"]
        if not isinstance(record, dict) or not {"epoch", "metrics_rows", "structure"} <= set(record):
            raise ValueError("its meta record lacks the epoch, metrics rows or structure")
    return record


def latest(workdir, attempts: int = 3) -> tuple[int, Any]:
    """``(epoch, state)`` of the newest checkpoint, read together. A run saving beside the
    reader (``evaluate`` on a run in progress) may remove or replace the newest one while it
    is read: then the new newest is read, up to ``attempts`` times in all, instead of a
    checkpoint being replaced taken for a damaged one (or mislabelled)."""
    for attempt in range(attempts):
        epoch = _epoch_or_latest(workdir, None)
        try:
            return epoch, restore(workdir, epoch)
        except (CheckpointError, FileNotFoundError):
            if attempt + 1 == attempts or latest_epoch(workdir) == epoch:
                raise  # not replaced meanwhile: it is the checkpoint itself
    raise AssertionError("unreachable")


def restore(workdir, epoch: int | None = None):
    """The ``TrainState`` saved at ``epoch`` (the latest by default: ``latest``), on this
    process's first device, whichever devices (one, a mesh, several processes) the saving
    run used.

    Raises ``FileNotFoundError`` when there is no checkpoint, ``CheckpointError`` when it
    cannot be read (a damaged or truncated file).
    """
    import orbax.checkpoint as ocp

    if epoch is None:
        return latest(workdir)[1]
    epoch = _epoch_or_latest(workdir, epoch)
    record = read_meta(workdir, epoch)
    with _reading(workdir, epoch):  # a damaged array file, a structure it cannot rebuild
        # onto this process's first device, whatever devices the saving run used (a mesh
        # run's arrays carry its layout, which orbax would otherwise insist on)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
            abstract(record["structure"]))
        with _manager(workdir) as mngr:
            out = mngr.restore(epoch, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))
    return out["state"]


def load_params(workdir, epoch: int | None = None):
    """The trained parameters of the checkpoint (the latest by default)."""
    return restore(workdir, epoch).params


def _epoch_or_latest(workdir, epoch):
    found = epochs(workdir)
    if not found:
        raise FileNotFoundError(f"{os.fspath(workdir)} has no checkpoint (looked in "
                                f"{directory(workdir)})")
    if epoch is None:
        return found[-1]
    if epoch not in found:
        raise FileNotFoundError(f"{os.fspath(workdir)} has no checkpoint of epoch {epoch}; it "
                                f"has {', '.join(map(str, found))}")
    return epoch
