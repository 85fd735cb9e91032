"""Deterministic synthetic skies for tests, benchmarks and the fgbuster reference (numpy only).

This module imports nothing but numpy, so the fgbuster reference script can load it by
path in an environment without JAX and draw exactly the same inputs.

The sky: CMB, dust (modified blackbody, ν0 = 353 GHz) and synchrotron (power law,
ν0 = 23 GHz) Q/U amplitude maps, drawn pixel by pixel (white, with a non-zero mean for
the foregrounds), observed at nine frequencies with white noise of the given depths.
"""

from __future__ import annotations

import numpy as np

# Nine channels (GHz) and polarisation depths (µK_CMB·arcmin), LiteBIRD/SO-like.
FREQUENCIES = np.array([30.0, 40.0, 60.0, 90.0, 120.0, 150.0, 220.0, 280.0, 340.0])
DEPTH_P = np.array([35.0, 25.0, 14.0, 8.0, 6.0, 6.0, 12.0, 20.0, 40.0])
# True spectral parameters (global): Dust.beta_d, Dust.temp, Synchrotron.beta_pl.
TRUE_BETA = np.array([1.54, 20.0, -3.0])
DUST_NU0 = 353.0
SYNC_NU0 = 23.0


def resolution_arcmin(nside: int) -> float:
    """Side of a HEALPix pixel, √(4π / 12 nside²), in arcmin."""
    return float(np.sqrt(4.0 * np.pi / (12 * nside * nside)) * 180.0 * 60.0 / np.pi)


def noise_std_from_depth(depth, nside: int) -> np.ndarray:
    """White-noise standard deviation per pixel (µK) of depths in µK·arcmin."""
    return np.asarray(depth, dtype=float) / resolution_arcmin(nside)


def sky_amplitudes(nside: int, seed: int = 0) -> np.ndarray:
    """Component amplitude maps `(3, 2, npix)` in µK_CMB at their reference frequencies.

    Order CMB, dust (353 GHz), synchrotron (23 GHz); Stokes Q, U.
    """
    rng = np.random.default_rng(seed)
    npix = 12 * nside * nside
    cmb = rng.normal(0.0, 0.5, (2, npix))
    dust = 20.0 + rng.normal(0.0, 8.0, (2, npix))
    sync = 10.0 + rng.normal(0.0, 4.0, (2, npix))
    return np.stack([cmb, dust, sync])


def noise_maps(nside: int, noise_std, seed: int = 1, n_stokes: int = 2) -> np.ndarray:
    """White noise `(n_freq, n_stokes, npix)` with per-channel standard deviations."""
    rng = np.random.default_rng(seed)
    noise_std = np.asarray(noise_std, dtype=float)
    return noise_std[:, None, None] * rng.standard_normal((noise_std.size, n_stokes, 12 * nside**2))


def beta_d_patches(nside_patch: int = 2, seed: int = 2) -> np.ndarray:
    """True β_d per patch `(12 nside_patch²,)`: 1.54 + 0.05 N(0, 1)."""
    rng = np.random.default_rng(seed)
    return 1.54 + 0.05 * rng.standard_normal(12 * nside_patch**2)


def observe(mixing_per_pixel: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """Data `(n_freq, n_stokes, npix)` = A_p s_p from `(npix | 1, n_freq, n_comp)` matrices."""
    return np.einsum(
        "pfc,csp->fsp",
        np.broadcast_to(mixing_per_pixel, (amplitudes.shape[-1], *mixing_per_pixel.shape[-2:])),
        amplitudes,
    )
