"""Ludlow et al. (2016) concentration-mass relation for c200c, and NFW helpers, in pure JAX.

The model (Ludlow et al. 2016, MNRAS 460, 1214, eqs. 6-7, with the Einasto alpha = 0.18
mass profile, f = 0.02 and C = 650 of their section 4): the concentration c of a halo of
mass M200c at redshift z solves

    Y(c) = erfc( delta_c [1/D(z_f) - 1/D(z)] / sqrt(2 [sigma^2(f M) - sigma^2(M)]) ),

where Y(c) = M(<r_s) / M(<c r_s) is the Einasto enclosed-mass ratio and the collapse
redshift z_f is defined by the mean density inside r_s, 200 c^3 Y(c) rho_crit(z), being
C rho_crit(z_f).
sigma is the linear top-hat rms at z = 0 of Lagrangian masses at the mean matter density, D
the linear growth factor with D(z=0) = 1 and delta_c = 1.68647.

Two numerical conventions (`convention=`):

* ``"exact"`` (default): the model solved consistently with this package. z_f inverts the
  full E(z) (radiation, curvature, CPL dark energy); D is the growth ODE with radiation
  (`growth_factor`); c is the root of the continuous equation (bisection in ln c, then one
  Newton step whose derivative gives implicit-function gradients).
* ``"colossus"``: colossus' (1.4) `modelLudlow16` numbers. z_f from the flat matter + Lambda
  inversion colossus uses (radiation and curvature ignored, Omega_de = 1 - Omega_m -
  Omega_r - Omega_k kept); colossus' growth factor (the Heath 1977 integral with the
  radiation density added to E^2 as a constant, blended linearly in ln a with the
  Gnedin et al. 2011 matter + radiation formula between z = 5 and 20); and c from linear
  interpolation of the sign change of Y - erfc on colossus' 200-point grid, log-spaced over
  1 <= c <= 100. The grid interpolation alone biases c high by up to 3e-4 and colossus'
  growth differs from the radiation ODE by up to 7e-4 at z ~ 5 (Planck18), which is why this
  is an option and not the default.

Both return NaN where no solution with 1 <= c <= 100 and z_f < 200.01 exists (colossus
returns -1 with mask False there). The model assumes Lambda CDM; (w0, wa) enter only through
E(z) and the growth factor in the exact convention.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .background import _E2, E
from .cosmology import Cosmology
from .growth import GrowthTable, growth_factor
from .growth import growth_table as _build_growth_table
from .power import (
    DELTA_COLLAPSE,
    RHO_CRIT0,
    _amplitude,
    _check_cosmology,
    _check_non_negative,
    _check_positive,
    _check_transfer,
    _sigma2_from_table,
    _sigma2_table,
)

__all__ = [
    "LUDLOW16_CONVENTIONS",
    "concentration_ludlow16",
    "nfw_density",
    "nfw_rho_s",
    "nfw_scale_radius",
]

LUDLOW16_CONVENTIONS = ("exact", "colossus")

# Ludlow et al. (2016), section 4: collapsed fraction f, density constant C, Einasto shape.
_F = 0.02
_C = 650.0
_ALPHA = 0.18
_DELTA = 200.0
# Search range of c (colossus': 1 <= c <= 100) and of the formation redshift (colossus'
# growth-table limit, z_f < 200.01).
_C_MAX = 100.0
_Z_F_MAX = 200.01
# Root finding in u = ln(1 + z_f), bracket width ln(201.01): bisection to 3e-4, then
# safeguarded Newton (quadratic convergence: 1e-7, 1e-14, machine precision). Identical to
# 60 bisection steps to 5e-15 over 1e4 <= M <= 3e16, 0 <= z <= 100 in five cosmologies.
_BISECTION_STEPS = 14
_NEWTON_STEPS = 4
_ROOT_ATOL = 1e-8  # |residual| at the converged root; anything larger is not a root
_COLOSSUS_GRID = np.logspace(0.0, 2.0, 200)

# Einasto enclosed mass M(<r) ∝ P(3/alpha, (2/alpha) (r/r_s)^alpha), P the regularised lower
# incomplete gamma function, P(a, x) = x^a e^-x S(x) / Gamma(a + 1) with the series
# S(x) = sum_n x^n / ((a+1)...(a+n)). 64 terms are exact to 1e-15 for x <= (2/alpha) 100^alpha
# (c <= 100), and the Gamma functions cancel in Y(c) = M(<r_s)/M(<c r_s):
#     q(c) = ln(200 c^3 Y(c) / C) = ln(200/C) + x - x0 + ln S(x0) - ln S(x),  x = x0 c^alpha.
# q is the log of rho_crit(z_f) / rho_crit(z); it and Y depend on c alone. They are tabulated
# once, here, with numpy: Y and ln c on a uniform grid in q (Newton-inverted to 1e-15) with
# exact slopes, read by cubic Hermite interpolation (error < 1e-12).
_EIN_A = 3.0 / _ALPHA
_EIN_X0 = 2.0 / _ALPHA
_EIN_TERMS = 64
_Q_NODES = 2048


def _einasto_q(lnc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q(c) and dq/d ln c (numpy, float64)."""

    def series(x):
        s, ds = np.ones_like(x), np.zeros_like(x)
        for n in range(_EIN_TERMS - 1, 0, -1):
            s, ds = 1.0 + x / (_EIN_A + n) * s, (s + x * ds) / (_EIN_A + n)
        return s, ds

    x = _EIN_X0 * np.exp(_ALPHA * lnc)
    s, ds = series(x)
    s0, _ = series(np.array(_EIN_X0))
    q = np.log(_DELTA / _C) + x - _EIN_X0 + np.log(s0) - np.log(s)
    return q, _ALPHA * x * (1.0 - ds / s)


def _einasto_tables():
    q_max = float(_einasto_q(np.array(np.log(_C_MAX)))[0])
    q = np.linspace(0.0, q_max, _Q_NODES)
    dense = np.linspace(0.0, np.log(_C_MAX), 20001)
    lnc = np.interp(q, _einasto_q(dense)[0], dense)
    for _ in range(6):
        value, slope = _einasto_q(lnc)
        lnc = lnc - (value - q) / slope
    _, slope = _einasto_q(lnc)
    dlnc = 1.0 / slope
    y = np.exp(q - np.log(_DELTA / _C) - 3.0 * lnc)
    return q_max, q[1] - q[0], lnc, dlnc, y, y * (1.0 - 3.0 * dlnc)


_Q_MAX, _Q_STEP, _LNC_OF_Q, _DLNC_DQ, _Y_OF_Q, _DY_DQ = _einasto_tables()
_Q_GRID, _ = _einasto_q(np.log(_COLOSSUS_GRID))
_Y_GRID = np.exp(_Q_GRID - np.log(_DELTA / _C) - 3.0 * np.log(_COLOSSUS_GRID))


def _hermite(values, slopes, x0: float, step: float, x, slopes_right=None):
    """Cubic Hermite interpolation on the uniform grid x0 + step * i (clamped to the ends).

    `slopes` are the derivatives at the left end of each interval and `slopes_right` (if
    given) those at the right end, for functions with kinks at nodes.
    """
    n = values.shape[-1]
    t = (x - x0) / step
    i = jnp.clip(jnp.floor(t).astype(int), 0, n - 2)
    s = jnp.clip(t - i, 0.0, 1.0)
    right = slopes if slopes_right is None else slopes_right
    y0, y1 = values[i], values[i + 1]
    m0 = slopes[i] * step
    m1 = (right[i] if slopes_right is not None else right[i + 1]) * step
    s2, s3 = s * s, s * s * s
    return (
        (2 * s3 - 3 * s2 + 1) * y0
        + (s3 - 2 * s2 + s) * m0
        + (-2 * s3 + 3 * s2) * y1
        + (s3 - s2) * m1
    )


def _einasto_y(q):
    return _hermite(jnp.asarray(_Y_OF_Q), jnp.asarray(_DY_DQ), 0.0, _Q_STEP, q)


def _einasto_lnc(q):
    return _hermite(jnp.asarray(_LNC_OF_Q), jnp.asarray(_DLNC_DQ), 0.0, _Q_STEP, q)


# ----------------------------------------------------------------------------------------------
# Colossus' growth factor, D(a = 1) = 1
# ----------------------------------------------------------------------------------------------
_GL_S, _GL_W = np.polynomial.legendre.leggauss(64)
_GL_S = 0.5 * (_GL_S + 1.0)  # on [0, 1]
_GL_W = 0.5 * _GL_W
_LN_A_BLEND_LO = math.log(1.0 / 21.0)  # z = 20: Gnedin formula above
_LN_A_BLEND_HI = math.log(1.0 / 6.0)  # z = 5: integral formula below
# Table for it: uniform in ln a with nodes on both blend edges (kinks), slopes one-sided.
_CG_STEP = (_LN_A_BLEND_HI - _LN_A_BLEND_LO) / 64
_CG_START = _LN_A_BLEND_LO - _CG_STEP * math.ceil(
    (math.log1p(_Z_F_MAX) + _LN_A_BLEND_LO) / _CG_STEP
)
_CG_NODES = round((_LN_A_BLEND_HI - _CG_START) / _CG_STEP) + math.ceil(-_LN_A_BLEND_HI / _CG_STEP)
_CG_NODES += 2


def _colossus_growth_integral(cosmo: Cosmology, a):
    """5/2 Omega_m E_D(a) int_0^a da' / (a' E_D(a'))^3 with E_D^2 = E^2 - Omega_r a^-4 + Omega_r.

    The Heath (1977) integral as colossus evaluates it: radiation enters E_D as a constant.
    Substituting a' = a s^2 makes the integrand a smooth function of s on [0, 1] (~ s^4 as
    s -> 0), integrated with 64-point Gauss-Legendre (agrees with colossus' adaptive
    quadrature to 1e-10).
    """

    def e_d(x):
        de = jnp.exp(-3.0 * (1.0 + cosmo.w0 + cosmo.wa) * jnp.log(x) - 3.0 * cosmo.wa * (1.0 - x))
        return jnp.sqrt(
            cosmo.Omega_m / x**3 + cosmo.Omega_k / x**2 + cosmo.Omega_de * de + cosmo.Omega_r
        )

    a = jnp.asarray(a)[..., None]
    s = jnp.asarray(_GL_S)
    x = a * s**2
    integrand = 2.0 * a * s / (x * e_d(x)) ** 3
    integral = jnp.sum(integrand * jnp.asarray(_GL_W), axis=-1)
    return 2.5 * cosmo.Omega_m * e_d(a[..., 0]) * integral


def _colossus_growth_branches(cosmo: Cosmology, lna):
    """(integral, blend, early) unnormalised growth factors at ln a."""
    a = jnp.exp(lna)
    d = _colossus_growth_integral(cosmo, a)
    if not cosmo.include_radiation:
        return d, d, d
    a_eq = cosmo.Omega_r / cosmo.Omega_m
    y = a / a_eq
    sq = jnp.sqrt(1.0 + y)
    # Gnedin, Kravtsov & Rudd (2011) eq. 5: matter + radiation growing mode, -> a + 2/3 a_eq.
    term = 2.0 * sq + (2.0 / 3.0 + y) * jnp.log((sq - 1.0) / (sq + 1.0))
    early = a + 2.0 / 3.0 * a_eq + a_eq / (2.0 * math.log(2.0) - 3.0) * term
    weight = (lna - _LN_A_BLEND_LO) / (_LN_A_BLEND_HI - _LN_A_BLEND_LO)
    return d, weight * d + (1.0 - weight) * early, early


def _branch_index(lna):
    return np.where(lna >= _LN_A_BLEND_HI, 0, np.where(lna <= _LN_A_BLEND_LO, 2, 1))


def _colossus_growth(cosmo: Cosmology, a):
    """Colossus' growth factor growthFactorUnnormalized(z) / growthFactorUnnormalized(0).

    The Heath integral below z = 5, the Gnedin et al. (2011) formula above z = 20, linear
    in ln a in between (only with radiation; without, the integral everywhere). Lambda CDM:
    for w != -1 colossus solves an ODE instead.
    """
    lna = jnp.log(jnp.asarray(a, dtype=float))
    d, blend, early = _colossus_growth_branches(cosmo, lna)
    value = jnp.where(lna >= _LN_A_BLEND_HI, d, jnp.where(lna <= _LN_A_BLEND_LO, early, blend))
    return value / _colossus_growth_integral(cosmo, jnp.ones(()))


def _colossus_growth_table(cosmo: Cosmology):
    """Colossus' growth factor and one-sided slopes in ln a on `_CG_NODES` uniform nodes."""
    lna = _CG_START + _CG_STEP * np.arange(_CG_NODES)
    norm = _colossus_growth_integral(cosmo, jnp.ones(()))
    ones = jnp.ones(_CG_NODES)
    branches, slopes = jax.jvp(
        lambda x: _colossus_growth_branches(cosmo, x), (jnp.asarray(lna),), (ones,)
    )
    branches, slopes = jnp.stack(branches) / norm, jnp.stack(slopes) / norm  # (3, nodes)
    node = np.arange(_CG_NODES)
    values = branches[_branch_index(lna), node]
    mid = _branch_index(lna[:-1] + 0.5 * _CG_STEP)  # the branch of each interval
    left = slopes[mid, node[:-1]]
    right = slopes[mid, node[1:]]
    return values, left, right


def _colossus_growth_from_table(table, a):
    values, left, right = table
    return _hermite(values, left, _CG_START, _CG_STEP, jnp.log(a), slopes_right=right)


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------
def _broadcast_shapes(**arrays) -> tuple[int, ...]:
    shapes = {name: np.shape(value) for name, value in arrays.items()}
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        desc = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"shapes of {', '.join(shapes)} do not broadcast: {desc}") from None


def _check_convention(convention: str) -> None:
    if convention not in LUDLOW16_CONVENTIONS:
        raise ValueError(f"convention must be one of {LUDLOW16_CONVENTIONS}, got {convention!r}")


# ----------------------------------------------------------------------------------------------
# Ludlow et al. 2016
# ----------------------------------------------------------------------------------------------
def concentration_ludlow16(
    cosmo: Cosmology,
    mass: Any,
    z: Any,
    *,
    convention: str = "exact",
    transfer: str = "eisenstein_hu",
    growth_table: GrowthTable | None = None,
) -> jax.Array:
    """Concentration c200c of the Ludlow et al. (2016) model.

    See the module docstring for the equation and the two conventions. Vectorised over
    `mass` and `z` (they broadcast), differentiable in mass, z and the cosmological
    parameters (the root's derivative is the implicit-function one, -(dg/dtheta)/(dg/dc)).

    Args:
        cosmo: the cosmology (Lambda CDM assumed by the model).
        mass: M200c in Msun/h, > 0.
        z: redshift, >= 0.
        convention: ``"exact"`` (default) or ``"colossus"`` (reproduces colossus 1.4's
            ``concentration(M, '200c', z, model='ludlow16')``).
        transfer: linear power transfer function for sigma(M), see `linear_power`.
        growth_table: optional `growth_table(cosmo)` for the exact convention (built here
            when None; unused by the colossus convention).

    Returns:
        c200c, shape ``broadcast(mass, z)``; NaN where the model has no solution with
        1 <= c <= 100 and z_f < 200.01.

    Raises:
        ValueError: `mass` and `z` do not broadcast, a concrete mass <= 0 or z < 0, or an
            unknown `convention` / `transfer`.
        TypeError: `cosmo` is not a `Cosmology`.

    Example:
        >>> c = concentration_ludlow16(Planck18(), jnp.logspace(10, 15, 6), 0.5)
    """
    _check_cosmology(cosmo)
    _check_convention(convention)
    _check_transfer(transfer)
    _check_positive("mass", mass)
    _check_non_negative("z", z)
    shape = _broadcast_shapes(mass=mass, z=z)
    mass = jnp.broadcast_to(jnp.asarray(mass, dtype=float), shape)
    z = jnp.broadcast_to(jnp.asarray(z, dtype=float), shape)

    # sigma^2 at z = 0 of the Lagrangian radii of M and f M, from one table for all halos.
    rho_m = cosmo.Omega_m * RHO_CRIT0
    radius = (3.0 * mass / (4.0 * jnp.pi * rho_m)) ** (1.0 / 3.0)
    table = _sigma2_table(cosmo, transfer)
    sig2_f = _sigma2_from_table(table, radius * _F ** (1.0 / 3.0))
    sig2 = _sigma2_from_table(table, radius)
    inv_width = jax.lax.rsqrt(2.0 * _amplitude(cosmo, transfer) * (sig2_f - sig2))

    if convention == "colossus":
        return _solve_colossus(cosmo, z, inv_width)
    table_d = _build_growth_table(cosmo) if growth_table is None else growth_table
    return _solve_exact(cosmo, z, inv_width, table_d)


def _solve_exact(cosmo, z, inv_width, table_d):
    """Root in u = ln(1 + z_f) of the exact-convention residual; c = c(q(u))."""
    a_z = 1.0 / (1.0 + z)
    delta_z = DELTA_COLLAPSE / growth_factor(cosmo, a_z, table_d)
    ln_e2_z = jnp.log(_E2(cosmo, a_z))

    def residual(u, cosmo, table_d, delta_z, ln_e2_z, inv_width):
        """Y(c) - erfc(...): negative below the root, +1 beyond c = 100 (q > q_max)."""
        a_f = jnp.exp(-u)
        q = jnp.log(_E2(cosmo, a_f)) - ln_e2_z  # ln rho_crit(z_f) / rho_crit(z)
        arg = (DELTA_COLLAPSE / growth_factor(cosmo, a_f, table_d) - delta_z) * inv_width
        g = _einasto_y(q) - jax.scipy.special.erfc(arg)
        return jnp.where(q > _Q_MAX, 1.0, g), q

    args = (cosmo, table_d, delta_z, ln_e2_z, inv_width)
    frozen = jax.lax.stop_gradient(args)

    def value_and_slope(u):
        (g, _), (dg, _) = jax.jvp(lambda x: residual(x, *frozen), (u,), (jnp.ones_like(u),))
        return g, dg

    # Values only (no tangents through the loops). The bracket runs from u = ln(1 + z)
    # (q = 0, c at its minimum, residual Y - 1 < 0) to z_max; c > 100 counts as positive,
    # so a root beyond it ends as a non-zero residual at the edge, like one beyond z_max.
    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        negative = residual(mid, *frozen)[0] < 0.0
        return jnp.where(negative, mid, lo), jnp.where(negative, hi, mid)

    # Safeguarded Newton: a step that leaves the bracket is replaced by bisection.
    def newton(_, state):
        lo, hi, u = state
        g, dg = value_and_slope(u)
        negative = g < 0.0
        lo, hi = jnp.where(negative, u, lo), jnp.where(negative, hi, u)
        step = u - g / jnp.where(dg > 0.0, dg, 1.0)
        inside = (dg > 0.0) & (step >= lo) & (step <= hi)
        return lo, hi, jnp.where(inside, step, 0.5 * (lo + hi))

    lo = jnp.log1p(jax.lax.stop_gradient(z))
    hi = jnp.full(z.shape, math.log1p(_Z_F_MAX))
    lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (lo, hi))
    _, _, u0 = jax.lax.fori_loop(0, _NEWTON_STEPS, newton, (lo, hi, 0.5 * (lo + hi)))
    u0 = jax.lax.stop_gradient(u0)
    # A last Newton step on the live arguments: its derivative is the implicit-function one,
    # du/dtheta = -(dg/dtheta) / (dg/du), since g = 0 at u0.
    (g0, _), (slope, _) = jax.jvp(lambda u: residual(u, *args), (u0,), (jnp.ones_like(u0),))
    found = jnp.isfinite(g0) & (jnp.abs(g0) < _ROOT_ATOL) & (slope > 0.0)
    u = u0 - jnp.where(found, g0, 0.0) / jnp.where(found, slope, 1.0)
    q = residual(u, *args)[1]
    return jnp.where(found, jnp.exp(_einasto_lnc(q)), jnp.nan)


def _solve_colossus(cosmo, z, inv_width):
    """Colossus' solution: the first sign change of the residual on its c grid, interpolated
    linearly in c. The residual increases along the grid (colossus' np.interp assumes so too),
    so the crossing is found by binary search over the 200 indices instead of evaluating all.
    """
    growth = _colossus_growth_table(cosmo)
    om, ode = cosmo.Omega_m, cosmo.Omega_de
    delta_z = DELTA_COLLAPSE / _colossus_growth_from_table(growth, 1.0 / (1.0 + z))
    zp1_cubed = (1.0 + z) ** 3
    q_grid, y_grid = jnp.asarray(_Q_GRID), jnp.asarray(_Y_GRID)

    def residual(i):
        """g(c_i); -1 where z_f <= z, +inf where z_f >= z_max (colossus drops those points)."""
        t1 = (jnp.exp(q_grid[i]) * (om * zp1_cubed + ode) - ode) / om  # (1 + z_f)^3
        later = t1 <= zp1_cubed
        ln_zp1 = jnp.log(jnp.where(later, 2.0, t1)) / 3.0
        too_old = ln_zp1 >= math.log1p(_Z_F_MAX)
        d_f = _colossus_growth_from_table(growth, jnp.exp(-jnp.where(too_old, 0.0, ln_zp1)))
        g = y_grid[i] - jax.scipy.special.erfc((DELTA_COLLAPSE / d_f - delta_z) * inv_width)
        return jnp.where(later, -1.0, jnp.where(too_old, jnp.inf, g))

    # Invariant: g(lo) < 0 (c = 1 has z_f < z) and g(hi) >= 0, if any grid point is >= 0.
    def search(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) // 2
        negative = residual(mid) < 0.0
        return jnp.where(negative, mid, lo), jnp.where(negative, hi, mid)

    n = len(_COLOSSUS_GRID)
    lo = jnp.zeros(z.shape, dtype=int)
    hi = jnp.full(z.shape, n - 1)
    lo, hi = jax.lax.fori_loop(0, math.ceil(math.log2(n)), search, (lo, hi))
    g_lo, g_hi = residual(lo), residual(hi)
    found = (g_lo < 0.0) & (g_hi > 0.0) & jnp.isfinite(g_hi)
    grid = jnp.asarray(_COLOSSUS_GRID)
    c_lo, c_hi = grid[lo], grid[hi]
    safe = jnp.where(found, g_hi - g_lo, 1.0)
    c = c_lo - jnp.where(found, g_lo, 0.0) * (c_hi - c_lo) / safe
    return jnp.where(found, c, jnp.nan)


# ----------------------------------------------------------------------------------------------
# NFW helpers from (M200c, c, z)
# ----------------------------------------------------------------------------------------------
def _rho_crit(cosmo: Cosmology, z):
    """Critical density at z in physical Msun h^2 / Mpc^3."""
    return RHO_CRIT0 * E(cosmo, 1.0 / (1.0 + z)) ** 2


def _nfw_checks(cosmo, mass, c, z):
    _check_cosmology(cosmo)
    _check_positive("mass", mass)
    _check_positive("c", c)
    _check_non_negative("z", z)
    return (
        jnp.asarray(mass, dtype=float),
        jnp.asarray(c, dtype=float),
        jnp.asarray(z, dtype=float),
    )


def nfw_scale_radius(cosmo: Cosmology, mass: Any, c: Any, z: Any) -> jax.Array:
    """NFW scale radius r_s = R200c / c.

    R200c encloses a mean density of 200 rho_crit(z), rho_crit(z) = rho_crit,0 E(z)^2 (with
    the cosmology's radiation). Lengths are physical (proper) Mpc/h; multiply by (1 + z) for
    comoving Mpc/h, by 1000 for colossus' physical kpc/h.

    Args:
        cosmo: the cosmology.
        mass: M200c in Msun/h, > 0.
        c: concentration c200c, > 0.
        z: redshift, >= 0. `mass`, `c`, `z` broadcast.

    Returns:
        r_s in physical Mpc/h.
    """
    mass, c, z = _nfw_checks(cosmo, mass, c, z)
    r200 = (3.0 * mass / (4.0 * jnp.pi * _DELTA * _rho_crit(cosmo, z))) ** (1.0 / 3.0)
    return r200 / c


def _nfw_mu(c):
    return jnp.log1p(c) - c / (1.0 + c)


def nfw_rho_s(cosmo: Cosmology, mass: Any, c: Any, z: Any) -> jax.Array:
    """NFW characteristic density rho_s = M200c / (4 pi r_s^3 [ln(1+c) - c/(1+c)]).

    Navarro, Frenk & White (1997). Same arguments as `nfw_scale_radius`.

    Returns:
        rho_s in physical Msun h^2 / Mpc^3 (colossus' Msun h^2 / kpc^3 times 1e9).
    """
    rs = nfw_scale_radius(cosmo, mass, c, z)
    mass, c, _ = _nfw_checks(cosmo, mass, c, z)
    return mass / (4.0 * jnp.pi * rs**3 * _nfw_mu(c))


def nfw_density(cosmo: Cosmology, r: Any, mass: Any, c: Any, z: Any) -> jax.Array:
    """NFW density rho(r) = rho_s / [(r/r_s) (1 + r/r_s)^2] of a halo given by (M200c, c, z).

    Args:
        cosmo: the cosmology.
        r: radius in physical Mpc/h, > 0.
        mass: M200c in Msun/h, > 0.
        c: concentration c200c, > 0.
        z: redshift, >= 0. `r`, `mass`, `c`, `z` broadcast.

    Returns:
        rho(r) in physical Msun h^2 / Mpc^3.
    """
    _check_positive("r", r)
    x = jnp.asarray(r, dtype=float) / nfw_scale_radius(cosmo, mass, c, z)
    return nfw_rho_s(cosmo, mass, c, z) / (x * (1.0 + x) ** 2)
