r"""Where a training step's time goes: a companion to ``scripts/bench.py``.

    python scripts/profile_step.py --sizes=tiny,large --out=profile/

``--sizes`` and ``--repeats`` are bench.py's flags (it shares them).

For each MLP size (``bench.SIZES``; "large" is scaled down on a CPU) it times, per step of
a scanned mini-batch epoch of 16 steps:

- ``floor``: the same momentum-SGD step written as plainly as jnp allows (the matmuls, the
  relu masks, one fused update): what any framework's step must at least cost;
- ``grad only``: gdlab's manual value-and-grad scanned without any update;
- gdlab's epoch with manual and with jax.grad gradients, and the flax + optax peer;
- gdlab's manual epoch with one piece changed: the norms on (``norms=True``, as ``fit``
  asks), the weight gradients as a plain xᵀ·g (``weight_grad`` without its GPU
  transpose), one step per loop iteration (``unroll=1``), no divergence guard;

with each one's share of the matmul peak, and each gemm shape of the step on its own. It
counts the kernels XLA compiled for each epoch (fusions, library gemms, copies) and writes
their optimised HLO to ``--out``. At tiny it also times ``make_epoch(unroll=…)`` against a
Python loop, and the bench's CNN and transformer epochs at the same unroll factors
(``--unroll_models``); for those models it also compares the manual epoch with the jax.grad
one (each at its default unroll): times, kernel counts and optimised HLO
(``hlo-model-<model>-<manual|autodiff>.txt``). Timings: compile apart, warm-up, ``block_until_ready``, medians, variants
alternated in one process.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/: bench's helpers
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo

from absl import flags

import bench
from experiments import _cli

for _name in ("quick", "json_out", "sweep_lrs", "torch", "simulated_devices", "torch_compile"):
    delattr(flags.FLAGS, _name)  # bench's main reads them; here they would be accepted and ignored
flags.adopt_module_key_flags(bench)  # --sizes and --repeats, in --help
flags.DEFINE_string("out", None, "Folder for profile.json and the optimised HLO of each epoch.")
flags.DEFINE_list("unrolls", "1,4,8,16", "lax.scan unroll factors to time at tiny; empty: none.")
flags.DEFINE_list("unroll_models", "cnn_digits,transformer_sort",
                  "Models of the bench's CNN and transformer rows to time at each of --unrolls "
                  "(16-step epochs, manual gradients); empty: none.")
flags.register_validator("unrolls", lambda v: all(map(_cli.is_positive_int, v)),
                         message="--unrolls must be comma-separated positive integers, e.g. 1,4")
FLAGS = flags.FLAGS
STEPS = bench.MINIBATCH_STEPS


GEMM_FILES = {"forward x·W": "forward", "dx = g·Wᵀ": "dx", "dW = xᵀ·g": "dw",
              "dW from xt": "dw-from-xt", "dW from xt, gt": "dw-from-xt-gt",
              "dW = (gᵀ·x)ᵀ": "dw-transposed", "weight_grad, xᵀ written": "dw-weight-grad"}
"""The file name of each gemm's optimised HLO (``hlo-gemm-<name>.txt``)."""


@contextlib.contextmanager
def _swapped(module_name: str, name: str, value):
    """``module_name.name`` replaced by ``value`` for the ``with`` block (for programs traced
    inside); yields the module. (The layer packages export functions of their modules'
    names, so the module is looked up, not taken as an attribute of the package.)"""
    module = importlib.import_module(module_name)
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield module
    finally:
        setattr(module, name, saved)


@contextlib.contextmanager
def weight_grad_transpose(on: bool):
    """``gdlab.layers.dense.weight_grad`` with its transpose-first path forced on or off
    (for programs traced inside): the A/B of that path."""
    with _swapped("gdlab.layers.dense", "_transpose_first", lambda x2, dy2: on) as module:
        yield module.weight_grad


@contextlib.contextmanager
def qkv_contracted_in_place():
    """Attention's QKV weight gradient as one contraction over the two leading axes in place
    (``einsum("...d,...e->de")``, as jax.grad's program has it) instead of over the (B·T)
    rows of a reshape, for programs traced inside: on the H200 XLA laid the reshape's
    (B, T, 3D) operand out with T outermost and ran it as a batched gemm per position and a
    sum (two cuBLAS calls a step where jax.grad's are Triton fusions)."""
    import jax.numpy as jnp

    with _swapped("gdlab.layers.attention", "_qkv_weight_grad",
                  lambda x, dqkv: jnp.einsum("...d,...e->de", x, dqkv)):
        yield


def gemm_rates(widths, batch, key, out_dir=None):
    """FLOP/s of each gemm of the step on its own: forward x·W, dx = g·Wᵀ, dW = xᵀ·g, and dW
    with its operands handed over already transposed (``xt`` = xᵀ, ``gt`` = gᵀ, made
    outside the timed program, whose input layouts XLA cannot change), and gdlab's
    ``weight_grad`` with xᵀ written out inside the program: is the weight gradient slow
    for its operands' layout or for its short reduction? With ``out_dir``, each program's
    optimised HLO goes there."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gdlab import cost

    d, h = widths[0], widths[1]
    k1, k2, k3 = jax.random.split(key, 3)
    x = jax.random.normal(k1, (batch, d), jnp.float32)
    w = jax.random.normal(k2, (d, h), jnp.float32)
    g = jax.random.normal(k3, (batch, h), jnp.float32)
    xt, gt = jnp.asarray(np.asarray(x).T), jnp.asarray(np.asarray(g).T)  # row-major copies
    f = 2 * batch * d * h
    cases = {"forward x·W": (lambda x, w, g, xt, gt: x @ w, f),
             "dx = g·Wᵀ": (lambda x, w, g, xt, gt: g @ w.T, f),
             "dW = xᵀ·g": (lambda x, w, g, xt, gt: x.T @ g, f),
             "dW from xt": (lambda x, w, g, xt, gt: xt @ g, f),
             "dW from xt, gt": (lambda x, w, g, xt, gt: xt @ gt.T, f),
             "dW = (gᵀ·x)ᵀ": (lambda x, w, g, xt, gt: (g.T @ x).T, f),
             "weight_grad, xᵀ written": (lambda x, w, g, xt, gt: weight_grad(x, g), f)}
    out = {}
    for name, (fn, flops) in cases.items():
        with weight_grad_transpose(True) as weight_grad:  # traced here, with it on
            compiled = jax.jit(fn).lower(x, w, g, xt, gt).compile()
        seconds = cost.time_call(compiled, x, w, g, xt, gt, repeats=FLAGS.repeats)
        out[name] = {"shape": [batch, d, h], "seconds": seconds, "flops_per_s": flops / seconds}
        if out_dir:
            label = GEMM_FILES[name]
            with open(os.path.join(out_dir, f"hlo-gemm-{label}.txt"), "w") as fh:
                fh.write(compiled.as_text())
    return out


def floor_epoch(widths, batch, lr=bench.LR, mu=0.9):
    """The plainest momentum-SGD epoch over 16 fixed batches: matmuls, relu, fused update."""
    import jax
    import jax.numpy as jnp

    def step(carry, xb):
        ws, vs = carry
        hs, h = [xb], xb
        for i, w in enumerate(ws):
            h = h @ w
            if i < len(ws) - 1:
                h = jnp.maximum(h, 0.0)
            hs.append(h)
        g = (h - jax.nn.one_hot(0, h.shape[-1])) / batch  # a stand-in ∂J/∂logits
        grads = [None] * len(ws)
        for i in reversed(range(len(ws))):
            grads[i] = hs[i].T @ g
            if i:
                g = (g @ ws[i].T) * (hs[i] > 0)
        vs = [mu * v + gw for v, gw in zip(vs, grads)]
        ws = [w - lr * v for w, v in zip(ws, vs)]
        return (ws, vs), h[0, 0]

    def epoch(carry, xs):
        return jax.lax.scan(step, carry, xs)

    return jax.jit(epoch, donate_argnums=0)


def unguarded(runner, n, batch, key):
    """``runner``'s epoch without the divergence guard: the plain update, scanned."""
    import jax

    from gdlab import descent, train

    update = train._update(runner.model, runner.loss, runner.optimizer, "manual")

    def epoch(state, x, y):  # make_epoch's, but for the guard
        k, indices, weights, step_keys = descent.epoch_plan(state.key, n, batch)

        def body(state, b):
            idx, w, step_key = b
            state, value, _, _ = update(state, x[idx], y[idx], w, step_key)
            return state, value

        return jax.lax.scan(body, state.replace(key=k), (indices, weights, step_keys),
                            unroll=train.default_unroll(state.params))

    compiled = jax.jit(epoch, donate_argnums=0).lower(runner.state, runner.x, runner.y).compile()
    box = [train.create_state(runner.model, runner.optimizer, key, runner.x.shape[1:])]

    def run():
        box[0], values = compiled(box[0], runner.x, runner.y)
        jax.block_until_ready(values)

    return run


def kernel_census(compiled) -> dict:
    """Kernels in XLA's optimised program: fusions by kind, library gemms, copies."""
    text = compiled.as_text()
    counts = collections.Counter()
    for line in text.splitlines():
        if " fusion(" in line:
            kind = re.search(r'kind=(\w+)', line)
            backend = re.search(r'"kind":"(\w+)"', line)
            counts["fusion/" + (backend.group(1) if backend else kind.group(1) if kind else "?")] += 1
        elif " custom-call(" in line:
            target = re.search(r'custom_call_target="([^"]+)"', line)
            counts["custom-call/" + (target.group(1) if target else "?")] += 1
        elif re.search(r"= \S+ (copy|dot|while|gather|reduce|sort)\(", line):
            counts[re.search(r"= \S+ (copy|dot|while|gather|reduce|sort)\(", line).group(1)] += 1
    return dict(sorted(counts.items())), text


def profile_size(name, widths, batch, key, out_dir, peak):
    import jax
    import jax.numpy as jnp

    from gdlab import backprop, train

    n = STEPS * batch
    runners = {g: bench.Runner.mlp(widths, n, batch, g, key) for g in ("manual", "autodiff")}
    r = runners["manual"]
    x, y = r.x, r.y
    peer, peer_carry = bench.flax_optax_epoch(widths, n, batch, key)
    peer_box = [peer_carry]

    def run_peer():
        peer_box[0], values = peer(peer_box[0], x, y)
        jax.block_until_ready(values)

    floor = floor_epoch(widths, batch)
    ws = [jnp.array(p["w"]) for p in r.state.params["layers"] if "w" in p]
    floor_box = [(ws, [jnp.zeros_like(w) for w in ws])]
    xs = x.reshape(STEPS, batch, -1)

    def run_floor():
        floor_box[0], values = floor(floor_box[0], xs)
        jax.block_until_ready(values)

    vg = backprop.manual(r.model, r.loss)

    def grad_only(params, model_state, x, y):
        def body(_, b):
            xb, yb = b
            (value, _), grads = vg(params, model_state, xb, yb, train=True)
            return grads, value
        zeros = jax.tree.map(jnp.zeros_like, params)
        return jax.lax.scan(body, zeros, (x.reshape(STEPS, batch, -1), y.reshape(STEPS, batch)))

    grad_jit = jax.jit(grad_only)
    own = train.create_state(r.model, r.optimizer, key, x.shape[1:])  # r's state is donated
    g_args = (own.params, own.model_state, x, y)

    def run_grad():
        jax.block_until_ready(grad_jit(*g_args))

    # gdlab's manual epoch with one piece changed at a time
    with weight_grad_transpose(False):  # traced inside: dW as the plain xᵀ·g
        plain_dw = bench.Runner.mlp(widths, n, batch, "manual", key)
    variants = {"gdlab manual, norms": bench.Runner.mlp(widths, n, batch, "manual", key, norms=True),
                "gdlab manual, dW plain xᵀ·g": plain_dw,
                "gdlab manual, unroll 1": bench.Runner.mlp(widths, n, batch, "manual", key, unroll=1),
                "gdlab manual, no guard": unguarded(r, n, batch, key)}
    times = bench.alternate({"floor": run_floor, "grad only (manual)": run_grad,
                             "gdlab manual": runners["manual"], "gdlab jax.grad": runners["autodiff"],
                             "flax+optax": run_peer, **variants}, 3 * FLAGS.repeats)
    flops = bench.mlp_flops_per_step(widths, batch)
    rows = {k: {"step_s": t / STEPS, "of_peak": flops / (t / STEPS) / peak} for k, t in times.items()}
    for k, v in rows.items():
        print(f"  {name:6s} {k:20s} {v['step_s'] * 1e6:9.1f} µs/step  {v['of_peak']:.3f} of peak",
              flush=True)
    census = {}
    programs = {"gdlab_manual": runners["manual"].epoch, "gdlab_autodiff": runners["autodiff"].epoch,
                "flax_optax": peer.lower(peer_box[0], x, y).compile(),
                "floor": floor.lower(floor_box[0], xs).compile()}
    for label, compiled in programs.items():
        census[label], text = kernel_census(compiled)
        if out_dir:
            with open(os.path.join(out_dir, f"hlo-{name}-{label}.txt"), "w") as f:
                f.write(text)
        print(f"  {name:6s} kernels {label:15s} {census[label]}", flush=True)
    out = {"widths": list(widths), "batch_size": batch, "model_flops_per_step": flops,
           "steps": rows, "kernels": census}
    if name != "tiny":
        out["gemms"] = gemm_rates(widths, batch, key, out_dir)
        for k, v in out["gemms"].items():
            print(f"  {name:6s} gemm {k:12s} {v['seconds'] * 1e6:8.1f} µs  "
                  f"{v['flops_per_s'] / peak:.3f} of peak", flush=True)
    return out


def unroll_vs_loop(key):
    """Per-step time at tiny: make_epoch(unroll=u) for each u, and bench's Python loop."""
    widths, batch = bench.SIZES["tiny"]
    n = 128 * batch
    loop = bench.bench_scan_vs_loop(widths, batch, FLAGS.repeats, key)
    times = _unroll_times(lambda u: bench.Runner.mlp(widths, n, batch, "manual", key, unroll=u))
    out = {"loop_step_s": loop["loop_step_s"],
           "scan_step_s": {u: row["step_s"] for u, row in times.items()}}
    for u, t in out["scan_step_s"].items():
        print(f"  tiny unroll={u:<3d} {t * 1e6:7.1f} µs/step: {out['loop_step_s'] / t:.2f}× "
              f"the Python loop ({out['loop_step_s'] * 1e6:.1f} µs/step)", flush=True)
    return out


def _unroll_times(make_runner) -> dict:
    """``{u: {"step_s", "compile_s"}}`` for ``make_runner(u)`` (a ``bench.Runner``) at each
    ``--unrolls``, the runners timed alternately."""
    runners = {u: make_runner(u) for u in (int(s) for s in FLAGS.unrolls)}
    times = bench.alternate(runners, FLAGS.repeats)
    return {u: {"step_s": t / runners[u].steps, "compile_s": runners[u].compile_seconds}
            for u, t in times.items()}


def unroll_models(key):
    """Per-step time and compile seconds of the bench's CNN and transformer epochs at each
    ``--unrolls``: whether unrolling, which pays for the small MLPs, pays for them too."""
    out = {}
    for name in FLAGS.unroll_models:
        case = bench.model_case(name, key)

        def make(u, case=case):
            build, x, y, batch, k_init = case
            return bench.Runner(build(), x, y, batch, "manual", k_init, unroll=u)

        out[name] = _unroll_times(make)
        for u, row in out[name].items():
            print(f"  {name:17s} unroll={u:<3d} {row['step_s'] * 1e6:8.1f} µs/step, compiled in "
                  f"{row['compile_s']:.1f} s", flush=True)
    return out


def model_grads(key, out_dir):
    """For each ``--unroll_models`` model: the manual and the jax.grad epoch as the bench runs
    them (timed alternately), with the kernels XLA compiled for each, and their optimised HLO
    written to ``out_dir``: where a model's manual step spends more than jax.grad's."""
    out = {}
    for name in FLAGS.unroll_models:
        build, x, y, batch, k_init = bench.model_case(name, key)
        runners = {g: bench.Runner(build(), x, y, batch, g, k_init) for g in ("manual", "autodiff")}
        if name.startswith("transformer"):  # compiled (traced) with the contraction swapped
            with qkv_contracted_in_place():
                runners["manual_qkv_in_place"] = bench.Runner(build(), x, y, batch, "manual",
                                                              k_init)
        times = bench.alternate(runners, 3 * FLAGS.repeats)
        row = {}
        for g, runner in runners.items():
            census, text = kernel_census(runner.epoch)
            row[g] = {"step_s": times[g] / runner.steps, "kernels": census,
                      "kernel_total": sum(census.values())}
            if out_dir:
                with open(os.path.join(out_dir, f"hlo-model-{name}-{g}.txt"), "w") as f:
                    f.write(text)
        row["ratio_manual_over_autodiff"] = times["manual"] / times["autodiff"]
        out[name] = row
        print(f"  {name:17s} manual {row['manual']['step_s'] * 1e6:8.1f} µs/step "
              f"({row['manual']['kernel_total']} kernels), jax.grad "
              f"{row['autodiff']['step_s'] * 1e6:8.1f} µs/step "
              f"({row['autodiff']['kernel_total']} kernels): ratio "
              f"{row['ratio_manual_over_autodiff']:.3f}", flush=True)
        if "manual_qkv_in_place" in times:
            row["ratio_qkv_in_place_over_autodiff"] = (times["manual_qkv_in_place"]
                                                       / times["autodiff"])
            print(f"  {'':17s} manual, QKV weight gradient contracted in place "
                  f"{row['manual_qkv_in_place']['step_s'] * 1e6:8.1f} µs/step "
                  f"({row['manual_qkv_in_place']['kernel_total']} kernels): ratio "
                  f"{row['ratio_qkv_in_place_over_autodiff']:.3f}", flush=True)
    return out


def main(argv):
    del argv
    import jax

    unknown = [s for s in FLAGS.sizes if s not in bench.SIZES]
    if unknown:
        raise _cli.UsageError(f"--sizes: unknown size {unknown[0]!r}; choose from: "
                              f"{', '.join(bench.SIZES)}")
    if not FLAGS.sizes:
        raise _cli.UsageError(f"--sizes must name at least one size of: {', '.join(bench.SIZES)}")
    cases = bench._model_cases()
    odd = [m for m in FLAGS.unroll_models if m not in cases]
    if odd:
        raise _cli.UsageError(f"--unroll_models: unknown model {odd[0]!r}; choose from: "
                              f"{', '.join(cases)}")
    out_dir = _cli.expand("out", FLAGS.out)
    if out_dir:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            raise _cli.UsageError(f"--out={FLAGS.out}: cannot make that folder ({e.strerror})") from None
    backend = jax.default_backend()
    key = jax.random.PRNGKey(0)
    peak = bench.bench_matmul_peak(8192 if backend == "gpu" else 2048, FLAGS.repeats, key)
    print(f"{jax.devices()[0].device_kind} ({backend}), jax {jax.__version__}: matmul peak "
          f"{peak['flops_per_s'] / 1e12:.2f} TFLOP/s ({peak['n']}³ float32, default precision)")
    results = {"device": bench.device_info(), "matmul_peak": peak, "sizes": {}}
    for name in FLAGS.sizes:
        widths, batch = bench.CPU_LARGE if (name == "large" and backend == "cpu") else bench.SIZES[name]
        results["sizes"][name] = profile_size(name, widths, batch, key, out_dir,
                                              peak["flops_per_s"])
    if "tiny" in FLAGS.sizes and FLAGS.unrolls:
        results["unroll"] = unroll_vs_loop(key)
    if FLAGS.unroll_models and FLAGS.unrolls:
        results["unroll_models"] = unroll_models(key)
    if FLAGS.unroll_models:
        results["models"] = model_grads(key, out_dir)
    if out_dir:
        with open(os.path.join(out_dir, "profile.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run(main, compilation_cache=False))  # it times compilation: jax's settings rule
