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
    prefetch = fused and config.prefetch
    if prefetch:  # the whole (tm, tn) tile of W and of v, per warpgroup
        swizzle = plgpu.find_swizzle(tn * 4 * 8)
        smem = plgpu.SMEM((2, 2, tm, tn), jnp.float32, transforms=(
            plgpu.TilingTransform((8, swizzle // 4)), plgpu.SwizzleTransform(swizzle)))
    else:         # one (et, et) piece of the output (and of W), per warpgroup
        smem = plgpu.SMEM((2, 2 if fused else 1, et, et), jnp.float32, transforms=out_transforms)

    @functools.partial(
        pl.run_scoped,
        pipeline_allocs=get_pipeline(ignore, ignore).get_allocations(a_gmem, b_gmem),
        smem=smem, barriers=plgpu.Barrier(num_barriers=4) if fused else None,
        collective_axes="wg",
    )
    def _scope(pipeline_allocs, smem, barriers):
        wg = lax.axis_index("wg")

        @plgpu.nd_loop((m_iters * n_iters,), collective_axes="sm")
        def _tiles(info):
            (lin,) = info.index
            mi, ni = plgpu.planar_snake(lin, (m_iters, n_iters), 1, config.grid_tile_width)
            m_sl = pl.ds(mi * tm, tm)
            n_sl = pl.ds(ni * cta_tn, cta_tn)
            wg_n = pl.ds(wg * tn, tn)
            v_bar, w_bar = (barriers.at[2 * wg], barriers.at[2 * wg + 1]) if fused else (None, None)

            def tile(ref):  # this warpgroup's (tm, tn) tile of an output-shaped ref
                return ref.at[m_sl, n_sl].at[:, wg_n]

            def prefetched_update(acc):
                """W and v are in shared memory: update them there and store both, unwaited."""
                plgpu.barrier_wait(v_bar)
                plgpu.barrier_wait(w_bar)
                for rows in (slice(0, tm // 2), slice(tm // 2, tm)):  # fewer live registers
                    v_new = beta * smem[wg, 0, rows] + acc[rows]
                    smem[wg, 0, rows] = v_new
                    smem[wg, 1, rows] = smem[wg, 1, rows] - lr * v_new
                plgpu.commit_smem()
                plgpu.copy_smem_to_gmem(smem.at[wg, 0], tile(v_out))
                plgpu.copy_smem_to_gmem(smem.at[wg, 1], tile(w_out))

            def piecewise_epilogue(acc):
                """One (et, et) piece at a time: load v and W (if fused), update, store, wait."""
                plgpu.wait_smem_to_gmem(0, wait_read_only=True)
                for ei in range(tm // et):
                    for ej in range(tn // et):
                        piece = (slice(ei * et, (ei + 1) * et), slice(ej * et, (ej + 1) * et))

                        def at(ref, piece=piece):
                            return tile(ref).at[piece]

                        if fused:
                            plgpu.copy_gmem_to_smem(at(v_gmem), smem.at[wg, 0], v_bar)
                            plgpu.barrier_wait(v_bar)
                            plgpu.copy_gmem_to_smem(at(w_gmem), smem.at[wg, 1], w_bar)
                            plgpu.barrier_wait(w_bar)
                            v_new = beta * smem[wg, 0] + acc[piece]
                            smem[wg, 0] = v_new
                            smem[wg, 1] = smem[wg, 1] - lr * v_new
                            plgpu.commit_smem()
                            plgpu.copy_smem_to_gmem(smem.at[wg, 0], at(v_out))
                            plgpu.copy_smem_to_gmem(smem.at[wg, 1], at(w_out))
                        else:
                            smem[wg, 0] = acc[piece]
                            plgpu.commit_smem()
                            plgpu.copy_smem_to_gmem(smem.at[wg, 0], at(g_out))
                        plgpu.wait_smem_to_gmem(0, wait_read_only=True)

            def compute_context(eval_pipeline):
                if prefetch:  # once the last tile's stores have read this memory, refill it
                    plgpu.wait_smem_to_gmem(0, wait_read_only=True)
                    plgpu.copy_gmem_to_smem(tile(v_gmem), smem.at[wg, 0], v_bar)
                    plgpu.copy_gmem_to_smem(tile(w_gmem), smem.at[wg, 1], w_bar)

                @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tm, tn), jnp.float32))
                def _acc(acc_ref):
                    eval_pipeline(acc_ref)   # the gemm (while W and v arrive, with prefetch)
                    (prefetched_update if prefetch else piecewise_epilogue)(acc_ref[...])

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
