"""experiments/lr_sweep.py: the acceptance run against 2/λmax, its outputs, bad flags; the verdict rule."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import assert_bad_input, run_experiment
from gdlab import analysis, data, theory

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BOUND_TOLERANCE = 0.10  # |first diverged / (2/λmax) − 1| the default grid and epochs must reach


def run_sweep(*args: str) -> subprocess.CompletedProcess:
    return run_experiment("lr_sweep", *args)


@pytest.fixture(scope="module")
def acceptance(tmp_path_factory):
    """The acceptance command: default grid (160 rates, 0.001..2) and default epochs."""
    workdir = tmp_path_factory.mktemp("lr_sweep") / "houses"
    proc = run_sweep("--dataset=houses", "--model=linear", "--loss=mse", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr
    return proc, workdir, json.loads((workdir / "sweep.json").read_text())


def test_first_divergence_is_within_10_percent_of_the_stability_bound(acceptance):
    proc, _, sweep = acceptance
    bound, first = sweep["theoretical_max_lr"], sweep["first_diverged_lr"]
    assert bound is not None and first is not None
    assert abs(first / bound - 1) <= BOUND_TOLERANCE
    assert sweep["first_diverged_over_theoretical"] == pytest.approx(first / bound)
    assert "first diverged" in proc.stdout and f"{bound:.4g}" in proc.stdout


def test_sweep_json_is_consistent(acceptance):
    _, workdir, sweep = acceptance
    lrs = np.array(sweep["lrs"])
    np.testing.assert_allclose(lrs, np.geomspace(0.001, 2.0, 160))
    k = len(lrs)
    for key in ("final_losses", "verdicts", "gap_closed", "diverged_at_step"):
        assert len(sweep[key]) == k, key
    assert set(sweep["verdicts"]) <= set(analysis.VERDICTS)
    assert sweep["rule"] == analysis.verdict_rule()
    verdict_at = lambda lr: sweep["verdicts"][int(np.argmin(abs(lrs - lr)))]  # noqa: E731
    assert verdict_at(2.0) == "diverged" and verdict_at(0.2) == "converged"
    assert verdict_at(0.001) == "too slow"
    # first_diverged_lr is the smallest diverged rate, and every rate above it diverged (linear MSE).
    diverged = [v == "diverged" for v in sweep["verdicts"]]
    first = diverged.index(True)
    assert sweep["first_diverged_lr"] == lrs[first] and all(diverged[first:])
    assert sweep["counts"] == {v: sweep["verdicts"].count(v) for v in analysis.VERDICTS}
    # Curves start at the initial loss and end at the final losses; a guard-flagged run ends NaN.
    curves = sweep["curves"]["train_loss"]
    assert len(curves) == k and all(len(c) == sweep["epochs"] + 1 for c in curves)
    assert all(c[0] == pytest.approx(sweep["initial_loss"], rel=1e-5) for c in curves)
    assert [c[-1] for c in curves] == sweep["final_losses"]
    for step, final in zip(sweep["diverged_at_step"], sweep["final_losses"]):
        assert step is None or final is None
    best = min(f for f, v in zip(sweep["final_losses"], sweep["verdicts"]) if v != "diverged")
    assert sweep["best_final_loss"] == pytest.approx(best, rel=1e-5)
    assert set(sweep["picked"]) == {"too small", "good", "too large"}
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"] == "linear" and config["num"] == 160 and config["lrs"] is None
    assert (workdir / "sweep.png").read_bytes().startswith(PNG_MAGIC)


def test_explicit_learning_rates_minibatch_momentum(tmp_path):
    proc = run_sweep("--lrs=5,0.01,0.3", "--descent=minibatch", "--batch_size=100",
                     "--optimizer=momentum", "--momentum=0.5", "--epochs=10",
                     f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["lrs"] == [0.01, 0.3, 5.0]  # sorted
    assert sweep["batch_size"] == 100 and sweep["optimizer"] == "momentum"
    assert sweep["verdicts"][1] == "converged" and sweep["verdicts"][2] == "diverged"
    assert sweep["first_diverged_lr"] == 5.0
    assert "only a guide" in sweep["theory"]  # not full-batch gd: the bound is not exact
    assert len(sweep["curves"]["epoch"]) == 11
    assert (tmp_path / "sweep.png").read_bytes().startswith(PNG_MAGIC)


def test_nesterov_meets_its_own_bound(tmp_path):
    # full-batch Nesterov with β = 0.5 on the linear MSE: stable up to 2(1+β)/((1+2β)λmax),
    # 0.75 of plain gd's 2/λmax; the default grid's first diverged rate lies just above it
    proc = run_sweep("--dataset=houses", "--model=linear", "--loss=mse", "--descent=batch",
                     "--optimizer=nesterov", "--momentum=0.5", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    x = data.load("houses").x_train
    assert sweep["theoretical_max_lr"] == pytest.approx(0.75 * theory.max_stable_lr(x), rel=1e-9)
    assert 1 <= sweep["first_diverged_over_theoretical"] <= 1 + BOUND_TOLERANCE
    assert sweep["theory"].startswith("2(1+β)/((1+2β)λmax) with λmax") and "guide" not in sweep["theory"]
    assert "stability bound 2(1+β)/((1+2β)λmax) = " in proc.stdout


def test_an_adaptive_optimizer_gets_plain_gds_bound_for_reference(tmp_path, monkeypatch):
    proc = run_sweep("--optimizer=adam", "--lrs=0.01,0.1", "--epochs=3", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert "plain gd's exact stability bound, drawn for reference: adam adapts" in sweep["theory"]
    assert "the exact stability bound of full-batch adam" not in sweep["theory"]
    assert "(plain gd's, for reference: adam has none)" in proc.stdout
    # the figure's dashed line carries the bound's own name
    import matplotlib.axes

    from gdlab.plots import sweep as sweep_plots

    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline",
                        lambda self, x, **kw: labels.append(kw.get("label")))
    sweep_plots.plot_lr_sweep([0.1, 1.0], [0.5, 0.1], ["too slow", "converged"],
                              np.ones((2, 3)), {"good": 1}, tmp_path / "s.png", title="t",
                              initial_loss=1.0, theoretical_max_lr=0.9,
                              bound_name="2(1+β)/λmax")
    assert labels == ["2(1+β)/λmax = 0.9"]


def test_weight_decay_and_schedule_reach_every_rate(acceptance, tmp_path):
    # The same rate as one of the acceptance grid's, with a strong L2 decay and a cosine
    # schedule: the optimizer flags are the train command's, and they change the descent.
    _, _, plain = acceptance
    k = plain["verdicts"].index("converged")
    lr = plain["lrs"][k]
    proc = run_sweep(f"--lrs={lr!r}", "--weight_decay=1", "--weight_decay_on=weights",
                     "--schedule=cosine", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    decayed = json.loads((tmp_path / "sweep.json").read_text())
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["weight_decay"], config["weight_decay_on"], config["schedule"]) == (
        1.0, "weights", "cosine")
    assert decayed["lrs"] == [lr]
    assert decayed["final_losses"][0] > 1.5 * plain["final_losses"][k]
    assert "only a guide" in decayed["theory"]  # decay and schedule: the bound is not exact


@pytest.mark.parametrize("args, name", [
    (["--weight_decay_on=weights"], "--weight_decay_on=weights needs a decay"),
    (["--weight_decay=-1"], "--weight_decay"),
    (["--lrs=0.1,-1"], "--lrs"),
    (["--lr_min=1", "--lr_max=0.1"], "--lr_min"),
    (["--lr_min=0.1", "--lr_max=0.1"], "--lr_min must be smaller than --lr_max"),
    (["--num=1"], "--num"),
    (["--num=10000000000"], "--num must be at most 1,000,000 learning rates"),
    # 160 loss curves of 10^9 epochs (640 GB): one sentence, not an out-of-memory abort
    (["--epochs=1000000000"], "or fewer --epochs (each configuration keeps its loss per epoch)"),
    (["--lrs=0.1,1e39"], "--lrs=1e+39 overflows float32"),
    (["--lrs=0.1", "--epochs=100000000000000000000"],
     "more than the 2,147,483,647 a run counts (its step counter is an int32)"),
])
def test_bad_flags_exit_2_with_one_sentence(tmp_path, args, name):
    workdir = tmp_path / "out"
    proc = run_sweep(*args, f"--workdir={workdir}")
    assert_bad_input(proc, name)
    assert not workdir.exists()  # stopped before anything was written


def test_flags_txt_replays_a_sweep_of_listed_rates(tmp_path):
    """flags.txt lists every flag, --lr_min and friends at their defaults beside --lrs."""
    first, replay = tmp_path / "first", tmp_path / "replay"
    proc = run_sweep("--lrs=0.1,1", "--epochs=2", f"--workdir={first}")
    assert proc.returncode == 0, proc.stderr
    assert "--lr_min=" in (first / "flags.txt").read_text()
    proc = run_sweep(f"--flagfile={first / 'flags.txt'}", f"--workdir={replay}")
    assert proc.returncode == 0, proc.stderr
    a, b = (json.loads((d / "sweep.json").read_text()) for d in (first, replay))
    assert a["lrs"] == b["lrs"] == [0.1, 1.0]
    # both ways of giving the grid at once is still refused
    assert_bad_input(run_sweep("--lrs=0.1,1", "--num=5", f"--workdir={tmp_path / 'x'}"),
                     "give either --lrs or --lr_min/--lr_max/--num, not both")
    # also when the grid's flag is given at its default value
    assert_bad_input(run_sweep("--lrs=0.1,1", "--num=160", f"--workdir={tmp_path / 'x'}"),
                     "give either --lrs or --lr_min/--lr_max/--num, not both (got --lrs and --num)")


@pytest.mark.parametrize("signum, code", [(2, 130), (15, 143)])  # SIGINT, SIGTERM
def test_a_signal_mid_sweep_ends_it_with_one_line_and_leaves_no_partial_file(tmp_path, signum,
                                                                               code):
    """Ctrl-C while the compiled sweep ran used to crash the interpreter's shutdown (a
    segmentation fault, exit 139, most times 3 s in); SIGTERM had no handler, so a write
    it cut short left its temporary file. Now both end as 'interrupted'."""
    import os
    import sys
    import time

    from conftest import ROOT

    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "experiments.lr_sweep", "--dataset=digits", "--model=mlp",
               "--lrs=0.01,0.1,1,10", "--epochs=4000", "--descent=minibatch",
               f"--workdir={workdir}"]
    # started as a shell starts it, SIGINT at its default: a disposition a library set in
    # this test process (an ignored SIGINT survives exec) would otherwise reach the program,
    # which then never sees the Ctrl-C (the full suite's xdist workers had one)
    reset = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
             "os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen(
        [sys.executable, "-c", reset, *command],
        cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (workdir / "flags.txt").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(3)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code and err == "interrupted\n", (proc.returncode, err[-2000:])
    assert sorted(p.name for p in workdir.iterdir()) == ["config.json", "flags.txt"]


def test_a_start_that_cannot_write_its_flags_leaves_no_half_run(tmp_path):
    """config.json written, flags.txt not (the disk filled between them): the folder used
    to keep config.json alone, which a plain rerun refused as a run and --overwrite as no
    run. Now the start takes back its config.json."""
    import os
    import sys

    from conftest import ROOT

    script = (
        "import errno, sys\n"
        "import gdlab.records as records\n"
        "real = records.write_text_atomic\n"
        "def full(path, text):\n"
        "    if str(path).endswith('flags.txt'):\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    return real(path, text)\n"
        "records.write_text_atomic = full\n"
        "import experiments.lr_sweep\n"
        "from experiments import _cli\n"
        "sys.argv = ['lr_sweep', *sys.argv[1:]]\n"
        "_cli.run(experiments.lr_sweep.main)\n")
    workdir = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", script, f"--workdir={workdir}"], cwd=ROOT,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                       text=True, timeout=300)
    assert_bad_input(r, f"--workdir={workdir}: cannot write there (No space left on device)")
    assert list(workdir.iterdir()) == []


def test_weight_decay_on_weights_spares_the_bias(tmp_path):
    """On houses' linear model, a strong decay on the weights only ends elsewhere than the
    same decay on every parameter (the bias too)."""
    finals = {}
    for on in ("all", "weights"):
        workdir = tmp_path / on
        proc = run_sweep("--lrs=0.1", "--epochs=20", "--weight_decay=1",
                         f"--weight_decay_on={on}", f"--workdir={workdir}")
        assert proc.returncode == 0, proc.stderr
        finals[on] = json.loads((workdir / "sweep.json").read_text())["final_losses"][0]
    assert finals["weights"] != pytest.approx(finals["all"], rel=1e-3), finals


def test_a_linear_fit_of_several_targets_meets_its_bound(tmp_path):
    """mse averages over K = 3 targets, so full-batch gd on a linear model is stable up to
    3·(2/λmax) of the inputs: the first diverged rate lies just above that."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4))
    y = x @ rng.normal(size=(4, 3)) + 0.1 * rng.normal(size=(200, 3))
    path = tmp_path / "targets.npz"
    np.savez(path, x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    workdir = tmp_path / "run"
    proc = run_sweep("--dataset=npz", f"--npz_path={path}", "--task=regression",
                     "--model=linear", "--loss=mse", "--descent=batch", "--lr_min=0.2",
                     "--lr_max=20", "--num=100", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((workdir / "sweep.json").read_text())
    assert sweep["first_diverged_lr"] is not None
    assert 1 <= sweep["first_diverged_over_theoretical"] <= 1 + BOUND_TOLERANCE
