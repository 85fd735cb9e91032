"""Map statistics: flat-sky and spherical C_ℓ estimators, shape noise, Gaussian likelihood.

- Flat maps: `flat_power_spectrum` bins |κ̃_ℓ|² with fmt-fields' `angular_power_spectrum`
  (DFT normalisation Ĉ_ℓ = |κ_ℓ|² A / N_pix², A the field area in sr).
- HEALPix maps: `spherical_power_spectrum` calls `healpy.anafast` on the map with
  unseen/masked pixels set to zero and divides by the observed sky fraction f_sky
  (the leading-order pseudo-C_ℓ correction, Hivon et al. 2002, eq. 3 with a binary mask).
- Shape noise: per-pixel standard deviation σ_pix = σ_e / sqrt(n_gal A_pix) with n_gal
  in galaxies per arcmin² and A_pix the pixel area in arcmin², (60·field_size/M)² for a
  flat field of M² pixels, 4π/(12 nside²)·(10800/π)² for HEALPix.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from fmt_fields import angular_power_spectrum

from .born import _check_nside

__all__ = [
    "add_shape_noise",
    "flat_power_spectrum",
    "gaussian_log_likelihood",
    "pixel_area_arcmin2",
    "shape_noise_sigma",
    "spherical_power_spectrum",
]

ARCMIN2_PER_SR = (180.0 * 60.0 / np.pi) ** 2


def flat_power_spectrum(kappa: Float[Array, "M M"], field_size: float, *, ell_edges: Any = None):
    """Binned C_ℓ of a flat κ map (or cross of two maps via `angular_power_spectrum`).

    Args:
        kappa: (M, M) map.
        field_size: side of the field in degrees.
        ell_edges: optional ℓ bin edges; default width 2π/θ_F up to the Nyquist ℓ.

    Returns:
        `fmt_fields.BinnedSpectrum(k=mean ℓ, value=C_ℓ, modes)`.

    Raises:
        ValueError: `field_size` not positive.
    """
    if not (np.isfinite(field_size) and field_size > 0):
        raise ValueError(f"field_size must be positive degrees, got {field_size!r}")
    return angular_power_spectrum(kappa, np.deg2rad(field_size), ell_edges=ell_edges)


def spherical_power_spectrum(kappa: Any, *, mask: Any = None, lmax: int | None = None):
    """C_ℓ of a HEALPix (RING) map with `healpy.anafast`, corrected by the sky fraction.

    Args:
        kappa: (12 nside²,) map; `healpy.UNSEEN` pixels count as masked.
        mask: optional boolean map of the observed pixels (default: all but UNSEEN).
        lmax: maximum ℓ (default 3 nside − 1).

    Returns:
        numpy (lmax + 1,) array C_ℓ / f_sky (pseudo-C_ℓ, not deconvolved from the mask).

    Raises:
        ValueError: the map size is not 12 nside² or nothing is observed (`mask`).
    """
    import healpy as hp

    m = np.asarray(kappa, dtype=float)
    nside = hp.npix2nside(m.size)
    seen = m != hp.UNSEEN
    if mask is not None:
        seen &= np.asarray(mask, dtype=bool)
    fsky = seen.mean()
    if fsky == 0:
        raise ValueError("mask leaves no observed pixel")
    m = np.where(seen, m, 0.0)
    lmax = 3 * nside - 1 if lmax is None else int(lmax)
    return hp.anafast(m, lmax=lmax, use_pixel_weights=False, iter=3) / fsky


def pixel_area_arcmin2(
    *, field_size: float | None = None, field_npix: int | None = None, nside: int | None = None
) -> float:
    """Pixel area in arcmin²: flat (`field_size` degrees, `field_npix`) or HEALPix (`nside`).

    Raises:
        ValueError: neither or both geometries given, or `nside` not a power of two.
    """
    if nside is not None:
        if field_size is not None or field_npix is not None:
            raise ValueError("give nside, or field_size and field_npix, not both")
        nside = _check_nside(nside)
        return 4 * np.pi / (12 * nside**2) * ARCMIN2_PER_SR
    if field_size is None or field_npix is None:
        raise ValueError("give nside, or field_size and field_npix")
    if not (field_size > 0 and isinstance(field_npix, int) and field_npix > 0):
        raise ValueError(f"bad field_size={field_size!r} or field_npix={field_npix!r}")
    return (60.0 * field_size / field_npix) ** 2


def shape_noise_sigma(sigma_e: float, n_gal: float, **pixel) -> float:
    """Per-pixel shape noise σ_e / sqrt(n_gal A_pix), n_gal in arcmin⁻² (keywords as
    `pixel_area_arcmin2`).

    Raises:
        ValueError: `sigma_e` < 0 or `n_gal` ≤ 0.
    """
    if not sigma_e >= 0:
        raise ValueError(f"sigma_e must be >= 0, got {sigma_e!r}")
    if not n_gal > 0:
        raise ValueError(f"n_gal must be > 0 galaxies per arcmin², got {n_gal!r}")
    return float(sigma_e / np.sqrt(n_gal * pixel_area_arcmin2(**pixel)))


def add_shape_noise(key, kappa: Array, sigma: Any) -> Array:
    """κ + σ·N(0, 1) per pixel (σ a scalar or broadcastable, e.g. per bin (n_bins, 1, 1))."""
    return kappa + jnp.asarray(sigma) * jax.random.normal(key, jnp.shape(kappa), kappa.dtype)


def gaussian_log_likelihood(observed: Array, model: Array, sigma: Any) -> Array:
    """log N(observed | model, σ²) summed over all pixels and bins (independent pixels)."""
    r = (observed - model) / sigma
    n = r.size
    return (
        -0.5 * jnp.sum(r * r)
        - jnp.sum(jnp.broadcast_to(jnp.log(jnp.asarray(sigma, dtype=r.dtype)), r.shape))
        - 0.5 * n * np.log(2 * np.pi)
    )
