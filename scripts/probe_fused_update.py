r"""Would a weight-gradient gemm with the momentum update in its epilogue reach the TF32 goal?

    python scripts/probe_fused_update.py --json_out=fused.json

The large MLP's step (4096³, B = 1024) on a GPU spends about 0.63 of the TF32 matmul peak;
after its gemms, the rest is the momentum update, a separate pass over the weights that
reads the gradient, the weights and the velocity and writes the last two. This probe times
one 4096 × 4096 layer's ``dW = xᵀ·dy`` followed by ``v ← β·v + dW``, ``W ← W − α·v``:

- ``xla``: as gdlab's step compiles it (``dense.weight_grad``, then one fused update);
- ``xla gemm``: the weight gradient alone;
- ``pallas fused bm×bn×bk/w/s``: one Pallas (Triton) kernel per tile of W that sums
  xᵀ·dy over the batch and applies the update to that tile before writing it, in place
  (W and v donated), with the operands transposed first as ``weight_grad`` does, for several
  tile sizes, warp counts and pipeline stages;
- ``pallas gemm …``: the same kernel writing dW only (how fast the gemm itself is);
- ``pallas fused-raw …``: the fused kernel reading x and dy as they are (batch-major);
- ``mgpu fused …`` and ``mgpu gemm …``: the same with a Mosaic GPU kernel (Hopper's wgmma
  and TMA, warp-specialised; ``scripts/_mgpu_weight_grad.py``); ``mgpu fused-prefetch …``
  loads the tile's W and v while its gemm runs and stores them without waiting.

Each result is compared with the XLA program's: ``err_v`` and ``err_w`` are the largest
differences relative to the largest change the step makes to v and to W (both TF32 on a GPU,
about 1e-3 apart; the Mosaic kernel truncates its operands to TF32 where XLA rounds them).
Times: warm-up, then the median of runs of back-to-back calls with W and v fed back, as a
training loop does. Only for a GPU; elsewhere the kernels run in Pallas's interpreter at a
small size (a check of their arithmetic, not a timing), and the Mosaic kernels are only
lowered for a GPU (a check that they still trace).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/: the Mosaic kernel
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo

from absl import flags

from experiments import _cli

flags.DEFINE_string("json_out", None, "Write the results here as JSON.")
flags.DEFINE_integer("size", 4096, "Width of the layer on a GPU (W is size × size); a multiple "
                     "of 256.", lower_bound=256)
flags.DEFINE_integer("batch", 1024, "Batch size B on a GPU (the gemm's reduction); a multiple of "
                     "64.", lower_bound=64)
flags.DEFINE_integer("repeats", 30, "Timed runs per variant.", lower_bound=1)
flags.DEFINE_list("variants", [], "Run only the variants whose names begin with one of these "
                  "(all when empty); 'xla' and 'xla gemm', the references, always run.")
FLAGS = flags.FLAGS

BETA, LR = 0.9, 1e-3
CONFIGS = [  # (bm, bn, bk, num_warps, num_stages)
    (128, 128, 32, 4, 3), (128, 128, 32, 8, 3), (128, 128, 32, 8, 4), (128, 256, 32, 8, 3),
    (256, 128, 32, 8, 3), (128, 128, 64, 8, 3), (64, 128, 32, 4, 4), (128, 64, 32, 4, 4),
]


def fused_kernel(a_ref, b_ref, *refs, bk, nk, raw, epilogue):
    """One (bm, bn) tile of W: acc = Σ_k a·bᵀ over the batch in chunks of bk, then
    v ← β·v + acc, W ← W − α·v (``epilogue``) or dW = acc."""
    import jax.numpy as jnp
    from jax import lax
    from jax.experimental import pallas as pl

    def body(i, acc):
        chunk = pl.ds(pl.multiple_of(i * bk, bk), bk)
        if raw:   # a: (B, bm) of x, b: (B, bn) of dy; sum over axis 0 of both
            a, b = a_ref[chunk, :], b_ref[chunk, :]
            dims = (((0,), (0,)), ((), ()))
        else:     # a: (bm, B) of xᵀ, b: (bn, B) of dyᵀ; sum over axis 1 of both
            a, b = a_ref[:, chunk], b_ref[:, chunk]
            dims = (((1,), (1,)), ((), ()))
        # default precision: TF32 in Pallas's Triton lowering, as in XLA's gemms
        return acc + lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)

    bm = a_ref.shape[1] if raw else a_ref.shape[0]
    bn = b_ref.shape[1] if raw else b_ref.shape[0]
    acc = lax.fori_loop(0, nk, body, jnp.zeros((bm, bn), jnp.float32))
    if epilogue:
        w_ref, v_ref, w_out, v_out = refs
        v = BETA * v_ref[...] + acc
        v_out[...] = v
        w_out[...] = w_ref[...] - LR * v
    else:
        (g_out,) = refs
        g_out[...] = acc


def make_pallas(config, *, raw, epilogue, interpret=False):
    import jax
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    bm, bn, bk, warps, stages = config

    def call(x, dy, w, v):
        batch, d_in = x.shape
        d_out = dy.shape[1]
        if raw:
            a, b = x, dy
            a_spec = pl.BlockSpec((batch, bm), lambda i, j: (0, i))
            b_spec = pl.BlockSpec((batch, bn), lambda i, j: (0, j))
        else:
            from gdlab.layers.dense import _row_major_transpose
            a, b = _row_major_transpose(x), _row_major_transpose(dy)
            a_spec = pl.BlockSpec((bm, batch), lambda i, j: (i, 0))
            b_spec = pl.BlockSpec((bn, batch), lambda i, j: (j, 0))
        tile = pl.BlockSpec((bm, bn), lambda i, j: (i, j))
        kernel = functools.partial(fused_kernel, bk=bk, nk=batch // bk, raw=raw,
                                   epilogue=epilogue)
        params = {} if interpret else {"compiler_params": plt.CompilerParams(
            num_warps=warps, num_stages=stages)}
        grid = (d_in // bm, d_out // bn)
        if epilogue:
            w_new, v_new = pl.pallas_call(
                kernel, grid=grid, in_specs=[a_spec, b_spec, tile, tile],
                out_specs=[tile, tile], out_shape=[jax.ShapeDtypeStruct(w.shape, w.dtype)] * 2,
                input_output_aliases={2: 0, 3: 1}, interpret=interpret, **params)(a, b, w, v)
            return w_new, v_new
        g = pl.pallas_call(kernel, grid=grid, in_specs=[a_spec, b_spec], out_specs=tile,
                           out_shape=jax.ShapeDtypeStruct(w.shape, w.dtype),
                           interpret=interpret, **params)(a, b)
        return w, g   # the same (w, second) shape of result as the fused variants

    return call


MGPU_CONFIGS = [  # (tile_m, tile_n per warpgroup, tile_k, pipeline stages)
    (128, 128, 32, 3), (128, 64, 32, 4), (128, 128, 32, 2), (128, 64, 64, 2),
]
MGPU_PREFETCH_CONFIGS = [  # W and v tiles take the shared memory the pipeline leaves
    (128, 64, 32, 3), (128, 64, 32, 2), (128, 32, 32, 4), (128, 64, 16, 4), (128, 32, 64, 2)]


def mgpu_variants():
    """``{name: (epilogue, prefetch, config)}`` of the Mosaic kernels the probe runs: each
    config fused and as a plain gemm, and the prefetching epilogue (``Config.prefetch``)."""
    out = {}
    for config in MGPU_CONFIGS:
        name = "{}x{}x{}/s{}".format(*config)
        out[f"mgpu fused {name}"] = (True, False, config)
        out[f"mgpu gemm {name}"] = (False, False, config)
    for config in MGPU_PREFETCH_CONFIGS:
        out["mgpu fused-prefetch {}x{}x{}/s{}".format(*config)] = (True, True, config)
    return out


def pallas_tile(config) -> str:
    """A Pallas config's part of its variants' names: bm x bn x bk / warps / stages."""
    return "{}x{}x{}/w{}/s{}".format(*config)


def pallas_names():
    """Every Pallas variant's name the probe may run (which run depends on the device)."""
    return [f"pallas {kind} {pallas_tile(config)}"
            for config in CONFIGS for kind in ("fused", "gemm", "fused-raw")]


def chosen(name: str) -> bool:
    """Whether ``--variants`` asks for the variant ``name`` (the references always run)."""
    return (not FLAGS.variants or name in ("xla", "xla gemm")
            or any(name.startswith(prefix) for prefix in FLAGS.variants))


def make_mgpu(config, *, epilogue, prefetch=False):
    """The Mosaic GPU (Hopper wgmma + TMA) kernel of ``_mgpu_weight_grad``."""
    import _mgpu_weight_grad as mgpu
    from gdlab.layers.dense import _row_major_transpose

    tm, tn, tk, stages = config
    cfg = mgpu.Config(tile_m=tm, tile_n=tn, tile_k=tk, max_concurrent_steps=stages,
                      prefetch=prefetch)

    def call(x, dy, w, v):
        xt, dyt = _row_major_transpose(x), _row_major_transpose(dy)
        if epilogue:
            return mgpu.weight_grad_update(xt, dyt, w, v, beta=BETA, lr=LR, config=cfg)
        return w, mgpu.weight_grad_update(xt, dyt, config=cfg)

    return call


def xla_update(x, dy, w, v):
    from gdlab.layers.dense import weight_grad

    v = BETA * v + weight_grad(x, dy)
    return w - LR * v, v


def xla_gemm(x, dy, w, v):
    from gdlab.layers.dense import weight_grad

    return w, weight_grad(x, dy)


def timed(fn, x, dy, w, v, repeats):
    """Median seconds per call, W and v (or dW) fed back as a training loop would."""
    import jax

    for _ in range(3):
        w, v = jax.block_until_ready(fn(x, dy, w, v))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            w, v = fn(x, dy, w, v)
        jax.block_until_ready((w, v))
        times.append((time.perf_counter() - t0) / 10)
    return statistics.median(times)


def main(argv):
    del argv
    if FLAGS.size % 256 or FLAGS.batch % 64:
        raise _cli.UsageError(f"--size must be a multiple of 256 and --batch of 64 (the kernels' "
                              f"tiles), got {FLAGS.size} and {FLAGS.batch}")
    names = ["xla", "xla gemm", *pallas_names(), *mgpu_variants()]
    for prefix in FLAGS.variants:
        if not any(name.startswith(prefix) for name in names):
            raise _cli.UsageError(f"--variants: no variant's name begins with {prefix!r}; they "
                                  f"begin with xla, pallas fused, pallas gemm, pallas fused-raw, "
                                  f"mgpu fused, mgpu gemm or mgpu fused-prefetch")
    json_out = _cli.output_file("json_out", FLAGS.json_out, "fused.json")
    import jax
    import jax.numpy as jnp
    import numpy as np

    on_gpu = jax.default_backend() == "gpu"
    size, batch = (FLAGS.size, FLAGS.batch) if on_gpu else (256, 64)
    out = {"device": str(jax.devices()[0].device_kind), "jax": jax.__version__,
           "size": size, "batch": batch, "date": time.strftime("%Y-%m-%d"), "variants": {}}
    kx, kd, kw, kv = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (batch, size), jnp.float32)
    dy = jax.random.normal(kd, (batch, size), jnp.float32) / batch
    w0 = jax.random.normal(kw, (size, size), jnp.float32) * 0.02
    v0 = jax.random.normal(kv, (size, size), jnp.float32) * 0.01
    flops = 2.0 * batch * size * size
    if on_gpu:
        a = jax.random.normal(kx, (8192, 8192), jnp.float32)
        mm = jax.jit(jnp.matmul)
        peak_s = timed(lambda x_, d_, w_, v_: (w_, mm(a, a)), x, dy, w0, w0, 10)
        out["peak_flops_per_s"] = 2.0 * 8192**3 / peak_s

    ref_fn = jax.jit(xla_update)
    ref_w, ref_v = (np.asarray(r) for r in ref_fn(x, dy, w0, v0))
    ref_g = np.asarray(jax.jit(xla_gemm)(x, dy, w0, v0)[1])
    # errors relative to the largest change the step makes to v (xᵀ·dy) and to W (α·v)
    scale_v = np.abs(ref_v - BETA * np.asarray(v0)).max()
    scale_w = np.abs(ref_w - np.asarray(w0)).max()

    variants = {"xla": (jax.jit(xla_update, donate_argnums=(2, 3)), "update"),
                "xla gemm": (jax.jit(xla_gemm), "gemm")}
    for config in (CONFIGS if on_gpu else CONFIGS[:1]):
        name = pallas_tile(config)
        kw_ = {"interpret": not on_gpu}
        variants[f"pallas fused {name}"] = (
            jax.jit(make_pallas(config, raw=False, epilogue=True, **kw_), donate_argnums=(2, 3)),
            "update")
        variants[f"pallas gemm {name}"] = (
            jax.jit(make_pallas(config, raw=False, epilogue=False, **kw_)), "gemm")
        if config in CONFIGS[:2] or not on_gpu:
            variants[f"pallas fused-raw {name}"] = (
                jax.jit(make_pallas(config, raw=True, epilogue=True, **kw_), donate_argnums=(2, 3)),
                "update")

    for name, (epilogue, prefetch, config) in mgpu_variants().items():
        if not chosen(name):
            continue
        fn = jax.jit(make_mgpu(config, epilogue=epilogue, prefetch=prefetch),
                     donate_argnums=(2, 3) if epilogue else ())
        if on_gpu:
            variants[name] = (fn, "update" if epilogue else "gemm")
            continue
        row = {}  # the Mosaic kernels cannot run here: check that they still lower
        try:
            fn.trace(x, dy, w0, v0).lower(lowering_platforms=("cuda",))
            row["lowered"] = True
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {str(e)[:600]}"
        out["variants"][name] = row
        print(f"{name:40s} {json.dumps(row)}", flush=True)
    variants = {name: v for name, v in variants.items() if chosen(name)}
    if on_gpu:
        variants["xla again"] = variants["xla"]   # drift over the run
    for name, (fn, kind) in variants.items():
        row = {}
        try:
            t0 = time.perf_counter()
            w1, second = jax.block_until_ready(fn(x, dy, jnp.array(w0), jnp.array(v0)))
            row["first_call_s"] = time.perf_counter() - t0
            if kind == "update":
                row["err_v"] = float(np.abs(np.asarray(second) - ref_v).max() / scale_v)
                row["err_w"] = float(np.abs(np.asarray(w1) - ref_w).max() / scale_w)
            else:
                row["err_g"] = float(np.abs(np.asarray(second) - ref_g).max() / np.abs(ref_g).max())
            if on_gpu:
                seconds = timed(fn, x, dy, jnp.array(w0), jnp.array(v0), FLAGS.repeats)
                row["us"] = seconds * 1e6
                row["of_peak"] = flops / seconds / out["peak_flops_per_s"]
        except Exception as e:  # a variant that fails to compile is a result too
            row["error"] = f"{type(e).__name__}: {str(e)[:600]}"
            traceback.print_exc(limit=3)
        out["variants"][name] = row
        print(f"{name:40s} {json.dumps(row)}", flush=True)
    if json_out:
        _cli.write_json_file("json_out", json_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run(main, compilation_cache=False))  # it times compilation: jax's settings rule
