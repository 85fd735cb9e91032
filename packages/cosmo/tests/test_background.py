"""Background expansion and distances against scipy.integrate.quad and colossus."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from colossus.cosmology import cosmology as colossus_cosmology
from scipy.integrate import quad

import fmt_cosmo as fc

# Issue 3: distances agree with scipy.integrate.quad to <= 1e-7 relative for z <= 10.
DISTANCE_RTOL = 1e-7
# quad itself is asked for 1e-13; the 64-node Gauss-Legendre rule is exact to ~1e-14.
QUAD_EPSREL = 1e-13
# E(z), Omega_m(z), Omega_de(z) are closed forms: colossus and fmt must agree to rounding
# (same photon constant 4.48131e-7 and neutrino factor).
COLOSSUS_RTOL = 1e-12
# a(chi) after the Newton polish inverts chi(a) to rounding.
INVERSE_RTOL = 1e-12
# Central finite differences (step 1e-6) of smooth functions: truncation ~1e-12,
# rounding ~1e-10.
FD_RTOL = 1e-7
FD_STEP = 1e-6

Z_TEST = np.concatenate([np.geomspace(1e-4, 1.0, 60), np.linspace(1.05, 10.0, 60)])
A_TEST = 1.0 / (1.0 + Z_TEST)

MODELS = {
    "lcdm": fc.Planck18(),
    "open": fc.Planck18(Omega_k=0.1),
    "closed": fc.Planck18(Omega_k=-0.1),
    "w0wa": fc.Planck18(w0=-0.9, wa=0.2),
    "no_radiation": fc.Planck15(include_radiation=False),
}


def quad_distances(cosmo, z):
    """chi and D_M in Mpc/h from quad, with E(z) written out independently."""
    om, orad, ok, ode = (
        float(x) for x in (cosmo.Omega_m, cosmo.Omega_r, cosmo.Omega_k, cosmo.Omega_de)
    )
    w0, wa = float(cosmo.w0), float(cosmo.wa)

    def inv_e(zz):
        de = (1 + zz) ** (3 * (1 + w0 + wa)) * np.exp(-3 * wa * zz / (1 + zz))
        return 1.0 / np.sqrt(
            orad * (1 + zz) ** 4 + om * (1 + zz) ** 3 + ok * (1 + zz) ** 2 + ode * de
        )

    dh = 299792.458 / 100.0
    chi = dh * np.array(
        [quad(inv_e, 0.0, zi, epsabs=0.0, epsrel=QUAD_EPSREL, limit=200)[0] for zi in z]
    )
    if ok > 0:
        dm = dh / np.sqrt(ok) * np.sinh(np.sqrt(ok) * chi / dh)
    elif ok < 0:
        dm = dh / np.sqrt(-ok) * np.sin(np.sqrt(-ok) * chi / dh)
    else:
        dm = chi
    return chi, dm


@pytest.fixture(scope="module")
def distances():
    def f(cosmo, a):
        return {
            "chi": fc.comoving_distance(cosmo, a),
            "dm": fc.transverse_comoving_distance(cosmo, a),
            "da": fc.angular_diameter_distance(cosmo, a),
            "dl": fc.luminosity_distance(cosmo, a),
            "a_of_chi": fc.scale_factor_of_distance(cosmo, fc.comoving_distance(cosmo, a)),
        }

    return jax.jit(f)


@pytest.mark.parametrize("name", list(MODELS))
def test_distances_match_quad(distances, name):
    cosmo = MODELS[name]
    chi_ref, dm_ref = quad_distances(cosmo, Z_TEST)
    out = distances(cosmo, A_TEST)
    np.testing.assert_allclose(out["chi"], chi_ref, rtol=DISTANCE_RTOL, atol=0)
    np.testing.assert_allclose(out["dm"], dm_ref, rtol=DISTANCE_RTOL, atol=0)
    np.testing.assert_allclose(out["da"], dm_ref / (1 + Z_TEST), rtol=DISTANCE_RTOL, atol=0)
    np.testing.assert_allclose(out["dl"], dm_ref * (1 + Z_TEST), rtol=DISTANCE_RTOL, atol=0)
    np.testing.assert_allclose(out["a_of_chi"], A_TEST, rtol=INVERSE_RTOL, atol=0)


def test_curvature_changes_distances_both_ways(distances):
    """Open universes have D_M > chi, closed ones D_M < chi (the test can tell them apart)."""
    a = jnp.array([0.2])
    open_, closed = distances(MODELS["open"], a), distances(MODELS["closed"], a)
    assert float(open_["dm"][0]) > float(open_["chi"][0])
    assert float(closed["dm"][0]) < float(closed["chi"][0])


def _colossus(cosmo):
    params = dict(
        flat=float(cosmo.Omega_k) == 0.0,
        Om0=float(cosmo.Omega_m),
        Ob0=float(cosmo.Omega_b),
        H0=100 * float(cosmo.h),
        sigma8=float(cosmo.sigma8),
        ns=float(cosmo.n_s),
        Tcmb0=float(cosmo.T_cmb),
        Neff=float(cosmo.N_eff),
        relspecies=cosmo.include_radiation,
        de_model="w0wa",
        w0=float(cosmo.w0),
        wa=float(cosmo.wa),
        persistence="",
    )
    if not params["flat"]:
        params["Ode0"] = float(cosmo.Omega_de)
    return colossus_cosmology.setCosmology("fmt_test", params)


@pytest.mark.parametrize("name", ["lcdm", "open", "w0wa", "no_radiation"])
def test_expansion_matches_colossus(name):
    cosmo = MODELS[name]
    ref = _colossus(cosmo)
    np.testing.assert_allclose(fc.E(cosmo, A_TEST), ref.Ez(Z_TEST), rtol=COLOSSUS_RTOL)
    np.testing.assert_allclose(fc.H(cosmo, A_TEST), ref.Hz(Z_TEST) / cosmo.h, rtol=COLOSSUS_RTOL)
    np.testing.assert_allclose(fc.Omega_m_a(cosmo, A_TEST), ref.Om(Z_TEST), rtol=COLOSSUS_RTOL)
    np.testing.assert_allclose(fc.Omega_de_a(cosmo, A_TEST), ref.Ode(Z_TEST), rtol=COLOSSUS_RTOL)


def test_dlnE_dlna_is_the_derivative():
    cosmo = MODELS["w0wa"]
    a = jnp.array([1e-4, 0.01, 0.3, 1.0])
    auto = jax.vmap(jax.grad(lambda x: jnp.log(fc.E(cosmo, jnp.exp(x)))))(jnp.log(a))
    np.testing.assert_allclose(fc.dlnE_dlna(cosmo, a), auto, rtol=1e-12)


@pytest.fixture(scope="module")
def a_of_chi_grads():
    def f(cosmo, chi):
        return fc.scale_factor_of_distance(cosmo, chi)

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


def test_scale_factor_of_distance_gradients(a_of_chi_grads):
    """d a/d chi = -a^2 E / (c/H0) exactly; d a/d Omega_c against finite differences."""
    cosmo = MODELS["lcdm"]
    chi = 3000.0
    a, (g_cosmo, g_chi) = a_of_chi_grads(cosmo, chi)
    expected = -(float(a) ** 2) * float(fc.E(cosmo, a)) / cosmo.hubble_distance
    assert float(g_chi) == pytest.approx(expected, rel=INVERSE_RTOL)
    plus, _ = a_of_chi_grads(cosmo.replace(Omega_c=cosmo.Omega_c + FD_STEP), chi)
    minus, _ = a_of_chi_grads(cosmo.replace(Omega_c=cosmo.Omega_c - FD_STEP), chi)
    fd = (float(plus) - float(minus)) / (2 * FD_STEP)
    assert float(g_cosmo.Omega_c) == pytest.approx(fd, rel=FD_RTOL)


def test_transverse_distance_smooth_through_flat():
    """Value and Omega_k-gradient continuous at Omega_k = 0 (no NaN from the sin/sinh switch)."""

    def dm(omega_k):
        return fc.transverse_comoving_distance(MODELS["lcdm"].replace(Omega_k=omega_k), 0.25)

    grad = jax.jit(jax.grad(dm))
    g0 = float(grad(0.0))
    assert np.isfinite(g0)
    step = 1e-5  # inside the Taylor branch on both sides of 0
    fd0 = (float(dm(step)) - float(dm(-step))) / (2 * step)
    assert g0 == pytest.approx(fd0, rel=FD_RTOL)
    for omega_k in (-0.05, 0.05):  # the sin and sinh branches
        fd = (float(dm(omega_k + step)) - float(dm(omega_k - step))) / (2 * step)
        assert float(grad(omega_k)) == pytest.approx(fd, rel=FD_RTOL)


def test_vectorised_shapes():
    cosmo = MODELS["lcdm"]
    a = jax.ShapeDtypeStruct((3, 4), jnp.float64)
    assert jax.eval_shape(lambda x: fc.comoving_distance(cosmo, x), a).shape == (3, 4)
    chi = jax.ShapeDtypeStruct((2, 5), jnp.float64)
    assert jax.eval_shape(lambda x: fc.scale_factor_of_distance(cosmo, x), chi).shape == (2, 5)
    assert float(fc.comoving_distance(cosmo, 1.0)) == 0.0


@pytest.mark.parametrize(
    ("func", "arg", "match"),
    [
        (fc.E, 0.0, "a must be > 0"),
        (fc.comoving_distance, -1.0, "a must be > 0"),
        (fc.luminosity_distance, np.array([0.5, np.inf]), "a must be finite"),
        (fc.scale_factor_of_distance, -10.0, "chi must be >= 0"),
        (fc.scale_factor_of_distance, np.nan, "chi must be finite"),
    ],
)
def test_bad_input(func, arg, match):
    with pytest.raises(ValueError, match=match):
        func(MODELS["lcdm"], arg)


def test_traced_values_not_checked():
    # a <= 0 inside jit is not checked eagerly (no concrete value): returns NaN, no error.
    out = jax.jit(lambda a: fc.E(MODELS["lcdm"], a))(-1.0)
    assert out.shape == ()
