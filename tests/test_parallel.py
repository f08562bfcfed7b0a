"""Data parallelism and sharded sweeps on a mesh of 4 CPU devices (see conftest.py), and
two processes joined by jax.distributed: each equals the one-device run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdlab import backprop, losses, models, optim, parallel, tolerances, train

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 4
# float64: the same sums in another order; float32: rounding of those reorderings
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(a, np.float64))
                           for a in jax.tree_util.tree_leaves(parallel.fetch(tree))])


def _relative(a, b):
    a, b = _flat(a), _flat(b)
    return np.max(np.abs(a - b)) / np.max(np.abs(a))


def _problem(dtype, n=50, features=6, classes=3):
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    return (jax.random.normal(k1, (n, features), dtype),
            jax.random.randint(k2, (n,), 0, classes))


def test_four_devices_are_there():
    assert len(jax.devices()) >= DEVICES


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_data_parallel_fit_equals_one_device(dtype, grad):
    """B = 14 over 4 devices: padded to 16 with masked rows; 50 examples leave a masked
    last batch of 8. Three epochs of momentum."""
    x, y = _problem(dtype)
    model = models.mlp([8, 3], "tanh", dtype=dtype)
    args = (model, losses.get("xent"), optim.momentum(0.1), (x, y))
    kw = dict(epochs=3, batch_size=14, key=jax.random.PRNGKey(1), grad=grad)
    one = train.fit(*args, **kw)
    four = train.fit(*args, **kw, mesh=parallel.make_mesh(DEVICES))
    assert four.status == one.status == "completed"
    assert _relative(one.state.params, four.state.params) <= TOLERANCE[dtype]
    assert _relative(one.state.opt_state, four.state.opt_state) <= TOLERANCE[dtype]
    np.testing.assert_allclose([r["train_loss"] for r in four.history],
                               [r["train_loss"] for r in one.history], rtol=TOLERANCE[dtype])
    np.testing.assert_allclose(four.step_losses, one.step_losses, rtol=TOLERANCE[dtype])
    leaf = jax.tree_util.tree_leaves(four.state.params)[0]
    assert len(leaf.sharding.device_set) == DEVICES and leaf.sharding.is_fully_replicated


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_batch_norm_statistics_are_those_of_the_whole_batch(grad):
    """A CNN with batch norm: on 4 devices the statistics (and so the gradients and the
    running statistics) are the whole batch's, as on one device."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(5))
    x = jax.random.normal(k1, (36, 6, 6, 1), jnp.float64)
    y = jax.random.randint(k2, (36,), 0, 3)
    model = models.cnn(3, channels=(4,), dtype=jnp.float64)
    args = (model, losses.get("xent"), optim.gd(0.05), (x, y))
    kw = dict(epochs=2, batch_size=10, key=jax.random.PRNGKey(2), grad=grad)
    one = train.fit(*args, **kw)
    four = train.fit(*args, **kw, mesh=parallel.make_mesh(DEVICES))
    assert _relative(one.state.params, four.state.params) <= 1e-12
    assert _relative(one.state.model_state, four.state.model_state) <= 1e-12


def test_the_manual_gradient_is_an_explicit_all_reduce():
    """One step's gradient from parallel.value_and_grad under shard_map equals backprop on
    the whole batch, and its program holds the psum the code writes."""
    x, y = _problem(jnp.float64, n=16)
    w = jnp.array([1.0] * 10 + [0.0] * 6)  # devices 2 and 3 hold padding only
    model = models.mlp([8, 3], "relu", dtype=jnp.float64)
    _, params, state = model.init(jax.random.PRNGKey(0), (6,))
    loss = losses.get("xent")
    (value, _), grads = backprop.manual(model, loss)(params, state, x, y, w)
    spec = jax.sharding.PartitionSpec
    vg = parallel.value_and_grad(model, loss)
    sharded = jax.shard_map(lambda p, s, x, y, w: vg(p, s, x, y, w),
                            mesh=parallel.make_mesh(DEVICES),
                            in_specs=(spec(), spec(), spec("data"), spec("data"), spec("data")),
                            out_specs=spec(), check_vma=False)
    (value4, _), grads4 = jax.jit(sharded)(params, state, x, y, w)
    np.testing.assert_allclose(value4, value, rtol=1e-14)
    assert _relative(grads, grads4) <= 1e-14
    assert "psum" in str(jax.make_jaxpr(sharded)(params, state, x, y, w))


def test_sharded_sweep_equals_the_unsharded_one():
    """K = 6 configurations (not a multiple of 4: padded, then dropped), one diverging."""
    x, y = _problem(jnp.float64)
    x, y = 10 * x, jax.nn.one_hot(y, 3, dtype=jnp.float64)  # the largest rate blows up
    model = models.linear(3, dtype=jnp.float64)
    args = (model, losses.get("mse"), optim.gd, [0.001, 0.003, 0.01, 0.02, 0.03, 10.0], (x, y))
    kw = dict(epochs=3, batch_size=10)
    one = train.sweep(*args, **kw)
    four = train.sweep(*args, **kw, mesh=parallel.make_mesh(DEVICES))
    assert four.train_loss.shape == one.train_loss.shape == (6, 3)
    np.testing.assert_array_equal(four.diverged, one.diverged)
    assert one.diverged[-1] and not one.diverged[0]
    np.testing.assert_array_equal(four.diverged_at_step, one.diverged_at_step)
    np.testing.assert_allclose(four.train_loss, one.train_loss, rtol=1e-12)
    assert _relative(one.params, four.params) <= 1e-12


def test_a_mesh_larger_than_the_devices_is_refused():
    with pytest.raises(ValueError, match=r"devices must be an integer in 1\.\.4"):
        parallel.make_mesh(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="devices"):
        parallel.make_mesh(0)
    assert parallel.make_mesh(2).shape == {"data": 2}
    assert parallel.padded_batch_size(14, 4) == 16 and parallel.padded_batch_size(16, 4) == 16


def test_initialize_needs_all_three_or_none():
    with pytest.raises(ValueError, match="go together"):
        parallel.initialize("localhost:1234", None, None)
    with pytest.raises(ValueError, match="process_id must be in 0..1"):
        parallel.initialize("localhost:1234", 2, 2)


def test_initialize_passes_the_timeouts_to_jax(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    parallel.initialize(timeout=7)
    parallel.initialize(timeout=7, heartbeat=12)
    assert calls == [((None, None, None), {"initialization_timeout": 7}),
                     ((None, None, None), {"initialization_timeout": 7,
                                           "heartbeat_timeout_seconds": 12})]


# ------------------------------------------------------------------ several processes

TRAIN = ["-m", "experiments.train", "--hidden=16", "--epochs=2", "--batch_size=30"]


def _env():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device per process
    return {**env, "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable}


@contextlib.contextmanager
def _group(args):
    """``args`` started in a new process group; whatever happens, the group is killed after."""
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait()


def _run_group(args, timeout):
    """Run ``args`` in a new process group: ``(exit status, stdout, stderr)``."""
    with _group(args) as proc:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err


@pytest.mark.slow
def test_two_processes_on_localhost_train_like_one(tmp_path):
    """scripts/launch_local.sh 2: jax.distributed with CPU collectives, a mesh of two
    processes' devices; process 0 alone writes; the final params equal one process's."""
    from gdlab import checkpoint

    one, two = tmp_path / "one", tmp_path / "two"
    code, _, err = _run_group([sys.executable, *TRAIN, f"--workdir={one}"], timeout=300)
    assert code == 0, err
    launch = ["bash", "scripts/launch_local.sh", "2", "--", *TRAIN, "--checkpoint_seconds=0",
              f"--workdir={two}"]
    code, out, err = _run_group(launch, timeout=300)
    assert code == 0, err
    assert out.count("done: test loss") == 1  # process 0 reports, the other is silent
    a, b = checkpoint.load_params(one), checkpoint.load_params(two)
    assert _relative(a, b) <= TOLERANCE["float32"]
    rows = (two / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3  # epochs 0, 1, 2: written once, by process 0
    # resumed from epoch 1 by both processes, it ends where it did (process 1 keeps no rows)
    shutil.rmtree(two / "checkpoints" / "2")
    code, out, err = _run_group([*launch, "--resume"], timeout=300)
    assert code == 0, err
    assert (two / "metrics.jsonl").read_text().splitlines()[:2] == rows[:2]
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 3
    np.testing.assert_array_equal(_flat(checkpoint.load_params(two)), _flat(b))


def test_an_unreachable_coordinator_is_one_sentence_not_a_hang(tmp_path):
    code, _, err = _run_group([sys.executable, "-m", "experiments.train",
                               f"--coordinator_address=localhost:{_closed_port()}",
                               "--num_processes=2", "--process_id=1", "--distributed_timeout=2",
                               f"--workdir={tmp_path / 'run'}"], timeout=60)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()] and "did not answer within 2 s" in err
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize("address, needle", [
    ("no.such.host.invalid:1234", "the coordinator's host 'no.such.host.invalid' cannot be "
                                  "resolved"),
    ("192.0.2.1:1234", "process 0 serves the coordinator, so it must run on 192.0.2.1"),
])
def test_process_0_on_a_host_that_is_not_this_one_is_one_sentence(tmp_path, address, needle):
    """jax would abort process 0 with a C++ stack trace after its timeout."""
    code, _, err = _run_group([sys.executable, "-m", "experiments.train",
                               f"--coordinator_address={address}", "--num_processes=2",
                               "--process_id=0", "--distributed_timeout=5",
                               f"--workdir={tmp_path / 'run'}"], timeout=60)
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines() == [err.strip()] and needle in err
    assert not (tmp_path / "run").exists()


def test_a_port_another_program_holds_is_one_sentence_in_every_process(tmp_path):
    """Process 0 refuses the port at once; process 1 used to connect to whatever listened
    there and be aborted by jax with a C++ stack (exit 134) after --distributed_timeout."""
    with socket.socket() as other:
        other.bind(("localhost", 0))
        other.listen()
        address = f"localhost:{other.getsockname()[1]}"
        for process in (0, 1):
            code, _, err = _run_group([sys.executable, "-m", "experiments.train",
                                       f"--coordinator_address={address}", "--num_processes=2",
                                       f"--process_id={process}", "--distributed_timeout=2",
                                       f"--workdir={tmp_path / 'run'}"], timeout=60)
            assert code == 2 and "Traceback" not in err, err
            assert err.strip().splitlines() == [err.strip()], err
            assert address in err or str(other.getsockname()[1]) in err
    assert not (tmp_path / "run").exists()


@contextlib.contextmanager
def _two_processes_training(run, *extra):
    """Two processes of one long train run into ``run``, yielded once it has written three
    rows (epochs 0-2); both are killed afterwards, whatever happened."""
    args = [sys.executable, "-m", "experiments.train", "--hidden=8", "--epochs=100000",
            "--quiet", f"--workdir={run}", f"--coordinator_address=localhost:{_closed_port()}",
            "--num_processes=2", *extra]
    with _group([*args, "--process_id=0"]) as first, _group([*args, "--process_id=1"]) as second:
        deadline = time.monotonic() + 120
        metrics = run / "metrics.jsonl"
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        yield first, second


def test_the_process_a_peers_signal_stopped_exits_as_interrupted_too(tmp_path):
    """SIGTERM reaches process 1 only: process 0 stops after the same epoch, reports the
    run interrupted and exits 143 as well (it used to exit 0, telling a scheduler that
    its part of the run had finished)."""
    run = tmp_path / "run"
    with _two_processes_training(run) as (first, second):
        os.kill(second.pid, signal.SIGTERM)
        out, err = first.communicate(timeout=120)
        second.communicate(timeout=120)
    assert second.returncode == 143 and first.returncode == 143, err
    assert "interrupted after epoch" in out
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"


def test_a_peer_killed_outright_stops_the_others_with_one_sentence(tmp_path):
    """kill -9 of process 1: process 0's next all-reduce fails. It used to end with a
    traceback, then wait for the lost process at jax's shutdown barrier and abort with a
    C++ stack; now one sentence and exit 1 at once, its metrics intact."""
    run = tmp_path / "run"
    with _two_processes_training(run, "--distributed_heartbeat=30") as (first, second):
        os.kill(second.pid, signal.SIGKILL)
        start = time.monotonic()
        _, err = first.communicate(timeout=120)
        took = time.monotonic() - start
        second.communicate(timeout=60)  # killed: close its pipes
    why = f"exit {first.returncode} after {took:.1f} s: {err[-3000:]}"
    assert first.returncode == 1 and "Traceback" not in err, why
    assert err.strip().splitlines() == [err.strip()], why
    assert err.startswith("error: another process of the distributed run stopped ("), why
    assert err.strip().endswith("start every process again with --resume"), why
    assert took < 25, why  # not the 30 s heartbeat
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(len(rows)))


def test_launch_local_exits_with_a_failing_process_status():
    code, _, err = _run_group(["bash", "scripts/launch_local.sh", "2", "--", "-c",
                               "import sys; sys.exit(3)"], timeout=60)
    assert code == 3, err


def test_more_devices_than_there_are_is_one_sentence(tmp_path):
    code, _, err = _run_group([sys.executable, "-m", "experiments.lr_sweep", "--devices=3",
                               f"--workdir={tmp_path / 'run'}"], timeout=60)
    assert code == 2 and "Traceback" not in err and "--devices=3" in err
    assert "1..1" in err  # the subprocess sees one CPU device


def test_resuming_on_another_number_of_devices_says_it_is_no_longer_bitwise(tmp_path):
    import shutil

    from gdlab import checkpoint

    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "experiments.train", "--hidden=8", "--epochs=2",
            "--checkpoint_seconds=0", f"--workdir={workdir}"]
    two = {**_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    r = subprocess.run([*args, "--devices=2"], cwd=ROOT, env=two, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert checkpoint.read_meta(workdir)["meta"]["devices"] == 2
    shutil.rmtree(workdir / "checkpoints" / "2")  # resume from epoch 1, on one device
    r = subprocess.run([*args, "--resume"], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert ("warning: --resume: the run trained on 2 devices and goes on on 1: its gradients "
            "are now summed in another order, so it will be close to, not bitwise, the run it "
            "would have been") in r.stderr
    assert checkpoint.read_meta(workdir)["meta"]["devices"] == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]  # free once the socket closes: nobody listens there


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_mixed_precision_data_parallel_matches_one_device(grad):
    """bfloat16 compute on 4 devices (the all-reduce sums bfloat16 gradients) against one
    device: the same run to bfloat16 accuracy, float32 params."""
    x, y = _problem(jnp.float32)
    model = models.mlp([8, 3], "tanh")
    args = (model, losses.get("xent"), optim.momentum(0.1), (x, y))
    kw = dict(epochs=2, batch_size=16, key=jax.random.PRNGKey(1), grad=grad,
              compute_dtype=jnp.bfloat16)
    one = train.fit(*args, **kw)
    four = train.fit(*args, **kw, mesh=parallel.make_mesh(DEVICES))
    assert four.status == one.status == "completed"
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(four.state.params))
    assert _relative(one.state.params, four.state.params) <= tolerances.MIXED["bfloat16"]


def test_a_mesh_runs_checkpoint_restores_where_there_is_one_device(tmp_path):
    """orbax would insist on the saving run's 4-device layout ("Topology mismatch"), so a
    mesh run could be evaluated or resumed only on as many devices."""
    from gdlab import checkpoint

    x, y = _problem(jnp.float32)
    result = train.fit(models.mlp([8, 3], "tanh"), losses.get("xent"), optim.adamw(0.01), (x, y),
                       epochs=1, batch_size=14, key=jax.random.PRNGKey(1),
                       mesh=parallel.make_mesh(DEVICES))
    checkpoint.save(tmp_path, result.state, epoch=1)
    out = tmp_path / "params.npy"
    code = ("import jax, numpy as np\nfrom gdlab import checkpoint\n"
            f"state = checkpoint.restore({str(tmp_path)!r})\n"
            "leaves = jax.tree_util.tree_leaves(state.params)\n"
            f"np.save({str(out)!r}, np.concatenate([np.ravel(a) for a in leaves]))\n"
            "print(len(jax.devices()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "1"
    np.testing.assert_array_equal(np.load(out), _flat(result.state.params))


def _files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_two_processes_that_process_0_refuses_both_exit_2_at_once(tmp_path):
    """Only process 0 checks the workdir; process 1 used to train on alone into an
    all-reduce that never came, until jax's heartbeat killed both 40 s later."""
    run = tmp_path / "run"
    run.mkdir()
    for name, text in (("config.json", "{}"), ("flags.txt", "--epochs=2\n"), ("notes", "x")):
        (run / name).write_text(text)  # a run's folder, as far as --overwrite can tell
    before = _files(run)
    started = time.monotonic()
    code, _, err = _run_group(["bash", "scripts/launch_local.sh", "2", "--", *TRAIN,
                               f"--workdir={run}"], timeout=120)
    assert code == 2 and "Traceback" not in err, err
    assert "already holds a run" in err and "another process refused --workdir" in err
    assert time.monotonic() - started < 30
    assert _files(run) == before


@pytest.mark.slow
def test_a_signal_to_one_process_stops_both_at_the_same_epoch(tmp_path):
    """SIGTERM reaches process 0 only: both finish that epoch, process 0 checkpoints, the
    launcher exits 143 and leaves no process behind (process 1 used to wait forever in
    the next epoch's all-reduce)."""
    run = tmp_path / "run"
    with _group(["bash", "scripts/launch_local.sh", "2", "--", "-m", "experiments.train",
                 "--hidden=8", "--epochs=1000", "--quiet", f"--workdir={run}"]) as proc:
        deadline = time.monotonic() + 120
        metrics = run / "metrics.jsonl"
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        first = subprocess.run(["pgrep", "-f", f"workdir={run} .*--process_id=0"],
                               capture_output=True, text=True).stdout.split()
        assert len(first) == 1
        os.kill(int(first[0]), signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    stopped = [line for line in out.splitlines() if line.startswith("interrupted after epoch")]
    assert len(stopped) == 1  # process 0 reports
    epoch = int(stopped[0].split()[3].rstrip(":"))
    assert (run / "checkpoints" / str(epoch)).is_dir()
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"


def test_a_lost_peer_is_told_apart_in_a_collective_and_in_a_vote(monkeypatch):
    """A collective's failure is a JaxRuntimeError; multihost_utils' all-gather, which the
    processes' votes use, raises XLA's status as a ValueError: both are a lost peer, in a
    multi-process run only; other errors are not."""
    from experiments import _cli

    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    assert _cli._lost_a_peer(jax.errors.JaxRuntimeError("UNKNOWN: Gloo all-reduce failed"))
    assert _cli._lost_a_peer(ValueError("UNKNOWN: Gloo AllGather failed: Connection closed"))
    assert not _cli._lost_a_peer(ValueError("operands could not be broadcast together"))
    assert not _cli._lost_a_peer(OSError("UNKNOWN: not from XLA"))
    monkeypatch.setattr(jax, "process_count", lambda: 1)
    assert not _cli._lost_a_peer(jax.errors.JaxRuntimeError("UNKNOWN: Gloo all-reduce failed"))


def test_each_device_draws_its_own_dropout_mask():
    """Dropout under parallel.value_and_grad: device d masks its rows with the step's key
    folded with d. Four devices holding the same 4 rows give the mean of the four one-device
    losses and gradients under keys fold_in(key, d), not four copies of one mask."""
    x, y = _problem(jnp.float64, n=4)
    x4, y4 = jnp.concatenate([x] * DEVICES), jnp.concatenate([y] * DEVICES)
    model = models.mlp([8, 3], "tanh", dropout_rate=0.5, dtype=jnp.float64)
    _, params, state = model.init(jax.random.PRNGKey(0), (6,))
    loss, key = losses.get("xent"), jax.random.PRNGKey(9)
    one = backprop.manual(model, loss)
    per_device = [one(params, state, x, y, key=jax.random.fold_in(key, d), train=True)
                  for d in range(DEVICES)]
    value = np.mean([float(v) for (v, _), _ in per_device])
    grads = jax.tree.map(lambda *g: sum(g) / DEVICES, *[g for _, g in per_device])
    assert abs(float(per_device[0][0][0]) - value) > 1e-6  # the masks do differ
    spec = jax.sharding.PartitionSpec
    vg = parallel.value_and_grad(model, loss)
    sharded = jax.shard_map(lambda p, s, x, y, k: vg(p, s, x, y, key=k, train=True),
                            mesh=parallel.make_mesh(DEVICES),
                            in_specs=(spec(), spec(), spec("data"), spec("data"), spec()),
                            out_specs=spec(), check_vma=False)
    (value4, _), grads4 = jax.jit(sharded)(params, state, x4, y4, key)
    np.testing.assert_allclose(float(value4), value, rtol=1e-12)
    assert _relative(grads, grads4) <= 1e-12


@pytest.mark.parametrize("seeds, lrs", [((0,), [0.01, 0.02, 0.03]),     # K = 3: 1 padding
                                        ((0, 1), [0.001, 0.01, 0.03])])  # K = 6: 2 paddings
def test_sharded_sweep_pads_any_number_of_configurations(seeds, lrs):
    """K is padded up to the next multiple of the 4 devices (3 → 4, 6 → 8), and each
    (seed, lr) configuration lands where the unsharded sweep puts it."""
    x, y = _problem(jnp.float64, n=20)
    model = models.mlp([4, 3], "tanh", dtype=jnp.float64)
    args = (model, losses.get("xent"), optim.gd, lrs, (x, y))
    kw = dict(epochs=2, batch_size=10, seeds=seeds)
    one = train.sweep(*args, **kw)
    four = train.sweep(*args, **kw, mesh=parallel.make_mesh(DEVICES))
    assert four.train_loss.shape == one.train_loss.shape == (len(seeds) * len(lrs), 2)
    np.testing.assert_array_equal(four.learning_rates, one.learning_rates)
    np.testing.assert_array_equal(four.seeds, one.seeds)
    np.testing.assert_allclose(four.train_loss, one.train_loss, rtol=1e-12)
    assert _relative(one.params, four.params) <= 1e-12


def _two_processes(first, second, timeout=90):
    """One train run started as two processes, ``first`` and ``second`` the arguments only
    process 0 and process 1 get: ``((status, stderr) of process 0, of process 1)``."""
    args = [sys.executable, "-m", "experiments.train", "--hidden=8", "--epochs=2",
            "--batch_size=30", "--checkpoint_seconds=0",
            f"--coordinator_address=localhost:{_closed_port()}", "--num_processes=2"]
    with _group([*args, *first, "--process_id=0"]) as p0, \
            _group([*args, *second, "--process_id=1"]) as p1:
        _, err0 = p0.communicate(timeout=timeout)
        _, err1 = p1.communicate(timeout=timeout)
    return (p0.returncode, err0), (p1.returncode, err1)


def test_processes_started_with_other_flags_all_stop_with_one_sentence(tmp_path):
    """Another --seed in process 1: each process would initialise its own "replicated"
    params and the all-reduce would mix two runs, silently (another --hidden or --epochs:
    an abort or a hang)."""
    run = tmp_path / "run"
    results = _two_processes([f"--workdir={run}"], [f"--workdir={run}", "--seed=1"])
    for code, err in results:
        assert code == 2 and "Traceback" not in err, err
        assert err.strip().splitlines() == [err.strip()], err
        assert "the processes of the distributed run differ in --seed" in err
    assert not run.exists()


def test_a_bad_flag_in_one_process_stops_every_process_at_once(tmp_path):
    """--lr=-1 in process 1 only: it used to abort at jax's shutdown (a C++ stack, exit 134)
    while process 0 waited 30 s for it, then blamed a lost process, leaving config.json."""
    run = tmp_path / "run"
    started = time.monotonic()
    (code0, err0), (code1, err1) = _two_processes([f"--workdir={run}"],
                                                  [f"--workdir={run}", "--lr=-1"])
    assert time.monotonic() - started < 25
    assert code1 == 2 and err1.strip() == "error: --lr must be a positive number, got -1.0", err1
    assert code0 == 2 and err0.strip() == ("error: another process of the distributed run "
                                           "refused its flags or data (its error says why)"), err0
    assert not run.exists()


def test_resuming_where_one_process_finds_another_checkpoint_is_refused(tmp_path):
    """Process 1's --workdir is not process 0's (a folder on each host's own disk): it found
    no checkpoint and would train from scratch into process 0's resumed run, which wrote a
    wrong epoch 2 and hung."""
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "experiments.train", "--hidden=8", "--epochs=2",
                        "--batch_size=30", "--checkpoint_seconds=0", f"--workdir={run}"], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    shutil.rmtree(run / "checkpoints" / "2")
    before = _files(run)
    results = _two_processes([f"--workdir={run}", "--resume"],
                             [f"--workdir={tmp_path / 'elsewhere'}", "--resume"])
    for code, err in results:
        assert code == 2 and "Traceback" not in err, err
        assert ("differ in the checkpoint --resume found in --workdir" in err
                and err.strip().splitlines() == [err.strip()]), err
    after = _files(run)
    assert {p for p in after if "checkpoints" in p.parts} == \
        {p for p in before if "checkpoints" in p.parts}
    assert after[run / "metrics.jsonl"] == before[run / "metrics.jsonl"]
    assert not (tmp_path / "elsewhere").exists()


def test_a_resume_the_processes_disagree_on_leaves_process_0s_workdir_unwritten(tmp_path):
    """Process 0's --workdir is new, process 1's (its own disk) holds a checkpoint: both
    stop with exit 2 and process 0's folder keeps no config.json or flags.txt, so the run
    started again as it should be (without --resume) is not refused as 'holds a run'."""
    run, other = tmp_path / "run", tmp_path / "other"
    r = subprocess.run([sys.executable, "-m", "experiments.train", "--hidden=8", "--epochs=2",
                        "--batch_size=30", "--checkpoint_seconds=0", f"--workdir={other}"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    results = _two_processes([f"--workdir={run}", "--resume"],
                             [f"--workdir={other}", "--resume"])
    for code, err in results:
        assert code == 2 and "differ in the checkpoint --resume found in --workdir" in err, err
    assert not run.exists() or not any(run.iterdir()), sorted(p.name for p in run.iterdir())
