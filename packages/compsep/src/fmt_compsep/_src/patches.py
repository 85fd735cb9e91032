"""Spatially varying spectral parameters: patch maps per parameter and their layout.

A patch map assigns each pixel of the data map an integer patch id; the parameter takes
one value per patch. Pixels sharing the ids of every parameter share a mixing matrix:
they form a *group*. The likelihood is evaluated per group (once per group when the
noise is also shared), which is what makes joint fits of many patches cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np


def nside_of(npix: int, *, name: str = "map") -> int:
    """HEALPix nside of a map with `npix` pixels.

    Raises:
        ValueError: `npix` is not 12 nside² for a power-of-two nside.
    """
    nside = round(np.sqrt(npix / 12))
    if nside < 1 or 12 * nside * nside != npix or nside & (nside - 1):
        raise ValueError(f"{name} has {npix} pixels, not a HEALPix map (12 nside², nside 2^k)")
    return nside


def patch_ids_from_nside(nside_patch: int, nside_data: int) -> np.ndarray:
    """Patch ids (RING) of the pixels of an `nside_data` map: its `nside_patch` parent pixel.

    `nside_patch = 0` means one global patch.

    Raises:
        ValueError: `nside_patch` larger than `nside_data` or not a power of two.
    """
    if nside_patch == 0:
        return np.zeros(hp.nside2npix(nside_data), dtype=np.int64)
    if nside_patch > nside_data or nside_patch & (nside_patch - 1):
        raise ValueError(
            f"nside_patch must be 0 or a power of two <= nside_data={nside_data}, got {nside_patch}"
        )
    ids = np.arange(hp.nside2npix(nside_patch), dtype=float)
    return np.rint(hp.ud_grade(ids, nside_data)).astype(np.int64)


def kmeans_patches(
    nside: int,
    n_clusters: int,
    *,
    key: jax.Array,
    n_iter: int = 50,
    mask: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Spherical k-means clusters of the pixels of an `nside` map, as patch ids.

    Lloyd iterations on the unit vectors of the pixel centres (optionally concatenated
    with `features`, e.g. a smoothed estimate of β_d scaled to comparable range): each
    pixel joins the centroid of largest dot product, centroids are renormalised means.

    Args:
        nside: HEALPix nside of the data.
        n_clusters: number of clusters.
        key: random key of the initial centroids (chosen among the pixels).
        n_iter: Lloyd iterations.
        mask: boolean map, True for pixels to cluster (others get id 0).
        features: optional `(npix, k)` extra features appended to the unit vectors.

    Returns:
        `(npix,)` int ids in `[0, n_clusters)`, renumbered so that every id is used.

    Raises:
        ValueError: non-positive `n_clusters` or more clusters than pixels.
    """
    npix = hp.nside2npix(nside)
    good = np.ones(npix, bool) if mask is None else np.asarray(mask, bool)
    vec = np.stack(hp.pix2vec(nside, np.arange(npix)), axis=-1)
    if features is not None:
        vec = np.concatenate([vec, np.asarray(features, dtype=float).reshape(npix, -1)], axis=-1)
    pts = jnp.asarray(vec[good])
    if not 0 < n_clusters <= pts.shape[0]:
        raise ValueError(f"n_clusters must be in [1, {pts.shape[0]}], got {n_clusters}")
    start = jax.random.choice(key, pts.shape[0], (n_clusters,), replace=False)

    def lloyd(centres, _):
        labels = jnp.argmax(pts @ centres.T, axis=-1)
        sums = jax.ops.segment_sum(pts, labels, num_segments=n_clusters)
        norm = jnp.linalg.norm(sums, axis=-1, keepdims=True)
        return jnp.where(norm > 0, sums / jnp.where(norm > 0, norm, 1.0), centres), None

    centres, _ = jax.lax.scan(lloyd, pts[start], None, length=n_iter)
    labels = np.asarray(jnp.argmax(pts @ centres.T, axis=-1))
    ids = np.zeros(npix, dtype=np.int64)
    ids[good] = np.unique(labels, return_inverse=True)[1]
    return ids


class PatchLayout:
    """Static layout of the parameters over the sky (numpy, built once, outside `jit`).

    The fitted vector `x` concatenates, for each free parameter in order, its values in
    the patches it takes (one value for a global parameter). Empty patches (all their
    pixels masked) are dropped; `x_maps` restores them as NaN.

    Args:
        n_param: number of free parameters of the mixing matrix.
        npix: number of pixels of the data maps.
        patch_ids: one entry per parameter: `None` (global) or an `(npix,)` integer map.
        mask: optional boolean `(npix,)` map, True for pixels used in the fit.

    Raises:
        ValueError: wrong number of patch maps, maps of the wrong size (nside), negative
            or non-integer ids, or an empty mask.
    """

    def __init__(
        self,
        n_param: int,
        npix: int,
        patch_ids: Sequence[np.ndarray | None] | None = None,
        mask: np.ndarray | None = None,
    ):
        if patch_ids is None:
            patch_ids = [None] * n_param
        if len(patch_ids) != n_param:
            raise ValueError(
                f"patch_ids needs one entry per free parameter ({n_param}), got {len(patch_ids)}"
            )
        good = np.ones(npix, bool) if mask is None else np.asarray(mask, bool)
        if good.shape != (npix,):
            raise ValueError(f"mask must have shape ({npix},), got {good.shape}")
        if not good.any():
            raise ValueError("mask leaves no pixel to fit")
        self.npix = npix
        self.pixels = np.flatnonzero(good)
        compressed, self.patch_ids, self.n_patches, self.used_ids = [], [], [], []
        for k, ids in enumerate(patch_ids):
            if ids is None:
                ids = np.zeros(npix, dtype=np.int64)
            ids = np.asarray(ids)
            if ids.shape != (npix,):
                data_nside = _nside_or_size(npix)
                raise ValueError(
                    f"patch_ids[{k}] has {ids.size} pixels ({_nside_or_size(ids.size)}) but the "
                    f"data has {npix} ({data_nside})"
                )
            if ids.dtype.kind not in "iu" or (ids < 0).any():
                raise ValueError(
                    f"patch_ids[{k}] must hold non-negative integers, got dtype {ids.dtype}"
                )
            used, inverse = np.unique(ids[good], return_inverse=True)
            self.patch_ids.append(ids)
            self.used_ids.append(used)
            self.n_patches.append(int(ids.max()) + 1)
            compressed.append(inverse.reshape(-1))
        sizes = [u.size for u in self.used_ids]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_x = int(self.offsets[-1])
        keys = (
            np.stack(compressed, axis=-1)
            if compressed
            else np.zeros((self.pixels.size, 0), np.int64)
        )
        groups, group_of_pixel = np.unique(keys, axis=0, return_inverse=True)
        self.group_of_pixel = group_of_pixel.reshape(-1).astype(np.int32)
        self.n_group = int(groups.shape[0])
        # index into x of parameter k in each group
        self.group_x_index = (groups + self.offsets[:-1][None, :]).astype(np.int32)
        self.x_param = np.repeat(np.arange(n_param), sizes)

    def _key(self):
        return (
            self.npix,
            self.n_x,
            self.pixels.tobytes(),
            self.group_of_pixel.tobytes(),
            self.group_x_index.tobytes(),
        )

    def __eq__(self, other):
        # Equal layouts (same patches and mask) share jitted compilations.
        return isinstance(other, PatchLayout) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def beta_of_groups(self, x):
        """`(n_group, n_param)` parameter values of each group from the flat vector `x`."""
        return jnp.asarray(x)[..., self.group_x_index]

    def broadcast_x(self, beta):
        """Flat `x` with each parameter's value(s) in all its patches, from `(n_param,)`."""
        return jnp.asarray(beta)[..., self.x_param]

    def x_maps(self, x) -> list[np.ndarray]:
        """Per-parameter arrays of length `n_patches[k]` (NaN for empty patches)."""
        x = np.asarray(x)
        out = []
        for k, used in enumerate(self.used_ids):
            m = np.full((*x.shape[:-1], self.n_patches[k]), np.nan)
            m[..., used] = x[..., self.offsets[k] : self.offsets[k + 1]]
            out.append(m)
        return out

    def pixel_maps(self, x) -> np.ndarray:
        """`(n_param, npix)` maps of the parameters (NaN outside the mask)."""
        maps = self.x_maps(x)
        out = np.full((len(maps), self.npix), np.nan)
        for k, (m, ids) in enumerate(zip(maps, self.patch_ids, strict=True)):
            out[k, self.pixels] = m[ids[self.pixels]]
        return out


def _nside_or_size(npix: int) -> str:
    try:
        return f"nside {nside_of(npix)}"
    except ValueError:
        return "not a HEALPix size"
