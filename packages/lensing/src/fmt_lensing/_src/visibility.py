"""Which HEALPix pixels an observer sees inside the simulated (or replicated) volume.

The volume is the box [0, L)³ with `replicas` periodic copies on each side, the cube
[−r L, (r + 1) L)³ (convex). A line of sight from the observer (inside the box) to the
distance χ_max stays inside it iff its end point does, so a pixel is visible iff
x_obs + χ_max n̂_pix lies in the cube (n̂_pix: the pixel centre, healpy RING ordering).
The forward model keeps visible pixels only; `reconstruct_full_kappa` puts them back
into a full map with `healpy.UNSEEN` elsewhere, for plotting and `healpy.anafast`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .born import _check_nside

__all__ = ["reconstruct_full_kappa", "visibility_mask", "visible_pixels"]


def _box3(box_size):
    b = np.broadcast_to(np.asarray(box_size, dtype=float), (3,))
    if not np.all(np.isfinite(b) & (b > 0)):
        raise ValueError(f"box_size must be positive, got {box_size!r}")
    return b


def check_observer(observer) -> np.ndarray:
    """Observer in box units, each coordinate in [0, 1]; else ValueError naming it."""
    o = np.broadcast_to(np.asarray(observer, dtype=float), (3,))
    if not np.all(np.isfinite(o) & (o >= 0) & (o <= 1)):
        raise ValueError(
            f"observer must lie in the box, each coordinate in [0, 1] box units, got {observer!r}"
        )
    return o


def visibility_mask(
    nside: int, *, box_size: Any, observer: Any, max_distance: float, replicas: int = 0
) -> np.ndarray:
    """Boolean (12 nside²,) RING map: True where the line of sight to `max_distance`
    stays inside the box and its `replicas` periodic copies on each side.

    Args:
        nside: HEALPix resolution (power of two).
        box_size: box side(s), Mpc/h.
        observer: observer position in box units (each in [0, 1]).
        max_distance: comoving distance of the far edge of the last shell, Mpc/h.
        replicas: periodic copies allowed on each side (0: the simulated box only).

    Raises:
        ValueError: `nside` not a power of two, `observer` outside the box, bad
            `box_size`, `max_distance` or `replicas` (named).
    """
    import healpy as hp

    nside = _check_nside(nside)
    box = _box3(box_size)
    obs = check_observer(observer) * box
    if not (np.isfinite(max_distance) and max_distance > 0):
        raise ValueError(f"max_distance must be > 0 Mpc/h, got {max_distance!r}")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ValueError(f"replicas must be an int >= 0, got {replicas!r}")
    vec = np.stack(hp.pix2vec(nside, np.arange(12 * nside**2)), axis=-1)
    end = obs + max_distance * vec
    return np.all((end >= -replicas * box) & (end <= (replicas + 1) * box), axis=-1)


def visible_pixels(mask: Any) -> np.ndarray:
    """Indices of the visible pixels of a boolean mask, increasing (RING order)."""
    return np.flatnonzero(np.asarray(mask, dtype=bool))


def reconstruct_full_kappa(kappa_visible: Any, mask: Any) -> np.ndarray:
    """Full HEALPix maps from the visible pixels, `healpy.UNSEEN` elsewhere.

    Args:
        kappa_visible: (..., n_visible) values at `visible_pixels(mask)`.
        mask: (12 nside²,) boolean visibility mask.

    Returns:
        numpy (..., 12 nside²) float64 maps.

    Raises:
        ValueError: the last axis of `kappa_visible` is not the number of visible pixels.
    """
    import healpy as hp

    idx = visible_pixels(mask)
    k = np.asarray(kappa_visible, dtype=float)
    if k.shape[-1] != idx.size:
        raise ValueError(
            f"kappa_visible has {k.shape[-1]} pixels on its last axis, the mask {idx.size}"
        )
    full = np.full((*k.shape[:-1], np.asarray(mask).size), hp.UNSEEN)
    full[..., idx] = k
    return full
