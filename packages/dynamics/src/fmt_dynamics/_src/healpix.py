"""HEALPix ring-scheme geometry in pure JAX: pixel index and bilinear weights of directions.

Only what the spherical lightcone needs, written from the definition of the ring scheme
(Górski et al. 2005, ApJ 622, 759, sections 4-5): 4·nside − 1 iso-latitude rings; ring i
(1-based, from the north pole) has 4i pixels for i < nside, 4·nside pixels in the
equatorial belt nside ≤ i ≤ 3·nside and 4(4·nside − i) in the south; its pixels are
equally spaced in φ, starting half a pixel from φ = 0 in the polar caps and in every
other equatorial ring. Everything is analytic in the ring index, so no table is stored
and the functions work on traced directions inside `jit`/`grad`.

- `ang2pix_ring`: the pixel containing a direction (nearest-grid-point deposit).
- `interpolation_weights_ring`: the 4 pixels and weights of bilinear interpolation
  between the two rings bracketing the direction, linear in θ across rings and in φ
  within a ring, the same rule as healpy's `get_interp_weights` (polar caps included).
  The weights sum to one and are continuous in the direction, so a deposit with them
  conserves mass exactly and has useful gradients w.r.t. particle positions.

Both are tested against healpy (a test-only dependency).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["ang2pix_ring", "check_nside", "interpolation_weights_ring", "n_pixels"]


def check_nside(nside) -> int:
    """Validate `nside` (a power of two ≥ 1); return it as an int."""
    if isinstance(nside, bool) or not isinstance(nside, int | np.integer):
        raise ValueError(f"nside must be a positive power of two, got {nside!r}")
    nside = int(nside)
    if nside < 1 or nside & (nside - 1):
        raise ValueError(f"nside must be a positive power of two, got {nside!r}")
    return nside


def n_pixels(nside: int) -> int:
    """Number of HEALPix pixels, 12·nside²."""
    return 12 * check_nside(nside) ** 2


def _theta_phi(vec):
    """Colatitude θ ∈ [0, π] and longitude φ ∈ [0, 2π) of (..., 3) vectors (any length)."""
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    theta = jnp.arctan2(jnp.sqrt(x * x + y * y), z)
    phi = jnp.arctan2(y, x)
    phi = jnp.where(phi < 0, phi + 2 * jnp.pi, phi)
    return theta, phi


def _ring_info(nside: int, ring):
    """(first pixel, pixels in ring, θ of ring, shift ∈ {0, 1}) of integer ring index arrays."""
    npix = 12 * nside * nside
    ncap = 2 * nside * (nside - 1)
    north = ring < nside
    south = ring > 3 * nside
    i_pol = jnp.where(south, 4 * nside - ring, ring)  # ring index counted from its pole
    i_pol_f = i_pol.astype(float)
    n_in_ring = jnp.where(north | south, 4 * i_pol, 4 * nside)
    start = jnp.where(
        north,
        2 * i_pol * (i_pol - 1),
        jnp.where(south, npix - 2 * i_pol * (i_pol + 1), ncap + (ring - nside) * 4 * nside),
    )
    # polar: θ = 2 asin(i / (√6 nside)) (precise near the pole); belt: z = (2nside - i)·2/(3nside)
    theta_cap = 2.0 * jnp.arcsin(jnp.minimum(i_pol_f / (np.sqrt(6.0) * nside), 1.0))
    theta_belt = jnp.arccos(jnp.clip((2 * nside - ring) * (2.0 / (3.0 * nside)), -1.0, 1.0))
    theta = jnp.where(north, theta_cap, jnp.where(south, jnp.pi - theta_cap, theta_belt))
    shift = jnp.where(north | south, 1, ((ring - nside) % 2 == 0).astype(ring.dtype))
    return start, n_in_ring, theta, shift


def _ring_above(nside: int, z):
    """Index of the last ring whose z ≥ `z` (0 above ring 1), integer array."""
    az = jnp.abs(z)
    belt = jnp.floor(nside * (2.0 - 1.5 * z)).astype(jnp.int32)
    cap = jnp.floor(nside * jnp.sqrt(jnp.maximum(3.0 * (1.0 - az), 0.0))).astype(jnp.int32)
    cap = jnp.where(z > 0, cap, 4 * nside - cap - 1)
    return jnp.where(az <= 2.0 / 3.0, belt, cap)


def ang2pix_ring(nside: int, vec):
    """Ring-scheme pixel index of the directions `vec` (..., 3) (need not be unit vectors).

    Args:
        nside: HEALPix resolution, a power of two.
        vec: (..., 3) direction vectors, nonzero.

    Returns:
        (...) int32 pixel indices in [0, 12 nside²), as healpy's `vec2pix(nside, ...)`.
    """
    nside = check_nside(nside)
    npix = 12 * nside * nside
    ncap = 2 * nside * (nside - 1)
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    z = z / jnp.sqrt(x * x + y * y + z * z)
    _, phi = _theta_phi(vec)
    tt = jnp.mod(phi * (2.0 / jnp.pi), 4.0)  # in [0, 4)
    az = jnp.abs(z)
    # equatorial belt: two families of lines, ring from their difference
    t1 = nside * (0.5 + tt)
    t2 = nside * z * 0.75
    jp = jnp.floor(t1 - t2).astype(jnp.int32)
    jm = jnp.floor(t1 + t2).astype(jnp.int32)
    ir = nside + 1 + jp - jm  # in [1, 2 nside + 1]
    kshift = 1 - (ir & 1)
    ip = (jp + jm - nside + kshift + 1) // 2
    ip = jnp.mod(ip, 4 * nside)
    pix_belt = ncap + (ir - 1) * 4 * nside + ip
    # polar caps
    tp = tt - jnp.floor(tt)
    tmp = nside * jnp.sqrt(jnp.maximum(3.0 * (1.0 - az), 0.0))
    jp = jnp.floor(tp * tmp).astype(jnp.int32)
    jm = jnp.floor((1.0 - tp) * tmp).astype(jnp.int32)
    ir = jp + jm + 1  # ring counted from the nearest pole
    ip = jnp.floor(tt * ir).astype(jnp.int32)
    ip = jnp.mod(ip, 4 * ir)
    pix_cap = jnp.where(z > 0, 2 * ir * (ir - 1) + ip, npix - 2 * ir * (ir + 1) + ip)
    return jnp.where(az <= 2.0 / 3.0, pix_belt, pix_cap).astype(jnp.int32)


def interpolation_weights_ring(nside: int, vec):
    """Bilinear-interpolation pixels and weights of directions, ring scheme.

    Between the ring above and the ring below the direction, linearly in θ; within each
    ring between the two pixels bracketing φ, linearly in φ. Above the first ring (below
    the last) the pole's share is spread equally over the 4 pixels of that ring. Same rule
    and ordering as healpy's `get_interp_weights`.

    Args:
        nside: HEALPix resolution, a power of two.
        vec: (..., 3) nonzero direction vectors.

    Returns:
        `(pixels, weights)`, shapes (..., 4): int32 ring-scheme indices and weights ≥ 0
        summing to 1, continuous in the direction (piecewise smooth).
    """
    nside = check_nside(nside)
    npix = 12 * nside * nside
    theta, phi = _theta_phi(vec)
    z = jnp.cos(theta)
    ir1 = _ring_above(nside, z)
    ir2 = ir1 + 1

    def ring_pair(ring):
        ring_c = jnp.clip(ring, 1, 4 * nside - 1)
        start, n_in, theta_r, shift = _ring_info(nside, ring_c)
        dphi = 2 * jnp.pi / n_in
        t = phi / dphi - 0.5 * shift
        i1 = jnp.floor(t).astype(jnp.int32)
        w = t - i1
        i2 = i1 + 1
        i1 = jnp.where(i1 < 0, i1 + n_in, i1)
        i2 = jnp.where(i2 >= n_in, i2 - n_in, i2)
        return start + i1, start + i2, 1.0 - w, w, theta_r

    p0, p1, w0, w1, theta1 = ring_pair(ir1)
    p2, p3, w2, w3, theta2 = ring_pair(ir2)
    north = ir1 == 0
    south = ir2 == 4 * nside
    # generic case
    wt = (theta - theta1) / jnp.where(north | south, 1.0, theta2 - theta1)
    g = (w0 * (1 - wt), w1 * (1 - wt), w2 * wt, w3 * wt)
    # north cap: ring 1 (p2, p3) and the pole spread over ring 1's four pixels
    wt_n = theta / theta2
    fac_n = (1 - wt_n) * 0.25
    n_w = (fac_n, fac_n, w2 * wt_n + fac_n, w3 * wt_n + fac_n)
    n_p = ((p2 + 2) & 3, (p3 + 2) & 3, p2, p3)
    # south cap: last ring (p0, p1) and the pole
    wt_s = (theta - theta1) / (jnp.pi - theta1)
    fac_s = wt_s * 0.25
    s_w = (w0 * (1 - wt_s) + fac_s, w1 * (1 - wt_s) + fac_s, fac_s, fac_s)
    s_p = (p0, p1, ((p0 + 2) & 3) + npix - 4, ((p1 + 2) & 3) + npix - 4)
    gen_p = (p0, p1, p2, p3)
    pixels = [
        jnp.where(north, n_p[k], jnp.where(south, s_p[k], gen_p[k])).astype(jnp.int32)
        for k in range(4)
    ]
    weights = [jnp.where(north, n_w[k], jnp.where(south, s_w[k], g[k])) for k in range(4)]
    return jnp.stack(pixels, axis=-1), jnp.stack(weights, axis=-1)
