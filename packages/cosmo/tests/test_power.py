"""EH98 linear power, sigma(R) and peak height.

References: colossus 1.4 (`eisenstein98` / `eisenstein98_zb`, same cosmology, radiation on)
and jax-cosmo 0.1 (`linear_matter_power` with `Eisenstein_Hu`), both called here; a dense
Simpson integration of colossus' own transfer function for the quadrature error of sigma.
"""

import jax
import jax.numpy as jnp
import jax_cosmo
import numpy as np
import pytest
from colossus.cosmology import power_spectrum as cps
from colossus.lss import peaks
from jax_cosmo.transfer import Eisenstein_Hu

import fmt_cosmo as fc
from fmt_cosmo._src import power as pw

# The requirement for P(k) and sigma(R) against colossus.
COLOSSUS_RTOL = 1e-3
# Same formulae evaluated in float64 by both codes.
FORMULA_RTOL = 1e-12
# P(k) against colossus evaluated without interpolation tables: only the sigma8
# normalisation integral differs (colossus' quad has epsrel 3e-3; it is good to ~1e-5).
COLOSSUS_EXACT_PK_RTOL = 1e-4
# sigma against colossus' direct quadrature with its tolerance tightened from 3e-3 (which
# leaves errors up to 2.4e-4) to 1e-6.
COLOSSUS_EXACT_SIGMA_RTOL = 2e-5
# Our 1048-node rule against a dense Simpson reference, sigma (not sigma^2), R <= 100 Mpc/h.
QUADRATURE_RTOL = 3e-6
# jax-cosmo normalises sigma8 with a 129-point Romberg rule over ln k in [-4, 3] (its
# log10 limits are used as ln k), i.e. 0.018 < k < 20 h/Mpc: its P(k) is 0.34% high.
JAX_COSMO_PK_RTOL = 5e-3
# jax-cosmo's no-wiggle fit uses the eq. 6 sound horizon where EH98 eq. 26 (and colossus)
# use the fitted one; the transfer functions differ by < 1e-3.
JAX_COSMO_NOWIGGLE_RTOL = 2e-3
# Same function through jit, vmap, eager: float64 rounding.
TRANSFORM_RTOL = 1e-12
# Central finite differences (step 1e-5 relative) against jax.grad.
GRAD_RTOL = 1e-6

K = np.logspace(-4, 1, 120)
RADII = np.logspace(-2, 2, 33)
COSMOLOGIES = {
    "planck18": fc.Planck18(),
    "low_om_high_s8": fc.Planck18(Omega_c=0.25 - 0.049, sigma8=0.9),
    "high_om_low_s8": fc.Planck18(Omega_c=0.40 - 0.049, sigma8=0.7, n_s=0.95),
}
TRANSFERS = {"eisenstein_hu": "eisenstein98", "eisenstein_hu_nowiggle": "eisenstein98_zb"}


@pytest.fixture(scope="module")
def power_fn():
    return jax.jit(pw.linear_power, static_argnames="transfer")


@pytest.fixture(scope="module")
def sigma_fn():
    return jax.jit(pw.sigma_R, static_argnames="transfer")


# -- colossus ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transfer", TRANSFERS)
@pytest.mark.parametrize("name", COSMOLOGIES)
def test_transfer_functions_equal_colossus(name, transfer):
    cosmo = COSMOLOGIES[name]
    model = {
        "eisenstein_hu": cps.modelEisenstein98,
        "eisenstein_hu_nowiggle": cps.modelEisenstein98ZeroBaryon,
    }[transfer]
    k = np.logspace(-5, 3, 400)
    ref = model(k, cosmo.h, float(cosmo.Omega_m), cosmo.Omega_b, cosmo.T_cmb)
    ours = pw._TRANSFER_FUNCTIONS[transfer](cosmo, k)
    np.testing.assert_allclose(ours, ref, rtol=FORMULA_RTOL)


@pytest.mark.parametrize("transfer", TRANSFERS)
@pytest.mark.parametrize("name", COSMOLOGIES)
def test_linear_power_matches_colossus(name, transfer, power_fn, colossus_cosmology):
    cosmo = COSMOLOGIES[name]
    model = TRANSFERS[transfer]
    ours = power_fn(cosmo, K, transfer=transfer)

    ref = colossus_cosmology(cosmo)  # defaults: interpolation tables on
    np.testing.assert_allclose(ours, ref.matterPowerSpectrum(K, model=model), rtol=COLOSSUS_RTOL)
    # a != 1: the growth factors differ by < 1e-4 at z = 1 (colossus approximates radiation).
    ours_z1 = power_fn(cosmo, K, 0.5, transfer=transfer)
    ref_z1 = ref.matterPowerSpectrum(K, z=1.0, model=model)
    np.testing.assert_allclose(ours_z1, ref_z1, rtol=COLOSSUS_RTOL)

    exact = colossus_cosmology(cosmo, interpolation=False)
    ref_exact = np.array([exact.matterPowerSpectrum(k, model=model) for k in K])
    np.testing.assert_allclose(ours, ref_exact, rtol=COLOSSUS_EXACT_PK_RTOL)


def test_linear_power_without_radiation_matches_colossus_at_high_z(power_fn, colossus_cosmology):
    """Without radiation the growth factors agree (1e-9), so P(k, z) does at any z."""
    cosmo = fc.Planck18(include_radiation=False)
    ref = colossus_cosmology(cosmo)
    for z in (0.0, 2.0, 5.0):
        ours = power_fn(cosmo, K, 1.0 / (1.0 + z), transfer="eisenstein_hu")
        np.testing.assert_allclose(ours, ref.matterPowerSpectrum(K, z=z), rtol=COLOSSUS_RTOL)


@pytest.mark.parametrize("name", COSMOLOGIES)
def test_sigma_matches_colossus(name, sigma_fn, colossus_cosmology):
    """Against colossus' direct quadrature (interpolation=False, epsrel 1e-6).

    colossus' default sigma(R) reads an 18-bin spline table that is itself off by up to
    5e-3 around R ~ 50 Mpc/h (see docs/cosmo.md), so it is not the reference here.
    """
    cosmo = COSMOLOGIES[name]
    ours = sigma_fn(cosmo, RADII, transfer="eisenstein_hu")
    exact = colossus_cosmology(cosmo, interpolation=False)
    exact.accuracy_sigma = 1e-6  # also used for its sigma8 normalisation, computed lazily
    ref = np.array([exact.sigma(r, 0.0) for r in RADII])
    np.testing.assert_allclose(ours, ref, rtol=COLOSSUS_EXACT_SIGMA_RTOL)
    np.testing.assert_allclose(ours, ref, rtol=COLOSSUS_RTOL)


def _dense_sigma2(cosmo, radius):
    """Unnormalised sigma^2 by composite Simpson with colossus' transfer (vectorised numpy)."""

    def integrand(x):
        k = x / radius
        t = cps.modelEisenstein98(k, cosmo.h, float(cosmo.Omega_m), cosmo.Omega_b, cosmo.T_cmb)
        w = 3.0 * (np.sin(x) - x * np.cos(x)) / x**3
        return t**2 * k**cosmo.n_s * k**3 * w**2 / (2.0 * np.pi**2)

    def simpson(y, dx):
        return dx / 3.0 * (y[0] + y[-1] + 4.0 * y[1:-1:2].sum() + 2.0 * y[2:-1:2].sum())

    ln_x = np.linspace(np.log(1e-9), np.log(10.0), 200_001)  # d ln x = 1.1e-4
    low = simpson(integrand(np.exp(ln_x)), ln_x[1] - ln_x[0])
    x = np.linspace(10.0, 3000.0, 200_001)  # 1/15 of a window period per step
    high = simpson(integrand(x) / x, x[1] - x[0])
    return low + high


def test_sigma_quadrature_against_dense_simpson():
    cosmo = COSMOLOGIES["planck18"]
    radii = np.array([1e-3, 0.05, 1.0, 8.0, 30.0, 100.0])
    ref = np.array([_dense_sigma2(cosmo, r) for r in radii])
    ours = pw._sigma2_unnormalised(cosmo, radii, "eisenstein_hu")
    np.testing.assert_allclose(np.sqrt(ours), np.sqrt(ref), rtol=QUADRATURE_RTOL)


@pytest.mark.parametrize("transfer", TRANSFERS)
def test_sigma8_normalisation(transfer, sigma_fn):
    for cosmo in COSMOLOGIES.values():
        np.testing.assert_allclose(
            sigma_fn(cosmo, 8.0, transfer=transfer), cosmo.sigma8, rtol=FORMULA_RTOL
        )


def test_peak_height_matches_colossus(colossus_cosmology):
    cosmo = COSMOLOGIES["planck18"]
    mass = np.logspace(8, 15, 15)
    colossus_cosmology(cosmo, interpolation=False)
    for z in (0.0, 1.0):
        ours = jax.jit(fc.peak_height)(cosmo, mass, z)
        ref = np.array([peaks.peakHeight(m, z) for m in mass])
        np.testing.assert_allclose(ours, ref, rtol=COLOSSUS_RTOL)
    np.testing.assert_allclose(
        fc.lagrangian_radius(cosmo, mass), peaks.lagrangianR(mass), rtol=FORMULA_RTOL
    )


# -- jax-cosmo ----------------------------------------------------------------------------------


def test_linear_power_matches_jax_cosmo():
    """jax-cosmo has no radiation and T_cmb = 2.726: compare that configuration.

    The transfer functions are identical; P(k) differs by a k-independent factor which is
    exactly the ratio of the two sigma8 normalisation integrals (jax-cosmo's is truncated).
    """
    cosmo = fc.Planck18(T_cmb=2.726, include_radiation=False)

    # One jit for all of jax-cosmo's numbers, with the cosmology as an argument (closing over
    # it would leak tracers into jax-cosmo's cache). P(k) at a = 1 is assembled exactly as
    # its linear_matter_power does, minus the growth ODE (D = 1 there), which is slow to
    # compile: k^n_s T^2 sigma8^2 / sigmasqr(8).
    @jax.jit
    def jax_cosmo_numbers(jc):
        transfer = Eisenstein_Hu(jc, K)
        sigma2 = jax_cosmo.power.sigmasqr(jc, 8.0, Eisenstein_Hu)
        power = jax_cosmo.power.primordial_matter_power(jc, K) * transfer**2
        return transfer, Eisenstein_Hu(jc, K, type="eisenhu"), power * jc.sigma8**2 / sigma2, sigma2

    t_jc, t_nw_jc, p_jc, sigma2_jc = jax_cosmo_numbers(fc.to_jax_cosmo(cosmo))
    np.testing.assert_allclose(fc.transfer_eisenstein_hu(cosmo, K), t_jc, rtol=FORMULA_RTOL)
    ours = np.asarray(fc.linear_power(cosmo, K))
    ratio = ours / np.asarray(p_jc)
    np.testing.assert_allclose(ratio, ratio[0], rtol=FORMULA_RTOL)
    norm_ratio = sigma2_jc / pw._sigma2_unnormalised(cosmo, 8.0, "eisenstein_hu")
    np.testing.assert_allclose(ratio[0], norm_ratio, rtol=1e-9)
    np.testing.assert_allclose(ours, p_jc, rtol=JAX_COSMO_PK_RTOL)
    np.testing.assert_allclose(
        fc.transfer_eisenstein_hu_nowiggle(cosmo, K), t_nw_jc, rtol=JAX_COSMO_NOWIGGLE_RTOL
    )


# -- transforms and jit safety ------------------------------------------------------------------


def test_jit_eager_vmap_agree(power_fn, sigma_fn):
    cosmo = COSMOLOGIES["planck18"]
    a = jnp.array([0.3, 0.7, 1.0])
    broadcast = power_fn(cosmo, K[:, None], a[None, :])
    assert broadcast.shape == (K.size, 3)
    mapped = jax.jit(jax.vmap(lambda aa: fc.linear_power(cosmo, K, aa), out_axes=1))(a)
    np.testing.assert_allclose(mapped, broadcast, rtol=TRANSFORM_RTOL)
    np.testing.assert_allclose(fc.linear_power(cosmo, K), broadcast[:, 2], rtol=TRANSFORM_RTOL)
    eager = fc.sigma_R(cosmo, RADII)
    np.testing.assert_allclose(sigma_fn(cosmo, RADII), eager, rtol=TRANSFORM_RTOL)


def test_growth_and_linear_power_in_any_order():
    """jax-cosmo failure 2: its growth and power share one cache on the cosmology object."""
    a = jnp.array([0.25, 0.5, 1.0])
    k = jnp.array([0.01, 0.1, 1.0])
    growth = jax.jit(fc.growth_factor)
    power = jax.jit(fc.linear_power)

    first = fc.Planck18(w0=-0.9, wa=0.1)
    d_first = growth(first, a)
    p_then = power(first, k, a[:, None])

    second = fc.Planck18(w0=-0.9, wa=0.1)
    p_first = power(second, k, a[:, None])
    d_then = growth(second, a)

    np.testing.assert_array_equal(d_first, d_then)
    np.testing.assert_array_equal(p_first, p_then)
    np.testing.assert_allclose(p_first, p_first[-1] * d_first[:, None] ** 2, rtol=FORMULA_RTOL)

    # Both inside one jit with a shared table, the object closed over; then eager.
    @jax.jit
    def both():
        table = fc.growth_table(first)
        return fc.linear_power(first, k, a[:, None], growth_table=table), fc.growth_factor(
            first, a, table
        )

    p_jit, d_jit = both()
    np.testing.assert_allclose(p_jit, p_first, rtol=TRANSFORM_RTOL)
    np.testing.assert_allclose(d_jit, d_first, rtol=TRANSFORM_RTOL)
    np.testing.assert_allclose(fc.linear_power(first, k), p_first[-1], rtol=TRANSFORM_RTOL)
    np.testing.assert_allclose(fc.sigma_R(first, 8.0), first.sigma8, rtol=FORMULA_RTOL)


def test_sigma_gradients_match_finite_differences():
    base = COSMOLOGIES["planck18"]

    def f(omega_c, ln_r):
        return jnp.log(fc.sigma_R(base.replace(Omega_c=omega_c), jnp.exp(ln_r)))

    grad = jax.jit(jax.grad(f, argnums=(0, 1)))
    fj = jax.jit(f)
    for ln_r in (np.log(0.05), np.log(60.0)):
        x = (base.Omega_c, ln_r)
        g = grad(*x)
        for i, h in enumerate((1e-5 * base.Omega_c, 1e-5)):
            up = list(x)
            down = list(x)
            up[i] += h
            down[i] -= h
            fd = (fj(*up) - fj(*down)) / (2.0 * h)
            np.testing.assert_allclose(g[i], fd, rtol=GRAD_RTOL)


# -- bad input ------------------------------------------------------------------------------------


def test_bad_input_raises_naming_the_argument():
    cosmo = COSMOLOGIES["planck18"]
    with pytest.raises(ValueError, match="transfer"):
        fc.linear_power(cosmo, K, transfer="bbks")
    with pytest.raises(ValueError, match="k must"):
        fc.linear_power(cosmo, np.array([0.1, -1.0]))
    with pytest.raises(ValueError, match="a must"):
        fc.linear_power(cosmo, K, 0.0)
    with pytest.raises(ValueError, match="R must"):
        fc.sigma_R(cosmo, np.array([8.0, 0.0]))
    with pytest.raises(ValueError, match="mass must"):
        fc.peak_height(cosmo, -1e12, 0.0)
    with pytest.raises(ValueError, match="z must"):
        fc.peak_height(cosmo, 1e12, -0.5)
    with pytest.raises(TypeError, match="cosmo"):
        fc.linear_power(fc.to_jax_cosmo(cosmo), K)
