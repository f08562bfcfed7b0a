"""The README's Python example runs as written and shows what it claims."""

from __future__ import annotations

import re
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs_and_manual_matches_jax_grad(capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    assert len(block.strip().splitlines()) <= 15
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    gaps = jax.tree_util.tree_leaves(namespace["gap"])
    assert len(gaps) == 6 and max(gaps) < 1e-6  # float32: agreement to rounding
    assert "J = " in capsys.readouterr().out


def test_readme_opens_with_the_two_commands():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert lines[1] == "```bash"
    assert lines[2].startswith("./scripts/demo.sh") and lines[3].startswith("./scripts/test.sh")


def test_readme_documents_every_experiment():
    text = (ROOT / "README.md").read_text()
    for app in sorted((ROOT / "experiments").glob("[a-z]*.py")):
        assert f"experiments/{app.name}" in text, app.name
