"""Power spectrum estimators against an independent NumPy implementation; sharded = single."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmt_fields as ff

SHAPE = (16, 16, 8)
BOX = (100.0, 100.0, 50.0)
# Same float64 sums in a different order (and half vs full spectrum): ~1e-15 relative.
NUMPY_RTOL = 1e-10
# float32 fields: the sharded full-spectrum FFT and the one-device rfft differ by float32
# round-off (~1e-7 relative per mode); bin averages over >= 18 modes stay well below 1e-6.
SHARDED_F32_RTOL = 1e-6
MULTIPOLES = (0, 2, 4)
LOS = (0.3, -0.5, 0.8)


def numpy_spectrum(a, b, edges, ells=None, los=(0, 0, 1), box=BOX):
    """Full-spectrum estimator written from scratch: every mode once, np.bincount."""
    with np.errstate(invalid="ignore"):  # empty bins give NaN, as in fmt_fields
        return _numpy_spectrum(a, b, edges, ells, los, box)


def _numpy_spectrum(a, b, edges, ells, los, box):
    n_cells, volume = a.size, np.prod(box)
    a_k, b_k = np.fft.fftn(a), np.fft.fftn(b)
    power = (a_k * np.conj(b_k)).real * volume / n_cells**2
    axes = [2 * np.pi * np.fft.fftfreq(n, L / n) for n, L in zip(a.shape, box, strict=True)]
    kx, ky, kz = np.meshgrid(*axes, indexing="ij")
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    index = np.digitize(k.ravel(), edges) - 1
    ok = (index >= 0) & (index < len(edges) - 1)
    n_bins = len(edges) - 1
    modes = np.bincount(index[ok], minlength=n_bins)
    k_mean = np.bincount(index[ok], k.ravel()[ok], n_bins) / modes
    if ells is None:
        return k_mean, np.bincount(index[ok], power.ravel()[ok], n_bins) / modes, modes
    n = np.asarray(los, float) / np.linalg.norm(los)
    mu = (kx * n[0] + ky * n[1] + kz * n[2]) / np.where(k > 0, k, 1)
    legendre = {0: np.ones_like(mu), 2: (3 * mu**2 - 1) / 2, 4: (35 * mu**4 - 30 * mu**2 + 3) / 8}
    poles = [
        (2 * ell + 1) * np.bincount(index[ok], (power * legendre[ell]).ravel()[ok], n_bins) / modes
        for ell in ells
    ]
    return k_mean, np.array(poles), modes


@pytest.fixture(scope="module")
def fields():
    rng = np.random.default_rng(5)
    a = rng.normal(size=SHAPE)
    b = 0.5 * a + rng.normal(size=SHAPE)
    return a, b


def _edges():
    return np.linspace(0.05, 0.6, 9)


def test_auto_cross_and_multipoles_match_numpy(fields):
    a, b = fields
    edges = _edges()
    cases = [
        (ff.power_spectrum(jnp.asarray(a), BOX, k_edges=edges), numpy_spectrum(a, a, edges)),
        (
            ff.cross_power_spectrum(jnp.asarray(a), jnp.asarray(b), BOX, k_edges=edges),
            numpy_spectrum(a, b, edges),
        ),
        (
            ff.power_spectrum(jnp.asarray(a), BOX, k_edges=edges, multipoles=MULTIPOLES, los=LOS),
            numpy_spectrum(a, a, edges, MULTIPOLES, LOS),
        ),
    ]
    for got, (k, value, modes) in cases:
        np.testing.assert_array_equal(np.asarray(got.modes), modes)
        np.testing.assert_allclose(np.asarray(got.k), k, rtol=NUMPY_RTOL)
        scale = np.max(np.abs(value))
        np.testing.assert_allclose(np.asarray(got.value), value, rtol=0, atol=NUMPY_RTOL * scale)


def test_default_bins_transfer_and_correlation(fields):
    a, b = (jnp.asarray(f) for f in fields)
    ps = ff.power_spectrum(a, BOX)
    kf = 2 * np.pi / 100.0
    k = np.asarray(ps.k)
    assert np.all((k >= kf * (np.arange(k.size) + 0.5)) & (k < kf * (np.arange(k.size) + 1.5)))
    assert np.all(np.asarray(ps.modes) > 0)
    k_nyquist = np.pi * 8 / 50.0
    assert float(ps.k[-1]) < k_nyquist
    t = ff.transfer_function(3.0 * a, a, BOX)
    np.testing.assert_allclose(np.asarray(t.value), 3.0, rtol=NUMPY_RTOL)
    r_self = ff.correlation_coefficient(a, -2.0 * a, BOX)
    np.testing.assert_allclose(np.asarray(r_self.value), -1.0, rtol=NUMPY_RTOL)
    r = ff.correlation_coefficient(a, b, BOX, k_edges=_edges())
    _, p_ab, _ = numpy_spectrum(fields[0], fields[1], _edges())
    _, p_aa, _ = numpy_spectrum(fields[0], fields[0], _edges())
    _, p_bb, _ = numpy_spectrum(fields[1], fields[1], _edges())
    np.testing.assert_allclose(np.asarray(r.value), p_ab / np.sqrt(p_aa * p_bb), rtol=NUMPY_RTOL)


def test_empty_bins_are_nan_and_odd_z_weights(fields):
    a = fields[0][..., :7]  # odd Z: the half spectrum has no Nyquist plane
    box = (100.0, 100.0, 7 * 50.0 / 8)
    edges = np.array([1e-4, 1e-3, 0.1, 0.3, 0.5])
    got = ff.power_spectrum(jnp.asarray(a), box, k_edges=edges, multipoles=(0, 2), los=LOS)
    assert int(got.modes[0]) == 0 and np.all(np.isnan(np.asarray(got.value)[:, 0]))
    _, value, modes = numpy_spectrum(a, a, edges, (0, 2), LOS, box=box)
    np.testing.assert_array_equal(np.asarray(got.modes), modes)
    np.testing.assert_allclose(np.asarray(got.value)[:, 1:], value[:, 1:], rtol=NUMPY_RTOL)


@pytest.mark.multidevice
def test_sharded_equals_single_device_float32(grid, mesh, sharding, fields):
    a32, b32 = (f.astype(np.float32) for f in fields)
    single = ff.cross_power_spectrum(jnp.asarray(a32), jnp.asarray(b32), BOX, multipoles=(0, 2))
    with jax.set_mesh(mesh):
        a, b = (jax.device_put(f, sharding) for f in (a32, b32))
        split = jax.jit(lambda a, b: ff.cross_power_spectrum(a, b, BOX, multipoles=(0, 2)))(a, b)
    np.testing.assert_array_equal(np.asarray(split.modes), np.asarray(single.modes))
    scale = np.max(np.abs(np.asarray(single.value)))
    err = np.max(np.abs(np.asarray(split.value) - np.asarray(single.value))) / scale
    print(f"grid {grid}: P(k) sharded vs single (float32) max relative error {err:.2e}")
    assert err < SHARDED_F32_RTOL


def test_errors_name_the_argument(fields):
    a = jnp.asarray(fields[0])
    with pytest.raises(ValueError, match="field_b has shape"):
        ff.cross_power_spectrum(a, a[:8], BOX)
    with pytest.raises(ValueError, match="reference has shape"):
        ff.transfer_function(a, a[:8], BOX)
    with pytest.raises(ValueError, match="multipoles"):
        ff.power_spectrum(a, BOX, multipoles=(1,))
    with pytest.raises(ValueError, match="los"):
        ff.power_spectrum(a, BOX, multipoles=(0,), los=(0, 0, 0))
    with pytest.raises(ValueError, match="k_edges"):
        ff.power_spectrum(a, BOX, k_edges=[0.3, 0.1])
    with pytest.raises(ValueError, match="box_size"):
        ff.power_spectrum(a, 0.0)
