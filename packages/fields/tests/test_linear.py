"""Gaussian and lognormal fields: their power spectra, one-point mean, sharding, cosmology."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmt_cosmo
import fmt_fields as ff

GRIDS = "representative"  # see conftest.py

SHAPE = (32, 32, 32)
BOX = 256.0
KEY = jax.random.key(42)
# χ²/dof over the default bins (15 at 32³): a correct field gives χ²/dof ~ 1 ± sqrt(2/15)
# = ± 0.37. [0.3, 2.0] contains 98% of the χ²_15/15 distribution, and because the key is
# fixed the outcome is deterministic; a 10% amplitude error alone adds ~m_b/2 · 0.01 per bin
# (m_b = 60..2600 modes), i.e. χ²/dof >> 2, so the test has power where it matters.
CHI2_DOF_RANGE = (0.3, 2.0)
# Per-bin pull |P̂ - P̄| / σ_b; Gaussian-ish except in the first bins (few modes).
MAX_PULL = 4.0
# float32 fields: sharded full-spectrum vs one-device rfft paths differ by round-off only.
SHARDED_F32_RTOL = 1e-6
# One-point mean of the lognormal field: 5 standard errors of the sample mean.
N_SIGMA = 5.0


def power(k):
    """A smooth, positive test spectrum [(Mpc/h)^3] with a turnover, k in h/Mpc."""
    return 2e4 * k / (1 + (k / 0.05) ** 2) ** 1.2


def expected_binned_power(fn, shape, box):
    """Mode-weighted average of P over each default bin, on the full grid (NumPy)."""
    axes = [2 * np.pi * np.fft.fftfreq(n, box / n) for n in shape]
    kx, ky, kz = np.meshgrid(*axes, indexing="ij")
    k = np.sqrt(kx**2 + ky**2 + kz**2).ravel()
    kf = 2 * np.pi / box
    edges = kf * (np.arange(int(np.floor(np.pi * shape[0] / box / kf - 0.5)) + 1) + 0.5)
    index = np.digitize(k, edges) - 1
    ok = (index >= 0) & (index < edges.size - 1)
    pk = np.where(k > 0, fn(np.where(k > 0, k, 1.0)), 0.0)
    modes = np.bincount(index[ok], minlength=edges.size - 1)
    return np.bincount(index[ok], pk[ok], edges.size - 1) / modes


def chi2_per_dof(measured, expected, modes):
    """Each bin averages modes/2 independent complex modes, so var = P̄² / (modes / 2)."""
    sigma = expected / np.sqrt(modes / 2.0)
    pulls = (measured - expected) / sigma
    return float(np.mean(pulls**2)), float(np.max(np.abs(pulls)))


@pytest.fixture(scope="module")
def noise():
    return ff.white_noise(KEY, SHAPE)


def test_linear_field_has_the_input_power(noise):
    delta = ff.linear_field(noise, power, BOX)
    assert abs(float(delta.mean())) < 1e-12  # the k = 0 mode is removed
    ps = ff.power_spectrum(delta, BOX)
    expected = expected_binned_power(power, SHAPE, BOX)
    chi2, pull = chi2_per_dof(np.asarray(ps.value), expected, np.asarray(ps.modes))
    print(f"linear_field: chi2/dof = {chi2:.3f} over {expected.size} bins, max pull {pull:.2f}")
    assert CHI2_DOF_RANGE[0] < chi2 < CHI2_DOF_RANGE[1]
    assert pull < MAX_PULL
    # Whitened parametrisation: doubling P multiplies the field by sqrt(2) exactly.
    np.testing.assert_allclose(
        np.asarray(ff.linear_field(noise, lambda k: 2 * power(k), BOX)),
        np.sqrt(2) * np.asarray(delta),
        rtol=1e-12,
        atol=1e-14,
    )


def test_lognormal_mean_and_log_field_power(noise):
    amplitude = 3.5  # σ_G² ≈ 0.48: clearly non-Gaussian, still well sampled on 32³
    p_gauss = lambda k: amplitude * power(k)  # noqa: E731
    delta = ff.lognormal_field(noise, p_gauss, BOX)
    assert float(delta.min()) > -1.0
    # Mesh variance against an independent NumPy ξ_G(0) = (1/V) Σ_k P(k).
    axes = [2 * np.pi * np.fft.fftfreq(n, BOX / n) for n in SHAPE]
    kx, ky, kz = np.meshgrid(*axes, indexing="ij")
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    p_full = np.where(k > 0, p_gauss(np.where(k > 0, k, 1.0)), 0.0)
    xi_gauss = np.fft.ifftn(p_full).real * p_full.size / BOX**3
    variance = float(ff.mesh_variance(p_gauss, SHAPE, BOX))
    np.testing.assert_allclose(variance, xi_gauss[0, 0, 0], rtol=1e-12)
    # Sample mean of δ_LN: variance (1/N) Σ_r ξ_LN(r) with ξ_LN = exp(ξ_G) - 1.
    sigma_mean = np.sqrt(np.mean(np.expm1(xi_gauss)))
    mean = float(delta.mean())
    print(f"lognormal: sigma_G^2 = {variance:.3f}, mean = {mean:.4f} ± {sigma_mean:.4f}")
    assert abs(mean) < N_SIGMA * sigma_mean
    # The log-field is the Gaussian field shifted by -σ²/2: its power is the input power.
    log_field = jnp.log1p(delta)
    np.testing.assert_allclose(float(log_field.mean()), -0.5 * variance, rtol=1e-10)
    ps = ff.power_spectrum(log_field, BOX)
    expected = expected_binned_power(p_gauss, SHAPE, BOX)
    chi2, pull = chi2_per_dof(np.asarray(ps.value), expected, np.asarray(ps.modes))
    print(f"lognormal log-field: chi2/dof = {chi2:.3f}, max pull {pull:.2f}")
    assert CHI2_DOF_RANGE[0] < chi2 < CHI2_DOF_RANGE[1]
    assert pull < MAX_PULL


@pytest.mark.multidevice
def test_sharded_linear_field_and_power_equal_single_device(grid, mesh, sharding):
    shape = (16, 16, 16)

    def run(w):
        delta = ff.linear_field(w, power, BOX)
        return delta, ff.power_spectrum(delta, BOX)

    single, single_ps = jax.jit(run)(ff.white_noise(KEY, shape, dtype=jnp.float32))
    with jax.set_mesh(mesh):
        split_noise = ff.white_noise(KEY, shape, sharding=sharding, dtype=jnp.float32)
        delta, ps = jax.jit(run)(split_noise)
    assert delta.dtype == jnp.float32
    assert len(delta.sharding.device_set) == grid[0] * grid[1]
    assert delta.sharding.is_equivalent_to(sharding, 3)
    field_err = float(jnp.max(jnp.abs(delta - single)) / jnp.max(jnp.abs(single)))
    ps_err = float(jnp.max(jnp.abs(ps.value / single_ps.value - 1)))
    print(f"grid {grid}: float32 linear_field rel err {field_err:.2e}, P(k) {ps_err:.2e}")
    assert field_err < SHARDED_F32_RTOL
    assert ps_err < SHARDED_F32_RTOL


def test_cosmology_power_is_used_and_differentiable(noise):
    """A Cosmology goes through fmt_cosmo.linear_power(cosmo, k, a) (EH98, σ8-normalised)."""
    cosmo = fmt_cosmo.Planck18()
    delta = ff.linear_field(noise, cosmo, BOX, scale_factor=0.5)
    reference = ff.linear_field(noise, lambda k: fmt_cosmo.linear_power(cosmo, k, 0.5), BOX)
    np.testing.assert_allclose(np.asarray(delta), np.asarray(reference), rtol=1e-12, atol=1e-14)

    def loss(sigma8):
        field = ff.linear_field(noise, cosmo.replace(sigma8=sigma8), BOX, scale_factor=0.5)
        return jnp.sum(field**2)

    s8 = cosmo.sigma8
    # sum δ² ∝ σ8², so d/dσ8 = 2 loss / σ8 exactly.
    np.testing.assert_allclose(float(jax.grad(loss)(s8)), 2 * float(loss(s8)) / s8, rtol=1e-10)


def test_errors_name_the_argument(noise):
    with pytest.raises(ValueError, match="white_noise"):
        ff.linear_field(noise[0], power, BOX)
    with pytest.raises(ValueError, match="box_size"):
        ff.linear_field(noise, power, -1.0)
    with pytest.raises(TypeError, match="power"):
        ff.linear_field(noise, 3.0, BOX)
