"""gdlab.workdir: one run per folder, --overwrite that deletes all or nothing, --resume
that needs a folder it can write, and refusals that name only the choices a program has."""

from __future__ import annotations

import os

import pytest

from gdlab import workdir
from gdlab.workdir import WorkdirError, open_workdir


def _a_run(folder):
    (folder / "checkpoints" / "3").mkdir(parents=True)
    (folder / "checkpoints" / "3" / "state").write_text("arrays")
    (folder / "config.json").write_text("{}")
    (folder / "flags.txt").write_text("--epochs=3\n")
    (folder / "metrics.jsonl").write_text("{}\n")


def _deny(monkeypatch, denied):
    """os.access as a user who may not write ``denied`` (the tests run as any user)."""
    real = os.access
    monkeypatch.setattr(workdir.os, "access",
                        lambda p, mode: False if str(p) == str(denied) else real(p, mode))


def test_overwrite_deletes_nothing_unless_it_can_delete_everything(tmp_path, monkeypatch):
    _a_run(tmp_path)
    _deny(monkeypatch, tmp_path / "checkpoints" / "3")
    with pytest.raises(WorkdirError, match=r"--overwrite: .*cannot delete what .*checkpoints/3"):
        open_workdir(tmp_path, overwrite=True)
    assert (tmp_path / "checkpoints" / "3" / "state").read_text() == "arrays"
    assert (tmp_path / "config.json").exists() and (tmp_path / "metrics.jsonl").exists()
    monkeypatch.undo()
    path, lock = open_workdir(tmp_path, overwrite=True)
    lock.release()
    assert os.listdir(path) == []


def test_overwrite_refuses_a_folder_holding_the_workdir_of_a_run_going_on(tmp_path):
    """A run's workdir inside an earlier run's folder: --overwrite of the outer folder while
    the inner run goes on deletes nothing of either (the inner run would otherwise lose its
    checkpoints and stop at its next write)."""
    _a_run(tmp_path)
    inner = tmp_path / "finetune"
    _a_run(inner)
    _, running = open_workdir(inner, resume=True)
    try:
        with pytest.raises(WorkdirError, match=r"--overwrite: .*finetune, inside .*, is in use "
                                               r"by another running gdlab run"):
            open_workdir(tmp_path, overwrite=True)
        assert (inner / "checkpoints" / "3" / "state").read_text() == "arrays"
        assert (tmp_path / "checkpoints" / "3" / "state").read_text() == "arrays"
    finally:
        running.release()
    path, lock = open_workdir(tmp_path, overwrite=True)  # once it has ended: replaced
    lock.release()
    assert os.listdir(path) == []


def test_resume_needs_a_workdir_it_can_write(tmp_path, monkeypatch):
    _a_run(tmp_path)
    _deny(monkeypatch, tmp_path / "metrics.jsonl")
    with pytest.raises(WorkdirError, match=r"--resume: .*metrics.jsonl cannot be written"):
        open_workdir(tmp_path, resume=True)
    monkeypatch.undo()
    _deny(monkeypatch, tmp_path / "checkpoints")
    with pytest.raises(WorkdirError, match=r"--resume: .*checkpoints cannot be written"):
        open_workdir(tmp_path, resume=True)
    monkeypatch.undo()
    _, lock = open_workdir(tmp_path, resume=True)  # the lock is free again after a refusal
    lock.release()
    assert (tmp_path / "checkpoints" / "3" / "state").exists()


def test_a_held_workdir_is_refused_with_only_the_choices_the_program_has(tmp_path):
    """A folder holding a run: the refusal offers --resume only to a program that can resume
    (the experiments other than train have no such flag)."""
    _a_run(tmp_path)
    with pytest.raises(WorkdirError, match=r"pass --resume to continue it or --overwrite"):
        open_workdir(tmp_path)
    with pytest.raises(WorkdirError) as refused:
        open_workdir(tmp_path, resumable=False)
    assert "--resume" not in str(refused.value)
    assert "pass --overwrite to replace it or choose another --workdir" in str(refused.value)



def test_resolve_expands_home_and_variables_and_refuses_an_unset_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GDLAB_RUNS", "runs")
    assert workdir.resolve("~/$GDLAB_RUNS/${GDLAB_RUNS}") == f"{tmp_path}/runs/runs"
    monkeypatch.delenv("GDLAB_NOT_SET", raising=False)
    with pytest.raises(WorkdirError, match=r"\$GDLAB_NOT_SET is not set"):
        workdir.resolve("runs/$GDLAB_NOT_SET/a")
    with pytest.raises(WorkdirError, match="must name a folder"):
        workdir.resolve("")


def test_one_lock_per_folder_until_it_is_released(tmp_path):
    path, lock = open_workdir(tmp_path / "run")
    assert path == str(tmp_path / "run") and os.listdir(path) == []  # no lock file added
    with pytest.raises(WorkdirError, match="in use by another running gdlab run"):
        open_workdir(path)
    lock.release()
    lock.release()  # a second release is harmless
    with workdir.Lock(path):
        with pytest.raises(WorkdirError, match="in use"):
            workdir.Lock(path)
    workdir.Lock(path).release()


def test_a_file_and_a_folder_that_holds_no_run_are_not_workdirs(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(WorkdirError, match="is a file, not a folder"):
        open_workdir(tmp_path / "notes.txt")
    for flag, needle in (({}, "holds files but no run .*notes.txt.*; choose another --workdir, "
                              "a new or empty folder"),  # not: pass --overwrite, which refuses
                         ({"overwrite": True}, "--overwrite replaces only a run's folder"),
                         ({"resume": True}, "--resume: .* holds files but no run")):
        with pytest.raises(WorkdirError, match=needle):
            open_workdir(tmp_path, **flag)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("how", ["moved", "deleted", "replaced"])
def test_a_workdir_moved_away_during_the_run_is_not_recreated(tmp_path, how):
    """A run's workdir moved, deleted or replaced by another folder while it runs: the
    next write into it is a WorkdirError, and the old path is not recreated (orbax and
    the atomic writers used to recreate it: half the run there, half where it went)."""
    import shutil

    from gdlab import records

    path, lock = open_workdir(tmp_path / "run")
    inner = os.path.join(path, "plots", "loss.png")
    records.write_text_atomic(inner, "before")  # in place: written
    if how == "moved":
        os.rename(path, tmp_path / "elsewhere")
    elif how == "deleted":
        shutil.rmtree(path)
    else:
        os.rename(path, tmp_path / "elsewhere")
        os.mkdir(path)  # another folder of the same name
    try:
        for write in (lambda: records.write_text_atomic(inner, "after"),
                      lambda: records.write_json_atomic(os.path.join(path, "summary.json"), {})):
            with pytest.raises(WorkdirError, match=f"{path} was moved or deleted while the run "
                                                   f"was writing into it, so the run stops"):
                write()
        assert os.listdir(path) == [] if how == "replaced" else not os.path.exists(path)
        records.write_text_atomic(tmp_path / "other.txt", "x")  # outside the workdir: fine
    finally:
        lock.release()
    records.write_text_atomic(inner, "again")  # no longer this process's run: not checked
    with open(inner) as f:
        assert f.read() == "again"


def test_releasing_a_lock_leaves_a_later_lock_on_a_folder_of_that_name_checked(tmp_path):
    from gdlab import records

    first, lock_a = open_workdir(tmp_path / "run")
    os.rename(first, tmp_path / "a")
    second, lock_b = open_workdir(tmp_path / "run")  # a new run in a new folder there
    try:
        lock_a.release()
        os.rename(second, tmp_path / "b")
        with pytest.raises(workdir.WorkdirMoved, match="was moved or deleted"):
            records.write_text_atomic(os.path.join(second, "x.txt"), "x")
        assert not os.path.exists(second)
    finally:
        lock_b.release()


def test_is_locked_tells_whether_a_run_holds_a_folder(tmp_path):
    import fcntl

    assert not workdir.is_locked(tmp_path / "nowhere")
    path, lock = open_workdir(tmp_path / "run")
    try:  # flock conflicts between open files, as between processes
        assert workdir.is_locked(path)
    finally:
        lock.release()
    assert not workdir.is_locked(path)
    fd = os.open(path, os.O_RDONLY)
    try:  # the check took no lock of its own: one can still be taken
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_overwrite_removes_a_link_in_the_run_not_what_it_points_to(tmp_path):
    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir()
    data.mkdir()
    (data / "keep.csv").write_text("a,b\n")
    _a_run(run)
    (run / "data").symlink_to(data, target_is_directory=True)
    path, lock = open_workdir(run, overwrite=True)
    lock.release()
    assert os.listdir(path) == []
    assert (data / "keep.csv").read_text() == "a,b\n"


def test_overwrite_refuses_a_folder_whose_entries_cannot_be_deleted(tmp_path, monkeypatch):
    """A folder that may be searched but not written: its entries cannot be deleted, so
    nothing is."""
    _a_run(tmp_path)
    denied, real = str(tmp_path / "checkpoints"), os.access
    monkeypatch.setattr(workdir.os, "access", lambda p, mode: False if (
        str(p) == denied and mode & os.W_OK) else real(p, mode))
    with pytest.raises(WorkdirError, match=r"--overwrite: .*cannot delete what .*checkpoints"):
        open_workdir(tmp_path, overwrite=True)
    assert (tmp_path / "checkpoints" / "3" / "state").read_text() == "arrays"
    assert (tmp_path / "config.json").exists()


def test_a_workdir_that_cannot_be_written_is_one_sentence(tmp_path, monkeypatch):
    target = tmp_path / "run"
    target.mkdir()
    _deny(monkeypatch, target)
    with pytest.raises(WorkdirError, match=r"run: cannot write there \(permission denied\)"):
        open_workdir(target)


def test_a_folder_beside_a_moved_workdir_is_written_as_usual(tmp_path):
    """Only paths inside the moved workdir are refused: "run2" beside "run" is another folder."""
    from gdlab import records

    path, lock = open_workdir(tmp_path / "run")
    try:
        os.rename(path, tmp_path / "elsewhere")
        records.write_text_atomic(tmp_path / "run2" / "x.txt", "x")
        assert (tmp_path / "run2" / "x.txt").read_text() == "x"
    finally:
        lock.release()
