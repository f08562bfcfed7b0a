"""Tests for gdlab/__init__.py: the re-exported names, and light imports (``import gdlab``
and an experiment's flag definitions load no submodule they do not use)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

import gdlab

HEAVY = ("jax", "flax", "orbax.checkpoint", "tensorboardX", "matplotlib", "sklearn",
         "gdlab.train", "gdlab.parallel", "gdlab.checkpoint")


def _probe(code: str) -> list[str]:
    """A fresh interpreter that runs ``code``, then prints the ``HEAVY`` modules it holds."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    return [sys.executable, "-c", probe]


def _loaded_after(*codes: str) -> list[list[str]]:
    """For each of ``codes`` (run side by side, each in its own interpreter), the ``HEAVY``
    modules loaded after it."""
    procs = [subprocess.Popen(_probe(code), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for code in codes]
    loaded = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        loaded.append(out.split())
    return loaded


def test_import_gdlab_loads_no_submodule():
    assert _loaded_after("import gdlab") == [[]]


def test_reading_results_needs_numpy_alone():
    """``gdlab.analysis`` (a sweep's verdicts) loads neither jax nor the training loop; its
    rule sentence reads the guard's blow-up factor from ``gdlab.train`` only when asked."""
    assert _loaded_after("import gdlab.analysis") == [[]]
    from gdlab import analysis, train

    assert f"> {train.DEFAULT_BLOWUP:g}x the initial" in analysis.verdict_rule()
    assert "> 1000x the initial" in analysis.verdict_rule(blowup=1000)


EXPERIMENTS = ("train", "lr_sweep", "edge_of_stability", "gradcheck")


def test_the_experiments_flags_load_no_training_machinery():
    # Defining the flags (all that --help needs) pays for jax and the data loaders only.
    loaded = _loaded_after(*(f"import experiments.{name}" for name in EXPERIMENTS))
    for name, modules in zip(EXPERIMENTS, loaded, strict=True):
        assert set(modules) <= {"jax"}, name


def test_every_exported_name_is_its_submodules():
    import importlib

    for name in gdlab.__all__:
        value = getattr(gdlab, name)
        if name in gdlab._NAMES:
            assert value is getattr(importlib.import_module(f"gdlab.{gdlab._NAMES[name]}"), name)
        else:
            assert value is importlib.import_module(f"gdlab.{name}")
    assert set(gdlab.__all__) <= set(dir(gdlab))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        gdlab.no_such_thing  # noqa: B018


def test_importing_the_plots_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    """A notebook's backend survives ``import gdlab.plots`` (it forced Agg), and a figure
    is still written without a display."""
    code = ("import matplotlib; matplotlib.use('svg')\n"
            "import gdlab.plots, gdlab.plots.sweep, gdlab.plots.landscape\n"
            f"gdlab.plots.plot_history([{{'epoch': 0, 'train_loss': 1.0}}], {str(tmp_path / 'h.png')!r}, "
            "title='t')\n"
            "print(matplotlib.get_backend())")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["svg"], r.stderr
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")


NO_TEST_FILE = {"types": "type aliases, no behaviour",
                "tolerances": "numbers that test_gradcheck's comparisons use",
                "_compat": "one version shim, exercised by every import"}
"""gdlab modules without a test file of their own, and why."""

TESTED_WITH = {"evaluate": "test_exp_train_runs"}
"""Experiments tested in another experiment's file: evaluate reloads a train run."""


def _text(test_file: str | None) -> str:
    return "" if test_file is None else (ROOT / "tests" / f"{test_file}.py").read_text()


def test_test_files_mirror_the_package():
    """DESIGN.md: tests/ mirrors gdlab/. Each module gdlab/NAME.py has tests/test_NAME.py,
    each subpackage gdlab/NAME/ at least one tests/test_NAME*.py, and each experiment
    experiments/NAME.py a tests/test_exp_NAME*.py."""
    tests = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    package = ROOT / "gdlab"
    missing = [f"gdlab/{p.name}" for p in package.glob("*.py")
               if p.stem != "__init__" and p.stem not in NO_TEST_FILE
               and f"test_{p.stem}" not in tests]
    missing += [f"gdlab/{p.name}/" for p in package.iterdir()
                if (p / "__init__.py").exists()
                and not any(t.startswith(f"test_{p.name}") for t in tests)]
    missing += [f"experiments/{p.name}" for p in (ROOT / "experiments").glob("*.py")
                if not p.stem.startswith("_") and p.stem != "__init__"
                and not any(t.startswith(f"test_exp_{p.stem}") for t in tests)
                and f'run_experiment("{p.stem}"' not in _text(TESTED_WITH.get(p.stem))]
    assert missing == [], f"no test file for {missing}"
    assert all((package / f"{name}.py").exists() for name in NO_TEST_FILE)
