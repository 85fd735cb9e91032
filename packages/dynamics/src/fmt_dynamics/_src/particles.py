"""Particles on a regular Lagrangian lattice: sites, positions, density and P(k).

A particle array has shape `lattice_shape + (3,)`; particle (i, j, k) sits at the lattice
site (i, j, k) * mesh_shape / lattice_shape in mesh cells (particles = mesh: the site is
the cell index). The state stores displacements from the sites (pmwd's convention), which
stay precise in float32 however large the mesh; `positions` adds the sites back.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from fmt_fields import BinnedSpectrum, power_spectrum

from .painting import _check_displacement, _check_mesh_shape, cic_paint

__all__ = [
    "density_from_displacement",
    "lattice_sites",
    "positions",
    "power_spectrum_of_particles",
]


def lattice_sites(
    lattice_shape: tuple[int, int, int],
    mesh_shape: tuple[int, int, int] | None = None,
    *,
    sharding: Any = None,
    dtype: Any = None,
) -> Float[Array, "nx ny nz 3"]:
    """Lattice sites q in mesh cells, shape `lattice_shape + (3,)`.

    Args:
        lattice_shape: (nx, ny, nz) particles per axis.
        mesh_shape: mesh the sites are measured in; default `lattice_shape`.
        sharding: optional sharding of the result (e.g. `NamedSharding(mesh, P("x", "y"))`).
        dtype: float dtype; default float64 with x64 enabled, else float32.

    Returns:
        (nx, ny, nz, 3) array with q[i, j, k] = (i, j, k) * mesh_shape / lattice_shape.
    """
    lattice = _check_mesh_shape(lattice_shape, None)
    mesh_shape = _check_mesh_shape(mesh_shape, lattice)
    dtype = jnp.zeros((), float).dtype if dtype is None else jnp.dtype(dtype)
    axes = [jnp.arange(n, dtype=dtype) * (m / n) for n, m in zip(lattice, mesh_shape, strict=True)]
    q = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)
    return q if sharding is None else jax.device_put(q, sharding)


def positions(
    displacement: Float[Array, "nx ny nz 3"],
    mesh_shape: tuple[int, int, int] | None = None,
) -> Float[Array, "nx ny nz 3"]:
    """Positions in mesh cells, lattice site + displacement wrapped into [0, mesh_shape).

    Args:
        displacement: (nx, ny, nz, 3) displacements, mesh cells; may be sharded.
        mesh_shape: the mesh (periodic box) in cells; default the lattice shape.

    Returns:
        (nx, ny, nz, 3) positions in [0, N_i) cells, same layout as `displacement`.
    """
    lattice = _check_displacement(displacement)
    mesh_shape = _check_mesh_shape(mesh_shape, lattice)
    dtype = displacement.dtype
    out = []
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = lattice[axis]
        site = jnp.arange(lattice[axis], dtype=dtype) * (mesh_shape[axis] / lattice[axis])
        x = site.reshape(shape) + displacement[..., axis]
        out.append(jnp.mod(x, jnp.asarray(mesh_shape[axis], dtype)))
    return jnp.stack(out, axis=-1)


def density_from_displacement(
    displacement: Float[Array, "nx ny nz 3"],
    mesh_shape: tuple[int, int, int] | None = None,
    *,
    compensate: bool = False,
    halo: int | tuple[int, int] | None = None,
) -> Float[Array, "X Y Z"]:
    """Density contrast δ = ρ / ρ̄ - 1 of the particles, CIC-painted on `mesh_shape`.

    Args:
        displacement: (nx, ny, nz, 3) displacements, mesh cells; may be sharded.
        mesh_shape: mesh (X, Y, Z); default the lattice shape.
        compensate: deconvolve the CIC window (see `cic_paint`).
        halo: see `cic_paint`.

    Returns:
        (X, Y, Z) density contrast, mean zero, sharded like `displacement`.
    """
    lattice = _check_displacement(displacement)
    mesh_shape = _check_mesh_shape(mesh_shape, lattice)
    rho = cic_paint(displacement, mesh_shape, halo=halo, compensate=compensate)
    mean = (lattice[0] * lattice[1] * lattice[2]) / (mesh_shape[0] * mesh_shape[1] * mesh_shape[2])
    return rho / mean - 1.0


def power_spectrum_of_particles(
    displacement: Float[Array, "nx ny nz 3"],
    box_size: Any,
    *,
    mesh_shape: tuple[int, int, int] | None = None,
    compensate: bool = True,
    k_edges: Any = None,
    halo: int | tuple[int, int] | None = None,
) -> BinnedSpectrum:
    """Power spectrum of the particles' CIC density contrast (fmt-fields' estimator).

    Args:
        displacement: (nx, ny, nz, 3) displacements, mesh cells; may be sharded.
        box_size: box side(s) in Mpc/h (1 or 3 numbers).
        mesh_shape: mesh for painting; default the lattice shape.
        compensate: deconvolve the CIC window before estimating (default True).
        k_edges: bin edges in h/Mpc; default fmt-fields' (width 2π/L up to Nyquist).
        halo: see `cic_paint`.

    Returns:
        `fmt_fields.BinnedSpectrum(k, value, modes)`, P(k) in (Mpc/h)^3.
    """
    delta = density_from_displacement(displacement, mesh_shape, compensate=compensate, halo=halo)
    return power_spectrum(delta, box_size, k_edges=k_edges)
