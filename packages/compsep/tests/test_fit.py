"""Fits: noiseless recovery, statistical calibration over vmapped noise realisations,
recipes, ILC, sharded pixels and bad input."""

import fmt_compsep as fc
import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fmt_compsep._src import simulate as sim
from scipy import stats

NSIDE = 4
N_REAL = 100
KS_PVALUE = 1e-3  # per parameter; a calibrated Σ fails this with probability 1e-3
FREQS = jnp.asarray(sim.FREQUENCIES)


def _mixing():
    return fc.MixingMatrix([fc.CMB(), fc.Dust(sim.DUST_NU0), fc.Synchrotron(sim.SYNC_NU0)])


def _signal(beta_pixels, nside=NSIDE):
    a = np.asarray(_mixing().evaluate(FREQS, jnp.asarray(beta_pixels)))
    return sim.observe(a.reshape(-1, *a.shape[-2:]), sim.sky_amplitudes(nside, seed=3))


def test_calibration_over_vmapped_noise_realisations():
    """Best-fit scatter over 100 realisations matches Σ (KS) and χ² matches the dof."""
    mm = _mixing()
    # 3x the default depths: far from noiseless, still in the regime where the Fisher
    # matrix describes the scatter (at 20x, T_d wanders to 1e4 K in some realisations,
    # where the dust SED is Rayleigh-Jeans and T_d unconstrained).
    std = 3 * sim.noise_std_from_depth(sim.DEPTH_P, NSIDE)
    signal = jnp.asarray(_signal(sim.TRUE_BETA[None]))
    keys = jax.random.split(jax.random.key(7), N_REAL)

    @jax.jit
    @jax.vmap
    def one(key):
        noise = jnp.asarray(std)[:, None, None] * jax.random.normal(key, signal.shape)
        like = fc.SpectralLikelihood(mm, FREQS, signal + noise, std)
        res = fc.fit(like, jnp.asarray(sim.TRUE_BETA))
        return res, like.sigma(res.x), like.chi2(res.x)

    res, sigma, chi2 = one(keys)
    assert bool(jnp.all(res.converged))
    z = (np.asarray(res.x) - sim.TRUE_BETA) / np.sqrt(np.diagonal(np.asarray(sigma), 0, 1, 2))
    for k in range(3):
        assert stats.kstest(z[:, k], "norm").pvalue > KS_PVALUE, (mm.params[k], z[:, k].std())
    dof = 12 * NSIDE**2 * 2 * (9 - 3) - 3
    assert abs(float(np.mean(chi2)) - dof) < 4 * np.sqrt(2 * dof / N_REAL)


def test_recipes_mask_warm_start_and_patch_sigma():
    std = sim.noise_std_from_depth(sim.DEPTH_P, NSIDE)
    ids = fc.patch_ids_from_nside(1, NSIDE)
    beta_d = np.linspace(1.45, 1.65, 12)
    truth = np.stack([beta_d[ids], np.full(ids.size, 20.0), np.full(ids.size, -3.0)], -1)
    data = _signal(truth) + sim.noise_maps(NSIDE, std, seed=4)
    data[:, :, 5] = hp.UNSEEN  # one masked pixel
    comps = [fc.CMB(), fc.Dust(sim.DUST_NU0), fc.Synchrotron(sim.SYNC_NU0)]
    res = fc.multi_res_comp_sep(comps, FREQS, data, std, [1, 0, 0])
    assert res.converged and res.x.shape == (14,)
    assert not res.mask_good[5] and np.all(res.s[:, :, 5] == hp.UNSEEN)
    np.testing.assert_allclose(
        res.x_maps[0], beta_d, atol=5 * np.sqrt(np.diag(res.sigma))[:12].max()
    )
    # adaptive with the same patches given explicitly is the same fit
    res2 = fc.adaptive_comp_sep(comps, FREQS, data, std, [ids, None, None], warm_start=False)
    assert res2.converged
    sd = np.sqrt(np.diag(res.sigma))
    assert np.abs((res2.x - res.x) / sd).max() < 1e-3
    # weighted with the same (uniform) variance maps as per-pixel noise: same maximum
    cov = np.broadcast_to((std**2)[:, None, None], data.shape)
    res3 = fc.weighted_comp_sep(comps, FREQS, data, cov, nside=0)
    res4 = fc.basic_comp_sep(comps, FREQS, data, std)
    assert res3.converged and res4.converged
    assert np.abs((res3.x - res4.x) / np.sqrt(np.diag(res4.sigma))).max() < 1e-3
    np.testing.assert_allclose(res3.sigma, res4.sigma, rtol=1e-6)


def test_ilc_pixel_and_harmonic_recover_noiseless_components():
    comps = [fc.CMB(), fc.Dust(sim.DUST_NU0, beta_d=1.54, temp=20.0)]
    mm = fc.MixingMatrix(comps)
    nside = 8
    rng = np.random.default_rng(0)
    amps = np.stack([rng.normal(0, 1, 12 * nside**2), 20 + rng.normal(0, 5, 12 * nside**2)])
    data = np.einsum("fc,cp->fp", np.asarray(mm.evaluate(FREQS)), amps)
    out = fc.ilc(comps, FREQS, data, patch_ids=fc.patch_ids_from_nside(1, nside))
    np.testing.assert_allclose(out.s, amps, rtol=0, atol=1e-8 * np.abs(amps).max())
    wa = out.W @ np.asarray(mm.evaluate(FREQS))
    np.testing.assert_allclose(wa, np.broadcast_to(np.eye(2), wa.shape), atol=1e-9)
    lbins = np.array([0, 4, 10, 3 * nside])
    h = fc.harmonic_ilc(comps, FREQS, data, lbins)
    band_limited = hp.alm2map(hp.map2alm(amps[0], lmax=3 * nside - 1, iter=3), nside)
    np.testing.assert_allclose(h.s[0], band_limited, rtol=0, atol=1e-8)


@pytest.mark.multidevice
def test_pixel_sharding_equals_unsharded():
    """logL and its gradient with pixels sharded over all devices equal one device."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    n_dev = len(jax.devices())
    std = sim.noise_std_from_depth(sim.DEPTH_P, NSIDE)
    data = _signal(sim.TRUE_BETA[None]) + sim.noise_maps(NSIDE, std, seed=5)
    var = np.broadcast_to((std * 1.1) ** 2, (data.shape[-1], 9)).T[:, None, :] * np.ones_like(data)
    mm = _mixing()
    mesh = Mesh(np.array(jax.devices()), ("pix",))
    shard = NamedSharding(mesh, PartitionSpec(None, None, "pix"))
    assert data.shape[-1] % n_dev == 0

    @jax.jit
    def run(d, noise):
        like = fc.SpectralLikelihood(mm, FREQS, d, noise, use_moments=False)
        return like.value_and_grad(jnp.array([1.5, 21.0, -3.05]))

    ref = run(jnp.asarray(data), jnp.sqrt(jnp.asarray(var)))
    got = run(jax.device_put(data, shard), jax.device_put(np.sqrt(var), shard))
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda mm, d, s: fc.SpectralLikelihood(mm, FREQS[:8], d, s), "n_freq"),
        (
            lambda mm, d, s: fc.SpectralLikelihood(
                mm, FREQS, d[:, :, :10], s[:, None, None] * np.ones((1, 2, 11))
            ),
            "broadcast",
        ),
        (lambda mm, d, s: fc.SpectralLikelihood(mm, FREQS, d, s.at[2].set(0.0)), "positive"),
        (lambda mm, d, s: fc.SpectralLikelihood(mm, FREQS, d, -s), "positive"),
        (
            lambda mm, d, s: fc.SpectralLikelihood(
                mm, FREQS, d, s, layout=fc.PatchLayout(3, 12 * 8**2, None)
            ),
            "nside 8",
        ),
        (
            lambda mm, d, s: fc.PatchLayout(3, d.shape[-1], [np.zeros(12 * 2**2, int), None, None]),
            "nside 2",
        ),
        (lambda mm, d, s: fc.multi_res_comp_sep(mm, FREQS, d, s, [8, 0, 0]), "nside_patch"),
        (lambda mm, d, s: fc.basic_comp_sep(mm, FREQS, d[:, :, :100], s, nside=2), "HEALPix"),
        (
            lambda mm, d, s: fc.basic_comp_sep(mm, FREQS, d, s, bounds={"Dust.beta": (1, 2)}),
            "Dust.beta",
        ),
        (lambda mm, d, s: fc.MixingMatrix([fc.CMB(), fc.Dust(temp=20, Td=3)]), "Td"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    std = jnp.asarray(sim.noise_std_from_depth(sim.DEPTH_P, NSIDE))
    data = np.zeros((9, 2, 12 * NSIDE**2))
    with pytest.raises(ValueError, match=match):
        call(_mixing(), data, std)


def test_kmeans_patches_are_compact_clusters():
    """Every pixel belongs to the cluster whose (normalised) centroid is nearest."""
    nside, k = 4, 6
    ids = fc.kmeans_patches(nside, k, key=jax.random.key(0))
    assert ids.shape == (12 * nside**2,) and set(np.unique(ids)) == set(range(k))
    vec = np.stack(hp.pix2vec(nside, np.arange(ids.size)), -1)
    centres = np.stack([vec[ids == c].sum(0) for c in range(k)])
    centres /= np.linalg.norm(centres, axis=-1, keepdims=True)
    np.testing.assert_array_equal(np.argmax(vec @ centres.T, axis=-1), ids)
    layout = fc.PatchLayout(3, ids.size, [ids, None, None])
    assert layout.n_x == k + 2 and layout.n_group == k
