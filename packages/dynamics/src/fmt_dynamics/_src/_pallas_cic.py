"""CIC kernels written with Pallas (Triton backend): one GPU thread per particle.

The XLA kernels of `painting.py` ("fused") express a deposit as 8 scatter-adds and a read
as 8 gathers; XLA's fusion then recomputes the per-corner cell indices in every kernel
and, where an output has 3 components (a displacement cotangent), evaluates the whole
8-corner sum once per component. Here a program handles a block of particles, and each
particle computes its cells, fractions and 8 corner weights once, then:

- "deposit": atomically adds `w_corner * value` (C channels, value 1 by default) to the
  mesh (`_deposit_kernel`). The atomics are vectors: a scalar deposit writes (cells, 2)
  slots, slot dy of a cell collecting the corner (y + dy) of the clouds based there, added
  into their cells afterwards (`_combine_slots`); a C-channel deposit writes the channels
  of a cell together, padded to `width(C)`. Clouds of z-neighbours that share cells are
  merged (most particles then issue half the atomics);
- "read": sums `w_corner * mesh[corner]` (C channels, one vector load per corner from a
  table padded to `width(C)`);
- "read_grad": the displacement cotangent of a read, `sum_corners <mesh[corner], ct>
  d(w_corner)/d(displacement)` (the mesh cotangent of a read is a "deposit" of `ct`);
- "paint_bwd": the vjp of a deposit: `sum_corners ct_mesh[corner] d(w_corner)/dd` (times
  the particle weights) and the weights' cotangent `sum_corners ct_mesh[corner] w_corner`.

Measured on an H200 (256^3 particles from a FastPM run at a = 1, kernel plus the slot
combination): a scalar deposit with 8 scalar atomics per particle took 1.18 ms, with two
4-wide atomics 0.80 ms; a 3-channel deposit with 24 scalar atomics (channel-major) 3.07 ms,
with 8 4-wide ones 2.27 ms; one thread per column of 2-8 particles (aggregating in
registers, uncoalesced atomics) was 1.3-3x slower. Merging z-neighbours and the 2-wide
scalar slots took the 10-step FastPM gradient from 91 to 87.5 ms and its peak from 3.32
to 2.82 GiB.

Particle arrays are passed flat (particle-major, channels minor) and addressed with
integer index vectors (gathers, scattered stores and atomics), so any lattice, mesh, halo
and channel count works without padding the particles. The cell arithmetic is that of
`painting._axes` / `painting._corners`: lattice site split exactly into an integer and a
fraction, periodic wrap on axes without halo, clamping to the padded block on the others.

Atomic float additions are not deterministic in their order (neither are XLA's GPU
scatters); `painting.default_cic_method` does not pick this path when XLA is asked for
deterministic GPU ops. Off GPUs the kernels run in Pallas' interpreter (for tests).
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["pallas_available", "pallas_cic", "width"]

# Particles per program (a power of two, as Triton blocks must be), with Triton's default
# 4 warps. Measured on an H200 (256^3 particles, FastPM 10-step gradient, one-pass read
# vjp): 64: 164 ms, 128: 132 ms, 256: 136 ms, 512: 179 ms, 1024: 231 ms; 2 or 8 warps and
# channel-major particle arrays or read tables were slower.
BLOCK = 128


def pallas_available() -> bool:
    """Whether the Pallas Triton backend can run here (a CUDA or ROCm GPU)."""
    if jax.default_backend() not in ("gpu", "cuda", "rocm"):
        return False
    try:
        from jax.experimental.pallas import triton  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the jax build
        return False
    return True


class _Axis(NamedTuple):
    """One axis of a block of particles' clouds: the cells of offsets 0 and 1, their
    weights (1 - t, t), and on padded axes `pinned`: the cloud is clamped at the block's
    edge (both offsets land on `cells[0]`)."""

    cells: tuple[Any, Any]
    weights: tuple[Any, Any]
    pinned: Any


def _axis_data(disp_ref, p, mask, static, dtype, pidx):
    """Per axis, the `_Axis` of the particles `p` of a program."""
    mesh_shape, lattice_shape, local_lattice, block_shape, halo = static
    _, ly, lz = local_lattice
    idx = (p // (ly * lz), (p // lz) % ly, p % lz)
    axes = []
    for axis in range(3):
        n_mesh, n_lat, n = mesh_shape[axis], lattice_shape[axis], block_shape[axis]
        i = idx[axis]
        site_int = (i * n_mesh) // n_lat
        site_frac = ((i * n_mesh) % n_lat).astype(dtype) / n_lat
        d = _load(disp_ref, pidx(p, axis, 3), mask) + site_frac
        d_floor = jnp.floor(d)
        c = site_int + d_floor.astype(jnp.int32) + halo[axis]
        t = d - d_floor
        if halo[axis] == 0:  # periodic: wrap into [0, n)
            c0 = c % n
            c0 = jnp.where(c0 < 0, c0 + n, c0)
            c1 = jnp.where(c0 + 1 == n, 0, c0 + 1)
            pinned = None
        else:  # padded block: clamp (mass is never dropped; the caller counts overflow)
            c0 = jnp.clip(c, 0, n - 1)
            c1 = jnp.clip(c + 1, 0, n - 1)
            pinned = (c < 0) | (c >= n - 1)
        axes.append(_Axis((c0, c1), (1.0 - t, t), pinned))
    return axes


def _corners(axes, block_shape):
    """Per corner: (flat cell index, weight, (dw/dd_x, dw/dd_y, dw/dd_z))."""
    corners = []
    for corner in range(8):
        offs = ((corner >> 2) & 1, (corner >> 1) & 1, corner & 1)
        flat = axes[0].cells[offs[0]]
        flat = flat * block_shape[1] + axes[1].cells[offs[1]]
        flat = flat * block_shape[2] + axes[2].cells[offs[2]]
        u = [axes[a].weights[offs[a]] for a in range(3)]
        s = [1.0 if o else -1.0 for o in offs]
        w = u[0] * u[1] * u[2]
        dw = (s[0] * u[1] * u[2], u[0] * s[1] * u[2], u[0] * u[1] * s[2])
        corners.append((flat, w, dw))
    return corners


def _lanes(width):
    return jnp.arange(width, dtype=jnp.int32)[None, :]


def _pick(lanes, values):
    """A (block, len(values)) array whose column j is `values[j]` (each (block,))."""
    out = values[-1][:, None]
    for j in range(len(values) - 2, -1, -1):
        out = jnp.where(lanes == j, values[j][:, None], out)
    return out


def _load(ref, index, mask):
    """`ref[index]` where `mask`, zero elsewhere."""
    from jax.experimental.pallas import triton as plgpu

    return plgpu.load(ref.at[index], mask=mask, other=0.0)


def _atomic_add(ref, index, value, mask, interpret):
    """`ref[index] += value` where `mask`. Every index is valid (wrapped or clamped), so
    the interpreter, which has no masked atomics, adds zeros for masked lanes instead."""
    from jax.experimental.pallas import triton as plgpu

    if interpret:
        plgpu.atomic_add(ref, (index,), jnp.where(mask, value, 0.0))
    else:
        plgpu.atomic_add(ref, (index,), value, mask=mask)


def _struct(shape, dtype, like):
    """An output type for `pallas_call`; inside `shard_map` it varies over the mesh axes
    `like` varies over (JAX names that `manual_axis_type`; older releases `vma`)."""
    aval = jax.typeof(like)
    params = inspect.signature(jax.ShapeDtypeStruct).parameters
    for name in ("manual_axis_type", "vma"):
        value = getattr(aval, name, None)
        if name in params and value is not None:
            return jax.ShapeDtypeStruct(shape, dtype, **{name: value})
    return jax.ShapeDtypeStruct(shape, dtype)


def _zeros(n, dtype, like):
    """Zeros to accumulate into; inside `shard_map` varying like `like` (an aliased output
    takes the type of its input)."""
    aval = jax.typeof(like)
    names = getattr(getattr(aval, "manual_axis_type", None), "varying", None)
    if names is None:
        names = getattr(aval, "vma", None)
    zeros = jnp.zeros((n,), dtype)
    return jax.lax.pcast(zeros, tuple(names), to="varying") if names else zeros


def width(n_ch: int) -> int:
    """Values per cell of a C-channel mesh as the kernels hold it: C padded to a power of
    two (one vector load or atomic per corner). A scalar deposit writes 2 slots per cell
    (see `_deposit_kernel`)."""
    return 1 << (n_ch - 1).bit_length()


def _joins(lo, hi):
    """Whether cloud `lo`'s upper z cells are cloud `hi`'s lower ones (same x, y cells)."""
    return (
        (lo[0].cells[0] == hi[0].cells[0])
        & (lo[1].cells[0] == hi[1].cells[0])
        & (lo[2].cells[1] == hi[2].cells[0])
    )


def _pinned_weights(axis):
    """Offset weights as seen from the base cell: a clamped cloud's whole weight on
    offset 0 (what clamping both offsets to the edge cell does)."""
    w = axis.weights
    if axis.pinned is None:
        return w
    return (jnp.where(axis.pinned, 1.0, w[0]), jnp.where(axis.pinned, 0.0, w[1]))


def _deposit_kernel(refs, axes, p, mask, static, n_ch, has_w, block, interpret, pidx):
    """Atomic deposit of a block of particles (see `_kernel`).

    Neighbouring particles along the lattice's z axis usually share cells: when the upper
    z cells of particle k-1 are the lower z cells of particle k (same x, y cells), k adds
    both contributions to them and k-1 skips its upper ones, so that most particles issue
    half the atomics. Both threads evaluate the same predicate on the same data.
    """
    block_shape = static[3]
    lz = static[2][2]
    out_ref = refs[-1]
    kz = p % lz
    prev_ok = mask & (kz > 0)
    next_ok = mask & (kz < lz - 1)
    prev = _axis_data(refs[0], p - 1, prev_ok, static, refs[0].dtype, pidx)
    nxt = _axis_data(refs[0], p + 1, next_ok, static, refs[0].dtype, pidx)
    take_prev = prev_ok & _joins(prev, axes)
    give_next = next_ok & _joins(axes, nxt)
    keep_upper = mask & ~give_next
    ax, ay, az = axes
    stride_x = block_shape[1] * block_shape[2]

    if n_ch == 1:
        # Slot dy of cell (x, y, z) collects what the corner (x, y + dy, z) receives from
        # clouds based at y; `_combine_slots` adds them into their cells.
        lanes = _lanes(2)
        scale = _load(refs[1], p, mask) if has_w else 1.0
        scale_p = _load(refs[1], p - 1, prev_ok & take_prev) if has_w else 1.0
        wy, wy_p = _pinned_weights(ay), _pinned_weights(prev[1])
        wz, wz_p = az.weights, prev[2].weights
        for ox in (0, 1):
            wx = ax.weights[ox] * scale
            wx_p = jnp.where(take_prev, prev[0].weights[ox] * scale_p, 0.0)
            row = ax.cells[ox] * stride_x + ay.cells[0] * block_shape[2]
            lower = [wx * wy[j] * wz[0] + wx_p * wy_p[j] * wz_p[1] for j in (0, 1)]
            upper = [wx * wy[j] * wz[1] for j in (0, 1)]
            for cells, vals, m in ((az.cells[0], lower, mask), (az.cells[1], upper, keep_upper)):
                flat = row + cells
                _atomic_add(
                    out_ref,
                    flat[:, None] * 2 + lanes,
                    _pick(lanes, vals),
                    jnp.broadcast_to(m[:, None], (block, 2)),
                    interpret,
                )
        return
    # C channels: (cells, wd) cell-major, the particles' values padded with zeros.
    wd = width(n_ch)
    lanes = _lanes(wd)
    chan = p[:, None] * n_ch + lanes
    vals = _load(refs[1], chan, mask[:, None] & (lanes < n_ch))
    vals_p = _load(refs[1], chan - n_ch, (prev_ok & take_prev)[:, None] & (lanes < n_ch))
    for ox in (0, 1):
        for oy in (0, 1):
            row = ax.cells[ox] * stride_x + ay.cells[oy] * block_shape[2]
            wxy = ax.weights[ox] * ay.weights[oy]
            wxy_p = jnp.where(take_prev, prev[0].weights[ox] * prev[1].weights[oy], 0.0)
            lower = wxy[:, None] * az.weights[0][:, None] * vals
            lower = lower + (wxy_p * prev[2].weights[1])[:, None] * vals_p
            upper = (wxy * az.weights[1])[:, None] * vals
            for cells, v, m in ((az.cells[0], lower, mask), (az.cells[1], upper, keep_upper)):
                _atomic_add(
                    out_ref,
                    (row + cells)[:, None] * wd + lanes,
                    v,
                    jnp.broadcast_to(m[:, None], (block, wd)),
                    interpret,
                )


def _kernel(mode, static, n_part, n_ch, has_w, block, interpret, *refs):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    block_shape = static[3]
    wd = width(n_ch)

    def pidx(p, c, nc):  # particle arrays: particle-major, channels minor
        return p * nc + c

    def load(ref, index, m=None):
        return _load(ref, index, mask if m is None else m)

    p = pl.program_id(0) * block + jnp.arange(block, dtype=jnp.int32)
    mask = p < n_part
    dtype = refs[0].dtype
    axes = _axis_data(refs[0], p, mask, static, dtype, pidx)
    if mode == "deposit":
        _deposit_kernel(refs, axes, p, mask, static, n_ch, has_w, block, interpret, pidx)
        return
    lanes = _lanes(wd)
    mask2 = jnp.broadcast_to(mask[:, None], (block, wd))
    if n_ch > 1:  # (block, wd) channel values of the particles (zero padding)
        chan2 = p[:, None] * n_ch + lanes
        cmask2 = mask2 & (lanes < n_ch)
    corners = _corners(axes, block_shape)
    if mode == "read":  # disp, table (cells, wd) -> values (N*C)
        _, table_ref, out_ref = refs
        if n_ch == 1:
            acc = jnp.zeros((block,), dtype)
            for flat, w, _ in corners:
                acc = acc + w * load(table_ref, flat)
            plgpu.store(out_ref.at[p], acc, mask=mask)
            return
        acc = jnp.zeros((block, wd), dtype)
        for flat, w, _ in corners:
            acc = acc + w[:, None] * load(table_ref, flat[:, None] * wd + lanes, mask2)
        plgpu.store(out_ref.at[chan2], acc, mask=cmask2)
    elif mode == "read_grad":  # disp, table (cells, wd), ct (N*C) -> ct_disp (N*3)
        _, table_ref, ct_ref, ctd_ref = refs
        ct = load(ct_ref, p) if n_ch == 1 else load(ct_ref, chan2, cmask2)
        g = [jnp.zeros((block,), dtype) for _ in range(3)]
        for flat, _, dw in corners:
            if n_ch == 1:
                proj = load(table_ref, flat) * ct
            else:
                proj = jnp.sum(load(table_ref, flat[:, None] * wd + lanes, mask2) * ct, axis=1)
            g = [g[a] + proj * dw[a] for a in range(3)]
        for a in range(3):
            plgpu.store(ctd_ref.at[pidx(p, a, 3)], g[a], mask=mask)
    elif mode == "paint_bwd":  # disp, ct_mesh, [weights] -> ct_disp (N*3), [ct_weights]
        ctm_ref = refs[1]
        g = [jnp.zeros((block,), dtype) for _ in range(3)]
        gw = jnp.zeros((block,), dtype)
        for flat, w, dw in corners:
            v = load(ctm_ref, flat)
            g = [g[a] + v * dw[a] for a in range(3)]
            gw = gw + v * w
        if has_w:
            _, _, w_ref, ctd_ref, ctw_ref = refs
            wt = load(w_ref, p)
            g = [x * wt for x in g]
            plgpu.store(ctw_ref.at[p], gw, mask=mask)
        else:
            ctd_ref = refs[2]
        for a in range(3):
            plgpu.store(ctd_ref.at[pidx(p, a, 3)], g[a], mask=mask)
    else:  # pragma: no cover - internal
        raise ValueError(mode)


def _combine_slots(slots, block_shape, halo_y):
    """Cells of a scalar deposit from its (cells, 2) slots (see `_deposit_kernel`): slot
    dy of (x, y, z) belongs to (x, y + dy, z), periodic in y without halo (a padded y
    never has weight past its last row)."""
    s = slots.reshape((*block_shape, 2))
    if halo_y == 0:
        return s[..., 0] + jnp.roll(s[..., 1], 1, axis=1)
    return s[..., 0] + jnp.pad(s[:, :-1, :, 1], ((0, 0), (1, 0), (0, 0)))


def _call(mode, static, n_ch, disp, *arrays, has_w=False):
    """Run one kernel; `static` = (mesh_shape, lattice_shape, block_shape, halo). Tables
    (`read`, `read_grad`) come as (cells, width(n_ch)) arrays; a `deposit` returns the
    block's cells (scalar) or (cells, width(n_ch)) values."""
    from jax.experimental import pallas as pl

    mesh_shape, lattice_shape, block_shape, halo = static
    local_lattice = tuple(int(n) for n in disp.shape[:3])
    n_part = math.prod(local_lattice)
    n_cells = math.prod(block_shape)
    kstatic = (mesh_shape, lattice_shape, local_lattice, block_shape, (halo[0], halo[1], 0))
    dtype = disp.dtype
    any_spec = pl.BlockSpec(memory_space=pl.ANY)
    ins = [disp.reshape(-1)] + [a.reshape(-1) for a in arrays]
    aliases = {}
    if mode == "deposit":
        size = n_cells * (2 if n_ch == 1 else width(n_ch))
        ins.append(_zeros(size, dtype, disp))
        aliases = {len(ins) - 1: 0}
        out_shape = _struct((size,), dtype, disp)
    elif mode == "read":
        out_shape = _struct((n_part * n_ch,), dtype, disp)
    elif mode == "read_grad":
        out_shape = _struct((n_part * 3,), dtype, disp)
    else:  # paint_bwd
        out_shape = (_struct((n_part * 3,), dtype, disp),)
        if has_w:
            out_shape += (_struct((n_part,), dtype, disp),)
    multi = isinstance(out_shape, tuple)
    # The interpreter applies a vector atomic add as a gather and a set (colliding lanes
    # would lose updates): one particle per program there.
    interpret = not pallas_available()
    block = 1 if interpret else BLOCK
    kernel = functools.partial(_kernel, mode, kstatic, n_part, n_ch, has_w, block, interpret)
    out = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(pl.cdiv(n_part, block),),
        in_specs=[any_spec] * len(ins),
        out_specs=(any_spec,) * len(out_shape) if multi else any_spec,
        input_output_aliases=aliases,
        interpret=interpret,
    )(*ins)
    if mode == "deposit":
        if n_ch == 1:
            return _combine_slots(out, block_shape, halo[1]).reshape(-1)
        return out.reshape(n_cells, width(n_ch))
    return out


def pallas_cic(mode, static, n_ch, disp, *arrays, has_w=False):
    """Run a kernel (modes in the module docstring, plus "read_bwd": the read's vjp as
    "read_grad" and a C-channel "deposit" of the cotangent, returning both)."""
    if mode == "read_bwd":
        table, ct = arrays
        ct_disp = _call("read_grad", static, n_ch, disp, table, ct)
        return ct_disp, _call("deposit", static, n_ch, disp, ct, has_w=True)
    return _call(mode, static, n_ch, disp, *arrays, has_w=has_w)
