"""Ludlow et al. (2016) c200c and the NFW helpers.

References, called here: colossus 1.4 (`concentration(M, '200c', z, model='ludlow16')`,
`NFWProfile`, `growthFactor`) with no files written (persistence ''), and for the exact
convention an independent scipy implementation of the same equation (regularised incomplete
gamma, brentq roots, the growth ODE with radiation by solve_ivp).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
from colossus.halo import concentration as cconc
from colossus.halo import profile_nfw
from colossus.lss import peaks

import fmt_cosmo as fc
from fmt_cosmo._src import ludlow16 as lud

# The requirement: colossus convention against colossus.
COLOSSUS_RTOL = 2e-4
# Against colossus with its default interpolation tables: its 18-bin sigma(R) spline moves c
# by up to 3.5e-4 (measured by switching the tables off), a floor no implementation of the
# model can go below without copying the spline.
COLOSSUS_TABLES_RTOL = 5e-4
# The exact convention against the independent scipy implementation (sigma from colossus'
# tightened quadrature, ~2e-6; growth ODE rtol 1e-11).
EXACT_RTOL = 2e-5
# The exact convention differs from colossus' numbers by up to 2.3e-3 (growth with
# radiation 1.2e-3, formation redshift with the full E(z) 9e-4, grid bias 2.8e-4).
EXACT_VS_COLOSSUS_RTOL = 3e-3
# Same formulae in float64.
FORMULA_RTOL = 1e-9
# colossus' growth factor read from its Hermite table (step 0.02 in ln a) vs direct.
GROWTH_TABLE_RTOL = 1e-8
# Same function through jit, vmap, eager.
TRANSFORM_RTOL = 1e-12
# Central finite differences (steps 1e-4 in log10 M and z, 1e-5 in Omega_m) vs jax.grad.
GRAD_RTOL = 1e-6

DELTA_C = 1.68647
COSMOLOGIES = {
    "planck18": fc.Planck18(),
    "low_om_high_s8": fc.Planck18(Omega_c=0.25 - 0.049, sigma8=0.9),
    "high_om_low_s8": fc.Planck18(Omega_c=0.40 - 0.049, sigma8=0.7),
}
# One 5 x 15 grid (log10 M in [8, 15], z in [0, 4]) for every comparison, so that each
# convention compiles once.
MASS = np.logspace(8.0, 15.0, 15)
Z = np.linspace(0.0, 4.0, 5)


def colossus_c200c(mass, redshifts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([cconc.concentration(mass, "200c", z, model="ludlow16") for z in redshifts])


@pytest.fixture(scope="module")
def conc():
    return jax.jit(fc.concentration_ludlow16, static_argnames=("convention", "transfer"))


@pytest.fixture(scope="module", params=list(COSMOLOGIES))
def reference(request, colossus_cosmology):
    """colossus without interpolation tables and sigma integrals at epsrel 1e-6 (default 3e-3,
    whose noise alone moves c by up to 7e-4), plus its sigma values for the scipy reference."""
    cosmo = COSMOLOGIES[request.param]
    ref = colossus_cosmology(cosmo, interpolation=False)
    ref.accuracy_sigma = 1e-6  # also used by its sigma8 normalisation, computed lazily
    c200c = colossus_c200c(MASS, Z)
    sigma = ref.sigma(peaks.lagrangianR(MASS), 0.0)
    sigma_f = ref.sigma(peaks.lagrangianR(lud._F * MASS), 0.0)
    return request.param, cosmo, c200c, sigma, sigma_f


# -- colossus convention ----------------------------------------------------------------------


def test_colossus_convention_matches_colossus(reference, conc):
    name, cosmo, ref, _, _ = reference
    ours = np.asarray(conc(cosmo, MASS[None, :], Z[:, None], convention="colossus"))
    error = np.max(np.abs(ours / ref - 1.0))
    assert error <= COLOSSUS_RTOL, f"{name}: max relative error {error:.2e}"


@pytest.mark.parametrize("name", COSMOLOGIES)
def test_colossus_convention_matches_colossus_default_tables(name, conc, colossus_cosmology):
    cosmo = COSMOLOGIES[name]
    colossus_cosmology(cosmo)
    ref = colossus_c200c(MASS, Z)
    ours = np.asarray(conc(cosmo, MASS[None, :], Z[:, None], convention="colossus"))
    np.testing.assert_allclose(ours, ref, rtol=COLOSSUS_TABLES_RTOL)
    exact = np.asarray(conc(cosmo, MASS[None, :], Z[:, None]))
    np.testing.assert_allclose(exact, ref, rtol=EXACT_VS_COLOSSUS_RTOL)


def test_colossus_growth_factor_equals_colossus(colossus_cosmology):
    cosmo = COSMOLOGIES["planck18"]
    ref = colossus_cosmology(cosmo, interpolation=False)
    z = np.array([0.0, 0.5, 2.0, 4.9, 5.0, 7.0, 12.0, 19.9, 20.0, 50.0, 200.0])
    direct = jax.jit(lud._colossus_growth)
    np.testing.assert_allclose(
        direct(cosmo, 1.0 / (1.0 + z)), ref.growthFactor(z), rtol=FORMULA_RTOL
    )

    @jax.jit
    def from_table(cosmo, a):
        return lud._colossus_growth_from_table(lud._colossus_growth_table(cosmo), a)

    dense = 1.0 / (1.0 + np.linspace(0.0, 200.0, 4001))
    np.testing.assert_allclose(
        from_table(cosmo, dense), direct(cosmo, dense), rtol=GROWTH_TABLE_RTOL
    )


# -- exact convention -------------------------------------------------------------------------


def scipy_ludlow16(cosmo, mass, redshifts, sigma, sigma_f):
    """The exact convention, independently: scipy special functions, brentq, solve_ivp."""
    om, orad = float(cosmo.Omega_m), float(cosmo.Omega_r)
    ode = 1.0 - om - orad

    def e2(a):
        return orad / a**4 + om / a**3 + ode

    def growth_rhs(lna, y):
        a = np.exp(lna)
        dlne = 0.5 * (-4.0 * orad / a**4 - 3.0 * om / a**3) / e2(a)
        return [y[1], 1.5 * om / a**3 / e2(a) * y[0] - (2.0 + dlne) * y[1]]

    a0 = 1e-8
    a_eq = orad / om
    sol = scipy.integrate.solve_ivp(
        growth_rhs,
        (np.log(a0), 0.0),
        [a0 + 2.0 / 3.0 * a_eq, a0],
        method="DOP853",
        rtol=1e-11,
        atol=1e-30,
        dense_output=True,
    )

    def growth(a):
        return sol.sol(np.log(a))[0] / sol.y[0, -1]

    alpha = 0.18

    def einasto_y(c):
        return scipy.special.gammainc(3.0 / alpha, 2.0 / alpha) / scipy.special.gammainc(
            3.0 / alpha, 2.0 / alpha * c**alpha
        )

    out = np.empty((len(redshifts), len(mass)))
    for i, z in enumerate(redshifts):
        a_z = 1.0 / (1.0 + z)
        for j in range(len(mass)):
            width = np.sqrt(2.0 * (sigma_f[j] ** 2 - sigma[j] ** 2))

            def g(lnc, a_z=a_z, width=width):
                c = np.exp(lnc)
                ratio = 200.0 * c**3 * einasto_y(c) / 650.0
                if ratio <= 1.0:
                    return -1.0
                target = ratio * e2(a_z)
                u = scipy.optimize.brentq(lambda u: e2(np.exp(-u)) - target, 0.0, 10.0, xtol=1e-15)
                arg = DELTA_C * (1.0 / growth(np.exp(-u)) - 1.0 / growth(a_z)) / width
                return einasto_y(c) - scipy.special.erfc(arg)

            out[i, j] = np.exp(scipy.optimize.brentq(g, 0.0, np.log(100.0), xtol=1e-14))
    return out


def test_exact_convention_matches_scipy_implementation(reference, conc):
    name, cosmo, _, sigma, sigma_f = reference
    ref = scipy_ludlow16(cosmo, MASS, Z, sigma, sigma_f)
    ours = np.asarray(conc(cosmo, MASS[None, :], Z[:, None]))
    error = np.max(np.abs(ours / ref - 1.0))
    assert error <= EXACT_RTOL, f"{name}: max relative error {error:.2e}"


# -- transforms -------------------------------------------------------------------------------


def _check_gradients(value_and_grad, points, steps, *extra):
    for point in points:
        _, analytic = value_and_grad(*point, *extra)
        for i, h in enumerate(steps):
            up, down = list(point), list(point)
            up[i] += h
            down[i] -= h
            fd = (value_and_grad(*up, *extra)[0] - value_and_grad(*down, *extra)[0]) / (2.0 * h)
            np.testing.assert_allclose(analytic[i], fd, rtol=GRAD_RTOL, err_msg=f"{point} {i}")


def test_gradients_match_finite_differences():
    """d ln c / d(log10 M, z, Omega_m) in the exact convention (implicit-function gradients)."""

    def log_c(log10_mass, z, omega_m):
        cosmo = fc.Planck18().replace(Omega_c=omega_m - 0.049)
        return jnp.log(fc.concentration_ludlow16(cosmo, 10.0**log10_mass, z))

    value_and_grad = jax.jit(jax.value_and_grad(log_c, argnums=(0, 1, 2)))
    points = ((8.3, 0.2, 0.3111), (11.7, 1.3, 0.3111), (14.6, 3.7, 0.25))
    _check_gradients(value_and_grad, points, (1e-4, 1e-4, 1e-5))


def test_colossus_convention_gradients_match_finite_differences():
    """Piecewise linear in c between colossus' grid nodes: FD steps stay inside one interval."""

    def log_c(log10_mass, z, cosmo):
        return jnp.log(fc.concentration_ludlow16(cosmo, 10.0**log10_mass, z, convention="colossus"))

    value_and_grad = jax.jit(jax.value_and_grad(log_c, argnums=(0, 1)))
    points = ((8.3, 0.2), (11.7, 1.3), (14.6, 3.7))
    _check_gradients(value_and_grad, points, (1e-4, 1e-4), COSMOLOGIES["planck18"])


def test_jit_vmap_broadcast_agree(conc):
    cosmo = COSMOLOGIES["planck18"]
    grid = conc(cosmo, MASS[None, :], Z[:, None])
    assert grid.shape == (Z.size, MASS.size)
    mass, z = np.broadcast_arrays(MASS[None, :], Z[:, None])
    table = fc.growth_table(cosmo)  # a caller's table gives the same numbers
    mapped = jax.jit(
        jax.vmap(lambda m, zz: fc.concentration_ludlow16(cosmo, m, zz, growth_table=table))
    )(mass.ravel(), z.ravel())
    np.testing.assert_allclose(mapped, grid.ravel(), rtol=TRANSFORM_RTOL)


def test_nan_where_the_model_has_no_solution(conc):
    cosmo = COSMOLOGIES["planck18"]
    # M = 1 Msun/h: sigma(f M) is below the sigma table (R < 1e-4 Mpc/h); z = 250: z_f > 200.
    mass, z = MASS.copy(), Z.copy()
    mass[0], z[-1] = 1.0, 250.0
    for convention in lud.LUDLOW16_CONVENTIONS:
        c = np.asarray(conc(cosmo, mass[None, :], z[:, None], convention=convention))
        assert np.all(np.isnan(c[:, 0])) and np.all(np.isnan(c[-1]))
        assert np.all(np.isfinite(c[:-1, 1:]))


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_raises_naming_the_argument():
    cosmo = COSMOLOGIES["planck18"]
    with pytest.raises(ValueError, match=r"mass.*z"):
        fc.concentration_ludlow16(cosmo, np.ones(3) * 1e12, np.zeros(4))
    with pytest.raises(ValueError, match="mass must"):
        fc.concentration_ludlow16(cosmo, np.array([1e12, -1e12]), 0.0)
    with pytest.raises(ValueError, match="z must"):
        fc.concentration_ludlow16(cosmo, 1e12, -0.1)
    with pytest.raises(ValueError, match="convention"):
        fc.concentration_ludlow16(cosmo, 1e12, 0.0, convention="diemer19")
    with pytest.raises(ValueError, match="c must"):
        fc.nfw_scale_radius(cosmo, 1e12, 0.0, 0.0)
    with pytest.raises(ValueError, match="r must"):
        fc.nfw_density(cosmo, -1.0, 1e12, 5.0, 0.0)


# -- NFW helpers ------------------------------------------------------------------------------


def test_nfw_helpers_match_colossus(colossus_cosmology):
    cosmo = COSMOLOGIES["planck18"]
    colossus_cosmology(cosmo)
    r_kpc = np.logspace(-1, 3, 9)
    for mass, c, z in ((1e10, 12.0, 0.0), (1e13, 6.0, 1.0), (1e15, 4.0, 3.0)):
        profile = profile_nfw.NFWProfile(M=mass, c=c, z=z, mdef="200c")
        np.testing.assert_allclose(
            fc.nfw_scale_radius(cosmo, mass, c, z), profile.par["rs"] / 1e3, rtol=FORMULA_RTOL
        )
        np.testing.assert_allclose(
            fc.nfw_rho_s(cosmo, mass, c, z), profile.par["rhos"] * 1e9, rtol=FORMULA_RTOL
        )
        np.testing.assert_allclose(
            fc.nfw_density(cosmo, r_kpc / 1e3, mass, c, z),
            profile.density(r_kpc) * 1e9,
            rtol=FORMULA_RTOL,
        )
