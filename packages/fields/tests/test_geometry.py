"""Wavevector grids and kernels: values, layout and sharding; kernels act as intended."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmt_fields as ff

SHAPE = (8, 16, 8)
BOX = (100.0, 200.0, 50.0)
# Spectral derivatives of band-limited fields are exact up to float64 round-off.
SPECTRAL_ATOL = 1e-11


def _numpy_k(full: bool):
    kx = 2 * np.pi * np.fft.fftfreq(SHAPE[0], BOX[0] / SHAPE[0])
    ky = 2 * np.pi * np.fft.fftfreq(SHAPE[1], BOX[1] / SHAPE[1])
    fz = np.fft.fftfreq if full else np.fft.rfftfreq
    kz = 2 * np.pi * fz(SHAPE[2], BOX[2] / SHAPE[2])
    return kx[:, None, None], ky[None, :, None], kz[None, None, :]


@pytest.mark.multidevice
def test_wavevectors_match_the_fft_layout(grid, mesh, sharding):
    with jax.set_mesh(mesh):
        kvec = ff.wavevectors(SHAPE, BOX, sharding=sharding)
        k = ff.wavenumber(SHAPE, BOX, sharding=sharding)
        x = jax.device_put(jnp.zeros(SHAPE), sharding)
        x_k = ff.fft3d(x)
    full = grid != (1, 1)
    for have, want in zip(kvec, _numpy_k(full), strict=True):
        np.testing.assert_allclose(np.asarray(have), want, rtol=1e-15, atol=0)
    assert k.shape == x_k.shape
    if full:
        assert tuple(k.sharding.spec)[:3] == (None, "x", "y")


@pytest.mark.multidevice
def test_gradient_and_poisson_kernels_are_exact_on_plane_waves(grid, mesh, sharding):
    """∂x sin(k·x) and ∇⁻² of a plane wave, on the grid; the layout must not matter."""
    nx, ny, nz = (np.arange(n) * L / n for n, L in zip(SHAPE, BOX, strict=True))
    k1 = np.array([2 * np.pi * 1 / BOX[0], 2 * np.pi * 3 / BOX[1], 2 * np.pi * 2 / BOX[2]])
    phase = k1[0] * nx[:, None, None] + k1[1] * ny[None, :, None] + k1[2] * nz[None, None, :]
    field = jax.device_put(np.sin(phase), sharding)
    with jax.set_mesh(mesh):
        field_k = ff.fft3d(field)
        grads = [
            ff.ifft3d(field_k * ff.gradient_kernel(SHAPE, BOX, a, sharding=sharding))
            for a in range(3)
        ]
        potential = ff.ifft3d(field_k * ff.inverse_laplacian(SHAPE, BOX, sharding=sharding))
    for a in range(3):
        np.testing.assert_allclose(np.asarray(grads[a]), k1[a] * np.cos(phase), atol=SPECTRAL_ATOL)
    np.testing.assert_allclose(
        np.asarray(potential), -np.sin(phase) / np.sum(k1**2), atol=SPECTRAL_ATOL * 1e3
    )


def test_gradient_kernel_zeroes_nyquist_and_keeps_real_fields_real():
    shape = (4, 4, 4)
    kernel = ff.gradient_kernel(shape, 1.0, 0)
    assert kernel.shape == (4, 1, 1)
    np.testing.assert_array_equal(np.asarray(kernel[:, 0, 0]), 2j * np.pi * np.array([0, 1, 0, -1]))
    kz = ff.gradient_kernel(shape, 1.0, 2)[0, 0]
    np.testing.assert_array_equal(np.asarray(kz), 2j * np.pi * np.array([0, 1, 0]))


def test_cic_window_and_compensation():
    shape = (8, 8, 8)
    w = np.asarray(ff.cic_window(shape))
    n = np.fft.fftfreq(8, 1 / 8)
    nz = np.fft.rfftfreq(8, 1 / 8)

    def s2(m):
        u = np.pi * m / 8
        return np.where(m == 0, 1.0, (np.sin(u) / np.where(m == 0, 1, u)) ** 2)

    want = s2(n)[:, None, None] * s2(n)[None, :, None] * s2(nz)[None, None, :]
    np.testing.assert_allclose(w, want, rtol=1e-14)
    np.testing.assert_allclose(w * np.asarray(ff.cic_compensation(shape)), 1.0, rtol=1e-14)
    assert w.min() == pytest.approx((2 / np.pi) ** 6)  # sinc²(1/2)³ at the corner


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="box_size"):
        ff.wavevectors((8, 8, 8), -1.0)
    with pytest.raises(ValueError, match="box_size"):
        ff.wavevectors((8, 8, 8), (1.0, 2.0))
    with pytest.raises(ValueError, match="mesh_shape"):
        ff.wavenumber((8, 8), 1.0)
    with pytest.raises(ValueError, match="axis"):
        ff.gradient_kernel((8, 8, 8), 1.0, 3)
