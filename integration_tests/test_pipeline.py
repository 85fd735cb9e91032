"""Chains across packages: cosmo -> fields -> dynamics, on one device and sharded.

Nox runs the `multidevice` tests again at 2 and 8 fake CPU devices (XLA_FLAGS set by nox);
device grids are chosen at collection from `jax.device_count()` so none is skipped.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import fmt_cosmo
import fmt_dynamics
import fmt_fields

BOX = 256.0
N = 32
# Band powers of a Gaussian field scatter with variance 2 P^2 / N_modes (N_modes counts
# independent complex modes). Over ~15 bins a fixed realisation gives chi2/dof in about
# [0.4, 1.9] at 99.5% two-sided; we accept [0.3, 2.0].
CHI2_DOF_RANGE = (0.3, 2.0)
# float32 with different summation orders (halo additions, distributed FFT transposes).
SHARDED_RTOL = 1e-5


def _grids():
    n = jax.device_count()
    if n == 1:
        return [(1, 1)]
    if n < 8:
        return [(n, 1), (1, n)]
    return [(2, 4), (8, 1)]


GRIDS = _grids()


def test_linear_field_from_cosmology_follows_linear_power():
    """fmt-fields draws its field from fmt-cosmo's EH98 power: band powers agree (chi2).

    The expectation per bin is the model averaged over the bin's modes, obtained exactly by
    running the same estimator on a field whose Fourier amplitudes are sqrt(P) with the
    noise's phases (unit-modulus noise), so binning effects cancel.
    """
    cosmo = fmt_cosmo.Planck18()
    noise = fmt_fields.white_noise(jax.random.key(42), (N, N, N))
    noise_k = jnp.fft.fftn(noise)
    phases_only = jnp.fft.ifftn(noise_k / jnp.abs(noise_k) * np.sqrt(N**3)).real
    field = jax.jit(lambda c, w: fmt_fields.linear_field(w, c, BOX, scale_factor=0.5))

    measured = fmt_fields.power_spectrum(field(cosmo, noise), BOX)
    expected = fmt_fields.power_spectrum(field(cosmo, phases_only), BOX)
    modes = np.asarray(measured.modes)
    keep = modes > 0
    # Sanity of the expectation itself: the mode-averaged model is close to P(k_bin).
    direct = np.asarray(fmt_cosmo.linear_power(cosmo, measured.k[keep], 0.5))
    np.testing.assert_allclose(np.asarray(expected.value)[keep], direct, rtol=0.15)

    ratio = np.asarray(measured.value)[keep] / np.asarray(expected.value)[keep]
    sigma = np.sqrt(2.0 / modes[keep])
    chi2_dof = float(np.mean(((ratio - 1.0) / sigma) ** 2))
    assert CHI2_DOF_RANGE[0] < chi2_dof < CHI2_DOF_RANGE[1], (chi2_dof, ratio)


@pytest.fixture(scope="module")
def chain():
    """2LPT at a=0.1 then 3 FastPM steps to a=1, float32; returns displacement and dΩc."""
    table_a = jnp.linspace(0.1, 1.0, 4, dtype=jnp.float32)

    def run(omega_c, noise):
        cosmo = fmt_cosmo.Planck18(Omega_c=omega_c)
        delta = fmt_fields.linear_field(noise, cosmo, BOX)
        state = fmt_dynamics.lpt(cosmo, delta, 0.1, order=2)
        return fmt_dynamics.nbody(cosmo, state, table_a, solver="fastpm").state.displacement

    def loss(omega_c, noise):
        return jnp.sum(run(omega_c, noise) ** 2)

    return jax.jit(run), jax.jit(jax.grad(loss, argnums=(0, 1)))


@pytest.mark.multidevice
@pytest.mark.parametrize("grid", GRIDS, ids=[f"{a}x{b}" for a, b in GRIDS])
def test_sharded_forward_model_equals_single_device(chain, grid):
    """Noise -> EH98 field -> 2LPT -> FastPM, and its gradients, sharded == one device."""
    run, grad = chain
    shape = (16, 16, 16)
    omega_c = jnp.float32(0.26)
    key = jax.random.key(7)
    noise = fmt_fields.white_noise(key, shape, dtype=jnp.float32)
    ref_disp = run(omega_c, noise)
    ref_grads = grad(omega_c, noise)

    mesh = jax.make_mesh(grid, ("x", "y"), devices=jax.devices()[: grid[0] * grid[1]])
    with jax.set_mesh(mesh):
        sharding = NamedSharding(mesh, P("x", "y"))
        noise_sh = fmt_fields.white_noise(key, shape, sharding=sharding, dtype=jnp.float32)
        np.testing.assert_array_equal(np.asarray(noise_sh), np.asarray(noise))
        disp = run(omega_c, noise_sh)
        grads = grad(omega_c, noise_sh)
    assert disp.sharding.spec[:2] == P("x", "y")[:2] or grid == (1, 1)
    scale = float(jnp.max(jnp.abs(ref_disp)))
    np.testing.assert_allclose(np.asarray(disp), np.asarray(ref_disp), atol=SHARDED_RTOL * scale)
    np.testing.assert_allclose(float(grads[0]), float(ref_grads[0]), rtol=SHARDED_RTOL)
    gscale = float(jnp.max(jnp.abs(ref_grads[1])))
    np.testing.assert_allclose(
        np.asarray(grads[1]), np.asarray(ref_grads[1]), atol=SHARDED_RTOL * gscale
    )
