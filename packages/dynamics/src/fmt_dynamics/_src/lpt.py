"""First- and second-order Lagrangian perturbation theory (1LPT, 2LPT) initial conditions.

Conventions (fmt-cosmo's growth module; Scoccimarro 1998, Bouchet et al. 1995): with the
linear density contrast δ_L(q) at a = 1 on the lattice and φ = ∇⁻²δ_L,

    x(q, a) = q + D1(a) ψ1(q) + D2(a) ψ2(q),
    ψ1 = -∇φ,                        (so -∇·ψ1 = δ_L)
    ∇·ψ2 = Σ_{i<j} (φ_ii φ_jj - φ_ij²) ≡ S,   ψ2 = ∇∇⁻² S,

with D1(1) = 1 and D2 ≈ -3/7 D1² (negative: the sign of the -3/7 lives in D2, not in ψ2).
Momenta follow the equations of motion's p = a³ E dx/da:

    p = a² E(a) [f1(a) D1 ψ1 + f2(a) D2 ψ2],   f_n = d ln D_n / d ln a.

Everything is in grid units (displacements in cells of δ_L's mesh, derivatives in
radians per cell), so the box size cancels. Particles = the mesh of δ_L.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Float

from fmt_cosmo import (
    E,
    growth_factor,
    growth_factor_second,
    growth_rate,
    growth_rate_second,
    growth_table,
)

from ._fourier import (
    GRADIENTS,
    fft,
    first_derivative,
    ifft,
    inverse_laplacian_kernel,
    second_derivative,
    sharding,
)

__all__ = ["lpt", "lpt_displacements"]

_PAIRS = ((0, 1), (1, 2), (0, 2))


def _check_field(linear_density) -> tuple[int, ...]:
    shape = getattr(linear_density, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(f"linear_density must be a real 3-D mesh (X, Y, Z), got shape {shape}")
    if not jnp.issubdtype(linear_density.dtype, jnp.floating):
        raise TypeError(
            f"linear_density must be a real float mesh, got dtype {linear_density.dtype}"
        )
    return tuple(int(n) for n in shape)


def _check_common(order, gradient, box_size):
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if box_size is not None:
        try:
            box = [float(b) for b in jnp.broadcast_to(jnp.asarray(box_size), (3,))]
        except (TypeError, ValueError):
            msg = f"box_size must be 1 or 3 positive numbers, got {box_size!r}"
            raise ValueError(msg) from None
        if not all(b > 0 for b in box):
            raise ValueError(f"box_size must be 1 or 3 positive numbers, got {box_size!r}")


def lpt_displacements(
    linear_density: Float[Array, "X Y Z"],
    *,
    order: int = 2,
    gradient: str = "exact",
) -> tuple[Float[Array, "X Y Z 3"], Float[Array, "X Y Z 3"] | None]:
    """The growth-independent LPT fields ψ1 and ψ2 (see the module docstring).

    Args:
        linear_density: (X, Y, Z) linear density contrast at a = 1; may be sharded.
        order: 1 (ψ2 returned as None) or 2.
        gradient: "exact" (spectral, i k; default) or "fd4" (JaxPM's finite difference,
            also used for second derivatives, as JaxPM's `lpt2_source`).

    Returns:
        (ψ1, ψ2), each (X, Y, Z, 3) in cells, sharded like `linear_density`.
    """
    shape = _check_field(linear_density)
    _check_common(order, gradient, None)
    real = sharding(linear_density)
    dtype = jnp.finfo(linear_density.dtype).dtype
    phi_k = fft(linear_density) * inverse_laplacian_kernel(shape, real, dtype)

    def grad_field(pot_k):  # -∇ of a potential given by its spectrum
        return jnp.stack(
            [
                ifft(-first_derivative(shape, axis, real, dtype, gradient) * pot_k, shape)
                for axis in range(3)
            ],
            axis=-1,
        )

    psi1 = grad_field(phi_k)
    if order == 1:
        return psi1, None

    def hessian(i, j):
        return ifft(second_derivative(shape, i, j, real, dtype, gradient) * phi_k, shape)

    diag = [hessian(i, i) for i in range(3)]
    source = diag[0] * diag[1] + diag[1] * diag[2] + diag[2] * diag[0]
    for i, j in _PAIRS:
        source = source - hessian(i, j) ** 2
    # ψ2 = ∇∇⁻²S = -(-∇ ∇⁻²S).
    psi2 = -grad_field(fft(source) * inverse_laplacian_kernel(shape, real, dtype))
    return psi1, psi2


def lpt(
    cosmo: Any,
    linear_density: Float[Array, "X Y Z"],
    scale_factor: Any,
    *,
    order: int = 2,
    box_size: Any = None,
    table: Any = None,
    gradient: str = "exact",
) -> tuple[Float[Array, "X Y Z 3"], Float[Array, "X Y Z 3"]]:
    """LPT displacements and momenta of particles on the mesh of `linear_density`.

    Args:
        cosmo: an `fmt_cosmo.Cosmology` (may be traced: gradients flow through D1, D2,
            f1, f2 and E).
        linear_density: (X, Y, Z) linear density contrast at a = 1 in real space (e.g.
            `fmt_fields.linear_field(noise, cosmo, box_size)`); may be sharded over its
            first two axes, the outputs are sharded alike. One particle per cell.
        scale_factor: scalar a at which the particles are placed.
        order: 1 (Zel'dovich) or 2 (2LPT).
        box_size: box side(s) in Mpc/h. Not needed (everything is in cells, the box
            cancels); accepted for a signature uniform with fmt-fields and validated.
        table: an `fmt_cosmo.growth_table(cosmo)`; built here when None.
        gradient: "exact" (default) or "fd4" (reproduces JaxPM's `lpt`).

    Returns:
        (displacement, momentum), each (X, Y, Z, 3): displacement from the lattice in
        cells, momentum p = a³ E dx/da in cells (module docstring).

    Raises:
        ValueError: `linear_density` not 3-D, `order` not 1 or 2, non-scalar or
            non-positive `scale_factor`, unknown `gradient`, bad `box_size`.
        TypeError: `linear_density` not a real float array.

    Example:
        >>> cosmo = fmt_cosmo.Planck18()
        >>> noise = fmt_fields.white_noise(jax.random.key(0), (32, 32, 32))
        >>> delta = fmt_fields.linear_field(noise, cosmo, 256.0)
        >>> disp, mom = lpt(cosmo, delta, 0.1, order=2)
    """
    _check_field(linear_density)
    _check_common(order, gradient, box_size)
    if jnp.ndim(scale_factor) != 0:
        raise ValueError(f"scale_factor must be a scalar, got shape {jnp.shape(scale_factor)}")
    if not hasattr(scale_factor, "aval") and not float(scale_factor) > 0:
        raise ValueError(f"scale_factor must be > 0, got {scale_factor!r}")
    if table is None:
        table = growth_table(cosmo)
    psi1, psi2 = lpt_displacements(linear_density, order=order, gradient=gradient)
    dtype = linear_density.dtype
    a = scale_factor

    def cast(x):
        return jnp.asarray(x, dtype)

    d1 = growth_factor(cosmo, a, table)
    p_factor = a**2 * E(cosmo, a)
    disp = cast(d1) * psi1
    mom = cast(p_factor * growth_rate(cosmo, a, table) * d1) * psi1
    if order == 2:
        d2 = growth_factor_second(cosmo, a, table)
        disp = disp + cast(d2) * psi2
        mom = mom + cast(p_factor * growth_rate_second(cosmo, a, table) * d2) * psi2
    return disp, mom
