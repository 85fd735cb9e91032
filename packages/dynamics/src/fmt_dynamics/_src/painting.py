"""Cloud-in-cell (CIC) painting of particles onto a mesh and reading a mesh at particles.

Particles sit on a regular Lagrangian lattice and carry a displacement from their lattice
site, in mesh cell units (pmwd's convention: the integer lattice index and the float
displacement are combined without rounding, so float32 stays precise on large meshes).

Distributed scheme (JaxPM's, see DESIGN.md "Distributed particles"): a particle array
sharded over the first two axes stays on the device that owns its lattice site. Each
device deposits its particles into a local mesh padded by `halo` cells on every sharded
axis; the padding is then sent to the neighbouring devices (`lax.ppermute`) and added to
their cells. Reading goes the other way: each device borrows `halo` cells from its
neighbours and interpolates locally. A particle whose CIC cloud leaves the padded block
is counted; a non-zero count raises through `eqx.error_if` (mass is never dropped: such a
cloud is clamped to the block edge, so the error is the only thing that changes).

Design decision 6: every deposit and interpolation in the package goes through
`cic_paint` / `cic_read`, so a faster kernel can replace `_deposit` / `_gather` alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float

from ._fourier import cic_deconvolve
from ._linear import with_kernels
from ._pallas_cic import pallas_available, pallas_cic
from ._pallas_cic import width as pallas_width

__all__ = ["CIC_METHODS", "DEFAULT_HALO", "cic_paint", "cic_read", "default_cic_method"]

# Default halo width in cells (on each side of a device's block, on each sharded axis),
# clipped to the block size. Sized from the expected displacement: at z = 0 the linear
# 1-D rms displacement of Planck18 LCDM is sigma ~ 6 Mpc/h and the largest of ~10^7
# particles reaches ~5 sigma ~ 30 Mpc/h; a particle may move up to `halo - 1` cells, so
# 16 cells cover z = 0 for cells of >= 2 Mpc/h (e.g. 256^3 in 512 Mpc/h). Finer cells
# need a wider halo (pass `halo=`); the overflow check says so when it is too small.
DEFAULT_HALO = 16


# -------------------------------------------------------------------------------------
# Layout: how an array is split over devices
# -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Layout:
    """Device layout of a lattice/mesh array sharded over its first two axes."""

    mesh: Any  # jax Mesh or AbstractMesh
    names: tuple[tuple[str, ...], tuple[str, ...]]  # mesh axis names of array axes 0, 1
    sizes: tuple[int, int]  # number of devices along array axes 0, 1

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names[0] + self.names[1]


def _names(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    return tuple(entry)


def _sharding_of(x) -> Any:
    """The sharding carried by `x`'s type (the same rule inside and outside `jit`, as in
    fmt-fields): meshes with explicit axes show their partition spec, auto axes do not."""
    try:
        return jax.typeof(x).sharding
    except (AttributeError, TypeError):  # a NumPy array or a non-array
        return None


def _layout_of(x, name: str) -> _Layout | None:
    """Device layout of `x`, or None when it lives on one device (or its sharding is not
    visible, e.g. auto mesh axes inside `jit`: XLA then partitions the global code)."""
    sharding = _sharding_of(x)
    if not isinstance(sharding, NamedSharding):
        return None
    spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))
    for axis in range(2, x.ndim):
        if spec[axis] is not None:
            raise ValueError(
                f"{name} may be sharded over its first two axes only, got spec {sharding.spec}"
            )
    names = (_names(spec[0]), _names(spec[1]))
    if not names[0] and not names[1]:
        return None
    # Size-1 axes still go through shard_map: explicit-axis types forbid the global
    # reshapes of the one-device path; the local code then wraps periodically (no halo).
    shape = dict(sharding.mesh.shape)
    sizes = tuple(math.prod(shape[n] for n in ns) for ns in names)
    return _Layout(sharding.mesh, names, sizes)


# -------------------------------------------------------------------------------------
# Argument checks (before tracing)
# -------------------------------------------------------------------------------------
def _check_displacement(displacement) -> tuple[int, ...]:
    shape = getattr(displacement, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(
            "displacement must have shape lattice_shape + (3,), i.e. (nx, ny, nz, 3), "
            f"got shape {shape}"
        )
    if not jnp.issubdtype(displacement.dtype, jnp.floating):
        raise TypeError(f"displacement must be a float array, got dtype {displacement.dtype}")
    return tuple(int(n) for n in shape[:3])


def _check_mesh_shape(mesh_shape, lattice_shape) -> tuple[int, int, int]:
    if mesh_shape is None:
        return lattice_shape
    try:
        mesh_shape = tuple(int(n) for n in mesh_shape)
    except TypeError:
        raise TypeError(f"mesh_shape must be a tuple of 3 ints, got {mesh_shape!r}") from None
    if len(mesh_shape) != 3 or any(n < 1 for n in mesh_shape):
        raise ValueError(f"mesh_shape must be 3 positive ints, got {mesh_shape!r}")
    return mesh_shape


def _check_divisible(layout: _Layout | None, lattice_shape, mesh_shape, name: str) -> None:
    if layout is None:
        return
    for axis in range(2):
        p = layout.sizes[axis]
        if lattice_shape[axis] % p or mesh_shape[axis] % p:
            raise ValueError(
                f"{name}: axis {axis} of the lattice ({lattice_shape[axis]}) and of the mesh "
                f"({mesh_shape[axis]}) must be divisible by the {p} devices along it "
                f"(mesh axes {layout.names[axis]})"
            )


def _resolve_halo(halo, layout: _Layout | None, mesh_shape) -> tuple[int, ...]:
    """Halo widths along array axes 0, 1 (0 for an axis that is not split)."""
    if layout is None:
        return (0, 0)
    if halo is None:
        user: tuple[int, ...] | None = None
    elif isinstance(halo, int) and not isinstance(halo, bool):
        user = (halo, halo)
    else:
        try:
            user = tuple(int(h) for h in halo)
        except TypeError:
            raise TypeError(f"halo must be an int or a pair of ints, got {halo!r}") from None
        if len(user) != 2:
            raise ValueError(f"halo must be an int or a pair of ints, got {halo!r}")
    widths = []
    for axis in range(2):
        p = layout.sizes[axis]
        if p == 1:
            widths.append(0)
            continue
        block = mesh_shape[axis] // p
        if user is None:
            widths.append(min(DEFAULT_HALO, block))
            continue
        h = user[axis]
        if h < 1:
            raise ValueError(f"halo must be >= 1 cell on a split axis, got halo={halo!r}")
        if h > block:
            raise ValueError(
                f"halo={halo!r} is larger than the local block along axis {axis} "
                f"({mesh_shape[axis]} cells / {p} devices = {block}); use halo <= {block} "
                "or fewer devices along that axis"
            )
        widths.append(h)
    return tuple(widths)


# -------------------------------------------------------------------------------------
# Local CIC kernels (one device, one block); the only place a deposit happens
# -------------------------------------------------------------------------------------
def _axes(displacement, mesh_shape, lattice_shape, block_shape, halo):
    """Per axis, the lower CIC cell (int32) and the fraction t in [0, 1) of each particle
    of a local block (arrays broadcastable to the block's lattice shape), and whether its
    cloud leaves the padded block.

    Args:
        displacement: (lx, ly, lz, 3) local displacements in mesh cells.
        mesh_shape: global mesh shape (periodic wrap on axes that are not split).
        lattice_shape: global lattice shape (lattice spacing = mesh_shape / lattice_shape).
        block_shape: local (padded) array shape the indices refer to.
        halo: padding on axes 0, 1 (0 = not split: periodic in the global mesh).
    """
    lattice = displacement.shape[:3]  # local block of the lattice
    cells, fracs, outside = [], [], jnp.zeros(lattice, bool)
    for axis in range(3):
        n_mesh, n_lat = mesh_shape[axis], lattice_shape[axis]
        # Lattice site of local particle i: i * n_mesh / n_lat cells from the block origin
        # (blocks of lattice and mesh start at the same point), split exactly into an
        # integer and a fraction so that large meshes keep float32 precision.
        i = jnp.arange(lattice[axis])
        site_int = (i * n_mesh) // n_lat
        site_frac = ((i * n_mesh) % n_lat).astype(displacement.dtype) / n_lat
        shape = [1, 1, 1]
        shape[axis] = lattice[axis]
        d = displacement[..., axis] + site_frac.reshape(shape)
        d_floor = jnp.floor(d)
        cell = site_int.reshape(shape) + d_floor.astype(jnp.int32) + halo_of(halo, axis)
        fracs.append(d - d_floor)
        if halo_of(halo, axis) != 0:
            # Both cells of the cloud must lie in [0, block): otherwise the halo is too small.
            outside = outside | (cell < 0) | (cell + 1 >= block_shape[axis])
        cells.append(cell)
    return cells, fracs, outside


def _corners(displacement, mesh_shape, lattice_shape, block_shape, halo):
    """The 8 CIC corners of each particle, one at a time: a list of (flat cell index,
    weight, d(weight)/d(displacement) as 3 arrays), each broadcast to the lattice shape,
    and the number of particles whose cloud left the padded block.

    Weight of a corner is prod_a u_a with u_a = t_a (offset 1) or 1 - t_a (offset 0);
    d/dt_a flips that factor to +1 or -1 (the floor is locally constant, as in autodiff).
    Cells on a split axis are clamped to the block (mass is never dropped; the count
    reports it), on the others wrapped periodically.
    """
    lattice = displacement.shape[:3]
    cells, fracs, outside = _axes(displacement, mesh_shape, lattice_shape, block_shape, halo)
    corners = []
    for corner in range(8):
        offs = ((corner >> 2) & 1, (corner >> 1) & 1, corner & 1)
        flat = 0
        u = []
        for axis in range(3):
            c = cells[axis] + offs[axis]
            if halo_of(halo, axis) == 0:
                c = jnp.mod(c, mesh_shape[axis])
            else:
                c = jnp.clip(c, 0, block_shape[axis] - 1)  # clamp: never drop mass
            flat = flat * block_shape[axis] + c
            u.append(fracs[axis] if offs[axis] else 1 - fracs[axis])
        sign = [1.0 if o else -1.0 for o in offs]
        weight = u[0] * u[1] * u[2]
        dweight = (sign[0] * u[1] * u[2], u[0] * sign[1] * u[2], u[0] * u[1] * sign[2])
        bc = functools.partial(jnp.broadcast_to, shape=lattice)
        corners.append((bc(flat), bc(weight), tuple(bc(g) for g in dweight)))
    n_out = lax.stop_gradient(jnp.sum(outside, dtype=jnp.int32))
    return corners, n_out


def _stencil(displacement, mesh_shape, lattice_shape, block_shape, halo):
    """The 8 CIC cells and weights stacked: flat indices (8, lx, ly, lz) into the flattened
    block, weights of the same shape, and the number of particles whose cloud left the
    padded block (the reference kernels: one scatter / one gather of all corners)."""
    corners, n_out = _corners(displacement, mesh_shape, lattice_shape, block_shape, halo)
    flat = jnp.stack([c[0] for c in corners])
    weights = jnp.stack([c[1] for c in corners])
    return flat, weights, n_out


def halo_of(halo, axis: int) -> int:
    return halo[axis] if axis < 2 else 0


# Two implementations of the local kernels, equal to float32 rounding (tests compare
# values and gradients):
# - "reference": plain jnp; all 8 corners stacked into one scatter (deposit) or one
#   gather (read), and autodiff differentiates through the stencil, so a gradient keeps
#   the (8, particles) cell indices and weights of every paint and read alive as
#   residuals (~64 bytes per particle per call).
# - "fused": kernels that work one corner at a time: a deposit is 8 scatter-adds into
#   the same mesh, a read a sum of 8 gathers, each corner's index and weight computed
#   elementwise from the displacements (no (8, particles) array is built), and
#   hand-written backward passes that recompute them from the inputs, which are all they
#   keep. The vjp of a deposit is a sum of gathers, the vjp of a read a multi-channel
#   deposit plus a sum of gathers. Leaner and faster on GPUs.
# - "pallas": the same with Pallas (Triton) kernels, one GPU thread per particle doing
#   all 8 corners, with vector atomics (`_pallas_cic.py`): a read's vjp is a gradient
#   pass and a deposit of the cotangent. GPUs only (elsewhere Pallas' interpreter runs
#   it, for tests).
# Both compute the reference's value and vjp (`_linear.with_kernels`): reverse mode runs
# the kernels, forward mode and higher derivatives differentiate the reference, so every
# method has derivatives of every order.
CIC_METHODS = ("reference", "fused", "pallas")
_DEFAULT_METHOD: str | None = None  # None: see default_cic_method


def _pick_method(backend: str, xla_flags: str, pallas: bool) -> str:
    if backend not in ("gpu", "cuda", "rocm"):
        return "reference"
    if "--xla_gpu_deterministic_ops=true" in xla_flags or not pallas:
        return "fused"
    return "pallas"


def default_cic_method() -> str:
    """The local CIC implementation used when `method=None` (see `CIC_METHODS`):
    "pallas" on GPUs, "fused" on GPUs when XLA is asked for deterministic ops
    (`--xla_gpu_deterministic_ops=true`: Pallas' atomics are not) or Pallas' Triton
    backend is missing, "reference" elsewhere."""
    if _DEFAULT_METHOD is not None:
        return _DEFAULT_METHOD
    return _pick_method(jax.default_backend(), os.environ.get("XLA_FLAGS", ""), pallas_available())


def _check_method(method) -> str:
    if method is None:
        return default_cic_method()
    if method not in CIC_METHODS:
        raise ValueError(f"method must be one of {CIC_METHODS} or None, got {method!r}")
    return method


def _deposit(displacement, weights, mesh_shape, lattice_shape, block_shape, halo, method):
    """Scatter-add of CIC clouds into a zero block of `block_shape`."""
    static = (tuple(mesh_shape), tuple(lattice_shape), tuple(block_shape), tuple(halo))
    if method == "reference":
        return _deposit_ref(displacement, weights, *static)
    if weights is not None:
        dtype = jnp.result_type(displacement, weights)
        displacement, weights = displacement.astype(dtype), weights.astype(dtype)
    forward, backward = (
        (_deposit_fused, _deposit_fused_bwd)
        if method == "fused"
        else (_deposit_pallas, _deposit_pallas_bwd)
    )
    paint = with_kernels(
        functools.partial(_deposit_value, static),
        functools.partial(forward, static),
        functools.partial(backward, static),
    )
    n_out = _count_outside(displacement, mesh_shape, lattice_shape, block_shape, halo)
    return paint(displacement, weights), n_out


def _gather(block, displacement, mesh_shape, lattice_shape, halo, method):
    """CIC interpolation of `block` (spatial axes first, then channels) at the particles."""
    static = (tuple(mesh_shape), tuple(lattice_shape), tuple(halo))
    if method == "reference":
        return _gather_ref(block, displacement, *static)
    n_out = _count_outside(displacement, mesh_shape, lattice_shape, block.shape[:3], halo)
    dtype = jnp.result_type(block, displacement)
    table, disp = block.astype(dtype), displacement.astype(dtype)
    channels = tuple(block.shape[3:])
    if method == "fused":
        kernels = (_gather_value, _gather_fused, _gather_fused_bwd)
    else:
        table = _table(table)  # padded once: the backward kernel reads it again
        kernels = (_gather_table_value, _gather_pallas, _gather_pallas_bwd)
    read = with_kernels(*(functools.partial(k, static, channels) for k in kernels))
    return read(table, disp).astype(block.dtype), n_out


def _deposit_ref(displacement, weights, mesh_shape, lattice_shape, block_shape, halo):
    flat, w, n_out = _stencil(displacement, mesh_shape, lattice_shape, block_shape, halo)
    if weights is not None:
        w = w * weights[None]
    out = jnp.zeros(math.prod(block_shape), w.dtype).at[flat.ravel()].add(w.ravel())
    return out.reshape(block_shape), n_out


def _gather_ref(block, displacement, mesh_shape, lattice_shape, halo):
    spatial = block.shape[:3]
    channels = block.shape[3:]
    flat, w, n_out = _stencil(displacement, mesh_shape, lattice_shape, spatial, halo)
    values = block.reshape((math.prod(spatial), *channels))[flat]  # (8, lx, ly, lz, *C)
    w = w.reshape(w.shape + (1,) * len(channels)).astype(values.dtype)
    return jnp.sum(values * w, axis=0), n_out


# The "fused" and "pallas" kernels below are the value and the vjp of the reference
# (`_deposit_value`, `_gather_value`), joined by `_linear.with_kernels`: forward mode and
# second derivatives differentiate the reference, reverse mode runs the kernels.


def _deposit_value(static, displacement, weights):
    return _deposit_ref(displacement, weights, *static)[0]


def _gather_value(static, channels, block, displacement):
    return _gather_ref(block, displacement, *static)[0]


def _scatter_corners(corners, values, n_cells, dtype):
    """Sum over corners of `weight * values` added at the corner's cells of a zero
    (n_cells, *C) array; values (l..., *C) or None (ones)."""
    out = None
    for flat, w, _ in corners:
        upd = w.astype(dtype)
        if values is not None:
            upd = upd.reshape(upd.shape + (1,) * (values.ndim - 3)) * values
        upd = upd.reshape((-1, *upd.shape[3:]))
        if out is None:
            out = jnp.zeros((n_cells, *upd.shape[1:]), dtype)
        out = out.at[flat.reshape(-1)].add(upd)
    return out


def _deposit_fused(static, displacement, weights):
    mesh_shape, lattice_shape, block_shape, halo = static
    corners, _ = _corners(displacement, mesh_shape, lattice_shape, block_shape, halo)
    out = _scatter_corners(corners, weights, math.prod(block_shape), displacement.dtype)
    return out.reshape(block_shape)


def _deposit_fused_bwd(static, displacement, weights, ct):
    mesh_shape, lattice_shape, block_shape, halo = static
    ct_flat = ct.reshape(-1).astype(displacement.dtype)
    corners, _ = _corners(displacement, mesh_shape, lattice_shape, block_shape, halo)
    ct_disp, ct_weights = 0.0, 0.0
    for flat, w, dw in corners:
        vals = ct_flat[flat]
        ct_disp = ct_disp + jnp.stack([vals * g for g in dw], axis=-1)
        if weights is not None:
            ct_weights = ct_weights + vals * w
    if weights is None:
        return ct_disp, None
    return ct_disp * weights[..., None], ct_weights.astype(weights.dtype)


def _gather_fused(static, channels, block, displacement):
    mesh_shape, lattice_shape, halo = static
    spatial = block.shape[:3]
    corners, _ = _corners(displacement, mesh_shape, lattice_shape, spatial, halo)
    table = block.reshape((math.prod(spatial), *channels))
    values = 0.0
    for flat, w, _ in corners:
        w = w.reshape(w.shape + (1,) * len(channels)).astype(block.dtype)
        values = values + w * table[flat]
    return values


def _gather_fused_bwd(static, channels, block, displacement, ct):
    mesh_shape, lattice_shape, halo = static
    spatial = block.shape[:3]
    n_ch = math.prod(channels)
    ct = ct.astype(block.dtype).reshape((*displacement.shape[:3], n_ch))  # (l..., C)
    corners, _ = _corners(displacement, mesh_shape, lattice_shape, spatial, halo)
    # Mesh cotangent: every channel of the cotangent deposited with the CIC weights.
    ct_block = _scatter_corners(corners, ct, math.prod(spatial), block.dtype)
    # Displacement cotangent: sum over corners and channels of value * ct * dw/dd.
    table = block.reshape((math.prod(spatial), n_ch))
    ct_disp = 0.0
    for flat, _, dw in corners:
        proj = jnp.sum(table[flat] * ct, axis=-1)
        ct_disp = ct_disp + jnp.stack([proj * g for g in dw], axis=-1)
    return ct_block.reshape(block.shape), ct_disp.astype(displacement.dtype)


def _count_outside(displacement, mesh_shape, lattice_shape, block_shape, halo):
    """Number of particles whose cloud leaves the padded block (0 without halo)."""
    if not any(halo):
        return jnp.zeros((), jnp.int32)
    _, _, outside = _axes(displacement, mesh_shape, lattice_shape, block_shape, halo)
    return lax.stop_gradient(jnp.sum(outside, dtype=jnp.int32))


def _deposit_pallas(static, displacement, weights):
    block_shape = static[2]
    extra = () if weights is None else (weights,)
    out = pallas_cic("deposit", static, 1, displacement, *extra, has_w=weights is not None)
    return out.reshape(block_shape)


def _deposit_pallas_bwd(static, displacement, weights, ct):
    ct = ct.astype(displacement.dtype)
    if weights is None:
        (ct_disp,) = pallas_cic("paint_bwd", static, 1, displacement, ct)
        return ct_disp.reshape(displacement.shape), None
    ct_disp, ct_w = pallas_cic("paint_bwd", static, 1, displacement, ct, weights, has_w=True)
    return ct_disp.reshape(displacement.shape), ct_w.reshape(weights.shape)


def _table(block):
    """A block's channels as the Pallas kernels read them: (X, Y, Z, width) with the
    channels padded to `width(C)` (one vector load per corner)."""
    n_ch = math.prod(block.shape[3:])
    table = block.reshape((*block.shape[:3], n_ch))
    pad = pallas_width(n_ch) - n_ch
    return jnp.pad(table, ((0, 0),) * 3 + ((0, pad),)) if pad else table


def _gather_table_value(static, channels, table, displacement):
    block = table[..., : math.prod(channels)].reshape(table.shape[:3] + channels)
    return _gather_value(static, channels, block, displacement)


def _gather_static(static, table):
    mesh_shape, lattice_shape, halo = static
    return (mesh_shape, lattice_shape, tuple(table.shape[:3]), halo)


def _gather_pallas(static, channels, table, displacement):
    n_ch = math.prod(channels)
    out = pallas_cic("read", _gather_static(static, table), n_ch, displacement, table)
    return out.reshape(displacement.shape[:3] + channels)


def _gather_pallas_bwd(static, channels, table, displacement, ct):
    n_ch = math.prod(channels)
    ct_disp, ct_table = pallas_cic(
        "read_bwd",
        _gather_static(static, table),
        n_ch,
        displacement,
        table,
        ct.astype(table.dtype),
    )
    # Padding channels of the deposited cotangent are dropped by the pad's transpose.
    return ct_table.reshape(table.shape), ct_disp.reshape(displacement.shape)


# -------------------------------------------------------------------------------------
# Halo exchange (inside shard_map)
# -------------------------------------------------------------------------------------
def _shift(x, names, size, step):
    """Send `x` to the device `step` places further along `names` (periodic)."""
    return lax.ppermute(x, names, [(i, (i + step) % size) for i in range(size)])


def _add_halo(block, layout: _Layout, halo):
    """Fold the padding of a painted block into the neighbours' cells and strip it."""
    for axis in range(2):
        h = halo[axis]
        if h == 0:
            continue
        names, size = layout.names[axis], layout.sizes[axis]
        n = block.shape[axis]
        low = lax.slice_in_dim(block, 0, h, axis=axis)
        high = lax.slice_in_dim(block, n - h, n, axis=axis)
        core = lax.slice_in_dim(block, h, n - h, axis=axis)
        from_prev = _shift(high, names, size, +1)  # previous device's high padding
        from_next = _shift(low, names, size, -1)  # next device's low padding
        # The previous device's high strip lands on our first h cells, the next device's
        # low strip on our last h cells (the two may overlap when h > block / 2).
        m = core.shape[axis]
        pad_prev = [(0, 0)] * block.ndim
        pad_prev[axis] = (0, m - h)
        pad_next = [(0, 0)] * block.ndim
        pad_next[axis] = (m - h, 0)
        block = core + jnp.pad(from_prev, pad_prev) + jnp.pad(from_next, pad_next)
    return block


def _fill_halo(block, layout: _Layout, halo):
    """Pad a block with `halo` cells copied from its neighbours (for reading)."""
    for axis in range(2):
        h = halo[axis]
        if h == 0:
            continue
        names, size = layout.names[axis], layout.sizes[axis]
        n = block.shape[axis]
        low = lax.slice_in_dim(block, 0, h, axis=axis)
        high = lax.slice_in_dim(block, n - h, n, axis=axis)
        before = _shift(high, names, size, +1)  # previous device's last h cells
        after = _shift(low, names, size, -1)  # next device's first h cells
        block = jnp.concatenate([before, block, after], axis=axis)
    return block


def _check_outside(x, n_out, halo):
    """Inside `shard_map`: raise when any particle left the halo (`n_out` is the same on
    every device, so every device raises together and none waits in a collective), and
    poison the block with NaN for `EQX_ON_ERROR=nan` or callers that skip the check."""
    n_out = eqx.error_if(
        n_out,
        n_out > 0,
        "fmt_dynamics: a particle moved further from its lattice site than the halo allows "
        f"(halo={halo} cells on the split axes); its mass would land in the wrong cells. "
        "Pass a larger `halo` (at most the local block size) or use fewer devices along "
        "the split axes.",
    )
    return jnp.where(n_out > 0, jnp.asarray(jnp.nan, x.dtype), x)


def _like(x, layout: _Layout, trailing: int, name: str):
    """`x` laid out like the particles: resharded when it is not split at all."""
    if x is None:
        return None
    own = _layout_of(x, name)
    if own is None:
        return jax.sharding.reshard(x, NamedSharding(layout.mesh, _spec(layout, trailing)))
    if own.names != layout.names:
        raise ValueError(
            f"{name} must be split over the devices like displacement, got mesh axes "
            f"{own.names} and {layout.names}"
        )
    return x


def _spec(layout: _Layout, trailing: int) -> P:
    def entry(ns):
        return None if not ns else (ns[0] if len(ns) == 1 else ns)

    return P(entry(layout.names[0]), entry(layout.names[1]), *([None] * trailing))


# -------------------------------------------------------------------------------------
# Public functions
# -------------------------------------------------------------------------------------
def cic_paint(
    displacement: Float[Array, "nx ny nz 3"],
    mesh_shape: tuple[int, int, int] | None = None,
    *,
    weights: Float[Array, "nx ny nz"] | None = None,
    halo: int | tuple[int, int] | None = None,
    compensate: bool = False,
    method: str | None = None,
) -> Float[Array, "Nx Ny Nz"]:
    """Paint particles on a periodic mesh with the cloud-in-cell (CIC) kernel.

    Particle `(i, j, k)` sits at lattice site `(i, j, k) * mesh_shape / lattice_shape`
    (mesh cells) plus its displacement; each deposits its weight (1 by default) over the
    8 nearest cells with trilinear weights (Hockney & Eastwood 1988). Positions wrap
    periodically. The total mass is the sum of the weights (to rounding), so with
    particles = mesh and unit weights the mesh has mean exactly 1.

    `displacement` may be sharded over its first two axes (a `NamedSharding` on a jax
    `Mesh`, e.g. `P("x", "y")`, any device grid). The particles then stay on their
    devices and are painted with a halo exchange (see the module docstring); the result
    is sharded the same way. Inside `jit` the layout is read from the array type, so use
    a mesh with explicit axes (`jax.make_mesh` default); with auto axes the global code
    runs and XLA partitions it.

    Args:
        displacement: (nx, ny, nz, 3) displacements from the lattice sites, mesh cells.
        mesh_shape: (Nx, Ny, Nz) mesh; default the lattice shape (particles = mesh).
        weights: (nx, ny, nz) particle masses; default 1.
        halo: cells of padding per side on each split axis (int or one per axis 0, 1);
            default `min(DEFAULT_HALO, block)`. A particle may move at most `halo - 1`
            cells from its site along a split axis; further raises (`eqx.error_if`).
            Ignored on one device.
        compensate: deconvolve the CIC window, dividing the mesh's Fourier modes by
            W(k) = prod_i sinc^2(k_i / 2) (k in radians per cell; Jing 2005, p = 2).
        method: local kernel, "reference", "fused" or "pallas" (`CIC_METHODS`: equal
            values and derivatives of every order to rounding; "fused" and "pallas" have
            hand-written vjps that keep no stencil residuals, "pallas" runs Pallas/Triton
            kernels on GPUs); None picks `default_cic_method()`.

    Returns:
        (Nx, Ny, Nz) mesh of painted mass per cell, dtype of `displacement`.

    Raises:
        ValueError: wrong shapes, a mesh or lattice not divisible by the device grid, a
            halo larger than a device's block, or (at run time) a particle beyond the halo.
        TypeError: non-float displacement.

    Example:
        >>> disp = jnp.zeros((8, 8, 8, 3))
        >>> float(cic_paint(disp).mean())
        1.0
    """
    lattice = _check_displacement(displacement)
    mesh_shape = _check_mesh_shape(mesh_shape, lattice)
    method = _check_method(method)
    if weights is not None and tuple(weights.shape) != lattice:
        raise ValueError(
            f"weights must have the lattice shape {lattice}, got shape {tuple(weights.shape)}"
        )
    layout = _layout_of(displacement, "displacement")
    _check_divisible(layout, lattice, mesh_shape, "displacement")
    widths = _resolve_halo(halo, layout, mesh_shape)

    if layout is None:
        rho, _ = _deposit(displacement, weights, mesh_shape, lattice, mesh_shape, (0, 0), method)
    else:
        block = (*(mesh_shape[a] // layout.sizes[a] for a in range(2)), mesh_shape[2])
        padded = (*(block[a] + 2 * widths[a] for a in range(2)), mesh_shape[2])

        def local(disp, w):
            b, n_out = _deposit(disp, w, mesh_shape, lattice, padded, widths, method)
            b = _add_halo(b, layout, widths)
            return _check_outside(b, lax.psum(n_out, layout.all_names), widths)

        weights = _like(weights, layout, 1, "weights")
        in_specs = (_spec(layout, 2), None if weights is None else _spec(layout, 1))
        rho = jax.shard_map(local, mesh=layout.mesh, in_specs=in_specs, out_specs=_spec(layout, 1))(
            displacement, weights
        )
    if compensate:
        rho = cic_deconvolve(rho)
    return rho


def cic_read(
    mesh: Float[Array, "Nx Ny Nz *channels"],
    displacement: Float[Array, "nx ny nz 3"],
    *,
    halo: int | tuple[int, int] | None = None,
    compensate: bool = False,
    method: str | None = None,
) -> Float[Array, "nx ny nz *channels"]:
    """Interpolate a periodic mesh at the particles with the CIC kernel.

    The transpose of `cic_paint`: `sum(cic_paint(d, weights=w) * m) ==
    sum(w * cic_read(m, d))`. The lattice is the one of `cic_paint` (mesh shape taken
    from `mesh`). Sharded inputs (first two axes, same layout for `mesh` and
    `displacement`) are read through a halo borrowed from the neighbouring devices.

    Args:
        mesh: (Nx, Ny, Nz, *channels) values on the mesh; trailing channel axes (e.g. 3
            force components) are read together.
        displacement: (nx, ny, nz, 3) displacements from the lattice sites, mesh cells.
        halo: as in `cic_paint`.
        compensate: deconvolve the CIC window from `mesh` before reading (scalar meshes).
        method: as in `cic_paint`.

    Returns:
        (nx, ny, nz, *channels) interpolated values.

    Raises:
        ValueError: as `cic_paint`, and when `mesh` has fewer than 3 axes or its layout
            differs from the displacement's.
    """
    lattice = _check_displacement(displacement)
    method = _check_method(method)
    if getattr(mesh, "ndim", 0) < 3:
        raise ValueError(f"mesh must have at least 3 axes, got shape {mesh.shape}")
    mesh_shape = tuple(int(n) for n in mesh.shape[:3])
    layout = _layout_of(displacement, "displacement")
    mesh_layout = _layout_of(mesh, "mesh")
    if layout is None and mesh_layout is not None:  # read a split mesh at local particles
        layout = mesh_layout
        displacement = _like(displacement, layout, 2, "displacement")
    _check_divisible(layout, lattice, mesh_shape, "displacement")
    widths = _resolve_halo(halo, layout, mesh_shape)
    if compensate:
        if mesh.ndim != 3:
            raise ValueError(f"compensate=True needs a scalar (3-axis) mesh, got {mesh.shape}")
        mesh = cic_deconvolve(mesh)

    if layout is None:
        values, _ = _gather(mesh, displacement, mesh_shape, lattice, (0, 0), method)
        return values

    trailing = mesh.ndim - 3
    mesh = _like(mesh, layout, trailing, "mesh")

    def local(m, disp):
        padded = _fill_halo(m, layout, widths)
        values, n_out = _gather(padded, disp, mesh_shape, lattice, widths, method)
        return _check_outside(values, lax.psum(n_out, layout.all_names), widths)

    return jax.shard_map(
        local,
        mesh=layout.mesh,
        in_specs=(_spec(layout, 1 + trailing), _spec(layout, 2)),
        out_specs=_spec(layout, 1 + trailing),
    )(mesh, displacement)
