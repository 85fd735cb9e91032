"""Particle-mesh gravitational forces, F = -∇∇⁻²δ in grid units.

The particles are painted with CIC, the density contrast is transformed with fmt-fields'
distributed FFT, multiplied by the force kernel, transformed back (one mesh per component)
and read at the particles with CIC through the same halo. With the equations of motion in
the scale factor (dx/da = p / (a³E), dp/da = F / (a²E)) the physical acceleration is
`1.5 * Omega_m * pm_forces(...)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._fourier import (
    GRADIENTS,
    fd4_gradient,
    fft,
    first_derivative,
    ifft,
    inverse_laplacian_kernel,
    is_split,
    sharding,
    wavevectors_cells,
)
from ._linear import linear_call
from .painting import (
    _check_displacement,
    _check_mesh_shape,
    _layout_of,
    cic_paint,
    cic_read,
)

__all__ = ["force_mesh", "pm_forces"]


def _check_options(gradient, r_split):
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if isinstance(r_split, int | float) and (r_split < 0 or r_split != r_split):
        raise ValueError(f"r_split must be >= 0 (cells), got {r_split!r}")


def force_mesh(
    delta: Float[Array, "X Y Z"],
    *,
    r_split: float = 0.0,
    compensate: bool = False,
    gradient: str = "fd4",
) -> Float[Array, "X Y Z 3"]:
    """The force field -∇∇⁻²δ on the mesh of a density contrast, grid units.

    Args:
        delta: (X, Y, Z) density contrast; may be sharded (the result is sharded alike).
        r_split: long-range Gaussian split scale in cells: the kernel is multiplied by
            exp(-k² r_split²) (k in radians per cell); 0 for the full PM force.
        compensate: divide by W(k)² with W the CIC window (one for painting, one for
            reading the force back at the particles).
        gradient: "fd4" (4-point finite difference, i (8 sin k - sin 2k) / 6, JaxPM's and
            FastPM's default) or "exact" (i k). The inverse Laplacian is exact, -1/k².

    Returns:
        (X, Y, Z, 3) force components in cells (accelerations per unit 1.5 Ω_m).

    Raises:
        ValueError: `delta` is not 3-D, or an unknown `gradient` or negative `r_split`.
    """
    if getattr(delta, "ndim", None) != 3:
        raise ValueError(f"delta must be a 3-D mesh, got shape {getattr(delta, 'shape', None)}")
    _check_options(gradient, r_split)
    return _force_mesh(delta, r_split, compensate, gradient)


def _potential(delta, r_split, compensate):
    """The spectrum of φ = ∇⁻²δ, with the optional long-range split and CIC compensation:
    a convolution with a real kernel even in k, so δ ↦ φ is a symmetric linear map."""
    shape = tuple(delta.shape)
    real = sharding(delta)
    dtype = jnp.finfo(delta.dtype).dtype
    pot_k = fft(delta) * inverse_laplacian_kernel(shape, real, dtype)
    if compensate or r_split:
        pot_k = pot_k * _smoothing(shape, real, dtype, r_split, compensate)
    return pot_k


def _smoothing(shape, real, dtype, r_split, compensate):
    kx, ky, kz = wavevectors_cells(shape, real, dtype)
    out = 1.0
    if r_split:
        out = jnp.exp(-(kx**2 + ky**2 + kz**2) * r_split**2)
    if compensate:
        window = (jnp.sinc(kx / (2 * jnp.pi)) * jnp.sinc(ky / (2 * jnp.pi))) ** 2
        window = window * jnp.sinc(kz / (2 * jnp.pi)) ** 2
        out = out / window**2
    return out


def _fd4_forces(delta, r_split, compensate):
    """-∇φ with the "fd4" stencil in real space (one device)."""
    phi = ifft(_potential(delta, r_split, compensate), delta.shape)
    return jnp.stack([-fd4_gradient(phi, axis) for axis in range(3)], axis=-1)


def _fd4_forces_vjp(ct, r_split, compensate):
    # The stencil is antisymmetric (the transpose of -D is D) and δ ↦ φ symmetric, so
    # the vjp is the potential of Σ_c D_c ct_c: no residuals (JAX's own vjp keeps the
    # complex kernel of every step). The cotangent's components are split into planes
    # first (the barrier keeps XLA from fusing the split into the stencil's strided
    # reads). H200, 40-step 256^3 FastPM gradient: the barrier 310 -> 304 ms; dropping
    # the residual, with the KDK step's barrier, 304 -> 299 ms.
    planes = jax.lax.optimization_barrier([ct[..., c] for c in range(3)])
    source = sum(fd4_gradient(plane, axis) for axis, plane in enumerate(planes))
    return ifft(_potential(source, r_split, compensate), source.shape)


def _fd4_forces_linear(delta, r_split: float, compensate: bool):
    """`_fd4_forces` as a linear map with the hand-written transpose above (every
    derivative order, both modes; `r_split` a Python number)."""
    return linear_call(
        lambda _, d: _fd4_forces(d, r_split, compensate),
        lambda _, ct: _fd4_forces_vjp(ct, r_split, compensate),
        (),
        delta,
    )


def _force_mesh(delta, r_split, compensate, gradient):
    """`force_mesh` without the checks."""
    shape = tuple(delta.shape)
    # F = -∇φ with φ = ∇⁻²δ. The "fd4" derivative is a 5-point stencil: on one device
    # it is applied to φ in real space (one inverse FFT instead of three, and its vjp one
    # forward FFT instead of three; the same operator to rounding); on split meshes in
    # Fourier space (no halo exchange needed).
    if gradient == "fd4" and not is_split(delta):
        if isinstance(r_split, int | float):
            return _fd4_forces_linear(delta, float(r_split), bool(compensate))
        return _fd4_forces(delta, r_split, compensate)
    real = sharding(delta)
    dtype = jnp.finfo(delta.dtype).dtype
    pot_k = _potential(delta, r_split, compensate)
    comps = [
        ifft(-first_derivative(shape, axis, real, dtype, gradient) * pot_k, shape)
        for axis in range(3)
    ]
    return jnp.stack(comps, axis=-1)


def pm_forces(
    displacement: Float[Array, "nx ny nz 3"],
    *,
    mesh_shape: tuple[int, int, int] | None = None,
    r_split: float = 0.0,
    compensate: bool = False,
    gradient: str = "fd4",
    halo: int | tuple[int, int] | None = None,
    cic_method: str | None = None,
) -> Float[Array, "nx ny nz 3"]:
    """PM accelerations at the particles, -∇∇⁻²δ in grid units.

    δ is the CIC density contrast of the particles on `mesh_shape`
    (`cic_paint(...) * N_cells / N_particles - 1`). Multiply by 1.5 Ω_m for dp/da · a²E.
    Works on one device and on particles sharded over their first two axes (then the mesh
    must also suit the distributed FFT: X and Y divisible by the devices along axis 0, Y
    and Z by those along axis 1).

    Args:
        displacement: (nx, ny, nz, 3) displacements from the lattice sites, mesh cells.
        mesh_shape: force mesh (X, Y, Z); default the lattice shape (particles = mesh).
        r_split: long-range Gaussian split, exp(-k² r_split²), r_split in cells; 0 = none.
        compensate: deconvolve the CIC window of painting and of reading (W(k)²).
        gradient: "fd4" (default, as JaxPM 0.1.6) or "exact"; see `force_mesh`.
        halo: halo width for the sharded paint and read; see `cic_paint`.
        cic_method: local CIC kernels of the paint and the read (`cic_paint`'s `method`);
            None for `default_cic_method()`.

    Returns:
        (nx, ny, nz, 3) accelerations in cells (same dtype and layout as `displacement`).

    Raises:
        ValueError: bad shapes or options, a mesh not divisible by the device grid, a halo
            wider than a device's block, or (at run time) a particle beyond the halo.

    Example:
        >>> disp = 0.1 * jax.random.normal(jax.random.key(0), (16, 16, 16, 3))
        >>> pm_forces(disp).shape
        (16, 16, 16, 3)
    """
    lattice = _check_displacement(displacement)
    mesh_shape = _check_mesh_shape(mesh_shape, lattice)
    _check_options(gradient, r_split)
    layout = _layout_of(displacement, "displacement")
    if layout is not None:
        p0, p1 = layout.sizes
        nx, ny, nz = mesh_shape
        if nx % p0 or ny % p0 or ny % p1 or nz % p1:
            raise ValueError(
                f"mesh_shape {mesh_shape} does not suit the distributed FFT on the device grid "
                f"{p0}x{p1} of displacement: X and Y must be divisible by {p0}, Y and Z by {p1}"
            )
    rho = cic_paint(displacement, mesh_shape, halo=halo, method=cic_method)
    mean = (lattice[0] * lattice[1] * lattice[2]) / (mesh_shape[0] * mesh_shape[1] * mesh_shape[2])
    delta = rho / mean - 1.0
    forces = _force_mesh(delta, r_split, compensate, gradient)
    return cic_read(forces, displacement, halo=halo, method=cic_method)
