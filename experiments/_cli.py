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
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        fail(str(e).rstrip("."))
    if len(rest) > 1:
        fail(f"unexpected argument {rest[1]!r}: every option is a --flag (see --help)")
    return rest


def run(main) -> None:
    """``absl.app.run`` with exit status 2 and one sentence for bad flags or data."""

    def guarded(argv):
        if FLAGS["verbosity"].using_default_value:
            logging.set_verbosity(logging.WARNING)  # not JAX's INFO lines about backends
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
        lambda v: all(s.strip().isdigit() and int(s) > 0 for s in v),
        message=f"--{name} must be comma-separated positive integers, e.g. --{name}=32,32",
    )


def int_list(values) -> list[int]:
    return [int(s) for s in values]
