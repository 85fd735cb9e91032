"""Flat-sky Gaussian and lognormal maps from an angular power spectrum C_ℓ, and its estimator.

A square (or rectangular) patch of side lengths (Lx, Ly) in radians, small enough for the
flat-sky approximation, pixelised on (Nx, Ny) pixels. The 2-D wavevector ℓ = 2π n / L plays
the role of the multipole. With the map area A = Lx Ly (sr), Np pixels and κ_ℓ the DFT of
the map (`jnp.fft.rfft2`), ⟨|κ_ℓ|²⟩ = Np² C_ℓ / A; the maps use the whitened
parametrisation κ_ℓ = w_ℓ sqrt(C_ℓ Np / A) and the estimator is Ĉ_ℓ = |κ_ℓ|² A / Np².
These maps are small and live on one device.
"""

from __future__ import annotations

from typing import Any, cast

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .binning import bin_index, check_edges, half_weights, segment_sums
from .layout import check_box_size
from .power import evaluate_nonzero, sqrt_nonzero
from .spectra import BinnedSpectrum

__all__ = ["angular_power_spectrum", "flat_sky_gaussian_map", "flat_sky_lognormal_map"]


def _check_map(x: Any, argname: str) -> None:
    if jnp.ndim(x) != 2:
        raise ValueError(f"{argname} must be a 2-D map, got shape {jnp.shape(x)}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{argname} must be real, got dtype {jnp.result_type(x)}")


def _ell_grid(shape: tuple[int, ...], size: tuple[float, float], dtype: Any) -> Array:
    lx = 2 * np.pi * np.fft.fftfreq(shape[0], 1.0 / shape[0]) / size[0]
    ly = 2 * np.pi * np.fft.rfftfreq(shape[1], 1.0 / shape[1]) / size[1]
    return jnp.asarray(np.sqrt(lx[:, None] ** 2 + ly[None, :] ** 2), dtype=dtype)


def _angular_power(angular_power: Any):
    if callable(angular_power):
        return angular_power
    raise TypeError(f"angular_power must be a callable ell -> C_ell, got {angular_power!r}")


def flat_sky_gaussian_map(
    white_noise: Float[Array, "Nx Ny"],
    angular_power: Any,
    map_size: float | tuple[float, float],
) -> Float[Array, "Nx Ny"]:
    """Gaussian flat-sky map with angular power spectrum C_ℓ, from unit white noise.

    Args:
        white_noise: unit-variance white noise, shape (Nx, Ny), e.g.
            `jax.random.normal(key, (Nx, Ny))`.
        angular_power: callable ℓ -> C_ℓ (C_ℓ in map units² sr).
        map_size: side lengths of the patch in radians (one number or two).

    Returns:
        The map, shape (Nx, Ny), mean exactly zero (ℓ = 0 mode removed).

    Raises:
        ValueError: `white_noise` not 2-D, or `map_size` not positive.
        TypeError: `angular_power` not callable.
    """
    _check_map(white_noise, "white_noise")
    size = check_box_size(map_size, ndim=2, argname="map_size")
    cl = _angular_power(angular_power)
    shape = tuple(white_noise.shape)
    ell = _ell_grid(shape, size, jnp.result_type(white_noise))
    pixel_area = size[0] * size[1] / (shape[0] * shape[1])
    amplitude = sqrt_nonzero(evaluate_nonzero(cl, ell) / pixel_area)
    return jnp.fft.irfft2(jnp.fft.rfft2(white_noise) * amplitude, s=shape)


def flat_sky_lognormal_map(
    white_noise: Float[Array, "Nx Ny"],
    angular_power: Any,
    map_size: float | tuple[float, float],
    *,
    shift: float = 1.0,
) -> Float[Array, "Nx Ny"]:
    """Lognormal flat-sky map κ = λ (exp(G - σ²/2) - 1), G = `flat_sky_gaussian_map(...)`.

    `angular_power` is the spectrum of the Gaussian field G, σ² its variance on this
    pixelisation (Σ_ℓ C_ℓ / A over all modes), so ⟨κ⟩ = 0 in the ensemble and κ > -λ.
    λ is the `shift` (1 for a density contrast; ~0.01-0.03 for weak-lensing convergence,
    e.g. Hilbert et al. 2011).

    Args:
        white_noise, angular_power, map_size: as for `flat_sky_gaussian_map`.
        shift: λ > 0.

    Returns:
        The map, shape (Nx, Ny).
    """
    # cast: np.isscalar's TypeIs would otherwise narrow `shift` away from float
    if not (np.isscalar(cast(Any, shift)) and shift > 0):
        raise ValueError(f"shift must be a positive number, got {shift!r}")
    gaussian = flat_sky_gaussian_map(white_noise, angular_power, map_size)
    size = check_box_size(map_size, ndim=2, argname="map_size")
    shape = tuple(white_noise.shape)
    ell = _ell_grid(shape, size, gaussian.dtype)
    weights = jnp.asarray(half_weights(shape[1])[None, :], dtype=gaussian.dtype)
    cl = evaluate_nonzero(_angular_power(angular_power), ell)
    variance = jnp.sum(weights * cl) / (size[0] * size[1])
    return shift * jnp.expm1(gaussian - 0.5 * variance)


def angular_power_spectrum(
    map_a: Float[Array, "Nx Ny"],
    map_size: float | tuple[float, float],
    *,
    map_b: Float[Array, "Nx Ny"] | None = None,
    ell_edges: Any = None,
) -> BinnedSpectrum:
    """Binned flat-sky angular (cross) power spectrum C_ℓ of real maps.

    Args:
        map_a: real map, shape (Nx, Ny).
        map_size: side lengths in radians (one number or two).
        map_b: optional second map for the cross spectrum (same shape).
        ell_edges: bin edges in ℓ; default: width 2π / max(L) centred on its multiples,
            up to the lowest Nyquist ℓ.

    Returns:
        `BinnedSpectrum(k=mean ℓ, value=C_ℓ, modes)`.
    """
    _check_map(map_a, "map_a")
    if map_b is not None:
        _check_map(map_b, "map_b")
        if map_b.shape != map_a.shape:
            raise ValueError(f"map_b has shape {map_b.shape}, expected {map_a.shape}")
    size = check_box_size(map_size, ndim=2, argname="map_size")
    shape = tuple(map_a.shape)
    if ell_edges is None:
        lf = 2 * np.pi / max(size)
        l_nyq = min(np.pi * n / s for n, s in zip(shape, size, strict=True))
        edges = lf * (np.arange(max(int(np.floor(l_nyq / lf - 0.5)), 1) + 1) + 0.5)
    else:
        edges = check_edges(ell_edges, "ell_edges")
    dtype = jnp.result_type(map_a)
    ell = _ell_grid(shape, size, dtype)
    a_k = jnp.fft.rfft2(map_a)
    b_k = a_k if map_b is None else jnp.fft.rfft2(map_b)
    power = (a_k * jnp.conj(b_k)).real * (size[0] * size[1]) / float(np.prod(shape)) ** 2
    w = jnp.asarray(half_weights(shape[1])[None, :], dtype=dtype)
    n_bins = edges.size - 1
    modes, l_sum, c_sum = segment_sums([w, w * ell, w * power], bin_index(ell, edges), n_bins)
    has = modes > 0
    safe = jnp.where(has, modes, 1.0)
    return BinnedSpectrum(
        jnp.where(has, l_sum / safe, jnp.nan), jnp.where(has, c_sum / safe, jnp.nan), modes
    )
