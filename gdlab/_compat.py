"""Small shims over JAX APIs that moved between the versions gdlab supports (0.10 to 0.12)."""

from __future__ import annotations

import contextlib

import jax


def enable_x64():
    """A context manager turning on 64-bit floats, whatever the JAX version calls it."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as _enable_x64  # older JAX

    return _enable_x64()


@contextlib.contextmanager
def highest_precision():
    """Matmuls at full float32 (no TF32/bf16 passes) inside the block."""
    with jax.default_matmul_precision("highest"):
        yield
