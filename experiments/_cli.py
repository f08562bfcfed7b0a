"""What every experiment shares at the edge: flag parsing, bad-input handling.

Bad input (a flag value, a file, data) ends the program with ONE sentence on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

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


def _parse(argv):
    if any(a in ("-h", "-help", "--help", "--helpshort") for a in argv[1:]):
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)  # absl alone would exit 1
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        fail(str(e).rstrip("."))
    if FLAGS["verbosity"].using_default_value:
        FLAGS.verbosity = logging.WARNING  # absl would say INFO: keep JAX's backend chatter out
    if len(rest) > 1:
        fail(f"unexpected argument {rest[1]!r}: every option is a --flag (see --help)")
    return rest


def run(main) -> None:
    """``absl.app.run`` with exit status 2 and one sentence for bad flags or data."""

    def guarded(argv):
        try:
            return main(argv)
        except (UsageError, DataError) as e:
            fail(str(e))

    app.run(guarded, flags_parser=_parse)


def define_int_list(name: str, default: str, help: str) -> None:
    """A comma-separated list of positive integers, e.g. ``--hidden=32,32``."""
    flags.DEFINE_list(name, default, help)
    flags.register_validator(
        name,
        lambda v: bool(v) and all(s.strip().isdigit() and int(s) > 0 for s in v),
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


def prepare_workdir(path: str) -> str:
    """Create ``--workdir`` (and parents) and write ``config.json`` there; one sentence if it can't."""
    import os

    from gdlab.logging import write_json_atomic

    if not path:
        raise UsageError("--workdir must name a folder for the outputs, e.g. --workdir=runs/demo")
    try:
        os.makedirs(path, exist_ok=True)
        write_json_atomic(os.path.join(path, "config.json"), config_dict())
    except OSError as e:
        raise UsageError(f"--workdir={path}: cannot write there ({e.strerror})") from None
    return path


def positive_float(name: str, value: float) -> float:
    """``value`` when it is finite and > 0, else a UsageError naming ``--name``."""
    import math

    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"--{name} must be a positive number, got {value}")
    return value


def positive_float_list(name: str, values) -> list[float]:
    """``--name=a,b,c`` as floats, each finite and > 0, else a UsageError naming ``--name``."""
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
        out.append(value)
    return out
