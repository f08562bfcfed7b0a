"""The landscape experiment end to end (a small run's outputs, bad flags) and what its
figure draws: paths clipped to the view, a diverged one cut where it leaves."""

from __future__ import annotations

import json
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_bad_input, run_experiment
from gdlab import landscapes, optim
from gdlab.plots import landscape as landscape_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_experiment("landscape", *args, timeout=120)


def test_default_run_is_plain_gd_on_the_bowl_at_three_rates(tmp_path):
    proc = _run(f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "landscape.png").read_bytes()[:8] == PNG_MAGIC
    result = json.loads((tmp_path / "landscape.json").read_text())
    (bowl,) = result["functions"]
    assert bowl["name"] == "bowl"
    assert bowl["lambda_max"] == pytest.approx(10.0) and bowl["stability_bound"] == pytest.approx(0.2)
    runs = bowl["runs"]
    assert [r["optimizer"] for r in runs] == ["gd"] * 3  # no momentum unless asked
    assert [r["role"] for r in runs] == ["too small", "good", "too large"]
    assert [r["lr_over_bound"] for r in runs] == pytest.approx([0.1, 0.5, 1.05])
    small, good, large = runs
    assert not small["diverged"] and small["distance_to_minimum"] > 1.0  # still on its way
    assert not good["diverged"] and good["distance_to_minimum"] < 0.05
    assert large["diverged"] and large["diverged_at_step"] >= 1
    assert "= 1.05·2/λmax, diverged at step" in proc.stdout
    assert small["diverged_at_step"] is None and good["diverged_at_step"] is None
    _assert_the_bowls_closed_form(result)


def _assert_the_bowls_closed_form(result: dict) -> None:
    """Plain GD on ½(x² + 10y²) from (x₀, y₀): x_t = (1 − α)^t·x₀, y_t = (1 − 10α)^t·y₀. A
    path stops at the first update that leaves the box scaled by the escape factor about its
    centre, keeping that point."""
    import math

    (bowl,) = result["functions"]
    fn = landscapes.bowl()
    assert bowl["formula"] == fn.formula and bowl["minimum_value"] == fn.minimum_value == 0.0
    assert bowl["minima"] == [[0.0, 0.0]] and bowl["lambda_max_at"] == [0.0, 0.0]
    assert bowl["box"] == list(fn.box) and bowl["start"] == list(fn.start)
    assert result["escape_factor"] == landscapes.ESCAPE
    (x0, y0), (_, _, _, y_top) = fn.start, fn.box
    y_escape = landscapes.ESCAPE * y_top  # the box is centred on (0, 0)
    for run, lr in zip(bowl["runs"], fn.lrs):
        assert run["lr"] == lr and run["steps"] == fn.steps
        if abs(1 - 10 * lr) > 1:  # |y_t| = |y₀|·|1 − 10α|^t first passes y_escape at t
            t = math.floor(math.log(y_escape / abs(y0)) / math.log(abs(1 - 10 * lr))) + 1
            assert run["diverged"] and run["diverged_at_step"] == t
        else:
            t = fn.steps
            assert not run["diverged"]
        x, y = x0 * (1 - lr) ** t, y0 * (1 - 10 * lr) ** t
        assert run["final_point"] == pytest.approx([x, y], rel=1e-5, abs=1e-6)
        assert run["final_loss"] == pytest.approx(0.5 * (x * x + 10 * y * y), rel=1e-5, abs=1e-9)
        assert run["nearest_minimum"] == [0.0, 0.0]
        assert run["distance_to_minimum"] == pytest.approx(math.hypot(x, y), rel=1e-5, abs=1e-6)


def test_small_run_writes_plot_and_json(tmp_path):
    proc = _run("--functions=bowl,himmelblau", "--momentum=0.9", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "landscape.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "config.json").read_text())["functions"] == ["bowl", "himmelblau"]
    result = json.loads((tmp_path / "landscape.json").read_text())
    assert [f["name"] for f in result["functions"]] == ["bowl", "himmelblau"]
    bowl, himmelblau = result["functions"]
    defaults = landscapes.bowl()
    assert len(bowl["runs"]) == 2 * len(defaults.lrs)  # gd and momentum, each lr
    assert {r["optimizer"] for r in bowl["runs"]} == {"gd", "momentum"}
    by_key = {(r["optimizer"], r["lr"]): r for r in bowl["runs"]}
    _, good, large = defaults.lrs
    assert by_key["gd", good]["distance_to_minimum"] < 0.05  # the good lr ends near (0, 0)
    assert not by_key["gd", good]["diverged"]
    assert by_key["gd", large]["diverged"]                    # α > 2/b on the bowl
    assert by_key["gd", large]["diverged_at_step"] >= 1
    assert not by_key["momentum", large]["diverged"]          # momentum's bound is 2(1+β)/b
    # each run's ratio is to its own optimizer's bound; plain GD's roles stay plain GD's
    momentum = by_key["momentum", large]
    assert momentum["bound"] == pytest.approx(2 * 1.9 / 10, rel=1e-6)
    assert momentum["lr_over_bound"] == pytest.approx(1.05 / 1.9, rel=1e-6)
    assert momentum["role"] is None and by_key["gd", large]["role"] == "too large"
    assert "α = 0.21 = 0.553·2(1+β)/λmax" in proc.stdout
    for fn, run in [(bowl, r) for r in bowl["runs"]] + [(himmelblau, r) for r in himmelblau["runs"]]:
        assert len(run["final_point"]) == 2
        assert run["final_loss"] >= 0
        # the nearest of the function's minima, by numpy
        dists = np.linalg.norm(np.asarray(fn["minima"]) - np.asarray(run["final_point"]), axis=1)
        assert run["nearest_minimum"] == fn["minima"][int(np.argmin(dists))]
        assert run["distance_to_minimum"] == pytest.approx(float(dists.min()), rel=1e-12)
    assert len(himmelblau["minima"]) == 4
    assert himmelblau["lambda_max_at"] == [3.0, 2.0]
    assert himmelblau["lambda_max"] == pytest.approx(54 + 800 ** 0.5, rel=1e-5)
    assert "device" in result and "jax_version" in result


def test_lrs_steps_and_plain_gd_only(tmp_path):
    proc = _run("--functions=rosenbrock, rosenbrock", "--lrs=0.001", "--steps=5", "--momentum=0",
                f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    (fn,) = json.loads((tmp_path / "landscape.json").read_text())["functions"]  # one row per name
    assert [(r["optimizer"], r["lr"], r["steps"]) for r in fn["runs"]] == [("gd", 0.001, 5)]
    assert fn["runs"][0]["role"] is None  # rates of one's own have no role


_RECORD_THE_FIGURE = (
    "import json, sys\n"
    "from gdlab.plots import landscape as plots\n"
    "def record(rows, path, *, title):\n"
    "    drawn = [{'note': row.note, 'panels': [\n"
    "        {'title': name, 'runs': [{'label': run.label, 'diverged_at': run.diverged_at,\n"
    "                                  'last': run.points[-1].tolist(), 'points': len(run.points)}\n"
    "                                 for run in runs]}\n"
    "        for name, runs in row.optimizers]} for row in rows]\n"
    "    with open(str(path) + '.drawn.json', 'w') as f:\n"
    "        json.dump({'title': title, 'rows': drawn}, f)\n"
    "plots.plot_landscapes = record\n"
    "import experiments.landscape\n"
    "from experiments import _cli\n"
    "sys.argv = ['landscape', *sys.argv[1:]]\n"
    "_cli.run(experiments.landscape.main)\n")


def test_the_figure_is_given_each_runs_path_its_divergence_and_the_bounds(tmp_path):
    """What main hands the figure (recorded in place of the plot): a panel per optimizer,
    each run's path to its last point and the step it diverged at, as landscape.json has
    them, and a note with plain GD's bound 2/λmax and momentum's 2(1+β)/λmax."""
    import os
    import sys

    from conftest import ROOT

    beta = 0.5
    r = subprocess.run([sys.executable, "-c", _RECORD_THE_FIGURE, "--functions=bowl",
                        f"--momentum={beta}", "--steps=40", f"--workdir={tmp_path}"], cwd=ROOT,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    drawn = json.loads((tmp_path / "landscape.png.drawn.json").read_text())
    assert drawn["title"] == ("Descending in the fog: plain gradient descent and momentum "
                              f"β={beta:g}; colour = learning rate α")
    (row,) = drawn["rows"]
    lam = 10.0  # the bowl's larger curvature
    assert row["note"].startswith(f"2/λmax = {2 / lam:.3g} (λmax = {lam:.4g} at the minimum (0, 0))")
    assert row["note"].endswith(f"; momentum's 2(1+β)/λmax = {2 * (1 + beta) / lam:.3g}")
    assert [p["title"] for p in row["panels"]] == ["plain GD", f"momentum β={beta:g}"]
    (fn,) = json.loads((tmp_path / "landscape.json").read_text())["functions"]
    runs = [run for panel in row["panels"] for run in panel["runs"]]
    assert len(runs) == len(fn["runs"]) == 6
    for run, saved in zip(runs, fn["runs"]):
        assert run["diverged_at"] == saved["diverged_at_step"]
        assert run["last"] == pytest.approx(saved["final_point"], rel=1e-12)
        assert run["points"] == 40 + 1
        assert run["label"] in r.stdout
    assert [run["diverged_at"] is not None for run in runs] == [False, False, True,
                                                                 False, False, False]


@pytest.mark.parametrize("code, named, verb", [
    ("ENOSPC", False, "write"),  # a full disk; a buffered file's flush names no file
    ("EACCES", True, "access"),  # the folder's permissions changed under the run
])
def test_a_write_that_fails_after_the_start_is_one_sentence_naming_what_failed(
        tmp_path, code, named, verb):
    """landscape.json cannot be written (config.json and flags.txt were): exit 1 and one
    sentence, which cannot write to a full disk and cannot access a folder taken away."""
    import errno
    import os
    import sys

    from conftest import ROOT

    script = (
        "import errno, os, sys\n"
        "import gdlab.records as records\n"
        "real = records.write_json_atomic\n"
        "def failing(path, *args, **kwargs):\n"
        "    if str(path).endswith('landscape.json'):\n"
        f"        code = errno.{code}\n"
        f"        raise OSError(code, os.strerror(code), *([str(path)] if {named} else []))\n"
        "    return real(path, *args, **kwargs)\n"
        "records.write_json_atomic = failing\n"
        "import experiments.landscape\n"
        "from experiments import _cli\n"
        "sys.argv = ['landscape', *sys.argv[1:]]\n"
        "_cli.run(experiments.landscape.main)\n")
    workdir = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", script, "--steps=3", f"--workdir={workdir}"],
                       cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                       capture_output=True, text=True, timeout=120)
    where = workdir / "landscape.json" if named else f"into {workdir}"
    assert r.returncode == 1, r.stderr
    assert r.stderr == (f"error: cannot {verb} {where} ({os.strerror(getattr(errno, code))}); "
                        "the run stops, keeping what it wrote before: make room (or make the "
                        "folder writable) and run it again with --overwrite\n")
    assert sorted(p.name for p in workdir.iterdir()) == ["config.json", "flags.txt"]


@pytest.mark.parametrize("flag", [
    "--functions=volcano", "--functions=,", "--lrs=0.1,fast", "--momentum=1", "--steps=0",
])
def test_bad_flags_exit_2_with_one_sentence(flag, tmp_path):
    proc = _run(flag, f"--workdir={tmp_path / 'out'}")
    assert_bad_input(proc, flag.split("=")[0])
    assert not (tmp_path / "out").exists()  # nothing written


def test_help_lists_every_flag():
    proc = _run("--help")
    assert proc.returncode == 0
    for flag in ("functions", "lrs", "momentum", "steps", "workdir"):
        assert f"--{flag}" in proc.stdout, flag


# --- the figure: what a path draws ------------------------------------------------------

BOX = (-1.0, 1.0, -1.0, 2.0)


def _inside(points, box, atol=1e-12) -> bool:
    x0, x1, y0, y1 = box
    pts = points[~np.isnan(points).any(axis=1)]
    return bool(np.all((pts[:, 0] >= x0 - atol) & (pts[:, 0] <= x1 + atol)
                       & (pts[:, 1] >= y0 - atol) & (pts[:, 1] <= y1 + atol)))


def test_a_path_that_leaves_and_returns_is_clipped_with_a_gap():
    line, mark, left = landscape_plots.visible_path(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 1.0]]),
                                                    BOX, diverged=False)
    np.testing.assert_allclose(line, [[0, 0], [1, 0], [np.nan, np.nan], [1, 0.9], [0, 1]])
    assert mark is None and left is None


def test_a_diverged_path_stops_at_the_edge_where_it_leaves_the_view():
    bowl = landscapes.bowl()
    path = landscapes.descend(bowl, bowl.start, optim.gd(0.21), 60, dtype=jnp.float64)
    assert bool(path.diverged) and int(path.diverged_at) > 5
    points = np.asarray(path.points)
    line, mark, left = landscape_plots.visible_path(points, bowl.box, diverged=True)
    # y_t = 2·(1 − 0.21·10)^t = 2·(−1.1)^t first leaves |y| ≤ 3 at t = 5
    assert left == 5
    assert _inside(line, bowl.box) and not np.isnan(line).any()
    np.testing.assert_allclose(line[:5], points[:5])  # the path itself, up to the exit
    assert len(line) == 6 and mark[1] == pytest.approx(-3.0)  # then the crossing of y = −3
    np.testing.assert_allclose(line[-1], mark)
    # on the segment from step 4 to step 5
    t = (mark[0] - points[4, 0]) / (points[5, 0] - points[4, 0])
    np.testing.assert_allclose(mark, points[4] + t * (points[5] - points[4]))


def test_figure_draws_clipped_paths_and_losses_up_to_divergence():
    bowl = landscapes.bowl()
    lrs = bowl.lrs
    paths = landscapes.sweep(bowl, bowl.start, optim.gd, lrs, bowl.steps, dtype=jnp.float64)
    runs = [landscape_plots.Run(points=np.asarray(paths.points[i]), losses=np.asarray(paths.losses[i]),
                                label=f"lr {lr:g}", color=i,
                                diverged_at=int(paths.diverged_at[i]) if paths.diverged[i] else None)
            for i, lr in enumerate(lrs)]
    fig = landscape_plots.landscape_figure(
        [landscape_plots.Row(landscape=bowl, optimizers=[("plain GD", runs)], note="2/λmax = 0.2")],
        title="t", grid=30)
    contour_ax, loss_ax = [ax for ax in fig.axes if ax.get_visible()]
    assert "plain GD; 2/λmax = 0.2" in contour_ax.get_title()
    drawn = {ln.get_label(): np.column_stack(ln.get_data()).astype(np.float64)
             for ln in contour_ax.get_lines()}
    large = drawn["lr 0.21 (✕: leaves the view at step 5)"]
    assert _inside(large, bowl.box) and len(large) == 6
    for label in ("lr 0.02", "lr 0.1"):
        np.testing.assert_allclose(drawn[label], np.asarray(runs[lrs.index(float(label[3:]))].points))
    losses = {ln.get_label(): ln.get_xdata() for ln in loss_ax.get_lines()}
    assert len(losses["lr 0.21"]) == runs[2].diverged_at + 1  # up to the diverging update
    assert len(losses["lr 0.02"]) == bowl.steps + 1
    assert loss_ax.get_yscale() == "log"
