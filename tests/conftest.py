"""Shared test helpers.

64-bit floats are on for the whole suite so float64 references are exact;
every test states the dtype it works in (``jnp.float32`` or ``jnp.float64``),
and the library never relies on the default dtype.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the run, shared by the worker processes and the
# experiments the tests start (they inherit the environment): many tests compile the same
# programs (the default model on the digits, each experiment's epoch), and a hit costs a
# file read instead of a compile, a fifth of the suite's time. The process that makes it
# removes it at exit; set JAX_COMPILATION_CACHE_DIR to keep one between runs instead.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="gdlab-test-jit-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# JAX writes an entry in place, so one process may read an entry another is still writing:
# JAX then warns and compiles, correctly. The warning is no test's business (pyproject's
# filterwarnings for this process; PYTHONWARNINGS for the experiments the tests start).
os.environ["PYTHONWARNINGS"] = ",".join(
    w for w in (os.environ.get("PYTHONWARNINGS"),
                "ignore:Error reading persistent compilation cache entry",
                "ignore:Error writing persistent compilation cache entry") if w)
# Four CPU devices in this process, so the data-parallel and sharded code runs on a real
# mesh (tests/test_parallel.py); everything else uses the first device, as on one. The
# experiments the tests start as subprocesses see the machine as it is (one CPU device).
os.environ["GDLAB_TEST_XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = (os.environ["GDLAB_TEST_XLA_FLAGS"]
                           + " --xla_force_host_platform_device_count=4")

import jax
import numpy as np
import pytest
from hypothesis import settings

from gdlab import tolerances

jax.devices()  # the backend starts now, with the flags above
os.environ["XLA_FLAGS"] = os.environ.pop("GDLAB_TEST_XLA_FLAGS")
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")

settings.register_profile("gdlab", max_examples=15, deadline=None, derandomize=True)
settings.load_profile("gdlab")


@pytest.fixture
def key():
    """A fresh PRNG key per test."""
    return jax.random.PRNGKey(0)


def tree_allclose(a, b, *, dtype=None, rtol=None, atol=None) -> bool:
    """True when two pytrees have the same structure and close leaves.

    Tolerances default to ``gdlab.tolerances.ANALYTIC`` for ``dtype`` (or the
    first leaf's dtype).
    """
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb:
        return False
    if dtype is None and la:
        dtype = np.asarray(la[0]).dtype
    tol = tolerances.ANALYTIC[tolerances.dtype_name(dtype or np.float32)]
    rtol = tol.rtol if rtol is None else rtol
    atol = tol.atol if atol is None else atol
    for x, y in zip(la, lb):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            return False
        if not np.all(np.abs(x - y) <= atol + rtol * (np.abs(x) + np.abs(y))):
            return False
    return True


def assert_tree_allclose(a, b, **kw):
    """``tree_allclose`` with a readable failure message."""
    if not tree_allclose(a, b, **kw):
        diffs = jax.tree.map(
            lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
            if np.shape(x) == np.shape(y) else "shape mismatch",
            a, b,
        )
        raise AssertionError(f"trees differ; max abs difference per leaf: {diffs}")


def assert_tree_equal(a, b) -> None:
    """Two pytrees bit for bit: the same structure, and each leaf the same dtype and values
    (NaNs in the same places count as equal)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb, f"tree structures differ: {ta} against {tb}"
    for i, (x, y) in enumerate(zip(la, lb)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype, f"leaf {i}: dtype {x.dtype} against {y.dtype}"
        np.testing.assert_array_equal(x, y, err_msg=f"leaf {i}")


def rel_err(a, b) -> float:
    """Worst ``|a−b| / max(1e-30, |a|+|b|)`` over all leaves of two pytrees."""
    errs = [
        float(np.max(np.abs(x - y) / np.maximum(tolerances.RELATIVE_FLOOR, np.abs(x) + np.abs(y)), initial=0.0))
        for x, y in zip(
            (np.asarray(v, np.float64) for v in jax.tree_util.tree_leaves(a)),
            (np.asarray(v, np.float64) for v in jax.tree_util.tree_leaves(b)),
        )
    ]
    return max(errs, default=0.0)


ROOT = Path(__file__).resolve().parents[1]


def run_experiment(name: str, *args: str, timeout: int = 300,
                   env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m experiments.<name> ARGS`` from the repository root, on the CPU, in this
    process's environment or ``env``."""
    return subprocess.run([sys.executable, "-m", f"experiments.{name}", *args], cwd=ROOT,
                          env={**(os.environ if env is None else env), "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=timeout)


def assert_bad_input(proc: subprocess.CompletedProcess, needle: str) -> None:
    """Bad input: exit 2, one ``error: ...`` line on stderr that names ``needle``, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
