"""The README's Python example runs as written and shows what it claims."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
from conftest import assert_tree_allclose

from gdlab import backprop

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs_and_manual_matches_jax_grad(capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    assert len(block.strip().splitlines()) <= 40
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    gaps = jax.tree_util.tree_leaves(namespace["gap"])
    assert len(gaps) == 6 and max(gaps) < 1e-6  # float32: agreement to rounding
    out = capsys.readouterr().out
    assert "J = " in out and "per-token J = " in out and "(3, 3, 1, 8)" in out
    # the CNN's running statistics moved; its grads match jax.grad, as do the block's
    ns = namespace
    old, new = ns["cnn_state"]["layers"][1]["mean"], ns["new_state"]["layers"][1]["mean"]
    assert float(np.max(np.abs(np.asarray(new) - np.asarray(old)))) > 1e-3
    _, auto = backprop.autodiff(ns["cnn"], ns["loss"])(ns["cnn_params"], ns["cnn_state"],
                                                      ns["images"], ns["y"], train=True)
    assert_tree_allclose(ns["cnn_grads"], auto, rtol=1e-4, atol=1e-5)
    _, auto = backprop.autodiff(ns["block"], ns["loss"])(
        ns["block_params"], ns["block_state"], ns["tokens"], np.sort(ns["tokens"], axis=1))
    assert_tree_allclose(ns["block_grads"], auto, rtol=1e-4, atol=1e-5)


def test_readme_curvature_snippet_continues_the_example_and_finds_the_top_eigenvalues():
    """The second Python block runs after the first, as its comment says; its three
    Lanczos values are the dense Hessian's largest three (the Hessian of J over the
    flattened params, by jax.hessian, here small enough to hold)."""
    from jax.flatten_util import ravel_pytree

    text = (ROOT / "README.md").read_text()
    first, second = re.findall(r"```python\n(.*?)```", text, re.DOTALL)[:2]
    namespace: dict = {}
    exec(compile(first, "README.md", "exec"), namespace)
    exec(compile(second, "README.md", "exec"), namespace)
    ns = namespace
    flat, unravel = ravel_pytree(ns["params"])
    objective = lambda v: ns["loss"].value(  # noqa: E731
        ns["model"].forward(unravel(v), ns["state"], ns["x"])[0], ns["y"])
    eigenvalues = np.linalg.eigvalsh(np.asarray(jax.hessian(objective)(flat), np.float64))
    np.testing.assert_allclose(np.asarray(ns["top3"]), eigenvalues[::-1][:3], rtol=2e-3)


def test_readme_opens_with_the_two_commands():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert lines[1] == "```bash"
    assert lines[2].startswith("./scripts/demo.sh") and lines[3].startswith("./scripts/test.sh")


def test_readme_documents_every_experiment():
    text = (ROOT / "README.md").read_text()
    for app in sorted((ROOT / "experiments").glob("[a-z]*.py")):
        assert f"experiments/{app.name}" in text, app.name
