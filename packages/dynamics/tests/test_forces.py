"""PM forces on one device: linear response, momentum conservation, split, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fmt_dynamics import force_mesh, pm_forces
from fmt_dynamics._src.forces import _fd4_forces, _fd4_forces_linear

N = 16
# Zel'dovich check: a displacement ψ = ε sin(kx) x̂ has δ = -∇·ψ at linear order, so
# F = -∇∇⁻²δ = ψ in the continuum; on the mesh the response is the analytic discrete one
# derived in the test. Deviations from it are O(ε) (nonlinear terms), ε = 1e-3 cells.
ZEL_EPS = 1e-3
ZEL_RTOL = 2e-3  # O(ε k) nonlinear terms and O(ε) asymmetry of CIC's response
MOMENTUM_ATOL = 1e-12
SPLIT_RTOL = 1e-10
FD_EPS = 1e-6
FD_RTOL = 1e-6
DOT_RTOL = 1e-11


def _wave(mode, eps=ZEL_EPS, shift=0.5):
    """Particles at x = i + shift + ε sin(k (i + shift)) along x: all clouds straddle the
    same two cells, so CIC responds linearly (forward differences) with no sign switch."""
    k = 2 * np.pi * mode / N
    q = np.arange(N) + shift
    disp = np.zeros((N, N, N, 3))
    disp[..., 0] = (shift + eps * np.sin(k * q))[:, None, None]
    disp[..., 1:] = shift
    return jnp.asarray(disp), k, q


@pytest.mark.parametrize("gradient", ["fd4", "exact"])
@pytest.mark.parametrize("mode", [1, 2])
def test_zeldovich_wave(mode, gradient):
    disp, k, q = _wave(mode)
    forces = np.asarray(pm_forces(disp, gradient=gradient))
    # Discrete prediction. Particle i deposits 1/2 - ψ_i on cell i and 1/2 + ψ_i on cell
    # i + 1, so δ_j = -(ψ_j - ψ_{j-1}): δ_k = -(1 - e^{-ik}) ψ_k. The force mesh is
    # F_k = (i g(k) / k²) δ_k with g the derivative kernel, and reading at i + 1/2 averages
    # cells i and i + 1: a factor (1 + e^{ik}) / 2. Together F_k = ψ_k g(k) sin(k) / k²,
    # which tends to ψ_k (F = ψ) as k -> 0.
    g = k if gradient == "exact" else (8 * np.sin(k) - np.sin(2 * k)) / 6
    expected = ZEL_EPS * g * np.sin(k) / k**2 * np.sin(k * q)
    got = forces[:, 0, 0, 0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=ZEL_RTOL * ZEL_EPS)
    np.testing.assert_allclose(forces[..., 1:], 0.0, atol=1e-12)
    # And the continuum answer F = ψ within the discretisation error O(k²).
    np.testing.assert_allclose(got, ZEL_EPS * np.sin(k * q), atol=0.2 * k**2 * ZEL_EPS)


def test_momentum_conservation():
    rng = np.random.default_rng(3)
    disp = jnp.asarray(rng.normal(scale=1.5, size=(N, N, N, 3)))
    for kwargs in [{}, {"gradient": "exact"}, {"compensate": True, "r_split": 1.5}]:
        total = jnp.sum(pm_forces(disp, **kwargs), axis=(0, 1, 2))
        np.testing.assert_allclose(np.asarray(total), 0.0, atol=MOMENTUM_ATOL)


def test_force_split_scales_each_mode():
    rng = np.random.default_rng(4)
    delta = jnp.asarray(rng.normal(size=(N, N, N)))
    r_split = 1.3
    full = force_mesh(delta, gradient="exact")
    split = force_mesh(delta, r_split=r_split, gradient="exact")
    k = 2 * np.pi * np.fft.fftfreq(N)
    kk = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    for c in range(3):
        expect = np.fft.ifftn(np.fft.fftn(np.asarray(full[..., c])) * np.exp(-kk * r_split**2))
        np.testing.assert_allclose(
            np.asarray(split[..., c]), expect.real, rtol=SPLIT_RTOL, atol=SPLIT_RTOL
        )


def test_force_mesh_matches_numpy():
    """-∇∇⁻²δ with the 4-point finite difference, written out with numpy's complex FFT."""
    rng = np.random.default_rng(5)
    delta = rng.normal(size=(N, N, 8))
    shape = delta.shape
    ks = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n) for n in shape], indexing="ij")
    kk = sum(k**2 for k in ks)
    kk[0, 0, 0] = 1.0
    phi = -np.fft.fftn(delta) / kk
    phi[0, 0, 0] = 0.0
    got = np.asarray(force_mesh(jnp.asarray(delta)))
    for c, k in enumerate(ks):
        d = 1j * (8 * np.sin(k) - np.sin(2 * k)) / 6
        np.testing.assert_allclose(got[..., c], np.fft.ifftn(-d * phi).real, atol=1e-12)


@pytest.mark.parametrize("method", ["reference", "pallas"])
def test_gradients(method):
    """Forward mode against central differences and jvp·u == v·vjp, with the plain-JAX
    kernels and with the Pallas ones (interpreted here; on GPUs the default), whose
    forward mode differentiates the reference and reverse mode runs the kernels."""
    rng = np.random.default_rng(6)
    disp = jnp.asarray(rng.normal(scale=0.7, size=(N, N, N, 3)))
    v = jnp.asarray(rng.normal(size=disp.shape))
    fun = jax.jit(lambda d: pm_forces(d, compensate=True, cic_method=method))
    out, tangent = jax.jvp(fun, (disp,), (v,))
    fd = (fun(disp + FD_EPS * v) - fun(disp - FD_EPS * v)) / (2 * FD_EPS)
    scale = float(jnp.abs(tangent).max())
    np.testing.assert_allclose(np.asarray(tangent), np.asarray(fd), atol=FD_RTOL * scale)
    u = jnp.asarray(rng.normal(size=out.shape))
    (cot,) = jax.vjp(fun, disp)[1](u)
    np.testing.assert_allclose(float(jnp.vdot(u, tangent)), float(jnp.vdot(cot, v)), rtol=DOT_RTOL)


@pytest.mark.parametrize(("compensate", "r_split"), [(False, 0.0), (True, 1.5)])
def test_fd4_force_mesh_has_the_same_derivatives(compensate, r_split):
    """On one device the fd4 force mesh is a linear map with a hand-written transpose
    (transposed stencil, then the symmetric potential solve): its vjp equals the one JAX
    derives, its jvp the map itself, its second derivative zero (float64), also with the
    CIC compensation and a force split in the kernel."""
    rng = np.random.default_rng(7)
    delta = jnp.asarray(rng.normal(size=(N, N, N)))
    t = jnp.asarray(rng.normal(size=delta.shape))
    u = jnp.asarray(rng.normal(size=(N, N, N, 3)))

    def linear(d):
        return _fd4_forces_linear(d, r_split, compensate)

    def plain(d):
        return _fd4_forces(d, r_split, compensate)

    ref = jax.vjp(plain, delta)[1](u)[0]
    got = jax.vjp(linear, delta)[1](u)[0]
    scale = float(jnp.abs(ref).max())
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-12 * scale)
    out, tangent = jax.jvp(linear, (delta,), (t,))
    np.testing.assert_allclose(np.asarray(tangent), np.asarray(plain(t)), atol=1e-12 * scale)
    np.testing.assert_allclose(np.asarray(out), np.asarray(plain(delta)), atol=1e-12 * scale)
    hvp = jax.jvp(jax.grad(lambda d: jnp.vdot(u, linear(d))), (delta,), (t,))[1]
    assert float(jnp.abs(hvp).max()) == 0.0
