"""Equivalence with fgbuster on identical inputs (numbers from tests/reference/).

`reference/make_fgbuster_reference.py` ran fgbuster (from its source) on the synthetic
sky of `fmt_compsep._src.simulate` (nside 16, 9 frequencies, Q/U, CMB + dust +
synchrotron): a global fit of (β_d, T_d, β_s) and a 50-parameter fit with β_d on
nside-2 patches. The optimum there was polished by Newton steps on fgbuster's own
gradient (final decrement ≈ 1e-23).
"""

import pathlib

import fmt_compsep as fc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fmt_compsep._src import simulate as sim

REF = np.load(pathlib.Path(__file__).parent / "reference" / "fgbuster_reference.npz")
NSIDE = 16
LOGL_RTOL = 1e-12
GRAD_RTOL = 1e-8  # relative to the largest gradient component at that point
SIGMA_RTOL = 1e-6
CMB_ATOL = 1e-10  # µK
BESTFIT_SIGMAS = 1e-3
NOISELESS_RTOL = 1e-6
FIT = jax.jit(fc.fit)  # one compilation per layout, shared by the tests of this module


def _mixing():
    return fc.MixingMatrix([fc.CMB(), fc.Dust(sim.DUST_NU0), fc.Synchrotron(sim.SYNC_NU0)])


def _observation(beta_pixels, *, noise=True):
    mm = _mixing()
    amps = sim.sky_amplitudes(NSIDE, seed=0)
    std = sim.noise_std_from_depth(sim.DEPTH_P, NSIDE)
    a = np.asarray(mm.evaluate(jnp.asarray(sim.FREQUENCIES), jnp.asarray(beta_pixels)))
    signal = sim.observe(a.reshape(-1, *a.shape[-2:]), amps)
    return (signal + sim.noise_maps(NSIDE, std, seed=1) if noise else signal), std


@pytest.fixture(scope="module")
def problems():
    """Both problems as SpectralLikelihoods (moment reduction) plus the per-pixel variant."""
    mm = _mixing()
    data, std = _observation(sim.TRUE_BETA[None])
    ids = fc.patch_ids_from_nside(2, NSIDE)
    np.testing.assert_array_equal(ids, REF["patch_ids"])
    beta_pix = np.stack(
        [REF["patch_beta_d_true"][ids], np.full(ids.size, 20.0), np.full(ids.size, -3.0)], -1
    )
    data_p, _ = _observation(beta_pix)
    layout = fc.PatchLayout(3, ids.size, [ids, None, None])
    clean, _ = _observation(sim.TRUE_BETA[None], noise=False)
    clean_p, _ = _observation(beta_pix, noise=False)
    return {
        "global_noiseless": fc.SpectralLikelihood(mm, sim.FREQUENCIES, clean, std),
        "patch_noiseless": fc.SpectralLikelihood(mm, sim.FREQUENCIES, clean_p, std, layout=layout),
        "global": fc.SpectralLikelihood(mm, sim.FREQUENCIES, data, std),
        "patch": fc.SpectralLikelihood(mm, sim.FREQUENCIES, data_p, std, layout=layout),
        "patch_pixels": fc.SpectralLikelihood(
            mm, sim.FREQUENCIES, data_p, std, layout=layout, use_moments=False
        ),
    }


@pytest.fixture(scope="module")
def algebra():
    """One jitted function for all the algebra of a likelihood at one point."""

    @jax.jit
    def run(like, x):
        value, grad = like.value_and_grad(x)
        return value, grad, like.sigma(x), like.components(x)[0]

    return run


@pytest.mark.parametrize("case", ["global", "patch", "patch_pixels"])
def test_logL_gradient_sigma_cmb_match_fgbuster(problems, algebra, case):
    like = problems[case]
    prefix = case.split("_")[0]
    for x, logl, grad in zip(
        REF[f"{prefix}_x_test"], REF[f"{prefix}_logL"], REF[f"{prefix}_grad"], strict=True
    ):
        value, g, _, _ = algebra(like, jnp.asarray(x))
        np.testing.assert_allclose(value, logl, rtol=LOGL_RTOL)
        np.testing.assert_allclose(g, grad, rtol=0, atol=GRAD_RTOL * np.abs(grad).max())
    _, _, sigma, cmb = algebra(like, jnp.asarray(REF[f"{prefix}_x_opt"]))
    ref_sigma = REF[f"{prefix}_sigma_opt"]
    np.testing.assert_allclose(sigma, ref_sigma, rtol=0, atol=SIGMA_RTOL * np.abs(ref_sigma).max())
    np.testing.assert_allclose(np.diag(sigma), np.diag(ref_sigma), rtol=SIGMA_RTOL)
    np.testing.assert_allclose(cmb, REF[f"{prefix}_cmb_opt"], rtol=0, atol=CMB_ATOL)


@pytest.mark.parametrize("case", ["global", "patch"])
def test_best_fit_is_the_true_optimum(problems, case):
    like = problems[case]
    res = FIT(like, like.x0())
    assert bool(res.converged), f"decrement {res.decrement} after {res.n_steps} steps"
    err = (np.asarray(res.x) - REF[f"{case}_x_opt"]) / np.sqrt(np.diag(REF[f"{case}_sigma_opt"]))
    assert np.abs(err).max() < BESTFIT_SIGMAS, err
    np.testing.assert_allclose(res.log_likelihood, REF[f"{case}_logL_opt"], rtol=LOGL_RTOL)


@pytest.mark.parametrize("case", ["global", "patch"])
def test_noiseless_data_recover_the_input(problems, case):
    """From a start several σ away, noiseless maps give back the input parameters."""
    like = problems[f"{case}_noiseless"]
    truth = np.r_[REF["patch_beta_d_true"], 20.0, -3.0] if case == "patch" else sim.TRUE_BETA
    res = FIT(like, like.x0(jnp.array([1.3, 24.0, -2.6])))
    assert bool(res.converged)
    np.testing.assert_allclose(res.x, truth, rtol=NOISELESS_RTOL)
