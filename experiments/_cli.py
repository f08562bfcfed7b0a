"""What every experiment shares at the edge: flag parsing, bad-input handling.

Bad input (a flag value, a file, data) ends the program with ONE sentence on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys

from absl import app, flags, logging

from gdlab.data import DataError

FLAGS = flags.FLAGS


class UsageError(Exception):
    """Bad input found after parsing; its message is the sentence the user sees."""


def fail(message: str):
    """Print one sentence and exit with status 2."""
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)


def fail_now(message: str):
    """``fail``, skipping the interpreter's shutdown: for a failure that leaves a library's
    threads behind, still failing (orbax's reads of a damaged checkpoint), which would
    print their tracebacks while Python exits. Nothing has been written when it is called."""
    _stop(f"error: {message}", 2)


def _usage(module) -> None:
    """``--help``: the experiment's docstring and its flags (absl's own ``usage`` reads
    ``__main__``, which for an installed ``gdlab-*`` command is only the launcher), exit 0."""
    # absl files the flags of a module run as __main__ under the script's path
    name = sys.argv[0] if module.__name__ == "__main__" else module.__name__
    sys.stdout.write(f"{(module.__doc__ or '').strip()}\n\nflags:\n\n"
                     f"{FLAGS.module_help(name)}\n")
    sys.stdout.flush()
    sys.exit(0)


def _parse(argv, module=None):
    if any(a in ("-h", "-help", "--help", "--helpshort") for a in argv[1:]):
        if module is not None:
            _usage(module)
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)  # absl alone would exit 1
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        fail(str(e).removeprefix("ERROR:: ").rstrip("."))
    except UnicodeDecodeError as e:  # absl reads flagfiles as UTF-8
        fail(f"a --flagfile is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 "
             "(an editor's 'Unicode' or PowerShell's > write UTF-16)")
    if FLAGS["verbosity"].using_default_value:
        FLAGS.verbosity = logging.WARNING  # absl would say INFO: keep JAX's backend chatter out
    if len(rest) > 1:
        if rest[1].startswith("\ufeff"):
            fail(f"unexpected argument {rest[1]!r}: a --flagfile starts with a byte-order mark; "
                 "save it as UTF-8 without one")
        fail(f"unexpected argument {rest[1]!r}: every option is a --flag (see --help)")
    return rest


flags.DEFINE_bool("overwrite", False, "Replace what an earlier run left in --workdir (without "
                  "it, a workdir that holds files is refused); a folder that holds no run (no "
                  "config.json) is never emptied.")


class _Terminated(BaseException):
    """SIGTERM outside a training loop, raised where the program is, as Ctrl-C raises
    ``KeyboardInterrupt`` (and, like it, not an ``Exception``, which code may catch and
    go on): the writes under way clean up on the way out."""


def _terminate(signum, frame):
    del signum, frame
    raise _Terminated


def _again() -> str:
    """How to go on after a stop: resume, or run it again over the stopped run's folder."""
    return ("continue it with --resume" if "resume" in FLAGS
            else "run it again with --overwrite")


def use_compilation_cache() -> str | None:
    """jax's persistent compilation cache, which ``JAX_COMPILATION_CACHE_DIR`` turns on:
    the folder it keeps programs in, or None.

    A run that compiles what an earlier one did loads it instead (every program but the
    epoch's for another learning rate; 7.0 s to 4.2 s for a 2-epoch run of the defaults
    on 2 CPU cores). Unless ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise,
    every program is kept (jax alone keeps those that took a second or more to compile,
    which none of a small run's does on a CPU). A folder that cannot be made or written:
    a one-line warning, and no cache. An entry another run is still writing is compiled
    again, without jax's warning about it.
    """
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not path:
        return None
    import jax

    if os.path.exists(path) and not os.path.isdir(path):
        problem = "not a folder"
    else:
        try:
            os.makedirs(path, exist_ok=True)
            problem = None if os.access(path, os.W_OK | os.X_OK) else "not writable"
        except OSError as e:
            problem = e.strerror or type(e).__name__
    if problem is not None:
        jax.config.update("jax_compilation_cache_dir", None)
        sys.stderr.write(f"warning: JAX_COMPILATION_CACHE_DIR={path!r} cannot hold the "
                         f"compilation cache ({problem}): the run compiles without it\n")
        return None
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    import warnings

    # an entry another run is still writing: jax compiles the program instead, nothing is
    # lost (a failed write, a full disk say, still warns: the cache would keep nothing)
    warnings.filterwarnings("ignore", "Error reading persistent compilation cache entry")
    return path


def run(main, *, compilation_cache: bool = True) -> None:
    """``absl.app.run`` with exit status 2 and one sentence for bad flags or data, and
    Ctrl-C or SIGTERM outside a training loop ending in one line (status 130 or 143),
    not a traceback; a write that fails mid-run, or a distributed run's lost process,
    one sentence and exit 1. ``compilation_cache``: keep every compiled program between
    runs where ``JAX_COMPILATION_CACHE_DIR`` asks for it (``use_compilation_cache``); the
    benchmarks, which time compilation, leave jax's settings as they are."""
    import signal

    from gdlab.workdir import WorkdirError, WorkdirMoved

    def guarded(argv):
        signal.signal(signal.SIGTERM, _terminate)  # a training loop sets its own
        if compilation_cache:  # after the flags: --help and bad flags say nothing of it
            use_compilation_cache()
        try:
            return main(argv)
        except WorkdirMoved as e:  # mid-run: at once (jax's shutdown would wait for peers)
            _stop(f"error: {e}; {_again()} where the folder is now", 2)
        except (UsageError, DataError, WorkdirError) as e:
            fail(str(e))
        except (KeyboardInterrupt, _Terminated) as e:
            # now, skipping the interpreter's shutdown: it could tear jax down under a
            # computation still running (a segmentation fault, exit 139)
            _stop("interrupted", 143 if isinstance(e, _Terminated) else 130)
        except Exception as e:
            if _lost_a_peer(e):
                from gdlab.records import first_line

                message = (f"another process of the distributed run stopped "
                           f"({first_line(e)}); this one stops too, with the run's last "
                           f"saved checkpoint: start every process again with --resume")
            elif _write_failed(e):
                message = (f"{_what_failed(e)}; the run stops, keeping what it wrote before: "
                           f"make room (or make the folder writable) and {_again()}")
            else:
                raise
            # skipping the interpreter's shutdown: jax's would wait for a lost process at a
            # barrier, then abort with its stack; a writer's exit hooks would fail again on
            # the full disk (the workdir's files were closed on the way here)
            _stop(f"error: {message}", 1)

    module = sys.modules[main.__module__]  # the experiment, however it was started
    app.run(guarded, flags_parser=lambda argv: _parse(argv, module))


_AT_STOP: list = []
"""What ``_stop`` does before it exits (a process's scratch folder is removed)."""


def _stop(line: str, status: int):
    """Print ``line`` on stderr and exit with ``status`` at once, without the interpreter's
    shutdown (what the program wrote is closed by then; ``_AT_STOP`` runs first)."""
    for cleanup in _AT_STOP:
        with contextlib.suppress(Exception):
            cleanup()
    sys.stdout.flush()
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()
    os._exit(status)


XLA_STATUS = ("UNKNOWN:", "INTERNAL:", "UNAVAILABLE:", "ABORTED:", "CANCELLED:",
              "DEADLINE_EXCEEDED:", "FAILED_PRECONDITION:")
"""How an XLA runtime error's message begins (``multihost_utils`` raises them as ValueError)."""


def _lost_a_peer(error: BaseException) -> bool:
    """A jax runtime error in a multi-process run: a collective that lost its peer (in a
    computation, a ``JaxRuntimeError``; in ``multihost_utils``' all-gather, which the
    processes' votes use, a ``ValueError`` carrying XLA's status)."""
    import jax

    runtime = (isinstance(error, jax.errors.JaxRuntimeError)
               or (isinstance(error, ValueError) and str(error).startswith(XLA_STATUS)))
    return runtime and jax.distributed.is_initialized() and jax.process_count() > 1


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
"""What a write meets when the disk (or a quota, or the file-size limit) is full, or the
folder was made read-only."""

WRITE_ERRNOS = (*FULL_ERRNOS, errno.EACCES, errno.EPERM, errno.EIO)
"""What a run's writes meet when the disk fills or its folder is taken away from it."""


def _write_failed(error: BaseException) -> bool:
    from gdlab.checkpoint import CheckpointWriteError

    return (isinstance(error, CheckpointWriteError)
            or (isinstance(error, OSError) and error.errno in WRITE_ERRNOS))


def _what_failed(error: BaseException) -> str:
    if not isinstance(error, OSError):
        return str(error)
    if error.filename:
        where = f" {error.filename}"
    elif "workdir" in FLAGS and FLAGS.workdir:  # a buffered file's flush names no file
        from gdlab.workdir import resolve

        where = f" into {os.path.abspath(resolve(FLAGS.workdir))}"
    else:
        where = ""
    verb = "write" if error.errno in FULL_ERRNOS else "access"  # EACCES, EPERM, EIO
    return f"cannot {verb}{where} ({error.strerror or error})"


SEED_MAX = 2**32 - 1

MAX_STEPS = 2**31 - 1
"""The most updates one run makes: its step counter (``TrainState.step``) is an int32."""


def check_steps(what: str, steps: int) -> int:
    """``steps`` when a run can count that many updates, else one sentence naming ``what``
    made them (e.g. ``--epochs=…``)."""
    if steps > MAX_STEPS:
        raise UsageError(f"{what} makes {steps:,} updates, more than the {MAX_STEPS:,} a run "
                         f"counts (its step counter is an int32)")
    return steps


def check_half_memory(need: float, what: str, fix: str) -> None:
    """One sentence when ``need`` bytes (``what`` takes them) would fill more than half the
    device's memory, ending with the ``fix``; nothing when the device does not say."""
    import jax

    from gdlab import train

    have = train.device_memory()
    if have is not None and need > have / 2:
        raise UsageError(f"{what} about {need / 2**30:.1f} GiB, more than half the "
                         f"{have / 2**30:.1f} GiB of the {jax.default_backend()} device; {fix}")


def check_seed(value: int, name: str = "seed") -> int:
    """``--seed`` in 0..2³²−1 (what a JAX PRNG key holds), else one sentence."""
    if not 0 <= value <= SEED_MAX:
        raise UsageError(f"--{name} must be between 0 and {SEED_MAX}, got {value}")
    return value


def expand(name: str, value: str | None) -> str | None:
    """A path flag's value with ``~`` and ``$VARS`` expanded (None stays None)."""
    from gdlab.workdir import resolve

    if value is None:
        return None
    if not value:
        raise UsageError(f"--{name} must not be empty")
    return resolve(value)


def output_file(name: str, value: str | None, example: str) -> str | None:
    """A flag's output file, checked before any work is done: ``expand``'s path, which must
    not be a folder and must lie in a folder that exists and can be written (None stays
    None). ``example`` is the file name suggested when the flag names a folder."""
    path = expand(name, value)
    if path is None:
        return None
    if os.path.isdir(path) or path.endswith((os.sep, "/")):
        what = "is a folder" if os.path.isdir(path) else "names a folder (it ends with /)"
        raise UsageError(f"--{name}={value} {what}; give a file path, e.g. "
                         f"--{name}={os.path.join(value, example)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--{name}={value}: cannot write a file there, no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--{name}={value}: cannot write a file there, {folder} is not writable")
    return path


def write_json_file(name: str, path: str, data) -> None:
    """``data`` as JSON at ``path`` (an ``output_file`` flag's), written atomically; an OS
    error (a full disk, a folder removed since) is one sentence."""
    from gdlab.records import write_json_atomic

    try:
        write_json_atomic(path, data)
    except OSError as e:
        raise UsageError(f"--{name}={path}: cannot write it ({e.strerror})") from None
    print(f"wrote {os.path.abspath(path)}")


class Signals:
    """SIGINT and SIGTERM ask a training loop to stop after its current epoch.

    ``install()`` sets the handlers; ``received`` is the first signal's number
    (None until one comes). A second signal stops the process at once, with one
    line and exit status 128 + its number.
    """

    def __init__(self):
        self.received = None

    def install(self) -> Signals:
        import signal

        self._before = {signum: signal.signal(signum, self._handle)
                        for signum in (signal.SIGINT, signal.SIGTERM)}
        return self

    def uninstall(self) -> None:
        """The handlers from before ``install``: once training has ended, a signal stops
        the program where it is (there is no epoch left to finish)."""
        import signal

        for signum, handler in self._before.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        import signal

        del frame
        name = signal.Signals(signum).name
        sys.stderr.flush()
        # to the real standard error: a checkpoint being saved silences file descriptor 2
        # (looked up, not imported: a handler must not import, the program may be doing so)
        stderr = getattr(sys.modules.get("gdlab.checkpoint"), "stderr_fd", lambda: 2)()
        if self.received is not None:
            os.write(stderr, f"{name} again: stopping now, without a checkpoint of this "
                             f"epoch\n".encode())
            os._exit(128 + signum)
        self.received = signum
        os.write(stderr, f"{name}: finishing this epoch, then checkpointing and stopping "
                         f"(send it again to stop at once)\n".encode())

    @property
    def exit_code(self) -> int:
        return 128 + self.received if self.received else 0


def on_command_line(name: str) -> bool:
    """Whether the command line itself gives flag ``name`` (``--name=v``, ``--name v``,
    ``--noname``, one dash or two), not a ``--flagfile``: absl marks both present, and
    flags.txt lists every flag."""
    for arg in sys.argv[1:]:
        if arg == "--":
            break
        text = arg.lstrip("-")
        if arg.startswith("-") and text.split("=", 1)[0] in (name, "no" + name):
            return True
    return False


def given(name: str) -> bool:
    """Whether the user set flag ``name``: on the command line, or away from its default (in
    a ``--flagfile``: flags.txt lists every flag, at the values a run used)."""
    return FLAGS[name].value != FLAGS[name].default or on_command_line(name)


def set_anywhere(name: str) -> bool:
    """Whether flag ``name`` was set at all: ``given``, or listed in a ``--flagfile`` even at
    its default. flags.txt lists every flag at the value the run used, so a default that
    this program would otherwise compute (a learning rate scaled to the data) must take a
    listed value as given, or a replay of a run that gave the default trains otherwise and
    ``--resume`` refuses the folder."""
    return given(name) or bool(FLAGS[name].present)


def is_positive_int(text: str) -> bool:
    """Whether ``text`` is a positive integer in ASCII digits (``"²".isdigit()`` holds,
    but ``int("²")`` fails)."""
    text = text.strip()
    return text.isascii() and text.isdigit() and int(text) > 0


def define_int_list(name: str, default: str, help: str) -> None:
    """A comma-separated list of positive integers, e.g. ``--hidden=32,32``."""
    flags.DEFINE_list(name, default, help)
    flags.register_validator(
        name,
        lambda v: bool(v) and all(is_positive_int(s) for s in v),
        message=f"--{name} must be comma-separated positive integers, e.g. --{name}=32,32",
    )


def int_list(values) -> list[int]:
    return [int(s) for s in values]


def config_dict() -> dict:
    """Every flag value of this program (absl's own flags left out), for ``config.json``."""
    config = {}
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module.startswith("absl"):
            continue
        for flag in module_flags:
            config[flag.name] = flag.value
    return dict(sorted(config.items()))


# Flags that say how to run, not what: a resumed run may change them.
OPERATIONAL = ("resume", "overwrite", "quiet", "checkpoint_every", "checkpoint_seconds",
               "keep_checkpoints", "workdir", "flagfile", "devices", "distributed",
               "coordinator_address", "num_processes", "process_id", "distributed_timeout",
               "distributed_heartbeat")


DATA_PATHS = ("csv_path", "npz_path", "data_dir")
"""Flags that name the user's data: ``config.json`` keeps them as absolute paths."""


def define_device_flags() -> None:
    """``--devices`` and the ``jax.distributed`` flags (``start_devices`` reads them)."""
    flags.DEFINE_integer("devices", 0, "Devices to split every batch (or a sweep's learning "
                         "rates) over; 0: all of them (every process's, in a distributed run).",
                         lower_bound=0)
    flags.DEFINE_bool("distributed", False, "Join a multi-process run, letting jax detect the "
                      "cluster (SLURM, Open MPI, Kubernetes); or give the three flags below.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for a "
                        "multi-process run on several hosts (with --num_processes, --process_id).")
    flags.DEFINE_integer("num_processes", None, "Processes in the multi-process run.",
                         lower_bound=1)
    flags.DEFINE_integer("process_id", None, "This process's number, 0..num_processes-1; "
                         "process 0 alone writes the workdir.", lower_bound=0)
    flags.DEFINE_integer("distributed_timeout", 60, "Seconds to wait for every process to reach "
                         "the coordinator before giving up.", lower_bound=1)
    flags.DEFINE_integer("distributed_heartbeat", None, "Seconds after which a process that "
                         "stopped answering (killed outright) is declared lost and the others "
                         "are stopped; default: jax's (100).", lower_bound=1)


def start_devices():
    """Join the distributed run if asked, then the mesh of ``--devices``: None for one
    device. Must run before anything else touches jax. Bad flags or an unreachable
    coordinator: one sentence, exit 2."""
    from gdlab import parallel

    wanted = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if FLAGS.distributed or any(v is not None for v in wanted):
        try:
            parallel.initialize(*wanted, timeout=FLAGS.distributed_timeout,
                                heartbeat=FLAGS.distributed_heartbeat)
        except ValueError as e:
            raise UsageError(f"--coordinator_address, --num_processes, --process_id: {e}") from None
        except parallel.DistributedError as e:
            raise UsageError(f"--coordinator_address: {e}") from None
    try:
        mesh = parallel.make_mesh(FLAGS.devices or None)
    except ValueError as e:
        raise UsageError(f"--devices={FLAGS.devices}: {e}") from None
    return mesh if mesh.size > 1 else None


def is_primary() -> bool:
    """True in process 0 (or a one-process run): the only one that writes the workdir."""
    import jax

    return jax.process_index() == 0


def all_processes_agree(ok: bool) -> bool:
    """Whether ``ok`` holds in every process of the run (one small all-gather; every
    process must call it at the same point). A one-process run just returns ``ok``."""
    import jax

    if jax.process_count() == 1:
        return ok
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.array([ok]))))


PER_PROCESS = ("process_id", "coordinator_address", "quiet", "flagfile", "overwrite",
               "distributed_timeout", "distributed_heartbeat", "checkpoint_every",
               "checkpoint_seconds", "keep_checkpoints", "workdir", *DATA_PATHS)
"""Flags the processes of one distributed run may set differently: their own number, how
they reach the coordinator, what only process 0 does (report, write), and paths that may be
another host's mount of the same folder or its own copy of the same data (the data is
compared by its digest, a resumed run by the checkpoint each process found)."""


def check_same_run(error: BaseException | None = None, *, compare_flags: bool = True,
                   **facts) -> None:
    """A vote of every process of a distributed run, each having checked its flags and
    read its data (every process calls it at the same point): when one failed (``error``,
    its one sentence) it raises that, and the others stop with exit 2 too; when the
    processes were started with other flags (but ``PER_PROCESS``), or other ``facts``
    (name: a JSON-able value, or a function that gives it, called only when there are
    several processes), every process stops with one sentence naming them, instead
    of training different runs into one all-reduce (a silently wrong run, or a hang).
    ``compare_flags=False`` compares the ``facts`` alone (the flags a library defines when
    it is imported, orbax's, may differ by then). A one-process run just raises ``error``."""
    import jax

    if jax.process_count() == 1:
        if error is not None:
            raise error
        return
    import hashlib
    import json

    import numpy as np
    from jax.experimental import multihost_utils

    values = {f"--{name}": value for name, value in config_dict().items()
              if compare_flags and name not in PER_PROCESS}
    values.update({name: fact() if callable(fact) else fact for name, fact in facts.items()})
    names = sorted(values)

    def digest(value) -> int:
        text = json.dumps(value, sort_keys=True, default=str).encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:4], "little", signed=True)

    mine = np.array([digest(values[n]) for n in names] + [int(error is not None)], np.int32)
    everyone = np.asarray(multihost_utils.process_allgather(mine))  # (processes, names + 1)
    if error is not None:
        raise error
    if np.any(everyone[:, -1]):
        raise UsageError("another process of the distributed run refused its flags or data "
                         "(its error says why)")
    differ = [n for i, n in enumerate(names) if np.any(everyone[:, i] != everyone[0, i])]
    if differ:
        raise UsageError(f"the processes of the distributed run differ in {', '.join(differ)}: "
                         f"start every process with the same command (only --process_id "
                         f"differs) and a --workdir they all share")


def output_dir(workdir: str):
    """``(folder, scratch)``: where this process writes its outputs. Process 0 writes the
    workdir; any other process a temporary folder, removed when ``scratch`` (keep it
    until the run ends) is dropped. ``scratch`` is None in process 0."""
    if is_primary():
        return workdir, None
    import tempfile

    scratch = tempfile.TemporaryDirectory(prefix="gdlab-process-")
    _AT_STOP.append(scratch.cleanup)  # an exit without the interpreter's shutdown too
    return scratch.name, scratch


def _flag_text(value) -> str:
    """A flag's value as it is written after ``--name=``. A list's items are joined by commas
    the way absl's list flags read them back (CSV: an item holding a comma or a quote is
    quoted, as in ``--drop_columns="Weight, kg",id``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        import csv
        import io

        text = io.StringIO()
        csv.writer(text, lineterminator="").writerow(map(str, value))
        return text.getvalue()
    return str(value)


def flags_text(config: dict) -> str:
    """``config`` as ``--name=value`` lines that ``--flagfile`` replays."""
    lines = []
    for name, value in config.items():
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        elif value is not None:
            lines.append(f"--{name}={_flag_text(value)}")
    return "\n".join(lines) + "\n"


def restore_flags(config, source: str, skip=()) -> None:
    """Set this program's flags from a run's ``config.json`` (``source`` names it), each
    value through its flag's own parser, so a hand-edited file is checked like a command
    line: a value that does not parse is one sentence (exit 2). Names this program does
    not define, and those in ``skip``, are left alone."""
    if not isinstance(config, dict):
        raise UsageError(f"{source} must hold a JSON object of flag values, not "
                         f"{type(config).__name__}")
    for name, value in config.items():
        if name not in FLAGS or name in skip:
            continue
        if value is None:
            FLAGS[name].value = None
            continue
        try:
            FLAGS[name].parse(_flag_text(value))
        except (flags.Error, ValueError, TypeError) as e:
            raise UsageError(f"{source}: {value!r} is not a valid --{name} "
                             f"({str(e).rstrip('.') or 'bad value'})") from None
    try:  # the checks of several flags, and those registered apart from the parsers
        FLAGS.validate_all_flags()
    except flags.Error as e:
        raise UsageError(f"{source}: {str(e).rstrip('.')}") from None


FIRST_SHOWN = ("dataset", "model")
"""The flags a refused ``--resume`` names first when several differ: they set the others'
defaults (a CNN's learning rate and epochs are not an MLP's)."""


def prepare_workdir(path: str, *, resume: bool = False, check=None, agree=None):
    """``_prepare_workdir`` in every process, then a vote: when any process refused (in a
    multi-process run only process 0 checks the folder), all of them stop with exit 2,
    instead of the others training on into a collective that never completes.
    ``agree``: a function, called after ``check``, giving facts (name: value) every process
    must share (``check_same_run``); they are compared before process 0 writes
    ``config.json`` and ``flags.txt``, so a run they refuse writes nothing."""
    from gdlab.workdir import WorkdirError

    def vote(error, lock):
        if not all_processes_agree(error is None):
            if error is None:
                if lock is not None:
                    lock.release()
                raise UsageError("another process refused --workdir (its error says why)")
            raise error

    error, workdir, lock, write = None, None, None, None
    try:
        workdir, lock, write = _prepare_workdir(path, resume=resume, check=check)
        if agree is None:
            write()
    except (UsageError, DataError, WorkdirError) as e:
        error = e
    vote(error, lock)
    if agree is None:
        return workdir, lock
    try:
        check_same_run(compare_flags=False, **agree())
    except UsageError:
        if lock is not None:
            lock.release()
        raise
    error = None
    try:
        write()
    except (UsageError, DataError, WorkdirError) as e:
        error = e
    vote(error, lock)
    return workdir, lock


def _prepare_workdir(path: str, *, resume: bool = False, check=None):
    """Open ``--workdir`` for this run: expand ``~``, create it, lock it, refuse one that
    holds files unless ``--resume``/``--overwrite``, and give the function that writes
    ``config.json`` and ``flags.txt`` (every flag; ``--flagfile=flags.txt`` replays the run).

    On ``resume`` the folder's ``config.json`` must match this run's flags, except
    ``OPERATIONAL`` ones; then ``check(path)``, when given, may still refuse the folder
    (raise ``UsageError``) before anything is written. Returns ``(path, lock, write)``:
    the lock is held until the process ends, and ``write()`` writes ``config.json`` and
    ``flags.txt`` (``prepare_workdir`` calls it once the processes agree). Every failure
    is one sentence (exit 2) and writes nothing. In a multi-process run only process 0
    opens the folder; the others get its path (to read a checkpoint on resume), no lock,
    and a ``write`` that writes nothing.
    """
    import json

    from gdlab.records import write_json_atomic, write_text_atomic
    from gdlab.workdir import WorkdirError, open_workdir, resolve

    if "devices" in FLAGS and not is_primary():  # process 0 writes; the others only read
        path = resolve(path)
        if check is not None:
            check(path)
        return path, None, lambda: None

    overwrite = bool(FLAGS["overwrite"].value)
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other: give one")
    workdir, lock = open_workdir(path, resume=resume, overwrite=overwrite,
                                 resumable="resume" in FLAGS)
    config = config_dict()
    config["workdir"] = workdir
    for name in DATA_PATHS:  # absolute: evaluate and --flagfile=flags.txt work from anywhere
        if config.get(name):
            config[name] = os.path.abspath(resolve(config[name]))
    saved_path = os.path.join(workdir, "config.json")
    if resume and os.path.exists(saved_path):
        try:
            with open(saved_path) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            lock.release()
            raise WorkdirError(f"--resume: {saved_path} cannot be read") from None
        if not isinstance(saved, dict):
            lock.release()
            raise WorkdirError(f"--resume: {saved_path} holds a JSON {type(saved).__name__}, "
                               f"not the object of flag values a run writes; start a new "
                               f"workdir")
        foreign = sorted(set(saved) - set(config))
        if foreign:  # flags this program lacks: another experiment wrote the folder
            lock.release()
            raise WorkdirError(f"--resume: {workdir} holds the run of another program (its "
                               f"config.json has {', '.join('--' + n for n in foreign[:3])}, "
                               f"which this one does not take); start a new workdir")
        differ = []  # every flag that differs, the ones that decide the others' defaults first
        for name, value in sorted(config.items(), key=lambda item: (item[0] not in FIRST_SHOWN,
                                                                     item[0])):
            if name in OPERATIONAL or name not in saved:
                continue
            theirs = saved[name]
            if name in DATA_PATHS and value and isinstance(theirs, str) and theirs:
                theirs = os.path.abspath(resolve(theirs))  # a run that kept the path as typed
            if json.loads(json.dumps(value)) != theirs:
                differ.append((f"--{name}={_flag_text(saved[name])}",
                               f"--{name}={_flag_text(value)}"))
        if differ:
            lock.release()
            raise WorkdirError(
                f"--resume: {workdir} was trained with {' '.join(t for t, _ in differ)}, not "
                f"{' '.join(o for _, o in differ)}; resume with the same flags or start a new "
                f"workdir")
    if check is not None:
        try:
            check(workdir)
        except BaseException:
            lock.release()
            raise

    def write():
        fresh = not os.path.exists(saved_path)
        try:
            write_json_atomic(saved_path, config)
            write_text_atomic(os.path.join(workdir, "flags.txt"), flags_text(config))
        except OSError as e:
            if fresh:  # half a run's marks (config.json, no flags.txt): neither flag takes it
                with contextlib.suppress(OSError):
                    os.unlink(saved_path)
            lock.release()
            raise UsageError(f"--workdir={workdir}: cannot write there ({e.strerror})") from None

    return workdir, lock, write


FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: rates and tolerances are used in float32, the training dtype."""


def _check_float32(name: str, value: float) -> None:
    if value > FLOAT32_MAX:
        raise UsageError(f"--{name}={value} overflows float32, the training dtype (largest "
                         f"{FLOAT32_MAX:.3g})")


def positive_float(name: str, value: float) -> float:
    """``value`` when it is finite, > 0 and within float32, else a UsageError naming it."""
    import math

    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"--{name} must be a positive number, got {value}")
    _check_float32(name, value)
    return value


def positive_float_list(name: str, values) -> list[float]:
    """``--name=a,b,c`` as floats, each finite, > 0 and within float32, else a UsageError
    naming ``--name``."""
    import math

    out = []
    for text in values:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{name} must be comma-separated positive numbers, e.g. "
                             f"--{name}=0.01,0.1,1; got {text.strip()!r}")
        _check_float32(name, value)
        out.append(value)
    return out


def seconds(name: str, value: float) -> float:
    """A duration flag: finite and >= 0 (a NaN would silently never elapse)."""
    import math

    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"--{name} must be a number of seconds >= 0, got {value}")
    return value
