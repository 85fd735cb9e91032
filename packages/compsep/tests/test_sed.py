"""SEDs and the mixing matrix against fgbuster's sympy expressions; autodiff derivatives."""

import pathlib

import fmt_compsep as fc
import jax
import jax.numpy as jnp
import numpy as np
import pytest

REF = np.load(pathlib.Path(__file__).parent / "reference" / "fgbuster_reference.npz")
SED_RTOL = 1e-12  # fgbuster evaluates the same closed forms with numpy: rounding only
FD_RTOL = 1e-7  # central differences with step 1e-5 (truncation ~1e-10, rounding ~1e-11)


@pytest.mark.parametrize(
    "name, component, params",
    [
        ("sed_dust_kcmb", fc.Dust(150.0), (1.6, 19.0)),
        ("sed_dust_krj", fc.Dust(150.0, units="K_RJ"), (1.6, 19.0)),
        ("sed_sync_running", fc.Synchrotron(30.0, running=None, nu_pivot=80.0), (-3.1, 0.05)),
        ("sed_cmb_krj", fc.CMB(units="K_RJ"), ()),
        ("sed_tsz_ukcmb", fc.ThermalSZ(), ()),
    ],
)
def test_sed_matches_fgbuster(name, component, params):
    got = component(jnp.asarray(REF["sed_nu"]), *params)
    np.testing.assert_allclose(got, REF[name], rtol=SED_RTOL, atol=0)


def test_bandpass_integration_matches_fgbuster():
    bands = fc.Bandpasses(
        [(REF["band_nu_0"], REF["band_w_0"]), (REF["band_nu_1"], REF["band_w_1"])]
    )
    mm = fc.MixingMatrix([fc.CMB(), fc.Dust(150.0)])
    a = mm.evaluate(bands, jnp.array([1.6, 19.0]))
    np.testing.assert_allclose(a[:, 1], REF["sed_dust_bandpass"], rtol=SED_RTOL)
    # normalised bands integrate the flat CMB SED to one
    np.testing.assert_allclose(a[:, 0], 1.0, rtol=1e-14)


def test_normalized_narrow_band_is_the_sed_at_its_centre():
    nu = jnp.linspace(149.999, 150.001, 5)
    band = fc.Bandpasses([(nu, jnp.ones(5))], normalize=True)
    dust = fc.MixingMatrix([fc.Dust(353.0)])
    got = dust.evaluate(band, jnp.array([1.5, 20.0]))
    want = dust.evaluate(jnp.array([150.0]), jnp.array([1.5, 20.0]))
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_mixing_matrix_derivatives_match_finite_differences():
    comps = [fc.CMB(), fc.Dust(353.0), fc.Synchrotron(23.0, running=None), fc.FreeFree()]
    mm = fc.MixingMatrix(comps)
    assert mm.params == (
        "Dust.beta_d",
        "Dust.temp",
        "Synchrotron.beta_pl",
        "Synchrotron.running",
        "FreeFree.logEM",
        "FreeFree.Te",
    )
    freqs = jnp.array([30.0, 90.0, 150.0, 353.0])
    beta = jnp.array([1.5, 21.0, -3.0, 0.02, 0.5, 7000.0])
    jac = jax.jit(mm.diff)(freqs, beta)  # (P, F, C)
    evaluate = jax.jit(mm.evaluate)
    for k in range(mm.n_param):
        h = 1e-5 * max(1.0, abs(float(beta[k])))
        e = jnp.zeros(mm.n_param).at[k].set(h)
        fd = (evaluate(freqs, beta + e) - evaluate(freqs, beta - e)) / (2 * h)
        np.testing.assert_allclose(
            jac[k], fd, rtol=FD_RTOL, atol=FD_RTOL * float(jnp.abs(fd).max())
        )
    hess = jax.jit(mm.diff_diff)(freqs, beta)
    np.testing.assert_allclose(hess, jnp.swapaxes(hess, 0, 1), rtol=1e-12)
    # batched parameters: one mixing matrix per row
    batch = jnp.stack([beta, beta * 1.01])
    np.testing.assert_allclose(evaluate(freqs, batch)[1], evaluate(freqs, beta * 1.01), rtol=1e-14)


def test_units_relation_and_fixed_parameters():
    nu = jnp.array([30.0, 100.0, 300.0])
    cmb_rj = fc.CMB(units="K_RJ")(nu)
    np.testing.assert_allclose(cmb_rj * fc.k_rj_to_k_cmb(nu), 1.0, rtol=1e-14)
    fixed = fc.Dust(353.0, temp=19.0)
    assert fixed.free_params == ("beta_d",)
    np.testing.assert_allclose(fixed(nu, 1.5), fc.Dust(353.0)(nu, 1.5, 19.0), rtol=1e-15)
    tsz_rj = fc.ThermalSZ(units="uK_RJ")(nu)
    np.testing.assert_allclose(tsz_rj * fc.k_rj_to_k_cmb(nu), fc.ThermalSZ()(nu), rtol=1e-13)
    # the SED is differentiable in every parameter (no sympy at run time)
    g = jax.grad(lambda b: fc.Synchrotron(23.0, running=None)(nu, b[0], b[1]).sum())(
        jnp.array([-3.0, 0.1])
    )
    assert np.all(np.isfinite(g)) and np.all(g != 0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: fc.Dust(353.0, beta=1.5),
        lambda: fc.Synchrotron(23.0, curvature=0.1),
        lambda: fc.FreeFree(EM=1.0),
        lambda: fc.Dust(353.0, units="Jy"),
        lambda: fc.MixingMatrix([fc.CMB(), fc.Dust()]).param_vector({"Dust.beta": 1.5}),
    ],
)
def test_unknown_component_parameters_raise(build):
    with pytest.raises(ValueError, match=r"beta|curvature|EM|units"):
        build()
