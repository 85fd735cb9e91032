"""CIC kernels written with Pallas (Triton backend): one GPU thread per particle.

The XLA kernels of `painting.py` ("fused") express a deposit as 8 scatter-adds and a read
as 8 gathers; XLA's fusion then recomputes the per-corner cell indices in every kernel
and, where an output has 3 components (a displacement cotangent), evaluates the whole
8-corner sum once per component. Here a program handles a block of particles, and each
particle computes its cells, fractions and 8 corner weights once, then:

- "deposit": atomically adds `w_corner * value` (C channels, value 1 by default) to the
  mesh; with C > 1 the mesh is written channel-major (the lanes of a warp add to
  consecutive addresses: cell-major, a 3-channel deposit took 4.4x a scalar one on an
  H200, channel-major 3x) and transposed back;
- "read": sums `w_corner * mesh[corner]` (C channels);
- "read_grad": the displacement cotangent of a read, `sum_corners <mesh[corner], ct>
  d(w_corner)/d(displacement)` (the mesh cotangent of a read is a "deposit" of `ct`);
- "paint_bwd": the vjp of a deposit: `sum_corners ct_mesh[corner] d(w_corner)/dd` (times
  the particle weights) and the weights' cotangent `sum_corners ct_mesh[corner] w_corner`.

Particle arrays are passed flat (particle-major, channels minor) and addressed with
integer index vectors (gathers, scattered stores and atomics), so any lattice, mesh, halo
and channel count works without padding to powers of two. The cell arithmetic is that of
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

import jax
import jax.numpy as jnp

__all__ = ["pallas_available", "pallas_cic"]

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


def _corner_data(disp_ref, p, mask, static, dtype, pidx):
    """Per corner: (flat cell index, weight, (dw/dd_x, dw/dd_y, dw/dd_z)) of block `p`."""
    from jax.experimental.pallas import triton as plgpu

    mesh_shape, lattice_shape, local_lattice, block_shape, halo = static
    _, ly, lz = local_lattice
    idx = (p // (ly * lz), (p // lz) % ly, p % lz)
    cells, fracs = [], []
    for axis in range(3):
        n_mesh, n_lat = mesh_shape[axis], lattice_shape[axis]
        i = idx[axis]
        site_int = (i * n_mesh) // n_lat
        site_frac = ((i * n_mesh) % n_lat).astype(dtype) / n_lat
        d = plgpu.load(disp_ref.at[pidx(p, axis, 3)], mask=mask, other=0.0) + site_frac
        d_floor = jnp.floor(d)
        cell = site_int + d_floor.astype(jnp.int32) + halo[axis]
        fracs.append(d - d_floor)
        cells.append(cell)
    per_axis = []  # per axis: ((index of offset 0, index of offset 1), (1 - t, t))
    for axis in range(3):
        c, n = cells[axis], block_shape[axis]
        if halo[axis] == 0:  # periodic: wrap into [0, n)
            c0 = c % n
            c0 = jnp.where(c0 < 0, c0 + n, c0)
            c1 = jnp.where(c0 + 1 == n, 0, c0 + 1)
        else:  # padded block: clamp (mass is never dropped; the caller counts overflow)
            c0 = jnp.clip(c, 0, n - 1)
            c1 = jnp.clip(c + 1, 0, n - 1)
        t = fracs[axis]
        per_axis.append(((c0, c1), (1.0 - t, t)))
    corners = []
    for corner in range(8):
        offs = ((corner >> 2) & 1, (corner >> 1) & 1, corner & 1)
        flat = per_axis[0][0][offs[0]]
        flat = flat * block_shape[1] + per_axis[1][0][offs[1]]
        flat = flat * block_shape[2] + per_axis[2][0][offs[2]]
        u = [per_axis[a][1][offs[a]] for a in range(3)]
        s = [1.0 if o else -1.0 for o in offs]
        w = u[0] * u[1] * u[2]
        dw = (s[0] * u[1] * u[2], u[0] * s[1] * u[2], u[0] * u[1] * s[2])
        corners.append((flat, w, dw))
    return corners


def _atomic_add(ref, index, value, mask):
    """`ref[index] += value` where `mask`. Every index is valid (wrapped or clamped), so
    the interpreter, which has no masked atomics, adds zeros for masked lanes instead."""
    from jax.experimental.pallas import triton as plgpu

    if pallas_available():
        plgpu.atomic_add(ref, (index,), value, mask=mask)
    else:
        plgpu.atomic_add(ref, (index,), jnp.where(mask, value, 0.0))


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


def _kernel(mode, static, n_part, n_ch, has_w, block, *refs):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    n_cells = math.prod(static[3])
    mesh_cm = mode == "deposit" and n_ch > 1

    def pidx(p, c, nc):  # particle arrays: particle-major, channels minor
        return p * nc + c

    def midx(flat, c, nc):  # meshes: cell-major, or channel-major (`mesh_cm`)
        return c * n_cells + flat if mesh_cm else flat * nc + c

    def load(ref, index):
        return plgpu.load(ref.at[index], mask=mask, other=0.0)

    p = pl.program_id(0) * block + jnp.arange(block, dtype=jnp.int32)
    mask = p < n_part
    dtype = refs[0].dtype
    corners = _corner_data(refs[0], p, mask, static, dtype, pidx)
    if mode == "deposit":  # disp, [weights | values (N*C)], zeros -> mesh
        src_ref = refs[1] if has_w else None
        out_ref = refs[-1]
        for c in range(n_ch):
            val = None if src_ref is None else load(src_ref, pidx(p, c, n_ch))
            for flat, w, _ in corners:
                _atomic_add(out_ref, midx(flat, c, n_ch), w if val is None else w * val, mask)
    elif mode == "read":  # disp, table -> values (N*C)
        _, table_ref, out_ref = refs
        acc = [jnp.zeros((block,), dtype) for _ in range(n_ch)]
        for flat, w, _ in corners:
            for c in range(n_ch):
                acc[c] = acc[c] + w * load(table_ref, midx(flat, c, n_ch))
        for c in range(n_ch):
            plgpu.store(out_ref.at[pidx(p, c, n_ch)], acc[c], mask=mask)
    elif mode == "read_grad":  # disp, table, ct (N*C) -> ct_disp (N*3)
        _, table_ref, ct_ref, ctd_ref = refs
        ct = [load(ct_ref, pidx(p, c, n_ch)) for c in range(n_ch)]
        g = [jnp.zeros((block,), dtype) for _ in range(3)]
        for flat, _, dw in corners:
            proj = load(table_ref, midx(flat, 0, n_ch)) * ct[0]
            for c in range(1, n_ch):
                proj = proj + load(table_ref, midx(flat, c, n_ch)) * ct[c]
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


def _call(mode, static, n_ch, disp, *arrays, has_w=False):
    """Run one kernel; `static` = (mesh_shape, lattice_shape, block_shape, halo)."""
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
        ins.append(_zeros(n_cells * n_ch, dtype, disp))
        aliases = {len(ins) - 1: 0}
        out_shape = _struct((n_cells * n_ch,), dtype, disp)
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
    kernel = functools.partial(_kernel, mode, kstatic, n_part, n_ch, has_w, block)
    out = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(pl.cdiv(n_part, block),),
        in_specs=[any_spec] * len(ins),
        out_specs=(any_spec,) * len(out_shape) if multi else any_spec,
        input_output_aliases=aliases,
        interpret=interpret,
    )(*ins)
    if mode == "deposit" and n_ch > 1:  # channel-major -> cell-major
        return out.reshape(n_ch, n_cells).T.reshape(-1)
    return out


def pallas_cic(mode, static, n_ch, disp, *arrays, has_w=False):
    """Run a kernel (modes in the module docstring, plus "read_bwd": the read's vjp as
    "read_grad" and a C-channel "deposit" of the cotangent, returning both)."""
    if mode == "read_bwd":
        table, ct = arrays
        ct_disp = _call("read_grad", static, n_ch, disp, table, ct)
        return ct_disp, _call("deposit", static, n_ch, disp, ct, has_w=True)
    return _call(mode, static, n_ch, disp, *arrays, has_w=has_w)
