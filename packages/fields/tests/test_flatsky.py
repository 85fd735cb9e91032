"""Flat-sky maps: C_ℓ recovered (χ²), estimator vs NumPy, lognormal mean and shift."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmt_fields as ff

SHAPE = (128, 128)
SIZE = np.deg2rad(10.0)  # a 10° x 10° patch
# See test_linear.py: χ²/dof over the default ℓ bins (~63 here, so ± 0.18); [0.6, 1.5]
# holds > 99% of χ²_63/63 and a 10% amplitude error drives it far above.
CHI2_DOF_RANGE = (0.6, 1.5)
NUMPY_RTOL = 1e-10
N_SIGMA = 5.0


def cl(ell):
    return 1e-9 * (ell / 100.0) ** -1.2


def _numpy_cl(m, edges):
    n_pix, area = m.size, SIZE**2
    power = np.abs(np.fft.fft2(m)) ** 2 * area / n_pix**2
    lx = 2 * np.pi * np.fft.fftfreq(SHAPE[0], SIZE / SHAPE[0])
    ell = np.sqrt(lx[:, None] ** 2 + lx[None, :] ** 2).ravel()
    index = np.digitize(ell, edges) - 1
    ok = (index >= 0) & (index < edges.size - 1)
    modes = np.bincount(index[ok], minlength=edges.size - 1)
    expected = np.bincount(index[ok], cl(np.where(ell > 0, ell, 1.0))[ok], edges.size - 1)
    return (
        np.bincount(index[ok], power.ravel()[ok], edges.size - 1) / modes,
        expected / modes,
        modes,
    )


@pytest.fixture(scope="module")
def noise():
    return jax.random.normal(jax.random.key(9), SHAPE)


def test_gaussian_map_has_the_input_cl_and_estimator_matches_numpy(noise):
    m = jax.jit(lambda w: ff.flat_sky_gaussian_map(w, cl, SIZE))(noise)
    assert abs(float(m.mean())) < 1e-18
    got = ff.angular_power_spectrum(m, SIZE)
    lf = 2 * np.pi / SIZE
    edges = lf * (np.arange(got.k.size + 1) + 0.5)
    measured, expected, modes = _numpy_cl(np.asarray(m), edges)
    np.testing.assert_array_equal(np.asarray(got.modes), modes)
    np.testing.assert_allclose(np.asarray(got.value), measured, rtol=NUMPY_RTOL)
    chi2 = float(np.mean((measured - expected) ** 2 / (expected**2 / (modes / 2.0))))
    print(f"flat-sky Gaussian map: chi2/dof = {chi2:.3f} over {modes.size} bins")
    assert CHI2_DOF_RANGE[0] < chi2 < CHI2_DOF_RANGE[1]
    cross = ff.angular_power_spectrum(m, SIZE, map_b=-m)
    np.testing.assert_allclose(np.asarray(cross.value), -measured, rtol=NUMPY_RTOL)


def test_lognormal_map_mean_and_shift(noise):
    shift = 0.02
    amp = 2e4  # σ_G² ≈ 0.5
    c_gauss = lambda ell: amp * cl(ell)  # noqa: E731
    m = ff.flat_sky_lognormal_map(noise, c_gauss, SIZE, shift=shift)
    assert float(m.min()) > -shift
    lx = 2 * np.pi * np.fft.fftfreq(SHAPE[0], SIZE / SHAPE[0])
    ell = np.sqrt(lx[:, None] ** 2 + lx[None, :] ** 2)
    c_full = np.where(ell > 0, c_gauss(np.where(ell > 0, ell, 1.0)), 0.0)
    xi = np.fft.ifft2(c_full).real * c_full.size / SIZE**2
    sigma_mean = shift * np.sqrt(np.mean(np.expm1(xi)))
    mean = float(m.mean())
    print(f"flat-sky lognormal: sigma_G^2 = {xi[0, 0]:.3f}, mean {mean:.2e} ± {sigma_mean:.2e}")
    assert 0.2 < xi[0, 0] < 2.0
    assert abs(mean) < N_SIGMA * sigma_mean
    gauss = ff.flat_sky_gaussian_map(noise, c_gauss, SIZE)
    np.testing.assert_allclose(
        np.asarray(jnp.log1p(m / shift)), np.asarray(gauss) - 0.5 * xi[0, 0], atol=1e-10
    )


def test_errors_name_the_argument(noise):
    with pytest.raises(ValueError, match="white_noise"):
        ff.flat_sky_gaussian_map(noise[0], cl, SIZE)
    with pytest.raises(ValueError, match="map_size"):
        ff.flat_sky_gaussian_map(noise, cl, -1.0)
    with pytest.raises(TypeError, match="angular_power"):
        ff.flat_sky_gaussian_map(noise, [1.0], SIZE)
    with pytest.raises(ValueError, match="shift"):
        ff.flat_sky_lognormal_map(noise, cl, SIZE, shift=0.0)
    with pytest.raises(ValueError, match="map_b"):
        ff.angular_power_spectrum(noise, SIZE, map_b=noise[:4])
