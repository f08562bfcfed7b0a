"""``pip install .`` gives working console commands outside the checkout.

The package is installed (no network: no dependencies, no build isolation, so
the venv's own setuptools builds it) into a private ``--target`` folder from a
copy of the source tree; the commands then run from another working directory
with that folder, the venv's site-packages (for jax, flax, …) and any other folder
PYTHONPATH names on the path, and the checkout nowhere on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

# What a source distribution of gdlab needs; the rest of the checkout stays behind.
SOURCE = ("pyproject.toml", "README.md", "LICENSE", "gdlab", "experiments")
COMMANDS = ("gdlab-train", "gdlab-evaluate", "gdlab-gradcheck", "gdlab-lr-sweep",
            "gdlab-descent-modes", "gdlab-backprop-cost", "gdlab-landscape",
            "gdlab-edge-of-stability")
INSTALL_TIMEOUT_S, RUN_TIMEOUT_S = 300, 300


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site folder, environment for running the installed commands)."""
    base = tmp_path_factory.mktemp("install")
    src, site = base / "src", base / "site"
    src.mkdir()
    for name in SOURCE:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(origin, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(site), str(src)],
        cwd=base, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # Folders PYTHONPATH adds for dependencies stay (a machine may bring a package that way);
    # the checkout, and anything inside it, goes.
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p and not Path(p).resolve().is_relative_to(ROOT.resolve())]
    env["PYTHONPATH"] = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"], *extra])
    env["JAX_PLATFORMS"] = "cpu"
    return site, env


def _run(args, cwd, env, timeout=RUN_TIMEOUT_S):
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_console_scripts_are_installed(installed):
    site, _ = installed
    for name in COMMANDS:
        assert (site / "bin" / name).is_file(), name
    metadata = next(site.glob("gdlab-*.dist-info"))
    assert (metadata / "licenses" / "LICENSE").is_file()
    assert "License-Expression: Apache-2.0" in (metadata / "METADATA").read_text()


def test_the_installed_copy_is_imported(installed, tmp_path):
    site, env = installed
    proc = _run([sys.executable, "-c",
                 "import experiments, experiments.train, gdlab; "
                 "print(experiments.__file__); print(gdlab.__file__)"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    for path in proc.stdout.split():
        assert Path(path).resolve().is_relative_to(site.resolve()), path
        assert not Path(path).resolve().is_relative_to(ROOT), path


def test_gdlab_train_runs_outside_the_checkout(installed, tmp_path):
    site, env = installed
    workdir = tmp_path / "run"
    proc = _run([site / "bin" / "gdlab-train", "--epochs=1", "--hidden=8",
                 f"--workdir={workdir}"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "completed"


def test_an_installed_commands_help_lists_its_flags_as_python_m_does(installed, tmp_path):
    # For a console command, __main__ is the launcher: absl's own usage would show no flags.
    site, env = installed
    proc = _run([site / "bin" / "gdlab-lr-sweep", "--help"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Sweep learning rates: train one model with many α at once")
    for flag in ("--lrs", "--weight_decay_on", "--dataset", "--model", "--workdir"):
        assert f"  {flag}:" in proc.stdout, flag
    module = _run([sys.executable, "-m", "experiments.lr_sweep", "--help"], tmp_path, env)
    flags = [line for line in proc.stdout.splitlines() if line.startswith("  --")]
    assert flags == [line for line in module.stdout.splitlines() if line.startswith("  --")]


def test_gdlab_gradcheck_runs_outside_the_checkout(installed, tmp_path):
    site, env = installed
    workdir = tmp_path / "check"
    proc = _run([site / "bin" / "gdlab-gradcheck", "--hidden=4", "--batch_size=2",
                 "--input_dim=3", f"--workdir={workdir}"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((workdir / "gradcheck.json").read_text())
    assert report["passed"] is True and report["leaves"]
