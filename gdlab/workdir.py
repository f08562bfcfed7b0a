"""A run's working directory: one run at a time, and never clobbered by accident.

- ``resolve`` expands ``~`` and ``$VARS`` in a path.
- ``open_workdir`` creates the folder when needed, takes an exclusive lock on it
  (``flock`` on the folder itself, so no file is added and a killed run's lock
  goes away with its process), and refuses a folder that already holds files
  unless the caller resumes into it or asked to overwrite it.
- ``check_in_place`` refuses a write into a locked workdir that was moved or deleted
  while the run went on (``records.atomic_path`` and ``checkpoint.save`` call it), which
  would otherwise recreate the folder and split the run in two.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil


class WorkdirError(ValueError):
    """A workdir that cannot be used; the message is one sentence naming it."""


class WorkdirMoved(WorkdirError):
    """A run's workdir moved or deleted while the run was writing into it."""


def resolve(path: str | os.PathLike) -> str:
    """``path`` with ``~`` and environment variables expanded; a ``WorkdirError`` for a
    variable that is not set (``os.path.expandvars`` would leave ``$NAME`` in the path, and
    a run would write into a folder of that name)."""
    text = os.fspath(path)
    if not text:
        raise WorkdirError("the workdir must name a folder, e.g. runs/demo")
    expanded = os.path.expandvars(os.path.expanduser(text))
    unset = _VARIABLE.search(expanded)
    if unset is not None:
        raise WorkdirError(f"{text}: the environment variable {unset.group(0)} is not set")
    return expanded


_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")
"""``$NAME`` or ``${NAME}``, as ``os.path.expandvars`` expands (or leaves when unset)."""


_HELD: dict[str, Lock] = {}
"""The folders this process holds locked, by absolute path."""


class Lock:
    """An exclusive ``flock`` on a folder, held until ``release`` (or the process ends)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise WorkdirError(f"{path} is in use by another running gdlab run; wait for it to "
                               "finish or choose another workdir") from None
        _HELD[self.path] = self

    def moved(self) -> bool:
        """Whether the path no longer names the locked folder (moved, deleted, replaced)."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        held = os.fstat(self._fd)
        return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)

    def release(self) -> None:
        if self._fd is not None:
            if _HELD.get(self.path) is self:  # not a later lock on a new folder of that name
                del _HELD[self.path]
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def is_locked(path: str | os.PathLike) -> bool:
    """Whether a run (in any process) holds ``path``'s lock now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor releases a lock taken just now
    return False


def check_in_place(path: str | os.PathLike) -> None:
    """A ``WorkdirMoved`` error if ``path`` lies in a folder this process locked that has since
    been moved or deleted: writing there would recreate an empty folder at the old place
    and split the run between the two."""
    path = os.path.abspath(os.fspath(path))
    for root, lock in list(_HELD.items()):
        if (path == root or path.startswith(root.rstrip(os.sep) + os.sep)) and lock.moved():
            raise WorkdirMoved(f"{root} was moved or deleted while the run was writing into it, "
                               f"so the run stops here rather than start a new folder there")


def open_workdir(path: str | os.PathLike, *, resume: bool = False,
                 overwrite: bool = False, resumable: bool = True) -> tuple[str, Lock]:
    """``(path, lock)`` for a run writing into ``path``.

    A new or empty folder is fine. A folder holding files is refused unless
    ``resume`` (the caller continues the run there) or ``overwrite`` (its
    contents are deleted, after the lock is taken). Raises ``WorkdirError``;
    its sentence offers ``--resume`` only for a program that can resume
    (``resumable``).
    """
    path = resolve(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"{path} is a file, not a folder for the run's outputs")
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "permission denied")
        lock = Lock(path)
    except OSError as e:
        raise WorkdirError(f"{path}: cannot write there ({e.strerror})") from None
    names = sorted(os.listdir(path))
    shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
    if names and not (resume or overwrite):
        lock.release()
        if not set(RUN_MARKS) <= set(names):  # neither flag would take it: say so
            raise WorkdirError(f"{path} holds files but no run (a run's "
                               f"{' and '.join(RUN_MARKS)} are not both there: {shown}); "
                               f"choose another --workdir, a new or empty folder")
        choices = ("pass --resume to continue it or --overwrite to replace it" if resumable
                   else "pass --overwrite to replace it or choose another --workdir")
        raise WorkdirError(f"{path} already holds a run ({shown}); {choices}")
    if names and overwrite and not resume:
        if not set(RUN_MARKS) <= set(names):  # --overwrite must not empty a source tree
            lock.release()
            raise WorkdirError(f"{path} holds files but no run (a run's "
                               f"{' and '.join(RUN_MARKS)} are not both there: {shown}); "
                               f"--overwrite replaces only a run's folder: choose another "
                               f"--workdir")
        busy = _locked_inside(path)  # a run going on in a folder inside: not deleted under it
        if busy is not None:
            lock.release()
            raise WorkdirError(f"--overwrite: {busy}, inside {path}, is in use by another "
                               f"running gdlab run; wait for it to finish or choose another "
                               f"--workdir")
        blocked = _unwritable(path, files=False)  # all or nothing: check before deleting
        try:
            if blocked is not None:
                raise PermissionError(13, f"cannot delete what {blocked} holds")
            for name in names:
                full = os.path.join(path, name)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
        except OSError as e:
            lock.release()
            raise WorkdirError(f"--overwrite: {path}: {e.strerror or e}") from None
    elif names and resume:
        if not set(RUN_MARKS) <= set(names):  # --resume must not write over other files
            lock.release()
            raise WorkdirError(f"--resume: {path} holds files but no run (a run's "
                               f"{' and '.join(RUN_MARKS)} are not both there: {shown}); "
                               f"choose the run's own workdir, or another one to start afresh")
        blocked = _unwritable(path, files=True)
        if blocked is not None:
            lock.release()
            raise WorkdirError(f"--resume: {blocked} cannot be written, so the run could not go "
                               f"on there")
    return path, lock


RUN_MARKS = ("config.json", "flags.txt")
"""The files every run writes first into its workdir: a folder without both is not a run
(a project's own config.json alone does not make it one)."""


def _locked_inside(path: str) -> str | None:
    """The first folder under ``path`` (not itself, whose lock the caller holds) that a run
    holds locked now (``is_locked``), or None. Links are not followed: ``--overwrite``
    removes a link, not what it points to."""
    for folder, dirs, _ in os.walk(path):
        for name in dirs:
            full = os.path.join(folder, name)
            if not os.path.islink(full) and is_locked(full):
                return full
    return None


def _unwritable(path: str, *, files: bool) -> str | None:
    """The first folder under ``path`` (itself included) whose entries cannot be created or
    deleted, or, with ``files``, the first file directly in ``path`` that cannot be written
    (the metrics a resumed run appends to; checkpoints are only ever added and removed);
    None if none."""
    for folder, _, names in os.walk(path):
        if not os.access(folder, os.W_OK | os.X_OK):
            return folder
        if files and folder == path:
            for name in names:
                full = os.path.join(folder, name)
                if not os.path.islink(full) and not os.access(full, os.W_OK):
                    return full
    return None
