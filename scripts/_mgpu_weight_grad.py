"""A Hopper (Mosaic GPU) TF32 kernel for a dense layer's weight gradient ``xᵀ·dy``, with
the momentum update optionally applied in its epilogue: the kernel ``probe_fused_update.py``
times. Adapted from JAX's ``pallas/ops/gpu/hopper_matmul_mgpu.py`` (warp-specialised
pipeline, TMA copies, two compute warpgroups, persistent over output tiles), changed for
32-bit operands: Hopper's TF32 wgmma takes both operands with the summed axis minor, so A
is xᵀ (D_in, B) and B is dyᵀ (D_out, B), read as (B, D_out) through a transposed view.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu


@dataclasses.dataclass(frozen=True)
class Config:
    tile_m: int = 128
    tile_n: int = 128
    tile_k: int = 32
    max_concurrent_steps: int = 3
    epi_tile: int = 64
    grid_tile_width: int = 8
    num_sms: int = 132
    prefetch: bool = False
    """With the update: load the tile's W and v into shared memory while its gemm runs and
    store the new ones without waiting (the store is waited on only before the next tile's
    loads reuse that memory), instead of one 64 × 64 piece at a time, each copy waited on.
    Needs 2 · 2 · tile_m · tile_n · 4 bytes of shared memory besides the pipeline's."""


def _kernel(a_gmem, b_gmem, *refs, config: Config, beta: float, lr: float, fused: bool):
    if fused:
        w_gmem, v_gmem, w_out, v_out = refs
    else:
        (g_out,) = refs
    m, k = a_gmem.shape
    n = b_gmem.shape[0]
    tm, tn, tk = config.tile_m, config.tile_n, config.tile_k
    swizzle = plgpu.find_swizzle(tk * 4 * 8)
    transforms = (plgpu.TilingTransform((8, swizzle // 4)), plgpu.SwizzleTransform(swizzle))
    cta_tn = 2 * tn   # the two compute warpgroups split N
    m_iters, n_iters, k_iters = m // tm, n // cta_tn, k // tk
    et = config.epi_tile
    out_swizzle = plgpu.find_swizzle(et * 4 * 8)
    out_transforms = (plgpu.TilingTransform((8, out_swizzle // 4)),
                      plgpu.SwizzleTransform(out_swizzle))

    def get_pipeline(body, compute_context):
        return plgpu.emit_pipeline_warp_specialized(
            body, grid=(k_iters,), memory_registers=40,
            in_specs=[
                plgpu.BlockSpec((tm, tk), lambda kk: (0, kk), transforms=transforms,
                                memory_space=plgpu.SMEM),
                plgpu.BlockSpec((cta_tn, tk), lambda kk: (0, kk), transforms=transforms,
                                memory_space=plgpu.SMEM),
            ],
            wg_axis="wg", num_compute_wgs=2,
            max_concurrent_steps=config.max_concurrent_steps, compute_context=compute_context)

    ignore = lambda *_, **__: None  # noqa: E731
    if fused and config.prefetch:
        return _prefetch_body(a_gmem, b_gmem, w_gmem, v_gmem, w_out, v_out, get_pipeline,
                              ignore, config=config, beta=beta, lr=lr,
                              iters=(m_iters, n_iters), cta_tn=cta_tn)
    n_bufs = 2 if fused else 1

    @functools.partial(
        pl.run_scoped,
        pipeline_allocs=get_pipeline(ignore, ignore).get_allocations(a_gmem, b_gmem),
        out_smem=plgpu.SMEM((2, n_bufs, et, et), jnp.float32, transforms=out_transforms),
        barrier=plgpu.Barrier(num_barriers=2) if fused else None,
        collective_axes="wg",
    )
    def _scope(pipeline_allocs, out_smem, barrier):
        wg = lax.axis_index("wg")

        @plgpu.nd_loop((m_iters * n_iters,), collective_axes="sm")
        def _tiles(info):
            (lin,) = info.index
            mi, ni = plgpu.planar_snake(lin, (m_iters, n_iters), 1, config.grid_tile_width)
            m_sl = pl.ds(mi * tm, tm)
            n_sl = pl.ds(ni * cta_tn, cta_tn)
            wg_n = pl.ds(wg * tn, tn)

            def compute_context(eval_pipeline):
                @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tm, tn), jnp.float32))
                def _acc(acc_ref):
                    eval_pipeline(acc_ref)
                    acc = acc_ref[...]
                    plgpu.wait_smem_to_gmem(0, wait_read_only=True)
                    for ei in range(tm // et):
                        for ej in range(tn // et):
                            esl_m = slice(ei * et, (ei + 1) * et)
                            esl_n = slice(ej * et, (ej + 1) * et)
                            part = acc[esl_m, esl_n]

                            def at(ref, esl_m=esl_m, esl_n=esl_n):
                                return ref.at[m_sl, n_sl].at[:, wg_n].at[esl_m, esl_n]

                            if fused:
                                plgpu.copy_gmem_to_smem(at(v_gmem), out_smem.at[wg, 0],
                                                        barrier.at[wg])
                                plgpu.barrier_wait(barrier.at[wg])
                                plgpu.copy_gmem_to_smem(at(w_gmem), out_smem.at[wg, 1],
                                                        barrier.at[wg])
                                plgpu.barrier_wait(barrier.at[wg])
                                v_new = beta * out_smem[wg, 0] + part
                                out_smem[wg, 0] = v_new
                                out_smem[wg, 1] = out_smem[wg, 1] - lr * v_new
                                plgpu.commit_smem()
                                plgpu.copy_smem_to_gmem(out_smem.at[wg, 0], at(v_out))
                                plgpu.copy_smem_to_gmem(out_smem.at[wg, 1], at(w_out))
                            else:
                                out_smem[wg, 0] = part
                                plgpu.commit_smem()
                                plgpu.copy_smem_to_gmem(out_smem.at[wg, 0], at(g_out))
                            plgpu.wait_smem_to_gmem(0, wait_read_only=True)

            def mma_body(idxs, a_smem, b_smem, acc_ref):
                plgpu.wgmma(acc_ref, a_smem, plgpu.transpose_ref(b_smem.at[wg_n], (1, 0)))
                plgpu.wgmma_wait(0)
                return acc_ref

            get_pipeline(mma_body, compute_context)(
                a_gmem.at[m_sl, :], b_gmem.at[n_sl, :], allocations=pipeline_allocs)

    plgpu.wait_smem_to_gmem(0, wait_read_only=True)


def _prefetch_body(a_gmem, b_gmem, w_gmem, v_gmem, w_out, v_out, get_pipeline, ignore, *,
                   config, beta, lr, iters, cta_tn):
    """The fused kernel with its W and v tiles loaded during the gemm (``Config.prefetch``)."""
    tm, tn = config.tile_m, config.tile_n
    m_iters, n_iters = iters
    swizzle = plgpu.find_swizzle(tn * 4 * 8)
    tile_transforms = (plgpu.TilingTransform((8, swizzle // 4)), plgpu.SwizzleTransform(swizzle))

    @functools.partial(
        pl.run_scoped,
        pipeline_allocs=get_pipeline(ignore, ignore).get_allocations(a_gmem, b_gmem),
        wv_smem=plgpu.SMEM((2, 2, tm, tn), jnp.float32, transforms=tile_transforms),
        barriers=plgpu.Barrier(num_barriers=4),
        collective_axes="wg",
    )
    def _scope(pipeline_allocs, wv_smem, barriers):
        wg = lax.axis_index("wg")

        @plgpu.nd_loop((m_iters * n_iters,), collective_axes="sm")
        def _tiles(info):
            (lin,) = info.index
            mi, ni = plgpu.planar_snake(lin, (m_iters, n_iters), 1, config.grid_tile_width)
            m_sl = pl.ds(mi * tm, tm)
            n_sl = pl.ds(ni * cta_tn, cta_tn)
            wg_n = pl.ds(wg * tn, tn)

            def tile(ref):
                return ref.at[m_sl, n_sl].at[:, wg_n]

            def compute_context(eval_pipeline):
                # The last tile's stores must have read this memory before it is refilled.
                plgpu.wait_smem_to_gmem(0, wait_read_only=True)
                plgpu.copy_gmem_to_smem(tile(v_gmem), wv_smem.at[wg, 0], barriers.at[2 * wg])
                plgpu.copy_gmem_to_smem(tile(w_gmem), wv_smem.at[wg, 1], barriers.at[2 * wg + 1])

                @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tm, tn), jnp.float32))
                def _acc(acc_ref):
                    eval_pipeline(acc_ref)   # the gemm, while W and v arrive
                    plgpu.barrier_wait(barriers.at[2 * wg])
                    plgpu.barrier_wait(barriers.at[2 * wg + 1])
                    acc = acc_ref[...]
                    for rows in (slice(0, tm // 2), slice(tm // 2, tm)):  # fewer live registers
                        v_new = beta * wv_smem[wg, 0, rows] + acc[rows]
                        wv_smem[wg, 0, rows] = v_new
                        wv_smem[wg, 1, rows] = wv_smem[wg, 1, rows] - lr * v_new
                    plgpu.commit_smem()
                    plgpu.copy_smem_to_gmem(wv_smem.at[wg, 0], tile(v_out))
                    plgpu.copy_smem_to_gmem(wv_smem.at[wg, 1], tile(w_out))

            def mma_body(idxs, a_smem, b_smem, acc_ref):
                plgpu.wgmma(acc_ref, a_smem, plgpu.transpose_ref(b_smem.at[wg_n], (1, 0)))
                plgpu.wgmma_wait(0)
                return acc_ref

            get_pipeline(mma_body, compute_context)(
                a_gmem.at[m_sl, :], b_gmem.at[n_sl, :], allocations=pipeline_allocs)

    plgpu.wait_smem_to_gmem(0, wait_read_only=True)


def weight_grad_update(xt, dyt, w=None, v=None, *, beta=0.9, lr=1e-3, config=Config()):
    """``xt·dytᵀ`` (= xᵀ·dy), or with ``w`` and ``v`` the momentum step on it:
    ``v ← β·v + xᵀ·dy``, ``w ← w − lr·v``, returned as ``(w, v)``."""
    m, n = xt.shape[0], dyt.shape[0]
    fused = w is not None
    out = jax.ShapeDtypeStruct((m, n), jnp.float32)
    f = plgpu.kernel(
        functools.partial(_kernel, config=config, beta=beta, lr=lr, fused=fused),
        out_type=(out, out) if fused else out,
        grid=(config.num_sms,), grid_names=("sm",),
        num_threads=3, thread_name="wg",
        compiler_params=plgpu.CompilerParams(
            lowering_semantics=plgpu.LoweringSemantics.Warpgroup))
    return f(xt, dyt, w, v) if fused else f(xt, dyt)
