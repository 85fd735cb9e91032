"""Born convergence: analytic thin-shell weights (flat and HEALPix), unequal widths,
Limber theory against jax-cosmo, spectra/noise helpers, visibility and reconstruction."""

import itertools

import healpy as hp
import jax
import jax.numpy as jnp
import jax_cosmo as jc
import numpy as np
import pytest

from fmt_cosmo import Planck18, comoving_distance, scale_factor_of_distance, to_jax_cosmo
from fmt_dynamics import Lightcone
from fmt_lensing import (
    Delta,
    Smail,
    TopHat,
    born_convergence,
    flat_power_spectrum,
    gaussian_log_likelihood,
    healpix_deposit_window,
    limber_cl,
    pixel_area_arcmin2,
    reconstruct_full_kappa,
    shape_noise_sigma,
    spherical_power_spectrum,
    visibility_mask,
)

# The thin-shell maps are sums of 1-3 terms in float64.
ANALYTIC_RTOL = 1e-12
# fmt-cosmo vs jax-cosmo Limber (both linear EH98): measured 0.35% at ℓ ≥ 30 (growth and
# σ8 normalisation quadratures differ) and 1.9% at ℓ = 10 (jax-cosmo's coarser χ grid).
JAXCOSMO_RTOL = 2.5e-2
C = 299792.458


@pytest.fixture(scope="module")
def cosmo():
    return Planck18()


def _weight(cosmo, chi, width, z_s):
    chi_s = float(comoving_distance(cosmo, 1 / (1 + z_s)))
    a = float(scale_factor_of_distance(cosmo, chi))
    return 1.5 * float(cosmo.Omega_m) * (100 / C) ** 2 * chi * (chi_s - chi) / chi_s / a * width


def _lightcone(cosmo, maps, edges, area, geometry, expected):
    edges = jnp.asarray(edges, dtype=float)
    chi = 0.5 * (edges[1:] + edges[:-1])
    return Lightcone(
        maps=jnp.asarray(maps),
        chi_edges=edges,
        chi=chi,
        width=jnp.diff(edges),
        scale_factor=scale_factor_of_distance(cosmo, chi),
        particle_density=jnp.asarray(1.0),
        pixel_area=jnp.asarray(area),
        expected_counts=jnp.asarray(expected, dtype=float),
        geometry=geometry,
    )


def test_thin_shell_flat_is_analytic(cosmo):
    n, box, chi, width = 16, 200.0, 600.0, 20.0
    rng = np.random.default_rng(0)
    delta = rng.normal(size=(n, n))
    expected = 50.0
    planes = _lightcone(
        cosmo,
        (expected * (1 + delta))[None],
        [chi - width / 2, chi + width / 2],
        (box / n) ** 2,
        "flat",
        [expected],
    )
    # field pixels of angle (box/n)/χ land on the plane's pixel centres: κ pixel j samples
    # plane pixel j + n/4 (a field of n/2 pixels, centred, fits in the box at the far edge)
    field = float(np.rad2deg(0.5 * box / chi))
    kappa = jax.jit(
        lambda c, p: born_convergence(
            c,
            p,
            Delta(1.5),
            field_size=field,
            field_npix=n // 2,
            density="expected",
            plane_size=box,
            kernel="midpoint",
        )
    )(cosmo, planes)
    w = _weight(cosmo, chi, width, 1.5)
    q = n // 4
    np.testing.assert_allclose(
        np.asarray(kappa[0]), w * delta[q : q + n // 2, q : q + n // 2], rtol=ANALYTIC_RTOL
    )
    with pytest.raises(ValueError, match="field_size"):
        born_convergence(cosmo, planes, Delta(1.5), field_size=2 * field, field_npix=n)


def test_thin_shells_spherical_unequal_widths(cosmo):
    nside = 8
    rng = np.random.default_rng(1)
    edges = [300.0, 320.0, 400.0, 450.0]  # widths 20, 80, 50 Mpc/h
    expected = np.array([10.0, 30.0, 40.0])
    delta = rng.normal(size=(3, 12 * nside**2)) * 0.1
    planes = _lightcone(
        cosmo,
        expected[:, None] * (1 + delta),
        edges,
        4 * np.pi / (12 * nside**2),
        "spherical",
        expected,
    )
    bins = (Delta(1.0), Delta(0.5))
    kappa = np.asarray(
        born_convergence(cosmo, planes, bins, density="expected", nside=nside, kernel="midpoint")
    )
    for b, zs in enumerate((1.0, 0.5)):
        ref = sum(
            _weight(cosmo, 0.5 * (lo + hi), hi - lo, zs) * delta[i]
            for i, (lo, hi) in enumerate(itertools.pairwise(edges))
        )
        np.testing.assert_allclose(kappa[b], ref, rtol=ANALYTIC_RTOL, atol=1e-15)
    # kernel integrated over each shell → midpoint rule as the shells get thin
    thin = _lightcone(cosmo, delta[:1] + 1, [400.0, 400.5], 1.0, "spherical", [1.0])
    w_shell = born_convergence(cosmo, thin, bins, density="expected")
    w_mid = born_convergence(cosmo, thin, bins, density="expected", kernel="midpoint")
    np.testing.assert_allclose(np.asarray(w_shell), np.asarray(w_mid), rtol=1e-6)
    # density="mean": every shell and hence κ has zero mean over the full sphere
    kappa_mean = np.asarray(born_convergence(cosmo, planes, bins))
    assert np.all(np.abs(kappa_mean.mean(-1)) < 1e-15 * np.abs(kappa_mean).max())
    assert np.abs(kappa.mean(-1)).max() > 1e-8  # the "expected" convention is not centred


def test_limber_matches_jax_cosmo(cosmo):
    ell = jnp.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    nzs = (Delta(1.0), Smail(2.0, 1.5, 0.5, zmax=4.0))
    jnzs = [jc.redshift.delta_nz(1.0), jc.redshift.smail_nz(2.0, 1.5, 0.5, zmax=4.0)]
    mine = jax.jit(lambda c: limber_cl(c, ell, nzs))(cosmo)
    ref = jax.jit(
        lambda c: jc.angular_cl.angular_cl(
            c, ell, [jc.probes.WeakLensing(jnzs)], nonlinear_fn=jc.power.linear
        )
    )(to_jax_cosmo(cosmo))
    # jax-cosmo orders pairs (0,0), (0,1), (1,1)
    np.testing.assert_allclose(np.asarray(mine[0]), np.asarray(ref[0]), rtol=JAXCOSMO_RTOL)
    np.testing.assert_allclose(np.asarray(mine[1]), np.asarray(ref[2]), rtol=JAXCOSMO_RTOL)
    cross = jax.jit(lambda c: limber_cl(c, ell, nzs, cross=True))(cosmo)
    np.testing.assert_allclose(np.asarray(cross[0, 1]), np.asarray(ref[1]), rtol=JAXCOSMO_RTOL)


def test_pixel_areas_and_noise():
    full_sky = 4 * np.pi * (180 * 60 / np.pi) ** 2
    np.testing.assert_allclose(pixel_area_arcmin2(nside=16) * 12 * 16**2, full_sky, rtol=1e-14)
    np.testing.assert_allclose(
        pixel_area_arcmin2(nside=16), hp.nside2pixarea(16, degrees=True) * 3600, rtol=1e-14
    )
    assert pixel_area_arcmin2(field_size=5.0, field_npix=100) == pytest.approx(9.0)
    assert shape_noise_sigma(0.3, 10.0, field_size=5.0, field_npix=100) == pytest.approx(
        0.3 / np.sqrt(90.0)
    )
    x = jnp.array([0.1, -0.2])
    ll = gaussian_log_likelihood(x, jnp.zeros(2), 0.5)
    ref = -0.5 * float(jnp.sum((x / 0.5) ** 2)) - 2 * np.log(0.5) - np.log(2 * np.pi)
    np.testing.assert_allclose(float(ll), ref, rtol=1e-14)


def test_flat_estimator_recovers_white_spectrum():
    # white noise of variance s² on pixels of area A has C_ℓ = s² A
    n, size = 128, 4.0
    m = jax.random.normal(jax.random.key(0), (n, n)) * 0.01
    cl = flat_power_spectrum(m, size)
    area = np.deg2rad(size / n) ** 2
    np.testing.assert_allclose(
        float(np.average(cl.value, weights=cl.modes)), 1e-4 * area, rtol=3 * np.sqrt(2 / n**2)
    )


def test_spherical_spectrum_fsky_and_reconstruction():
    nside = 16
    mask = visibility_mask(nside, box_size=100.0, observer=(0.5, 0.5, 0.9), max_distance=60.0)
    assert 0.2 < mask.mean() < 0.95
    rng = np.random.default_rng(2)
    full = rng.normal(size=12 * nside**2) * 0.01
    visible = full[mask]
    rebuilt = reconstruct_full_kappa(visible, mask)
    np.testing.assert_array_equal(rebuilt[mask], visible)
    assert np.all(rebuilt[~mask] == hp.UNSEEN)
    cl = spherical_power_spectrum(rebuilt)
    white = 1e-4 * 4 * np.pi / (12 * nside**2)
    # a binary mask couples ℓ but preserves the mean white level after the f_sky division
    np.testing.assert_allclose(cl[2:].mean(), white, rtol=0.05)
    # the end point of every visible line of sight is inside the box
    vec = np.stack(hp.pix2vec(nside, np.arange(12 * nside**2)), -1)
    end = np.array([50.0, 50.0, 90.0]) + 60.0 * vec
    assert np.array_equal(mask, np.all((end >= 0) & (end <= 100.0), -1))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: visibility_mask(12, box_size=100.0, observer=0.5, max_distance=10.0), "nside"),
        (lambda: visibility_mask(8, box_size=100.0, observer=1.5, max_distance=10.0), "observer"),
        (lambda: pixel_area_arcmin2(nside=3), "nside"),
        (lambda: shape_noise_sigma(0.3, 0.0, nside=4), "n_gal"),
    ],
)
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_tophat_bins_order(cosmo):
    ell = jnp.array([100.0])
    cl = jax.jit(lambda c: limber_cl(c, ell, [TopHat(0.2, 0.5), TopHat(0.8, 1.2)]))(cosmo)
    assert cl.shape == (2, 1) and float(cl[1, 0]) > 3 * float(cl[0, 0])


def test_fourier_interpolation_is_exact_for_band_limited_planes(cosmo):
    n, box, chi, width = 16, 200.0, 600.0, 20.0
    x = (np.arange(n) + 0.5 - n / 2) * box / n  # pixel centres, Mpc/h from the observer
    kx, ky = 2 * np.pi * 3 / box, 2 * np.pi * 5 / box
    delta = 0.1 * np.cos(kx * x[:, None] + 0.3) * np.sin(ky * x[None, :] - 0.2)
    planes = _lightcone(
        cosmo,
        (1 + delta)[None],
        [chi - width / 2, chi + width / 2],
        (box / n) ** 2,
        "flat",
        [1.0],
    )
    field, m = 8.0, 24  # pixels off the plane's grid
    kw = dict(field_size=field, field_npix=m, density="expected", kernel="midpoint", plane_size=box)
    kf, kb = jax.jit(
        lambda c: (
            born_convergence(c, planes, Delta(1.5), interpolation="fourier", **kw)[0],
            born_convergence(c, planes, Delta(1.5), **kw)[0],
        )
    )(cosmo)
    t = np.deg2rad(field) / m * (np.arange(m) + 0.5 - m / 2) * chi
    exact = 0.1 * np.cos(kx * t[:, None] + 0.3) * np.sin(ky * t[None, :] - 0.2)
    exact *= _weight(cosmo, chi, width, 1.5)
    np.testing.assert_allclose(np.asarray(kf), exact, atol=1e-12 * np.abs(exact).max())
    assert np.abs(np.asarray(kb) - exact).max() > 1e-2 * np.abs(exact).max()  # bilinear smooths
    with pytest.raises(ValueError, match="deconvolve"):
        born_convergence(cosmo, planes, Delta(1.5), deconvolve=True, **kw)


# Independent check of `healpix_deposit_window` at nside 32: other white fields (seeds the
# fit does not use), sampled twice as finely (16 points per pixel side instead of 8),
# binned in Δℓ = 8. Measured residuals: 0.09% for ℓ ≤ nside, 0.4% up to 2 nside.
WINDOW_RTOL_LOW = 3e-3  # ℓ ≤ nside
WINDOW_RTOL_HIGH = 1e-2  # nside < ℓ ≤ 2 nside


def test_healpix_deposit_window_matches_independent_deposit():
    nside, fine = 32, 16 * 32
    lmax = 3 * nside - 1
    window = healpix_deposit_window(nside)
    assert window.shape == (lmax + 1,) and window[0] == 1.0
    assert np.all(np.diff(window) < 0)
    ell, m = hp.Alm.getlm(lmax)
    both = np.where(m == 0, 1.0, 2.0)
    theta, phi = hp.pix2ang(fine, np.arange(12 * fine**2))
    pix, wts = hp.get_interp_weights(nside, theta, phi)
    edges = np.arange(1, 2 * nside + 2, 8)
    idx = np.digitize(ell, edges) - 1
    ok = (idx >= 0) & (idx < edges.size - 1)
    num = den = pred = 0.0
    rng = np.random.default_rng(1234)
    for _ in range(4):
        alm = rng.standard_normal(ell.size) + 1j * rng.standard_normal(ell.size)
        alm[m == 0] = alm[m == 0].real
        deposit = np.bincount(
            pix.ravel(), (wts * hp.alm2map(alm, fine, lmax=lmax)).ravel(), 12 * nside**2
        )
        out = hp.map2alm(deposit / 16**2, lmax=lmax, iter=3)
        power = both * np.abs(alm) ** 2
        num = num + np.bincount(idx[ok], (both * np.real(out * np.conj(alm)))[ok])
        den = den + np.bincount(idx[ok], power[ok])
        pred = pred + np.bincount(idx[ok], (power * window[ell])[ok])
    resid = np.abs(num / pred - 1)
    low = edges[1:] - 1 <= nside
    assert resid[low].max() < WINDOW_RTOL_LOW, resid
    assert resid.max() < WINDOW_RTOL_HIGH, resid
