"""gdlab.checkpoint: save and restore of the whole TrainState (bit for bit, typed keys,
NumPy meta), keeping the newest, refusing diverged states, reading beside a saving run,
and fit resumed from a checkpoint equal to one fit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_equal

from gdlab import checkpoint, data, losses, models, optim, train


def _small_state(key):
    ds = data.load("digits")
    model = models.mlp([8, 10])
    result = train.fit(model, losses.get("xent"), optim.adam(1e-3), (ds.x_train, ds.y_train),
                       epochs=2, batch_size=64, key=key)
    return model, result.state, ds


def test_checkpoint_save_restore_round_trip_is_exact(tmp_path, key):
    _, state, _ = _small_state(key)
    checkpoint.save(tmp_path, state, epoch=2, metrics_rows=2, meta={"note": "x"})
    restored = checkpoint.restore(tmp_path)
    assert type(restored) is type(state) and type(restored.opt_state) is type(state.opt_state)
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
    assert_tree_equal(restored, state)
    assert checkpoint.read_meta(tmp_path)["meta"] == {"note": "x"}
    params = checkpoint.load_params(tmp_path)
    np.testing.assert_array_equal(params["layers"][0]["w"], state.params["layers"][0]["w"])


def test_a_typed_key_and_numpy_meta_checkpoint_and_resume_bitwise(tmp_path):
    """fit takes a typed key (jax.random.key): its checkpoint is read back (it was written
    with the dtype name 'key<fry>', which NumPy cannot read) and resumes bit for bit; meta
    holding NumPy numbers is saved as numbers, and meta that is not JSON is a ValueError
    before anything is written (orbax's writer thread raised it)."""
    ds = data.load("digits")
    model, loss, opt = models.mlp([8, 10]), losses.get("xent"), optim.momentum(0.05)

    def run(epochs, **kw):
        return train.fit(model, loss, opt, (ds.x_train, ds.y_train), epochs=epochs,
                         batch_size=256, key=jax.random.key(3), **kw)

    first = run(1)
    checkpoint.save(tmp_path, first.state, epoch=1, meta={"lr": np.float32(0.05), "n": np.int64(7)})
    assert checkpoint.read_meta(tmp_path)["meta"] == {"lr": pytest.approx(0.05), "n": 7}
    restored = checkpoint.restore(tmp_path)
    assert restored.key.dtype == first.state.key.dtype
    np.testing.assert_array_equal(jax.random.key_data(restored.key),
                                  jax.random.key_data(first.state.key))
    resumed, straight = run(2, state=restored, start_epoch=1), run(2)
    assert_tree_equal(resumed.state.params, straight.state.params)
    with pytest.raises(ValueError, match="checkpoint meta must be JSON"):
        checkpoint.save(tmp_path, first.state, epoch=2, meta={"model": model})
    assert checkpoint.epochs(tmp_path) == [1]


def test_checkpoint_keeps_the_newest_and_refuses_diverged_states(tmp_path, key):
    _, state, _ = _small_state(key)
    for epoch in range(1, 6):
        checkpoint.save(tmp_path, state, epoch=epoch, keep=2)
    assert checkpoint.epochs(tmp_path) == [4, 5]
    bad = state.replace(health=state.health.replace(diverged=jnp.array(True)))
    with pytest.raises(ValueError, match="diverged or non-finite"):
        checkpoint.save(tmp_path, bad, epoch=6)
    nan = state.replace(params=jax.tree.map(lambda p: p * jnp.nan, state.params))
    with pytest.raises(ValueError, match="diverged or non-finite"):
        checkpoint.save(tmp_path, nan, epoch=6)
    assert checkpoint.latest_epoch(tmp_path) == 5
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.restore(tmp_path / "empty")


def test_latest_reads_the_new_newest_when_a_saving_run_replaces_it(tmp_path, key, monkeypatch):
    """A reader beside a saving run (keep=1): the newest checkpoint it chose is replaced
    while it reads. It reads the new one, with that one's epoch, instead of calling the
    replaced one damaged; a checkpoint that stays newest and fails is raised as it is."""
    _, state, _ = _small_state(key)
    later = state.replace(step=state.step + 7)
    checkpoint.save(tmp_path, state, epoch=2, keep=1)
    own, calls = checkpoint.restore, []

    def restore_while_saving(workdir, epoch=None):
        calls.append(epoch)
        if len(calls) == 1:  # the writer saves epoch 3 and removes epoch 2 meanwhile
            checkpoint.save(tmp_path, later, epoch=3, keep=1)
        return own(workdir, epoch)

    monkeypatch.setattr(checkpoint, "restore", restore_while_saving)
    epoch, restored = checkpoint.latest(tmp_path)
    assert (epoch, int(restored.step)) == (3, int(later.step)) and calls == [2, 3]
    # a newest checkpoint that fails and stays the newest: its error, at once, not retried
    # (the read fails by hand here: orbax failing inside this process leaves callbacks on a
    # closed event loop that pytest reports; the CLI tests read damaged ones in subprocesses)
    calls.clear()

    def damaged(workdir, epoch=None):
        calls.append(epoch)
        raise checkpoint.CheckpointError(f"the checkpoint of epoch {epoch} cannot be read")

    monkeypatch.setattr(checkpoint, "restore", damaged)
    with pytest.raises(checkpoint.CheckpointError, match="epoch 3 cannot be read"):
        checkpoint.latest(tmp_path)
    assert calls == [3]


def test_a_checkpoint_pruned_while_a_reader_lists_them_is_listed_again(tmp_path, key,
                                                                        monkeypatch):
    """orbax lists the step folders, then reads each one's time: a run saving beside the
    reader (evaluate on a live run) may prune its oldest in between, and orbax raised a
    bare FileNotFoundError for it (about 1 in 30 reads of a run saving every epoch), or
    inside a read, a CheckpointError that named the newest checkpoint as damaged."""
    import shutil

    import orbax.checkpoint as ocp

    _, state, _ = _small_state(key)
    for epoch in (1, 2, 3):
        checkpoint.save(tmp_path, state.replace(step=state.step + epoch), epoch=epoch, keep=3)
    real, opened = ocp.CheckpointManager, []

    def pruned_meanwhile(*args, **kwargs):
        opened.append(kwargs["options"].read_only)
        if len(opened) == 1:  # the saving run removes epoch 1 under the first listing
            shutil.rmtree(tmp_path / "checkpoints" / "1")
            raise FileNotFoundError(2, "No such file or directory",
                                    str(tmp_path / "checkpoints" / "1"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ocp, "CheckpointManager", pruned_meanwhile)
    assert checkpoint.epochs(tmp_path) == [2, 3] and opened[:2] == [True, True]
    epoch, restored = checkpoint.latest(tmp_path)
    assert (epoch, int(restored.step)) == (3, int(state.step) + 3)

    def always_missing(*args, **kwargs):
        opened.append(kwargs["options"].read_only)
        raise FileNotFoundError(2, "No such file or directory", "gone")

    monkeypatch.setattr(ocp, "CheckpointManager", always_missing)
    opened.clear()
    with pytest.raises(FileNotFoundError):
        checkpoint.epochs(tmp_path)
    assert opened == [True] * checkpoint.LISTING_ATTEMPTS  # then it is not a race
    opened.clear()
    with pytest.raises(checkpoint.CheckpointWriteError, match="FileNotFoundError"):
        checkpoint.save(tmp_path, state, epoch=4)
    assert opened == [False]  # the writer is the run itself: not listed again


def test_checkpoint_reads_leave_the_programs_logging_levels_as_they_were(tmp_path, key):
    import logging

    _, state, _ = _small_state(key)
    checkpoint.save(tmp_path, state, epoch=1)
    loggers = [logging.getLogger("absl"), logging.getLogger()]
    saved = [lg.level for lg in loggers]
    try:
        for lg, level in zip(loggers, (logging.NOTSET, logging.INFO)):
            lg.setLevel(level)  # a program's own configuration
        checkpoint.restore(tmp_path)
        checkpoint.save(tmp_path, state, epoch=2)
        assert [lg.level for lg in loggers] == [logging.NOTSET, logging.INFO]
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)


def test_fit_resumed_from_a_checkpoint_equals_one_fit(tmp_path, key):
    """The library path of exact resume: fit 2 epochs, save, restore, fit 2 more."""
    ds = data.load("digits")
    model = models.cnn(10, channels=(4,))
    ds = data.as_images(ds)
    opt = optim.adam(1e-3)
    args = (model, losses.get("xent"), opt, (ds.x_train, ds.y_train))
    whole = train.fit(*args, epochs=4, batch_size=64, key=key)
    half = train.fit(*args, epochs=4, batch_size=64, key=key, after_epoch=lambda e, s: e == 2)
    assert half.status == "stopped" and [r["epoch"] for r in half.history] == [0, 1, 2]
    checkpoint.save(tmp_path, half.state, epoch=2)
    rest = train.fit(*args, epochs=4, batch_size=64, key=key,
                     state=checkpoint.restore(tmp_path), start_epoch=2)
    assert [r["epoch"] for r in rest.history] == [3, 4]
    assert_tree_equal(rest.state, whole.state)



def _saving_with(monkeypatch, save):
    """orbax's save, in the managers that write, replaced by ``save(workdir, step, ...)``."""
    import contextlib

    real = checkpoint._manager

    @contextlib.contextmanager
    def manager(where, *, keep=None, write=False):
        with real(where, keep=keep, write=write) as mngr:
            if write:
                monkeypatch.setattr(mngr, "save", lambda *a, **k: save(where, *a, **k))
            yield mngr

    monkeypatch.setattr(checkpoint, "_manager", manager)


def test_a_checkpoint_that_cannot_be_written_is_one_error_and_the_others_stay(
        tmp_path, key, monkeypatch):
    """orbax's many failures on a full disk or a read-only folder (OSError, tensorstore's
    ValueError) are one CheckpointWriteError naming the checkpoint; a workdir that this
    process locked and that was moved away is the WorkdirError that says so."""
    import errno
    import os

    from gdlab import workdir

    _, state, _ = _small_state(key)
    checkpoint.save(tmp_path, state, epoch=1)
    real = checkpoint._manager

    def full_disk(where, step, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    _saving_with(monkeypatch, full_disk)
    folder = tmp_path / "checkpoints" / "2"
    with pytest.raises(checkpoint.CheckpointWriteError, match=(
            f"the checkpoint {folder} could not be written \\(OSError: \\[Errno 28\\] No space "
            f"left on device\\)")):
        checkpoint.save(tmp_path, state, epoch=2)
    monkeypatch.setattr(checkpoint, "_manager", real)
    assert checkpoint.epochs(tmp_path) == [1]
    assert_tree_equal(checkpoint.restore(tmp_path), state)

    path, lock = workdir.open_workdir(tmp_path / "run")
    try:
        os.rename(path, tmp_path / "moved")
        with pytest.raises(workdir.WorkdirError, match="was moved or deleted"):
            checkpoint.save(path, state, epoch=1)
        assert not os.path.exists(path)  # not recreated
    finally:
        lock.release()


def test_a_workdir_moved_while_a_checkpoint_is_saved_is_not_left_recreated(tmp_path, key,
                                                                           monkeypatch):
    """orbax creates the folders it saves into: a workdir moved during the save came back
    at the old path holding the half-written checkpoint. What the save put there goes, and
    the save is the WorkdirMoved that says why the run stops."""
    import os

    from gdlab import workdir

    _, state, _ = _small_state(key)
    path, lock = workdir.open_workdir(tmp_path / "run")
    checkpoint.save(path, state, epoch=1)

    def moved_meanwhile(where, step, *args, **kwargs):
        os.rename(path, tmp_path / "moved")  # the user moves it, orbax goes on
        os.makedirs(os.path.join(where, "checkpoints", f"{step}.orbax-checkpoint-tmp", "state"))

    _saving_with(monkeypatch, moved_meanwhile)
    try:
        with pytest.raises(workdir.WorkdirMoved, match="was moved or deleted"):
            checkpoint.save(path, state, epoch=2)
        assert not os.path.exists(path)
        assert sorted(os.listdir(tmp_path / "moved" / "checkpoints")) == ["1"]
    finally:
        lock.release()

    # Another run (here, a lock as another process holds one) took the old path meanwhile
    # and has a checkpoint of the same epoch there: nothing of it is removed.
    import fcntl

    path, lock = workdir.open_workdir(tmp_path / "again")

    def replaced_meanwhile(where, step, *args, **kwargs):
        os.rename(path, tmp_path / "again-moved")
        os.makedirs(os.path.join(where, "checkpoints", str(step)))
        open(os.path.join(where, "checkpoints", str(step), "theirs"), "w").close()
        held.append(os.open(where, os.O_RDONLY))
        fcntl.flock(held[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)

    held = []
    _saving_with(monkeypatch, replaced_meanwhile)
    try:
        with pytest.raises(workdir.WorkdirMoved, match="was moved or deleted"):
            checkpoint.save(path, state, epoch=2)
        assert os.listdir(os.path.join(path, "checkpoints", "2")) == ["theirs"]
    finally:
        lock.release()
        for fd in held:
            os.close(fd)


def test_stderr_fd_is_the_real_standard_error_while_a_checkpoint_silences_it(capfd):
    import os

    with checkpoint._Silenced():
        os.write(2, b"hidden\n")
        os.write(checkpoint.stderr_fd(), b"seen\n")
    assert checkpoint.stderr_fd() == 2
    assert capfd.readouterr().err == "seen\n"


def _state64():
    ds = data.load("digits")
    model = models.mlp([8, 10], dtype=jnp.float64)
    return train.fit(model, losses.get("xent"), optim.adam(1e-3),
                     (ds.x_train.astype(np.float64), ds.y_train), epochs=1, batch_size=256,
                     key=jax.random.PRNGKey(0)).state


def test_a_float64_state_round_trips_in_float64_with_its_meta(tmp_path):
    state = _state64()
    assert state.params["layers"][0]["w"].dtype == jnp.float64
    checkpoint.save(tmp_path, state, epoch=3, metrics_rows=4)
    restored = checkpoint.restore(tmp_path)
    assert_tree_equal(restored, state)  # dtypes too
    record = checkpoint.read_meta(tmp_path)
    assert (record["epoch"], record["metrics_rows"]) == (3, 4)


def test_a_state_with_a_list_round_trips_as_a_list(tmp_path):
    params = {"w": [jnp.ones(2, jnp.float32), jnp.zeros(3, jnp.float32)]}
    state = train.TrainState(step=jnp.array(0, jnp.int32), params=params, model_state={},
                             opt_state=optim.momentum(0.1).init(params),
                             key=jax.random.PRNGKey(0), health=train.Health.initial())
    checkpoint.save(tmp_path, state, epoch=1)
    restored = checkpoint.restore(tmp_path)
    assert isinstance(restored.params["w"], list)
    assert isinstance(restored.opt_state.velocity["w"], list)
    assert_tree_equal(restored, state)


def test_a_state_with_a_non_finite_optimizer_state_is_refused(tmp_path):
    params = {"w": jnp.ones(2, jnp.float32)}
    opt_state = optim.adam(0.1).init(params)
    opt_state = opt_state._replace(nu={"w": jnp.array([jnp.nan, 1.0], jnp.float32)})
    state = train.TrainState(step=jnp.array(0, jnp.int32), params=params, model_state={},
                             opt_state=opt_state, key=jax.random.PRNGKey(0),
                             health=train.Health.initial())
    with pytest.raises(ValueError, match="diverged or non-finite"):
        checkpoint.save(tmp_path, state, epoch=1)
    assert checkpoint.epochs(tmp_path) == []
