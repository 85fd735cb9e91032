"""Fourier plumbing shared by painting, forces and LPT (internal).

Every FFT and Fourier kernel of the package goes through here, on top of fmt-fields'
distributed `fft3d`/`ifft3d` and kernels (differentiable to every order, same numbers on
one device or split in pencils). Everything is in grid units: the "box" is the mesh
itself, so wavenumbers are k_i = 2π n_i / N_i radians per cell.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fmt_fields import (
    cic_compensation,
    fft3d,
    gradient_kernel,
    ifft3d,
    inverse_laplacian,
    wavevectors,
)

__all__ = [
    "GRADIENTS",
    "cic_deconvolve",
    "fd4_gradient",
    "fft",
    "first_derivative",
    "ifft",
    "inverse_laplacian_kernel",
    "is_split",
    "second_derivative",
    "sharding",
    "wavevectors_cells",
]

# "fd4": the 4-point finite-difference derivative i (8 sin k - sin 2k) / 6 (JaxPM 0.1.6's
# default, FastPM's); "exact": the spectral derivative i k (Nyquist mode zeroed).
GRADIENTS = ("fd4", "exact")


def sharding(x) -> Any:
    """The sharding a real-space mesh carries in its type (what fmt-fields reads)."""
    return jax.typeof(x).sharding


def is_split(x) -> bool:
    """Whether a mesh's type says it is split over devices (explicit-axes sharding)."""
    spec = getattr(sharding(x), "spec", None)
    return spec is not None and any(entry is not None for entry in spec)


def fd4_gradient(x, axis: int):
    """The "fd4" derivative along `axis` in real space: the periodic 4-point stencil
    (8 (x[i+1] - x[i-1]) - (x[i+2] - x[i-2])) / 12, whose Fourier multiplier is
    exactly `first_derivative(..., "fd4")`, i (8 sin k - sin 2k) / 6."""

    def at(shift):  # x[i + shift]
        return jnp.roll(x, -shift, axis=axis)

    return (8.0 * (at(1) - at(-1)) - (at(2) - at(-2))) / 12.0


def _real_dtype(x):
    return jnp.finfo(x.dtype).dtype


def fft(x):
    """Spectrum of a real mesh (layout of `fmt_fields.fft3d`)."""
    return fft3d(x)


def ifft(x_k, mesh_shape):
    """Real mesh of `mesh_shape` from a spectrum in `fmt_fields.fft3d`'s layout."""
    return ifft3d(x_k, mesh_shape=tuple(mesh_shape))


def wavevectors_cells(mesh_shape, real_sharding, dtype):
    """(kx, ky, kz) in radians per cell, broadcastable against the spectrum."""
    return wavevectors(mesh_shape, mesh_shape, sharding=real_sharding, dtype=dtype)


def first_derivative(mesh_shape, axis, real_sharding, dtype, gradient: str):
    """Fourier kernel of ∂/∂x_axis in grid units (complex, broadcastable)."""
    if gradient == "exact":
        return gradient_kernel(mesh_shape, mesh_shape, axis, sharding=real_sharding, dtype=dtype)
    k = wavevectors_cells(mesh_shape, real_sharding, dtype)[axis]
    return 1j * (8.0 * jnp.sin(k) - jnp.sin(2.0 * k)) / 6.0


def second_derivative(mesh_shape, i, j, real_sharding, dtype, gradient: str):
    """Fourier kernel of ∂²/∂x_i∂x_j in grid units.

    Off the diagonal the product of two first derivatives. On the diagonal "exact" uses
    -k_i² (the Nyquist mode of a real field has a non-zero second derivative), "fd4" the
    square of the finite-difference first derivative (JaxPM's choice).
    """
    if i == j and gradient == "exact":
        k = wavevectors_cells(mesh_shape, real_sharding, dtype)[i]
        return -(k**2)
    return first_derivative(mesh_shape, i, real_sharding, dtype, gradient) * first_derivative(
        mesh_shape, j, real_sharding, dtype, gradient
    )


def inverse_laplacian_kernel(mesh_shape, real_sharding, dtype):
    """-1/k² in cells², k = 0 set to zero."""
    return inverse_laplacian(mesh_shape, mesh_shape, sharding=real_sharding, dtype=dtype)


def cic_deconvolve(x):
    """Divide a real mesh's spectrum by the CIC window Π_i sinc²(k_i / 2)."""
    shape = tuple(x.shape)
    comp = cic_compensation(shape, sharding=sharding(x), dtype=_real_dtype(x))
    return ifft(fft(x) * comp, shape)
