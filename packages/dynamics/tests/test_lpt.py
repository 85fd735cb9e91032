"""1LPT / 2LPT: linear growth at early times, 2LPT against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmt_cosmo
import fmt_fields
from fmt_dynamics import density_from_displacement, lpt, lpt_displacements

N = 32
BOX = 512.0  # Mpc/h: 16 Mpc/h cells, mildly nonlinear at a = 1, linear at A_EARLY
A_EARLY = 0.05
GROWTH_RTOL = 1e-3  # the target on the largest scales
N_LARGE_SCALE_BINS = 3
REF_ATOL = 1e-12  # float64 FFT round-off on O(1) fields
MOMENTUM_RTOL = 1e-6  # Hermite growth table: D' and the derivative of the interpolant


def _power(k):
    # A smooth, red spectrum with a turnover (stands in for the linear P(k) at a = 1).
    k0 = 0.02
    return 3e4 * (k / k0) / (1 + (k / k0) ** 2) ** 1.5


@pytest.fixture(scope="module")
def cosmo():
    return fmt_cosmo.Planck18()


@pytest.fixture(scope="module")
def table(cosmo):
    return jax.jit(fmt_cosmo.growth_table)(cosmo)


@pytest.fixture(scope="module")
def delta_lin():
    noise = fmt_fields.white_noise(jax.random.key(7), (N, N, N))
    return fmt_fields.linear_field(noise, _power, BOX)


@pytest.fixture(scope="module")
def lpt_early(cosmo, delta_lin, table):
    run = jax.jit(
        lambda d, order: lpt(cosmo, d, A_EARLY, order=order, table=table), static_argnums=1
    )
    return {order: run(delta_lin, order) for order in (1, 2)}


def _divergence(disp):
    """-∇·Ψ with the exact spectral derivative (numpy, Nyquist zeroed)."""
    d = np.asarray(disp)
    out = 0
    for axis in range(3):
        n = np.fft.fftfreq(N, 1.0 / N)
        k = 2 * np.pi * n / N * (np.abs(n) != N // 2)
        shape = [1, 1, 1]
        shape[axis] = N
        out = out - np.fft.ifftn(1j * k.reshape(shape) * np.fft.fftn(d[..., axis])).real
    return jnp.asarray(out)


def _cross_ratio(field, delta_lin):
    cross = fmt_fields.cross_power_spectrum(field, delta_lin, BOX).value
    auto = fmt_fields.power_spectrum(delta_lin, BOX).value
    return np.asarray(cross / auto), np.asarray(fmt_fields.power_spectrum(field, BOX).value / auto)


@pytest.mark.parametrize("order", [1, 2])
def test_lpt_linear_growth(order, cosmo, table, delta_lin, lpt_early):
    """The density of the LPT displacement, -∇·Ψ, over D1 δ_L on the largest scales.

    Compared mode by mode with the same realisation of δ_L (no cosmic variance): the
    cross-spectrum ratio P(δ, δ_L) / (D1 P_L) tests amplitude and sign, the auto ratio
    P(δ) / (D1² P_L) the growth of the power. At a = 0.05 the 2LPT term is ~D1 σ ≪ 1e-3 of
    the linear one and uncorrelated with δ_L (Gaussian three-point function vanishes).
    """
    d1 = float(fmt_cosmo.growth_factor(cosmo, A_EARLY, table))
    disp, _ = lpt_early[order]
    cross, auto = _cross_ratio(_divergence(disp), delta_lin)
    large = slice(0, N_LARGE_SCALE_BINS)
    np.testing.assert_allclose(cross[large] / d1, 1.0, rtol=GROWTH_RTOL)
    np.testing.assert_allclose(auto[large] / d1**2, 1.0, rtol=GROWTH_RTOL)
    assert 0.03 < d1 < 0.2  # early time: D1 is far from 1, the check is not vacuous


def _lattice_cic_response():
    """Linear response of CIC painting to displacements of particles half a cell off the
    mesh points (x = q + 1/2 + Ψ, |Ψ| < 1/2): each cloud then straddles the same two cells
    per axis and its weights (1/2 ∓ Ψ_i) are exactly linear in Ψ_i, so
        δ_k = -e^{-ik·s} Σ_i 2i sin(k_i/2) Π_{j≠i} cos(k_j/2) Ψ_i,k,   s = (1/2, 1/2, 1/2),
    With the 1LPT Ψ_k = D1 i k δ_L,k / k² this gives δ_paint,k = D1 R(k) δ_L,k."""
    k1 = 2 * np.pi * np.fft.fftfreq(N)
    kx, ky, kz = np.meshgrid(k1, k1, k1, indexing="ij")
    ks = (kx, ky, kz)
    kk = kx**2 + ky**2 + kz**2
    kk[0, 0, 0] = 1.0
    total = 0
    for i in range(3):
        term = 2 * np.sin(ks[i] / 2) * ks[i]
        for j in range(3):
            if j != i:
                term = term * np.cos(ks[j] / 2)
        total = total + term
    return np.exp(-1j * (kx + ky + kz) / 2) * total / kk


def test_painted_lpt_growth(cosmo, table, delta_lin, lpt_early):
    """Particles painted with CIC grow like D1 on the largest scales, mode by mode.

    Particles on a lattice do not sample the CIC window uniformly, so its sinc² correction
    is not the lattice's response (it leaves a k²/24 bias, 3e-3 in P at the fundamental of
    32³, above the 1e-3 target), and the response switches between forward and backward
    differences with the sign of Ψ (an O(k) error). Shifting every particle by half a cell
    -- a translation, physically irrelevant -- makes the response exactly linear in Ψ and
    known (`_lattice_cic_response`); the painted field is then compared with D1 R(k) δ_L,k.
    """
    d1 = float(fmt_cosmo.growth_factor(cosmo, A_EARLY, table))
    disp, _ = lpt_early[2]
    assert float(jnp.abs(disp).max()) < 0.5  # the response is linear in this regime
    delta = density_from_displacement(disp + 0.5)
    predicted = np.fft.ifftn(d1 * _lattice_cic_response() * np.fft.fftn(np.asarray(delta_lin)))
    cross, auto = _cross_ratio(delta, jnp.asarray(predicted.real))
    large = slice(0, N_LARGE_SCALE_BINS)
    np.testing.assert_allclose(cross[large], 1.0, rtol=GROWTH_RTOL)
    np.testing.assert_allclose(auto[large], 1.0, rtol=GROWTH_RTOL)


def _numpy_psi2(delta):
    """Independent 2LPT ψ2 = ∇∇⁻² Σ_{i<j}(φ_ii φ_jj - φ_ij²), φ = ∇⁻²δ, with complex FFTs.

    First derivatives use i k with the Nyquist mode zeroed, second derivatives on the
    diagonal -k², exactly the spectral conventions documented in fmt_dynamics.lpt.
    """
    shape = delta.shape
    n = [np.fft.fftfreq(s, 1.0 / s) for s in shape]
    k = [2 * np.pi * ni / s for ni, s in zip(n, shape, strict=True)]
    k_odd = [ki * (np.abs(ni) != s // 2) for ki, ni, s in zip(k, n, shape, strict=True)]
    grid = np.meshgrid(*k, indexing="ij")
    grid_odd = np.meshgrid(*k_odd, indexing="ij")
    kk = sum(g**2 for g in grid)
    inv = np.where(kk > 0, -1.0 / np.where(kk > 0, kk, 1.0), 0.0)
    phi_k = np.fft.fftn(delta) * inv

    def hess(i, j):
        kernel = -(grid[i] ** 2) if i == j else (1j * grid_odd[i]) * (1j * grid_odd[j])
        return np.fft.ifftn(kernel * phi_k).real

    s = np.zeros(shape)
    for i in range(3):
        for j in range(i + 1, 3):
            s += hess(i, i) * hess(j, j) - hess(i, j) ** 2
    pot = np.fft.fftn(s) * inv
    return np.stack([np.fft.ifftn(1j * grid_odd[a] * pot).real for a in range(3)], axis=-1)


def test_2lpt_matches_numpy_reference(cosmo, table):
    rng = np.random.default_rng(11)
    delta = rng.normal(size=(16, 16, 8))
    psi1, psi2 = lpt_displacements(jnp.asarray(delta), order=2)
    np.testing.assert_allclose(np.asarray(psi2), _numpy_psi2(delta), atol=REF_ATOL)
    # and inside lpt(): x - q = D1 ψ1 + D2 ψ2 with fmt-cosmo's D2 (≈ -3/7 D1²)
    a = 0.3
    d1 = fmt_cosmo.growth_factor(cosmo, a, table)
    d2 = fmt_cosmo.growth_factor_second(cosmo, a, table)
    assert -0.45 < float(d2 / d1**2) < -0.40
    disp, _ = lpt(cosmo, jnp.asarray(delta), a, order=2, table=table)
    expect = float(d1) * np.asarray(psi1) + float(d2) * _numpy_psi2(delta)
    np.testing.assert_allclose(np.asarray(disp), expect, atol=REF_ATOL)


def test_2lpt_two_crossed_waves():
    """Analytic: δ = A cos(k1 x) + B cos(k2 y) gives S = A B cos(k1 x) cos(k2 y) and
    ψ2 = ∇∇⁻²S = A B / (k1² + k2²) (k1 sin(k1 x) cos(k2 y), k2 cos(k1 x) sin(k2 y), 0)."""
    n, amp_a, amp_b = 16, 0.7, -0.4
    k1, k2 = 2 * np.pi * 2 / n, 2 * np.pi * 3 / n
    x = np.arange(n)[:, None, None]
    y = np.arange(n)[None, :, None]
    delta = np.broadcast_to(amp_a * np.cos(k1 * x) + amp_b * np.cos(k2 * y), (n, n, n))
    _, psi2 = lpt_displacements(jnp.asarray(delta), order=2)
    c = amp_a * amp_b / (k1**2 + k2**2)
    expect = np.zeros((n, n, n, 3))
    expect[..., 0] = c * k1 * np.sin(k1 * x) * np.cos(k2 * y)
    expect[..., 1] = c * k2 * np.cos(k1 * x) * np.sin(k2 * y)
    np.testing.assert_allclose(np.asarray(psi2), expect, atol=REF_ATOL)


def test_momentum_is_a3E_dxda(cosmo, table):
    """p = a³ E(a) dx/da, with dx/da from forward-mode autodiff through the growth table."""
    rng = np.random.default_rng(12)
    delta = jnp.asarray(rng.normal(size=(8, 8, 8)))
    a = 0.4
    (_, mom), (ddisp, _) = jax.jvp(
        lambda s: lpt(cosmo, delta, s, order=2, table=table), (a,), (1.0,)
    )
    expect = a**3 * fmt_cosmo.E(cosmo, a) * ddisp
    scale = float(jnp.abs(mom).max())
    np.testing.assert_allclose(np.asarray(mom), np.asarray(expect), atol=MOMENTUM_RTOL * scale)


def test_lpt_gradients_cosmology(delta_lin, table):
    """Gradient w.r.t. Ω_c through D1, D2, f1, f2 and E matches central differences."""
    small = delta_lin[:8, :8, :8]

    def loss(omega_c):
        c = fmt_cosmo.Planck18().replace(Omega_c=omega_c)
        disp, mom = lpt(c, small, 0.5, order=2)
        return jnp.sum(disp**2) + jnp.sum(mom**2)

    x0, eps = 0.26, 1e-5
    # one jitted program (op-by-op autodiff through the growth table's scan is slow)
    g, up, down = jax.jit(lambda x: (jax.grad(loss)(x), loss(x + eps), loss(x - eps)))(x0)
    fd = (up - down) / (2 * eps)
    np.testing.assert_allclose(float(g), float(fd), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": 3}, "order"),
        ({"gradient": "fd2"}, "gradient"),
        ({"box_size": -1.0}, "box_size"),
    ],
)
def test_lpt_bad_options(cosmo, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lpt(cosmo, jnp.zeros((8, 8, 8)), 0.5, **kwargs)


def test_lpt_bad_inputs(cosmo):
    with pytest.raises(ValueError, match="linear_density"):
        lpt(cosmo, jnp.zeros((8, 8)), 0.5)
    with pytest.raises(TypeError, match="linear_density"):
        lpt(cosmo, jnp.zeros((8, 8, 8), int), 0.5)
    with pytest.raises(ValueError, match="scale_factor"):
        lpt(cosmo, jnp.zeros((8, 8, 8)), jnp.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="scale_factor"):
        lpt(cosmo, jnp.zeros((8, 8, 8)), -0.1)
