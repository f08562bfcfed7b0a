"""The README's Python example runs as written and shows what it claims."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import assert_tree_allclose

from gdlab import backprop

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


@pytest.fixture(scope="module")
def example():
    """The README's first Python block, run once: its names and what it printed."""
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_python_blocks()[0], "README.md", "exec"), namespace)
    return namespace, printed.getvalue()


def test_readme_example_runs_and_manual_matches_jax_grad(example):
    assert len(_python_blocks()[0].strip().splitlines()) <= 40
    namespace, out = example
    gaps = jax.tree_util.tree_leaves(namespace["gap"])
    assert len(gaps) == 6 and max(gaps) < 1e-6  # float32: agreement to rounding
    assert "J = " in out and "per-token J = " in out and "(3, 3, 1, 8)" in out
    # the CNN's running statistics moved; its grads match jax.grad, as do the block's
    ns = namespace
    old, new = ns["cnn_state"]["layers"][1]["mean"], ns["new_state"]["layers"][1]["mean"]
    assert float(np.max(np.abs(np.asarray(new) - np.asarray(old)))) > 1e-3
    _, auto = jax.jit(backprop.autodiff(ns["cnn"], ns["loss"]), static_argnames="train")(
        ns["cnn_params"], ns["cnn_state"], ns["images"], ns["y"], train=True)
    assert_tree_allclose(ns["cnn_grads"], auto, rtol=1e-4, atol=1e-5)
    _, auto = jax.jit(backprop.autodiff(ns["block"], ns["loss"]))(
        ns["block_params"], ns["block_state"], ns["tokens"], np.sort(ns["tokens"], axis=1))
    assert_tree_allclose(ns["block_grads"], auto, rtol=1e-4, atol=1e-5)


def test_readme_curvature_snippet_continues_the_example_and_finds_the_top_eigenvalues(example):
    """The second Python block runs after the first, as its comment says; its three
    Lanczos values are the dense Hessian's largest three (the Hessian of J over the
    flattened params, by jax.hessian, here small enough to hold)."""
    from jax.flatten_util import ravel_pytree

    namespace = dict(example[0])  # the first block's names, left as they were for others
    exec(compile(_python_blocks()[1], "README.md", "exec"), namespace)
    ns = namespace
    flat, unravel = ravel_pytree(ns["params"])
    objective = lambda v: ns["loss"].value(  # noqa: E731
        ns["model"].forward(unravel(v), ns["state"], ns["x"])[0], ns["y"])
    eigenvalues = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(objective))(flat), np.float64))
    np.testing.assert_allclose(np.asarray(ns["top3"]), eigenvalues[::-1][:3], rtol=2e-3)


def test_readme_opens_with_the_two_commands():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert lines[1] == "```bash"
    assert lines[2].startswith("./scripts/demo.sh") and lines[3].startswith("./scripts/test.sh")


def test_readme_documents_every_experiment():
    text = (ROOT / "README.md").read_text()
    for app in sorted((ROOT / "experiments").glob("[a-z]*.py")):
        assert f"experiments/{app.name}" in text, app.name
