"""Background expansion and distances of a (w0, wa) CDM cosmology with radiation and curvature.

Conventions: `a` is the scale factor (a = 1 today), `E(a) = H(a)/H0`, distances are comoving
and in Mpc/h (the Hubble distance c/H0 is 2997.92458 Mpc/h). The dark-energy density follows
the CPL equation of state w(a) = w0 + wa (1 - a) (Chevallier & Polarski 2001; Linder 2003)
exactly:

    rho_de(a) / rho_de(1) = a^(-3 (1 + w0 + wa)) exp(-3 wa (1 - a)).

Every function is pure, vectorised over `a` (any shape) and differentiable in `a` and in the
cosmological parameters. Nothing is jitted here; callers jit.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .cosmology import Cosmology

__all__ = [
    "E",
    "H",
    "Omega_de_a",
    "Omega_m_a",
    "angular_diameter_distance",
    "comoving_distance",
    "dlnE_dlna",
    "luminosity_distance",
    "scale_factor_of_distance",
    "transverse_comoving_distance",
]

# Comoving distances are integrals over ln a of 1/(a E). The integrand is analytic in ln a
# (a sum of exponentials under a square root that never vanishes), so Gauss-Legendre
# quadrature converges geometrically: with 64 nodes the error on [ln a, 0] is below 1e-14
# relative for z <= 10 and still below 1e-10 down to a = 1e-6 (checked against
# scipy.integrate.quad in the tests). One rule per evaluation point keeps the result exact
# to that level for every a, vectorised and differentiable with no table and no
# interpolation error; the cost is 64 evaluations of E per distance, which is negligible.
_GL_NODES = 64
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_GL_NODES)

# a(chi): a monotone table chi(ln a) inverted with jnp.interp gives a starting point that
# is then polished by Newton steps in ln a on the exact quadrature. Newton converges
# quadratically; from the table's ~1e-5 start, three steps reach machine precision. Because
# the last steps run at the converged point, their derivative is the implicit-function one,
# d ln a / d theta = -(d chi / d theta) / (d chi / d ln a), so gradients are exact too.
_INVERSE_TABLE_SIZE = 512
_NEWTON_STEPS = 3


def _check_scale_factor(a: Any, name: str = "a") -> None:
    """Raise for concrete scale factors that are non-finite or not positive."""
    if isinstance(a, jax.core.Tracer):
        return
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a number or array of numbers, got {a!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {a!r}")
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0, got {a!r}")


def _de_density_ratio(cosmo: Cosmology, a):
    """rho_de(a) / rho_de(1) for CPL dark energy (exact integral of w(a))."""
    return jnp.exp(-3.0 * (1.0 + cosmo.w0 + cosmo.wa) * jnp.log(a) - 3.0 * cosmo.wa * (1.0 - a))


def _E2(cosmo: Cosmology, a):
    return (
        cosmo.Omega_r / a**4
        + cosmo.Omega_m / a**3
        + cosmo.Omega_k / a**2
        + cosmo.Omega_de * _de_density_ratio(cosmo, a)
    )


def E(cosmo: Cosmology, a: Any) -> jax.Array:
    """Dimensionless Hubble rate E(a) = H(a)/H0.

    E² = Ω_r a⁻⁴ + Ω_m a⁻³ + Ω_k a⁻² + Ω_de ρ_de(a)/ρ_de(1), with CPL dark energy
    (Chevallier & Polarski 2001; Linder 2003) and radiation when `include_radiation`.

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, > 0.

    Returns:
        E(a), same shape as `a`.

    Raises:
        ValueError: a concrete `a` is not finite or not positive.
    """
    _check_scale_factor(a)
    return jnp.sqrt(_E2(cosmo, jnp.asarray(a, dtype=float)))


def dlnE_dlna(cosmo: Cosmology, a: Any) -> jax.Array:
    """Logarithmic derivative d ln E / d ln a (appears in the growth equations).

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, > 0.

    Returns:
        d ln E / d ln a, same shape as `a` (−3/2 in matter domination, −2 in radiation).
    """
    _check_scale_factor(a)
    a = jnp.asarray(a, dtype=float)
    w = cosmo.w0 + cosmo.wa * (1.0 - a)
    dE2 = (
        -4.0 * cosmo.Omega_r / a**4
        - 3.0 * cosmo.Omega_m / a**3
        - 2.0 * cosmo.Omega_k / a**2
        - 3.0 * (1.0 + w) * cosmo.Omega_de * _de_density_ratio(cosmo, a)
    )
    return 0.5 * dE2 / _E2(cosmo, a)


def H(cosmo: Cosmology, a: Any) -> jax.Array:
    """Hubble rate H(a) in km/s/(Mpc/h), i.e. 100 E(a).

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, > 0.

    Returns:
        H(a) in km/s/(Mpc/h), same shape as `a`.
    """
    return 100.0 * E(cosmo, a)


def Omega_m_a(cosmo: Cosmology, a: Any) -> jax.Array:
    """Matter density parameter at `a`: Ω_m a⁻³ / E²(a).

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, > 0.

    Returns:
        Ω_m(a), same shape as `a`.
    """
    _check_scale_factor(a)
    a = jnp.asarray(a, dtype=float)
    return cosmo.Omega_m / a**3 / _E2(cosmo, a)


def Omega_de_a(cosmo: Cosmology, a: Any) -> jax.Array:
    """Dark-energy density parameter at `a`: Ω_de ρ_de(a)/ρ_de(1) / E²(a).

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, > 0.

    Returns:
        Ω_de(a), same shape as `a`.
    """
    _check_scale_factor(a)
    a = jnp.asarray(a, dtype=float)
    return cosmo.Omega_de * _de_density_ratio(cosmo, a) / _E2(cosmo, a)


def _chi_over_dh(cosmo: Cosmology, a):
    """chi(a) / (c/H0) = int_{ln a}^0 dlna' / (a' E(a')), Gauss-Legendre in ln a."""
    lna = jnp.log(a)[..., None]
    half = 0.5 * (0.0 - lna)  # half-width of [ln a, 0] (+0.0, not -0.0, at a = 1)
    x = half * (jnp.asarray(_GL_X) - 1.0)  # nodes mapped to [ln a, 0]
    ax = jnp.exp(x)
    integrand = 1.0 / (ax * jnp.sqrt(_E2(cosmo, ax)))
    return half[..., 0] * jnp.sum(jnp.asarray(_GL_W) * integrand, axis=-1)


def comoving_distance(cosmo: Cosmology, a: Any) -> jax.Array:
    """Line-of-sight comoving distance χ(a) = (c/H0) ∫_a^1 da' / (a'² E(a')).

    Computed with a 64-node Gauss-Legendre rule in ln a per point (exact to ~1e-14 relative
    for z ≤ 10; see the module comment), so it is vectorised, differentiable and has no
    interpolation error.

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, in (0, 1] (a > 1 gives a negative distance).

    Returns:
        χ in Mpc/h, same shape as `a`.

    Raises:
        ValueError: a concrete `a` is not finite or not positive.
    """
    _check_scale_factor(a)
    a = jnp.asarray(a, dtype=float)
    return cosmo.hubble_distance * _chi_over_dh(cosmo, a)


def scale_factor_of_distance(cosmo: Cosmology, chi: Any, *, a_min: float = 1e-4) -> jax.Array:
    """Scale factor a(χ) at comoving distance χ: the inverse of `comoving_distance`.

    A table of χ on `512` points uniform in ln a over [`a_min`, 1] is inverted with
    `jnp.interp` for a first guess; three Newton steps in ln a on the exact quadrature then
    reach machine precision. Gradients (w.r.t. χ and the cosmology) are those of the implicit
    function, d ln a/dθ = −(∂χ/∂θ)/(∂χ/∂ ln a).

    Args:
        cosmo: the cosmology.
        chi: comoving distance in Mpc/h, any shape, in [0, χ(a_min)].
        a_min: smallest scale factor covered (keyword, static).

    Returns:
        a(χ), same shape as `chi`.

    Raises:
        ValueError: a concrete `chi` is negative or not finite, or `a_min` not in (0, 1).
    """
    if not (isinstance(a_min, int | float) and 0.0 < a_min < 1.0):
        raise ValueError(f"a_min must be a float in (0, 1), got {a_min!r}")
    if not isinstance(chi, jax.core.Tracer):
        arr = np.asarray(chi)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"chi must be finite, got {chi!r}")
        if np.any(arr < 0):
            raise ValueError(f"chi must be >= 0, got {chi!r}")
    chi = jnp.asarray(chi, dtype=float)
    dh = cosmo.hubble_distance
    target = chi / dh

    lna_grid = jnp.linspace(0.0, np.log(a_min), _INVERSE_TABLE_SIZE)
    chi_grid = _chi_over_dh(cosmo, jnp.exp(lna_grid))  # increasing along the grid
    lna = jax.lax.stop_gradient(jnp.interp(target, chi_grid, lna_grid))
    for _ in range(_NEWTON_STEPS):
        a = jnp.exp(lna)
        resid = _chi_over_dh(cosmo, a) - target
        dchi_dlna = -1.0 / (a * jnp.sqrt(_E2(cosmo, a)))
        lna = lna - resid / dchi_dlna
    return jnp.exp(lna)


def _sinn_over_x(omega_k, x):
    """S_k(x)/x with S_k = sinh(√Ω_k x)/√Ω_k (open), sin(√−Ω_k x)/√−Ω_k (closed), x (flat).

    Written as a function of u = Ω_k x² so that Ω_k = 0 is smooth for values and gradients;
    near u = 0 a Taylor series replaces the ratio (double-`where` keeps NaNs out of grads).
    """
    u = omega_k * x**2
    small = jnp.abs(u) < 1e-4
    u_safe = jnp.where(small, 1.0, u)
    s_pos = jnp.sqrt(jnp.where(u_safe > 0, u_safe, 1.0))
    s_neg = jnp.sqrt(jnp.where(u_safe < 0, -u_safe, 1.0))
    exact = jnp.where(u_safe > 0, jnp.sinh(s_pos) / s_pos, jnp.sin(s_neg) / s_neg)
    series = 1.0 + u / 6.0 + u**2 / 120.0 + u**3 / 5040.0
    return jnp.where(small, series, exact)


def transverse_comoving_distance(cosmo: Cosmology, a: Any) -> jax.Array:
    """Transverse comoving distance D_M(a) (Hogg 1999, eq. 16), in Mpc/h.

    D_M = (c/H0)/√Ω_k sinh(√Ω_k χ/(c/H0)) for Ω_k > 0, the sine for Ω_k < 0 and χ for a
    flat universe; smooth (and differentiable) through Ω_k = 0.

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, in (0, 1].

    Returns:
        D_M in Mpc/h, same shape as `a`.
    """
    chi = comoving_distance(cosmo, a)
    x = chi / cosmo.hubble_distance
    return chi * _sinn_over_x(cosmo.Omega_k, x)


def angular_diameter_distance(cosmo: Cosmology, a: Any) -> jax.Array:
    """Angular-diameter distance D_A = a D_M (Hogg 1999, eq. 18), in Mpc/h.

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, in (0, 1].

    Returns:
        D_A in Mpc/h, same shape as `a`.
    """
    return jnp.asarray(a, dtype=float) * transverse_comoving_distance(cosmo, a)


def luminosity_distance(cosmo: Cosmology, a: Any) -> jax.Array:
    """Luminosity distance D_L = D_M / a (Hogg 1999, eq. 21), in Mpc/h.

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, in (0, 1].

    Returns:
        D_L in Mpc/h, same shape as `a`.
    """
    return transverse_comoving_distance(cosmo, a) / jnp.asarray(a, dtype=float)
