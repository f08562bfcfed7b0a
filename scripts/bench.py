r"""gdlab benchmarks: manual backprop vs jax.grad vs flax + optax vs PyTorch, scanned epochs
vs Python loops, the epoch's shuffle against JAX's, vectorised sweeps, and achieved FLOP/s
against the device's measured matmul peak.

    python scripts/bench.py                       # the full run on this machine
    python scripts/bench.py --quick               # a tiny subset (CI smoke test)
    python scripts/bench.py --json_out=benchmarks/results/cpu-2026-11-26.json

Every timing: compile first (the time reported apart for gdlab's programs, the sweep's and
torch.compile's), warm up, ``block_until_ready``, median of ``--repeats`` runs; compared
variants are timed alternately in the same process, but for PyTorch (after gdlab: its
OpenMP threads spin on after its last op) and the sweep's 64 sequential runs. A "step"
is one update on one batch inside a jitted, scanned epoch unless the row says "python
loop".
"""

from __future__ import annotations

import datetime
import itertools
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from absl import flags

from experiments import _cli

flags.DEFINE_bool("quick", False, "Run a tiny subset (the tiny MLP, few repeats): a smoke test.")
flags.DEFINE_string("json_out", None, "Write every figure, the device and the targets as JSON here.")
flags.DEFINE_integer("repeats", 7, "Timed repetitions per measurement (the median is reported).",
                     lower_bound=1)
flags.DEFINE_list("sizes", "tiny,small,medium,large", "MLP sizes to time: tiny, small, medium, large.")
flags.DEFINE_integer("sweep_lrs", 64, "Learning rates in the vmapped sweep.", lower_bound=1)
flags.DEFINE_enum("torch", "auto", ["auto", "off"], "Time the PyTorch peer when torch is importable "
                  "(auto) or never (off).")
flags.DEFINE_integer("simulated_devices", 0, "On the CPU, split it into this many XLA devices "
                     "(--xla_force_host_platform_device_count) for the data-parallel rows; 0: "
                     "the devices as they are.", lower_bound=0)
flags.DEFINE_bool("torch_compile", True, "Also time torch.compile'd PyTorch when it works.")

FLAGS = flags.FLAGS

# name: (layer widths from input to output, mini-batch size B)
SIZES = {
    "tiny": ((64, 64, 10), 32),
    "small": ((784, 256, 10), 128),
    "medium": ((784, 512, 512, 10), 128),
    "large": ((4096, 4096, 4096, 10), 1024),
}
CPU_LARGE = ((1024, 1024, 1024, 10), 256)  # "large", scaled down on a CPU
MINIBATCH_STEPS = 16  # steps in a timed mini-batch epoch: N = 16·B
LONG_EPOCH_STEPS = 128  # the flax + optax comparison again with epochs this long (N = 128·B)
FULL_BATCH_FACTOR = 4  # full-batch descent uses N = 4·B examples in every step
SGD_STEPS = 256  # steps in a timed SGD epoch (B = 1)
LR = 0.01


# --------------------------------------------------------------------------- the plan


def plan(backend: str, quick: bool, size_names, repeats: int, sweep_lrs: int) -> dict:
    """What the bench times on ``backend`` ("cpu" or "gpu"): the MLP sizes and the size of every
    other row. ``--quick`` is the tiny MLP with few repeats (CI's smoke test)."""
    sizes = {name: SIZES[name] for name in size_names}
    if backend == "cpu" and "large" in sizes:
        sizes["large"] = CPU_LARGE  # 4096³ at B = 1024 takes seconds a step on a CPU
    if quick:
        sizes, repeats, sweep_lrs = {"tiny": SIZES["tiny"]}, min(repeats, 3), min(sweep_lrs, 4)
    gpu = backend == "gpu" and not quick
    return {
        "sizes": sizes,
        "repeats": repeats,
        "sweep_lrs": sweep_lrs,
        # the peaks' matmul size; quick: 1024, not less: a smaller one runs far below the peak
        # (256: a third on a CPU)
        "peak_n": 1024 if quick else (8192 if gpu else 2048),
        # rows to shuffle and how many keys at once (vmapped): 1438 and 60000 are digits' and MNIST's
        "shuffle_rows": (512,) if quick else (512, 1438, 4096, 60000),
        "shuffle_keys": (16, 512) if quick else (1024, 1438),
        # the 128-step epochs: "large" would take minutes at that length
        "long_sizes": {k: v for k, v in sizes.items() if k != "large"},
        "mixed_size": "tiny" if quick else ("large" if gpu else "small"),
        "sweep_counts": (2,) if quick else ((1, 64, 1024, 8192, 131072) if gpu else (1, 16, 64, 256)),
        "torch_compile": not quick,  # torch.compile's peer, where --torch_compile allows it
        "models": ["cnn_digits", "transformer_sort"] if quick else list(_model_cases()),
    }


# --------------------------------------------------------------------------- timing


def median_time(fn, repeats: int) -> float:
    """Median seconds per call of ``fn()`` (which must block): ``gdlab.cost.time_call``, the
    one timing helper (warm-up, runs of back-to-back calls of at least 10 ms)."""
    from gdlab import cost

    return cost.time_call(fn, repeats=repeats)


def alternate(fns: dict, repeats: int) -> dict:
    """Median times of several variants, timed in turn (a, b, a, b, ...) after a warm-up of each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def timed_compile(jitted, *args):
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def cost_flops(compiled) -> float | None:
    """XLA's FLOP count of a compiled program, where the backend reports one."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None


# --------------------------------------------------------------------------- gdlab side


def mlp_flops_per_step(widths, batch: int) -> float:
    """6·B·P (forward 2BP, backward 4BP) minus the first layer's unneeded input gradient 2·B·D_in·H₁."""
    params = sum(a * b + b for a, b in itertools.pairwise(widths))
    return 6.0 * batch * params - 2.0 * batch * widths[0] * widths[1]


class Runner:
    """A compiled scanned epoch for one (model, data, mode, gradient method), chaining its own
    state: ``make_epoch`` as a user gets it, the divergence guard on with its default blow-up
    threshold."""

    def __init__(self, model, x, y, batch, grad, key, **epoch_kw):
        import jax

        from gdlab import losses, optim, train

        self.model, self.x, self.y = model, x, y
        self.loss = losses.get("xent")
        self.optimizer = optim.momentum(LR)
        self.state = train.create_state(self.model, self.optimizer, key, x.shape[1:])
        n = x.shape[0]
        self.steps = -(-n // batch)
        epoch = train.make_epoch(self.model, self.loss, self.optimizer, num_examples=n,
                                 batch_size=batch, grad=grad, **epoch_kw)  # the default guard
        self.epoch, self.compile_seconds = timed_compile(
            jax.jit(epoch, donate_argnums=(0,)), self.state, self.x, self.y)

    @classmethod
    def mlp(cls, widths, n, batch, grad, key, **epoch_kw):
        """The relu MLP of ``widths`` on n random examples of ``widths[0]`` features
        (``epoch_kw``: more arguments of ``make_epoch``)."""
        import jax
        import jax.numpy as jnp

        from gdlab import models

        k_x, k_y, k_init = jax.random.split(key, 3)
        x = jax.random.normal(k_x, (n, widths[0]), jnp.float32)
        y = jax.random.randint(k_y, (n,), 0, widths[-1])
        return cls(models.mlp(list(widths[1:]), "relu"), x, y, batch, grad, k_init, **epoch_kw)

    def __call__(self):
        import jax

        # Wait for the epoch's losses, as the peers do for theirs: one program computes the
        # state and the losses, so they are ready together.
        self.state, metrics = self.epoch(self.state, self.x, self.y)
        jax.block_until_ready(metrics.loss)


def bench_step_times(sizes, repeats, key):
    """Manual vs autodiff step time for every size and descent mode."""
    import jax

    rows = []
    for name, (widths, batch) in sizes.items():
        for mode, b, n in (("sgd", 1, SGD_STEPS), ("minibatch", batch, MINIBATCH_STEPS * batch),
                           ("full-batch", FULL_BATCH_FACTOR * batch, FULL_BATCH_FACTOR * batch)):
            runners = {g: Runner.mlp(widths, n, b, g, key) for g in ("manual", "autodiff")}
            times = alternate(runners, repeats)
            steps = runners["manual"].steps
            row = {
                "size": name, "widths": list(widths), "mode": mode, "batch_size": b,
                "steps_per_epoch": steps,
                "manual_step_s": times["manual"] / steps,
                "autodiff_step_s": times["autodiff"] / steps,
                "ratio_manual_over_autodiff": times["manual"] / times["autodiff"],
                "compile_s": {g: r.compile_seconds for g, r in runners.items()},
                "model_flops_per_step": mlp_flops_per_step(widths, b),
            }
            row["achieved_flops_manual"] = row["model_flops_per_step"] / row["manual_step_s"]
            row["achieved_flops_autodiff"] = row["model_flops_per_step"] / row["autodiff_step_s"]
            step_xla = jax.jit(_single_step(runners["manual"]))
            compiled, _ = timed_compile(step_xla, runners["manual"].state,
                                        runners["manual"].x[:b], runners["manual"].y[:b])
            row["xla_flops_per_step"] = cost_flops(compiled)
            rows.append(row)
            print(f"  {name:6s} {mode:10s} B={b:<5d} manual {row['manual_step_s'] * 1e6:9.1f} µs  "
                  f"jax.grad {row['autodiff_step_s'] * 1e6:9.1f} µs  ratio "
                  f"{row['ratio_manual_over_autodiff']:.3f}", flush=True)
    return rows


# name: (builder of the model, one example's shape, integer inputs below this vocabulary or 0, B)
def _model_cases():
    from gdlab import models

    return {
        "cnn_digits": (lambda: models.cnn(10, channels=(32, 64)), (8, 8, 1), 0, 32),
        "cnn_mnist": (lambda: models.cnn(10, channels=(32, 64)), (28, 28, 1), 0, 128),
        "transformer_sort": (lambda: models.transformer(10, 10, max_len=8, width=64, depth=2,
                                                        num_heads=4), (8,), 10, 64),
    }


def model_case(name, key, steps=MINIBATCH_STEPS):
    """``(build, x, y, batch, key)`` for a model of ``_model_cases``: ``build()`` makes the
    model, ``x``/``y`` are ``steps`` batches of random data for it, ``key`` initialises it."""
    import jax
    import jax.numpy as jnp

    build, shape, vocab, batch = _model_cases()[name]
    n = steps * batch
    k_x, k_y, k_init = jax.random.split(key, 3)
    if vocab:
        x = jax.random.randint(k_x, (n, *shape), 0, vocab)
        y = jnp.sort(x, axis=1)
    else:
        x = jax.random.normal(k_x, (n, *shape), jnp.float32)
        y = jax.random.randint(k_y, (n,), 0, 10)
    return build, x, y, batch, k_init


def bench_models(names, repeats, key):
    """Manual vs autodiff step time of the CNN and the transformer (mini-batch epochs)."""
    rows = []
    for name in names:
        build, x, y, batch, k_init = model_case(name, key)
        shape = x.shape[1:]
        runners = {g: Runner(build(), x, y, batch, g, k_init) for g in ("manual", "autodiff")}
        times = alternate(runners, repeats)
        steps = runners["manual"].steps
        row = {"model": name, "name": runners["manual"].model.name, "example_shape": list(shape),
               "batch_size": batch, "steps_per_epoch": steps,
               "manual_step_s": times["manual"] / steps,
               "autodiff_step_s": times["autodiff"] / steps,
               "ratio_manual_over_autodiff": times["manual"] / times["autodiff"],
               "compile_s": {g: r.compile_seconds for g, r in runners.items()}}
        rows.append(row)
        print(f"  {name:17s} B={batch:<4d} manual {row['manual_step_s'] * 1e6:9.1f} µs  jax.grad "
              f"{row['autodiff_step_s'] * 1e6:9.1f} µs  ratio {row['ratio_manual_over_autodiff']:.3f}",
              flush=True)
    return rows


def _single_step(runner):
    from gdlab import train

    step = train.make_step(runner.model, runner.loss, runner.optimizer)
    return lambda state, x, y: step(state, x, y, None)


def bench_scan_vs_loop(widths, batch, repeats, key):
    """Per-step time: the epoch as one lax.scan vs a Python loop calling the same step body.

    Both run the identical epoch: its shuffle and keys drawn once (``descent.epoch_plan``),
    then per step the same guarded step (gather the batch from the data on the device,
    value-and-grad, update, divergence check); only the loop differs. The loop's step
    takes the epoch's plan and its step number, so it slices nothing on the host.
    """
    import jax

    from gdlab import descent, train

    n = 128 * batch
    scanned = Runner.mlp(widths, n, batch, "manual", key)
    guarded = train.make_guarded_step(scanned.model, scanned.loss, scanned.optimizer)

    @jax.jit
    def plan(key):  # as make_epoch begins: the next key, the shuffle, a key per step
        key, indices, weights, step_keys = descent.epoch_plan(key, n, batch)
        return key, (indices, weights, step_keys)

    def body(state, x, y, batches, i):
        indices, weights, keys = batches
        idx = indices[i]
        state, (value, _) = guarded(state, x[idx], y[idx], weights[i], keys[i])
        return state, value  # what the scan keeps of each step: the loss

    step = jax.jit(body, donate_argnums=(0,))
    carry = [train.create_state(scanned.model, scanned.optimizer, key, (widths[0],))]

    def python_loop():
        state = carry[0]
        next_key, batches = plan(state.key)
        state = state.replace(key=next_key)
        for i in range(scanned.steps):
            state, _ = step(state, scanned.x, scanned.y, batches, i)
        jax.block_until_ready(state)
        carry[0] = state

    times = alternate({"scan": scanned, "loop": python_loop}, repeats)
    return {
        "widths": list(widths), "batch_size": batch, "steps": scanned.steps,
        "scan_step_s": times["scan"] / scanned.steps,
        "loop_step_s": times["loop"] / scanned.steps,
        "speedup_scan_over_loop": times["loop"] / times["scan"],
    }


def bench_shuffle(row_counts, vmapped, repeats, key):
    """The epoch's shuffle: ``descent.permutation`` against ``jax.random.permutation``, one
    call for N rows, and ``vmapped = (K, N)``: K keys at once (a sweep's configurations each
    shuffle). Then the tiny MLP's 128-step epoch with each shuffle and with none."""
    import jax

    from gdlab import descent

    def variants(n, k):
        shuffles = {"gdlab": lambda key: descent.permutation(key, n),
                    "jax": lambda key: jax.random.permutation(key, n)}
        keys = key if k == 1 else jax.random.split(key, k)
        fns = {name: jax.jit(f if k == 1 else jax.vmap(f)) for name, f in shuffles.items()}
        times = alternate({name: lambda f=f: jax.block_until_ready(f(keys)) for name, f in fns.items()},
                          repeats)
        row = {"rows": n, "keys": k, "rounds": descent.shuffle_rounds(n),
               "gdlab_s": times["gdlab"], "jax_s": times["jax"],
               "jax_over_gdlab": times["jax"] / times["gdlab"]}
        print(f"  shuffle N={n:<6d} K={k:<5d} gdlab {row['gdlab_s'] * 1e3:8.3f} ms ({row['rounds']} "
              f"rounds)  jax.random.permutation {row['jax_s'] * 1e3:8.3f} ms", flush=True)
        return row

    out = {"calls": [variants(n, 1) for n in row_counts] + [variants(vmapped[1], vmapped[0])]}
    widths, batch = SIZES["tiny"]
    n = 128 * batch
    runners = {"gdlab": Runner.mlp(widths, n, batch, "manual", key),
               "none": Runner.mlp(widths, n, batch, "manual", key, shuffle=False)}
    original = descent.permutation
    descent.permutation = lambda key, n: jax.random.permutation(key, n).astype("int32")
    try:  # the epoch as it was with JAX's shuffle (traced, and compiled, now)
        runners["jax"] = Runner.mlp(widths, n, batch, "manual", key)
    finally:
        descent.permutation = original
    times = alternate(runners, repeats)
    out["tiny_epoch_step_s"] = {name: t / runners[name].steps for name, t in times.items()}
    print("  tiny step, 128-step epoch: " + ", ".join(
        f"{name} shuffle {t * 1e6:.1f} µs" for name, t in out["tiny_epoch_step_s"].items()), flush=True)
    return out


def bench_sweep(num_lrs, repeats, key):
    """N learning rates: one vmapped program vs N sequential runs of the single-run program."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gdlab import losses, models, optim, train

    widths, batch, n, epochs = (64, 64, 10), 32, 1024, 2
    model = models.mlp(list(widths[1:]), "relu")
    k_x, k_y = jax.random.split(key)
    x = jax.random.normal(k_x, (n, widths[0]), jnp.float32)
    y = jax.random.randint(k_y, (n,), 0, widths[-1])
    run = train.make_run(model, losses.get("xent"), optim.gd, in_shape=(widths[0],),
                         num_examples=n, batch_size=batch, epochs=epochs)
    lrs = jnp.asarray(np.logspace(-3, 0, num_lrs), jnp.float32)
    keys = jnp.stack([jax.random.PRNGKey(0)] * num_lrs)
    single, single_compile = timed_compile(jax.jit(run), lrs[0], keys[0], x, y)
    vmapped, vmapped_compile = timed_compile(jax.jit(jax.vmap(run, in_axes=(0, 0, None, None))),
                                             lrs, keys, x, y)

    # each run's rate and key taken out beforehand: indexing inside the timed calls adds
    # two eager dispatches to every single run that the vmapped call does not pay
    each = jax.block_until_ready([(lrs[i], keys[i]) for i in range(num_lrs)])

    def one():
        jax.block_until_ready(single(*each[0], x, y))

    def sequential():
        for lr, k in each:
            jax.block_until_ready(single(lr, k, x, y))

    def together():
        jax.block_until_ready(vmapped(lrs, keys, x, y))

    times = alternate({"one": one, "together": together}, repeats)
    times["sequential"] = median_time(sequential, max(1, repeats // 2))
    return {
        "num_lrs": num_lrs, "widths": list(widths), "batch_size": batch, "examples": n,
        "epochs": epochs, "one_run_s": times["one"], "vmapped_s": times["together"],
        "sequential_s": times["sequential"],
        "vmapped_over_one_run": times["together"] / times["one"],
        "sequential_over_vmapped": times["sequential"] / times["together"],
        "compile_s": {"single": single_compile, "vmapped": vmapped_compile},
    }


def bench_matmul_peak(n, repeats, key, dtype="float32"):
    """FLOP/s of an n×n matmul of ``dtype`` at default precision: the device's practical peak
    (for float32 on a recent GPU that means TF32 tensor cores)."""
    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(key)
    a = jax.random.normal(k1, (n, n), dtype)
    b = jax.random.normal(k2, (n, n), dtype)
    matmul, compile_s = timed_compile(jax.jit(jnp.matmul), a, b)
    seconds = median_time(lambda: jax.block_until_ready(matmul(a, b)), repeats)
    return {"n": n, "dtype": str(dtype), "seconds": seconds, "flops_per_s": 2.0 * n**3 / seconds,
            "compile_s": compile_s}


def bench_mixed_precision(name, widths, batch, repeats, key, peak_n):
    """One MLP's mini-batch step (manual backprop) in bfloat16 mixed precision against
    float32, alternated, and its FLOP/s against a measured bfloat16 matmul peak."""
    import jax.numpy as jnp

    n = MINIBATCH_STEPS * batch
    runners = {"float32": Runner.mlp(widths, n, batch, "manual", key),
               "bfloat16": Runner.mlp(widths, n, batch, "manual", key, compute_dtype=jnp.bfloat16)}
    times = alternate(runners, repeats)
    steps = runners["float32"].steps
    peak = bench_matmul_peak(peak_n, repeats, key, dtype="bfloat16")
    flops = mlp_flops_per_step(widths, batch)
    row = {"size": name, "widths": list(widths), "batch_size": batch,
           "float32_step_s": times["float32"] / steps, "bfloat16_step_s": times["bfloat16"] / steps,
           "speedup_bfloat16_over_float32": times["float32"] / times["bfloat16"],
           "bfloat16_peak": peak, "achieved_flops_bfloat16": flops / (times["bfloat16"] / steps)}
    row["bfloat16_of_peak"] = row["achieved_flops_bfloat16"] / peak["flops_per_s"]
    print(f"  {name:6s} B={batch:<5d} float32 {row['float32_step_s'] * 1e6:9.1f} µs  bfloat16 "
          f"{row['bfloat16_step_s'] * 1e6:9.1f} µs ({row['speedup_bfloat16_over_float32']:.2f}×), "
          f"{row['bfloat16_of_peak']:.2f} of the bfloat16 peak", flush=True)
    return row


# --------------------------------------------------------------------------- flax + optax peer


def flax_optax_epoch(widths, n, batch, key):
    """The peer a JAX user would write: a ``flax.linen`` relu MLP of the same ``widths``,
    ``optax.sgd(momentum=0.9)`` and a jitted ``lax.scan`` epoch that shuffles and gathers
    batches exactly as gdlab's does (``descent.epoch_batches``, the masked mean loss),
    with the loss as its only output. Returns ``(epoch, carry)``."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from gdlab import descent

    class MLP(nn.Module):
        features: tuple

        @nn.compact
        def __call__(self, x):
            for f in self.features[:-1]:
                x = nn.relu(nn.Dense(f)(x))
            return nn.Dense(self.features[-1])(x)

    model = MLP(tuple(widths[1:]))
    params = model.init(key, jnp.zeros((1, widths[0]), jnp.float32))
    tx = optax.sgd(LR, momentum=0.9)

    def loss_fn(p, x, y, w):
        per_example = optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y)
        return jnp.sum(w * per_example) / jnp.sum(w)

    def epoch(carry, x, y):
        p, opt_state, k = carry
        k, shuffle_key = jax.random.split(k)
        indices, weights = descent.epoch_batches(shuffle_key, n, batch)

        def body(c, b):
            p, opt_state = c
            idx, w = b
            value, g = jax.value_and_grad(loss_fn)(p, x[idx], y[idx], w)
            updates, opt_state = tx.update(g, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), value

        (p, opt_state), values = jax.lax.scan(body, (p, opt_state), (indices, weights))
        return (p, opt_state, k), values

    return jax.jit(epoch, donate_argnums=0), (params, tx.init(params), jax.random.PRNGKey(1))


def bench_flax_optax(sizes, repeats, key, steps=MINIBATCH_STEPS):
    """gdlab's scanned mini-batch epoch (manual and jax.grad) against the flax + optax peer,
    timed alternately in this process; ratio = gdlab step time / peer step time. An epoch
    has ``steps`` steps; every call also pays a fixed cost of its own (dispatch, the
    shuffle, the launch and the wait), a share of the step time that shrinks as ``steps``
    grows."""
    try:
        import optax  # noqa: F401  (the peer only: never imported under gdlab/)
    except ImportError:
        return {"available": False, "note": "optax is not installed: pip install -e '.[peer]'"}
    import jax

    out = {"available": True, "sizes": []}
    for name, (widths, batch) in sizes.items():
        n = steps * batch
        runners = {g: Runner.mlp(widths, n, batch, g, key) for g in ("manual", "autodiff")}
        x, y = runners["manual"].x, runners["manual"].y
        epoch, carry = flax_optax_epoch(widths, n, batch, key)
        box = [carry]

        def peer(epoch=epoch, box=box, x=x, y=y):
            box[0], values = epoch(box[0], x, y)
            jax.block_until_ready(values)

        # three times the repeats: the goal is a 5% margin, finer than this machine's noise
        times = alternate({"peer": peer, **runners}, 3 * repeats)
        row = {"size": name, "widths": list(widths), "batch_size": batch, "steps": steps,
               "peer_step_s": times["peer"] / steps,
               "manual_step_s": times["manual"] / steps, "autodiff_step_s": times["autodiff"] / steps,
               "ratio_manual_over_peer": times["manual"] / times["peer"],
               "ratio_autodiff_over_peer": times["autodiff"] / times["peer"]}
        out["sizes"].append(row)
        print(f"  {name:6s} B={batch:<5d} {steps:4d} steps  flax+optax {row['peer_step_s'] * 1e6:9.1f} µs  manual "
              f"{row['ratio_manual_over_peer']:.3f}×  jax.grad {row['ratio_autodiff_over_peer']:.3f}×",
              flush=True)
    return out


def bench_sweep_throughput(counts, repeats):
    """``train.sweep`` of K learning rates × 5 epochs of digits (the 64-64-10 relu MLP,
    B = 32): the first call compiles, later calls with other rates reuse the program."""
    import numpy as np

    from gdlab import data, losses, models, optim, train

    ds = data.load("digits", seed=0)
    model, epochs = models.mlp([64, 10], "relu"), 5
    rows = []
    for k in counts:
        def call(shift, k=k):
            lrs = np.logspace(-3, 0, k) * (1.0 + 1e-3 * shift)  # other rates: no new program
            return train.sweep(model, losses.get("xent"), optim.gd, lrs, (ds.x_train, ds.y_train),
                               epochs=epochs, batch_size=32)

        t0 = time.perf_counter()
        call(0)
        first = time.perf_counter() - t0
        shifts = itertools.count(1)
        seconds = median_time(lambda shifts=shifts: call(next(shifts)), max(1, repeats // 2))
        rows.append({"configs": k, "epochs": epochs, "first_call_s": first, "call_s": seconds,
                     "config_epochs_per_s": k * epochs / seconds})
        print(f"  K={k:<7d} first call {first:7.2f} s, then {seconds:7.3f} s: "
              f"{k * epochs / seconds:,.0f} configuration-epochs/s", flush=True)
    return rows


# --------------------------------------------------------------------------- many devices


def bench_data_parallel(repeats, key):
    """Step time of the data-parallel epoch (manual: shard_map + psum; autodiff: sharded
    jit) on 1, 2, 4, … devices, and sweep throughput with the rates split over them;
    ratios against one device in the same process."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gdlab import data, losses, models, optim, parallel, train

    counts = [d for d in (1, 2, 4, 8) if d <= len(jax.devices())]
    widths, batch = SIZES["small"]
    n = MINIBATCH_STEPS * batch
    k_x, k_y, k_init = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (n, widths[0]), jnp.float32)
    y = jax.random.randint(k_y, (n,), 0, widths[-1])
    model, loss, opt = models.mlp(list(widths[1:]), "relu"), losses.get("xent"), optim.momentum(LR)
    out = {"devices": counts, "widths": list(widths), "batch_size": batch, "steps": []}
    for grad in ("manual", "autodiff"):
        fns = {}
        for d in counts:
            mesh = parallel.make_mesh(d)
            epoch = parallel.make_epoch(model, loss, opt, mesh, num_examples=n, batch_size=batch,
                                        grad=grad)
            box = list(parallel.replicate(
                (train.create_state(model, opt, k_init, (widths[0],)), x, y), mesh))
            compiled = jax.jit(epoch, donate_argnums=0)

            def run(box=box, compiled=compiled):
                box[0], _ = compiled(*box)
                jax.block_until_ready(box[0])

            fns[d] = run
        times = alternate(fns, repeats)
        for d in counts:
            out["steps"].append({"grad": grad, "devices": d, "step_s": times[d] / MINIBATCH_STEPS,
                                 "ratio_over_one_device": times[d] / times[1]})
        print(f"  {grad:8s} " + "  ".join(f"{d} dev {times[d] / MINIBATCH_STEPS * 1e6:8.1f} µs "
                                         f"({times[d] / times[1]:.2f}×)" for d in counts), flush=True)
    ds = data.load("digits", seed=0)
    small = models.mlp([64, 10], "relu")
    lrs = np.logspace(-3, 0, 16)
    fns = {}
    for d in counts:
        mesh = None if d == 1 else parallel.make_mesh(d)

        def call(mesh=mesh):
            train.sweep(small, loss, optim.gd, lrs, (ds.x_train, ds.y_train), epochs=2,
                        batch_size=32, mesh=mesh)

        call()  # compile
        fns[d] = call
    times = alternate(fns, max(1, repeats // 2))
    out["sweep"] = [{"devices": d, "configs": len(lrs), "epochs": 2, "call_s": times[d],
                     "config_epochs_per_s": len(lrs) * 2 / times[d],
                     "ratio_over_one_device": times[d] / times[1]} for d in counts]
    print("  sweep of 16 rates × 2 epochs: " + "  ".join(
        f"{d} dev {times[d] * 1e3:.0f} ms ({times[d] / times[1]:.2f}×)" for d in counts), flush=True)
    return out


# --------------------------------------------------------------------------- PyTorch peer


def torch_peer(params, x, y, batch: int, device: str):
    """``(net, make_epoch)``: gdlab's relu MLP of ``params`` as a ``torch.nn.Sequential`` of
    the same weights on ``device``, and ``make_epoch(model)``, an epoch of
    ``torch.optim.SGD(lr=LR, momentum=0.9)`` on ``x, y`` for ``model`` (``net`` or its
    ``torch.compile``): as gdlab's, a new order of the examples (``torch.randperm``), then
    each step gathers its batch of ``batch`` on the device."""
    import numpy as np
    import torch

    # The dense layers wherever they sit in the serial stack (those with a weight matrix).
    dense = [p for p in params["layers"] if "w" in p]
    layers = []
    for i, p in enumerate(dense):
        lin = torch.nn.Linear(*np.asarray(p["w"]).shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(p["w"]).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(p["b"]).copy()))
        layers.append(lin)
        if i < len(dense) - 1:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    xs = torch.from_numpy(np.array(x)).to(device)
    ys = torch.from_numpy(np.array(y, dtype=np.int64)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator(device).manual_seed(0)

    def make_epoch(model):
        def epoch():
            order = torch.randperm(xs.shape[0], device=device, generator=generator)
            for idx in order.view(-1, batch):
                opt.zero_grad(set_to_none=True)
                loss_fn(model(xs[idx]), ys[idx]).backward()
                opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
        return epoch

    return net, make_epoch


def bench_torch(sizes, repeats, key, *, try_compile):
    """The same MLP, initial weights and data in PyTorch, eager and torch.compile, each epoch
    shuffled (``torch.randperm``) and each batch gathered on the device, as gdlab's."""
    try:
        import torch
    except ImportError:
        return {"available": False, "note": "torch is not installed: pip install -e '.[peer]' to compare"}
    import jax

    out = {"available": True, "version": torch.__version__, "threads": torch.get_num_threads(),
           "sizes": []}
    device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    out["device"] = device
    for name in ("tiny", "medium"):
        if name not in sizes:
            continue
        widths, batch = sizes[name]
        runner = Runner.mlp(widths, MINIBATCH_STEPS * batch, batch, "manual", key)
        net, make_epoch = torch_peer(runner.state.params, runner.x, runner.y, batch, device)

        steps = runner.steps
        row = {"size": name, "widths": list(widths), "batch_size": batch, "steps": steps}
        variants = {"torch_eager": make_epoch(net)}
        if try_compile:
            try:
                t0 = time.perf_counter()
                compiled = torch.compile(net)
                make_epoch(compiled)()
                row["torch_compile_s"] = time.perf_counter() - t0
                variants["torch_compile"] = make_epoch(compiled)
            except Exception as e:  # any compile failure is reported, not fatal
                row["torch_compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        # One after the other, gdlab first: PyTorch's OpenMP threads spin for a while after
        # its last op, which would steal cores from XLA if the two were interleaved.
        times = {"gdlab_scan": median_time(runner, repeats)}
        times.update({k: median_time(fn, repeats) for k, fn in variants.items()})
        for k, t in times.items():
            row[f"{k}_step_s"] = t / steps
        for k in variants:
            row[f"speedup_gdlab_over_{k}"] = times[k] / times["gdlab_scan"]
        out["sizes"].append(row)
        print(f"  {name:6s} gdlab scan {row['gdlab_scan_step_s'] * 1e6:9.1f} µs/step  "
              + "  ".join(f"{k} {row[f'{k}_step_s'] * 1e6:9.1f} µs/step" for k in variants), flush=True)
    return out


# --------------------------------------------------------------------------- report


def device_info() -> dict:
    """Where and with what the bench ran: device, versions (the peers' too, where installed),
    date, gdlab's commit, the compilation cache's folder (None: none)."""
    import importlib.metadata

    import jax

    from gdlab.records import environment, provenance

    info = environment()
    info.update(date=datetime.date.today().isoformat(), platform=platform.platform(),
                python=platform.python_version(), cpu=_cpu_model(), cpu_count=os.cpu_count(),
                **provenance())
    for package in ("flax", "optax", "torch"):
        try:
            info[f"{package}_version"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[f"{package}_version"] = None
    if jax.default_backend() == "gpu":
        info["gpu"] = jax.devices()[0].device_kind
    # jax's persistent compilation cache, where the environment turns it on: a program it
    # holds is loaded, and its compile_seconds are a load's
    info["compilation_cache"] = jax.config.jax_compilation_cache_dir or None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def target(name, ratio, goal, op):
    met = None if ratio is None else (ratio <= goal if op == "<=" else ratio >= goal)
    return {"name": name, "ratio": ratio, "goal": f"{op} {goal}", "met": met}


def targets_for(results, backend) -> list[dict]:
    steps = results["step_times"]
    median_ratio = statistics.median(r["ratio_manual_over_autodiff"] for r in steps) if steps else None
    torch_rows = {r["size"]: r for r in results["torch"].get("sizes", [])}
    largest = max((r for r in steps if r["mode"] == "full-batch"),
                  key=lambda r: r["model_flops_per_step"], default=None)
    peak = results["matmul_peak"]["flops_per_s"]
    largest_ratio = None if largest is None else largest["achieved_flops_manual"] / peak
    # The GPU goal is at the large size's own mini-batch (4096³, B = 1024), not full batch.
    large = [r for r in steps if r["size"] == "large" and r["mode"] == "minibatch"]
    large_ratio = large[0]["achieved_flops_manual"] / peak if large else None
    model_rows = results.get("models", [])
    worst_model = max((r["ratio_manual_over_autodiff"] for r in model_rows), default=None)
    out = [
        target("manual / autodiff step time (median over sizes and modes)", median_ratio, 1.02, "<="),
        target("manual / autodiff step time, CNN and transformer (worst model)", worst_model,
               1.05, "<="),
        target("scanned epoch speed-up per step over a Python loop (tiny)",
               results["scan_vs_loop"]["speedup_scan_over_loop"], 5.0, ">="),
        target("gdlab scanned step speed-up over PyTorch eager (tiny)",
               torch_rows.get("tiny", {}).get("speedup_gdlab_over_torch_eager"), 10.0, ">="),
        target("gdlab scanned step speed-up over PyTorch eager (medium)",
               torch_rows.get("medium", {}).get("speedup_gdlab_over_torch_eager"), 1.0, ">="),
    ]
    for r in results["flax_optax"].get("sizes", []):
        for g in ("manual", "autodiff"):
            out.append(target(f"gdlab {g} step / flax+optax step ({r['size']})",
                              r[f"ratio_{g}_over_peer"], 1.05, "<="))
    for r in results.get("flax_optax_long", {}).get("sizes", []):
        for g in ("manual", "autodiff"):
            out.append(target(f"gdlab {g} step / flax+optax step ({r['size']}, {r['steps']}-step "
                              "epochs)", r[f"ratio_{g}_over_peer"], 1.05, "<="))
    if backend == "gpu":
        big = [r for r in results["sweep_throughput"] if r["configs"] == 131072]
        if big:
            out.append(target("sweep of 131,072 lrs × 5 epochs of digits, seconds after compiling",
                              big[0]["call_s"], 3.0, "<="))
        out.append(target(f"vmapped sweep of {results['sweep']['num_lrs']} lrs / one run",
                          results["sweep"]["vmapped_over_one_run"], 2.0, "<="))
        out.append(target("achieved FLOP/s / TF32 matmul peak (large 4096³, B = 1024)",
                          large_ratio, 0.7, ">="))
        out.append(target("achieved FLOP/s / TF32 matmul peak (large, full batch B = 4096)",
                          largest_ratio, 0.7, ">="))
        mixed = results.get("mixed_precision")
        if mixed and mixed["size"] == "large":
            out.append(target("bfloat16 mixed precision: achieved FLOP/s / bfloat16 matmul peak "
                              "(large, B = 1024; optional)", mixed["bfloat16_of_peak"], 0.5, ">="))
    else:
        out.append(target("achieved FLOP/s / matmul peak (largest size, full batch)",
                          largest_ratio, 0.75, ">="))
    return out


def print_table(results):
    print("\nstep time, manual backprop vs jax.grad (float32, one step inside a scanned epoch)")
    print(f"{'size':7s} {'mode':10s} {'B':>5s} {'manual µs':>11s} {'jax.grad µs':>12s} {'ratio':>6s} "
          f"{'GFLOP/s':>9s} {'of peak':>8s}")
    peak = results["matmul_peak"]["flops_per_s"]
    for r in results["step_times"]:
        print(f"{r['size']:7s} {r['mode']:10s} {r['batch_size']:5d} {r['manual_step_s'] * 1e6:11.1f} "
              f"{r['autodiff_step_s'] * 1e6:12.1f} {r['ratio_manual_over_autodiff']:6.3f} "
              f"{r['achieved_flops_manual'] / 1e9:9.1f} {r['achieved_flops_manual'] / peak:8.2f}")
    print(f"\n{'model':17s} {'B':>5s} {'manual µs':>11s} {'jax.grad µs':>12s} {'ratio':>6s}")
    for r in results.get("models", []):
        print(f"{r['model']:17s} {r['batch_size']:5d} {r['manual_step_s'] * 1e6:11.1f} "
              f"{r['autodiff_step_s'] * 1e6:12.1f} {r['ratio_manual_over_autodiff']:6.3f}")
    m = results["matmul_peak"]
    print(f"matmul peak: {m['flops_per_s'] / 1e9:.1f} GFLOP/s ({m['n']}×{m['n']} float32)")
    s = results["scan_vs_loop"]
    print(f"scanned epoch {s['scan_step_s'] * 1e6:.1f} µs/step vs Python loop "
          f"{s['loop_step_s'] * 1e6:.1f} µs/step: {s['speedup_scan_over_loop']:.1f}×")
    w = results["sweep"]
    print(f"sweep of {w['num_lrs']} lrs: vmapped {w['vmapped_s'] * 1e3:.1f} ms, one run "
          f"{w['one_run_s'] * 1e3:.1f} ms ({w['vmapped_over_one_run']:.2f}×), {w['num_lrs']} sequential "
          f"runs {w['sequential_s'] * 1e3:.1f} ms ({w['sequential_over_vmapped']:.1f}× the vmapped)")
    t = results["torch"]
    if not t["available"]:
        print(f"PyTorch peer: skipped ({t['note']})")
    for r in t.get("sizes", []):
        extra = "".join(f", {k[len('speedup_gdlab_over_'):]} {v:.2f}×" for k, v in r.items()
                        if k.startswith("speedup_gdlab_over_"))
        print(f"PyTorch peer at {r['size']}: gdlab is faster per step{extra}"
              + (f" ({r['torch_compile_error']})" if "torch_compile_error" in r else ""))
    f = results["flax_optax"]
    if not f["available"]:
        print(f"flax + optax peer: skipped ({f['note']})")
    for r in f.get("sizes", []) + results.get("flax_optax_long", {}).get("sizes", []):
        print(f"flax + optax peer at {r['size']}, {r['steps']}-step epochs: "
              f"{r['peer_step_s'] * 1e6:.1f} µs/step; gdlab manual "
              f"{r['ratio_manual_over_peer']:.3f}×, jax.grad {r['ratio_autodiff_over_peer']:.3f}× its time")
    mp = results["mixed_precision"]
    print(f"bfloat16 mixed precision at {mp['size']}: {mp['bfloat16_step_s'] * 1e6:.1f} µs/step, "
          f"{mp['speedup_bfloat16_over_float32']:.2f}× float32's speed, {mp['bfloat16_of_peak']:.2f} "
          f"of the bfloat16 matmul peak ({mp['bfloat16_peak']['flops_per_s'] / 1e9:.1f} GFLOP/s)")
    for r in results["sweep_throughput"]:
        print(f"sweep K={r['configs']}: {r['config_epochs_per_s']:,.0f} configuration-epochs/s "
              f"({r['call_s']:.3f} s per call after a first call of {r['first_call_s']:.2f} s)")
    dp = results["data_parallel"]
    for r in dp["steps"]:
        print(f"data parallel, {r['grad']}, {r['devices']} devices: {r['step_s'] * 1e6:.1f} µs/step "
              f"({r['ratio_over_one_device']:.2f}× one device)")
    for r in dp["sweep"]:
        print(f"sweep on {r['devices']} devices: {r['config_epochs_per_s']:,.0f} configuration-epochs/s "
              f"({r['ratio_over_one_device']:.2f}× one device's time)")
    print("\ntargets")
    for tg in results["targets"]:
        verdict = "n/a" if tg["met"] is None else ("met" if tg["met"] else "MISSED")
        ratio = "n/a" if tg["ratio"] is None else f"{tg['ratio']:.3f}"
        print(f"  {verdict:6s} {ratio:>8s} (goal {tg['goal']})  {tg['name']}")


def main(argv):
    del argv
    import jax

    unknown = [s for s in FLAGS.sizes if s not in SIZES]
    if unknown:
        raise _cli.UsageError(f"--sizes: unknown size {unknown[0]!r}; choose from: {', '.join(SIZES)}")
    if not FLAGS.sizes:
        raise _cli.UsageError(f"--sizes must name at least one size of: {', '.join(SIZES)}")
    if FLAGS.simulated_devices:  # before jax starts its backend
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                                   f"_device_count={FLAGS.simulated_devices}").strip()
    json_out = _cli.output_file("json_out", FLAGS.json_out, "bench.json")  # now, not after the timing
    backend = jax.default_backend()
    p = plan(backend, FLAGS.quick, FLAGS.sizes, FLAGS.repeats, FLAGS.sweep_lrs)
    sizes, repeats = p["sizes"], p["repeats"]
    key = jax.random.PRNGKey(0)
    info = device_info()
    print(f"gdlab bench on {info['device']} ({backend}), jax {info['jax_version']}, {info['cpu']}")
    results = {"device": info, "quick": FLAGS.quick, "repeats": repeats}
    print("matmul peak", flush=True)
    results["matmul_peak"] = bench_matmul_peak(p["peak_n"], repeats, key)
    print("step times", flush=True)
    results["step_times"] = bench_step_times(sizes, repeats, key)
    print("scanned epoch vs python loop", flush=True)
    results["scan_vs_loop"] = bench_scan_vs_loop(*SIZES["tiny"], repeats, key)
    print("shuffle", flush=True)
    results["shuffle"] = bench_shuffle(p["shuffle_rows"], p["shuffle_keys"], repeats, key)
    print("vmapped sweep", flush=True)
    results["sweep"] = bench_sweep(p["sweep_lrs"], repeats, key)
    print("data parallel", flush=True)
    results["data_parallel"] = bench_data_parallel(repeats, key)
    print("flax + optax peer", flush=True)
    results["flax_optax"] = bench_flax_optax(sizes, repeats, key)
    # the same with longer epochs: less of each call's fixed cost per step
    results["flax_optax_long"] = bench_flax_optax(p["long_sizes"], repeats, key, LONG_EPOCH_STEPS)
    print("mixed precision", flush=True)
    results["mixed_precision"] = bench_mixed_precision(
        p["mixed_size"], *SIZES[p["mixed_size"]], repeats, key, p["peak_n"])
    print("sweep throughput", flush=True)
    results["sweep_throughput"] = bench_sweep_throughput(p["sweep_counts"], repeats)
    results["torch"] = {"available": False, "note": "disabled with --torch=off"}
    if FLAGS.torch == "auto":
        print("PyTorch peer", flush=True)
        results["torch"] = bench_torch(sizes, repeats, key,
                                       try_compile=FLAGS.torch_compile and p["torch_compile"])
    # Last: the CNN's large buffers and long autodiff steps would disturb the small timings.
    print("CNN and transformer step times", flush=True)
    results["models"] = bench_models(p["models"], repeats, key)
    results["compile_seconds"] = {
        f"{r['size']}/{r['mode']}/{g}": s for r in results["step_times"] for g, s in r["compile_s"].items()
    }
    results["targets"] = targets_for(results, backend)
    print_table(results)
    if json_out:
        _cli.write_json_file("json_out", json_out, results)
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run(main, compilation_cache=False))  # it times compilation: jax's settings rule
