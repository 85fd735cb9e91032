"""Born-approximation convergence from lightcone density shells (flat sky and HEALPix).

In the Born approximation (Bartelmann & Schneider 2001, Phys. Rep. 340, 291, eq. 6.14 with
eq. 6.19), the convergence of sources with redshift distribution n(z) is the projected
density contrast weighted by the lensing kernel,

    κ(θ) = (3/2) Ω_m (H0/c)² ∫ dχ  q(χ) χ / a(χ)  δ(χ θ, χ),
    q(χ) = ∫ dz n(z) max(0, (χ_s(z) − χ) / χ_s(z)),

(flat universe, comoving distances in Mpc/h, H0/c = 1/2997.92458 h/Mpc). With the shells
of a lightcone (centre χ_i, width Δχ_i, scale factor a_i, shell-averaged contrast δ_i),
the integral becomes the sum

    κ(θ) = Σ_i W_i δ_i(χ_i θ),   W_i = (3/2) Ω_m (H0/c)² q(χ_i) χ_i / a_i Δχ_i,

so shells of unequal width enter with their own Δχ_i (nothing assumes equal widths). By
default (`kernel="shell"`) W_i is the kernel integrated over the shell,
∫_shell q χ/a dχ (Gauss-Legendre), which the midpoint value q(χ_i) χ_i/a_i Δχ_i
approximates to O(Δχ³): the difference matters for shells as thick as the box.

Geometries (`planes.geometry`, from `fmt_dynamics.lightcone`):

- `"flat"`: a square field of `field_size` degrees on `field_npix`² pixels centred on the
  line of sight (+z). Pixel (j, k) is centred at θ = ((j + ½ − M/2), (k + ½ − M/2)) Δθ,
  Δθ = field_size/M; each plane (periodic, pixels of side `plane_size`/npix Mpc/h centred
  on the observer) is bilinearly interpolated at the transverse position χ_i θ.
- `"spherical"`: HEALPix maps in RING ordering with the planes' `nside` (12 nside² pixels,
  healpy's default ordering); the convergence is the weighted sum of the shells per pixel.

Density contrast: `density="mean"` (default) divides each shell by its own mean over the
map (over `mask` if given), δ_i = counts/⟨counts⟩ − 1, so every shell — and hence κ — has
exactly zero mean: the monopole is not a lensing observable, and the shell's particle
count fluctuates with modes larger than the shell. `density="expected"` uses the mean
count of a uniform distribution (`Lightcone.overdensity()`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from fmt_cosmo import comoving_distance, scale_factor_of_distance

from .nz import as_bins

__all__ = ["born_convergence", "lensing_efficiency", "lensing_weights", "shell_weights"]

C_KM_S = 299792.458
H0_OVER_C = 100.0 / C_KM_S  # h/Mpc
_DENSITIES = ("mean", "expected")
_KERNELS = ("shell", "midpoint")
# Gauss-Legendre nodes per shell for kernel="shell" (the kernel is smooth within a shell
# except at the kink χ = χ_s of a delta source, where the error stays O(Δχ³)).
_SHELL_NODES = 8


def _concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(values))


def lensing_efficiency(cosmo, chi: Float[Array, " n"], nz) -> Float[Array, "bins n"]:
    """q_b(χ) = ∫ dz n_b(z) max(0, 1 − χ/χ_s(z)) for every bin of `nz`.

    Args:
        cosmo: an `fmt_cosmo.Cosmology`.
        chi: comoving distances, Mpc/h, any 1-D shape.
        nz: one n(z) or a sequence (tomographic bins).

    Returns:
        (n_bins, n) lensing efficiencies, dimensionless in [0, 1].
    """
    chi = jnp.asarray(chi)
    out = []
    for b in as_bins(nz):
        z, w = b.quadrature()
        chi_s = comoving_distance(cosmo, 1.0 / (1.0 + z))
        safe = jnp.where(chi_s > 0, chi_s, 1.0)
        ratio = jnp.where(chi_s[None, :] > chi[:, None], 1.0 - chi[:, None] / safe[None, :], 0.0)
        out.append(ratio @ w)
    return jnp.stack(out)


def lensing_weights(cosmo, chi, width, scale_factor, nz) -> Float[Array, "bins shells"]:
    """W_{b,i} = (3/2) Ω_m (H0/c)² q_b(χ_i) χ_i / a_i Δχ_i of shells (module docstring).

    Args:
        cosmo: an `fmt_cosmo.Cosmology`.
        chi: (shells,) shell centres, Mpc/h.
        width: (shells,) shell widths Δχ, Mpc/h.
        scale_factor: (shells,) a at the centres.
        nz: one n(z) or a sequence.

    Returns:
        (n_bins, shells) weights, dimensionless.
    """
    pref = 1.5 * cosmo.Omega_m * H0_OVER_C**2
    q = lensing_efficiency(cosmo, chi, nz)
    return pref * q * (jnp.asarray(chi) * jnp.asarray(width) / jnp.asarray(scale_factor))[None]


def shell_weights(cosmo, chi_edges, nz) -> Float[Array, "bins shells"]:
    """W_{b,i} = (3/2) Ω_m (H0/c)² ∫_{shell i} q_b(χ) χ / a(χ) dχ: the kernel integrated
    over each shell (Gauss-Legendre, 8 nodes per shell), exact for the shell-averaged
    contrast when the kernel varies across thick or unequal shells.

    Args:
        cosmo: an `fmt_cosmo.Cosmology`.
        chi_edges: (shells + 1,) increasing shell edges, Mpc/h.
        nz: one n(z) or a sequence.

    Returns:
        (n_bins, shells) weights, dimensionless.
    """
    x, w = np.polynomial.legendre.leggauss(_SHELL_NODES)
    edges = jnp.asarray(chi_edges)
    lo, hi = edges[:-1], edges[1:]
    half = 0.5 * (hi - lo)
    chi = (0.5 * (hi + lo))[:, None] + half[:, None] * jnp.asarray(x)[None, :]
    flat = chi.reshape(-1)
    a = scale_factor_of_distance(cosmo, flat)
    q = lensing_efficiency(cosmo, flat, nz)  # (bins, shells * nodes)
    integrand = (q * (flat / a)[None]).reshape(q.shape[0], *chi.shape)
    pref = 1.5 * cosmo.Omega_m * H0_OVER_C**2
    return pref * jnp.einsum("bsn,n,s->bs", integrand, jnp.asarray(w), half)


def _interp_periodic(plane, x, y, dx, dy):
    """Bilinear interpolation of a periodic plane (pixel i centred at (i + ½ − n/2) d)."""
    nx, ny = plane.shape
    u = x / dx + 0.5 * nx - 0.5
    v = y / dy + 0.5 * ny - 0.5
    i0, j0 = jnp.floor(u), jnp.floor(v)
    fu, fv = u - i0, v - j0
    i0, j0 = i0.astype(jnp.int32), j0.astype(jnp.int32)
    out = 0.0
    for di, wu in ((0, 1.0 - fu), (1, fu)):
        ii = jnp.mod(i0 + di, nx)
        for dj, wv in ((0, 1.0 - fv), (1, fv)):
            jj = jnp.mod(j0 + dj, ny)
            out = out + wu * wv * plane[ii, jj]
    return out


def _fourier_sample(plane, u, v, deconvolve):
    """Trigonometric interpolation of a periodic plane at pixel coordinates u (rows) × v
    (columns), separable: A_u · FFT(plane) · A_vᵀ / n². Nyquist modes are dropped (their
    interpolant is not real); `deconvolve` divides by the CIC window sinc²(πk/n) per axis."""
    nx, ny = plane.shape
    kx = np.fft.fftfreq(nx, 1.0 / nx)
    ky = np.fft.fftfreq(ny, 1.0 / ny)
    keep = np.outer(np.abs(kx) < nx / 2, np.abs(ky) < ny / 2).astype(float)
    if deconvolve:
        keep = keep / np.outer(np.sinc(kx / nx) ** 2, np.sinc(ky / ny) ** 2)
    spec = jnp.fft.fft2(plane) * jnp.asarray(keep)
    a_u = jnp.exp(2j * jnp.pi * u[:, None] * jnp.asarray(kx)[None, :] / nx)
    a_v = jnp.exp(2j * jnp.pi * v[:, None] * jnp.asarray(ky)[None, :] / ny)
    return jnp.real(a_u @ spec @ a_v.T) / (nx * ny)


def flat_angles(field_size: float, field_npix: int) -> np.ndarray:
    """Pixel-centre angles (radians) along one side of the flat field, shape (field_npix,)."""
    d = np.deg2rad(field_size) / field_npix
    return (np.arange(field_npix) + 0.5 - 0.5 * field_npix) * d


def _contrast(planes, density, mask):
    maps = planes.maps
    if density == "expected":
        return planes.overdensity()
    axes = tuple(range(1, maps.ndim))
    if mask is None:
        mean = jnp.mean(maps, axis=axes, keepdims=True)
    else:
        m = jnp.asarray(mask, dtype=maps.dtype)
        mean = jnp.sum(maps * m, axis=axes, keepdims=True) / jnp.sum(m)
    return maps / mean - 1.0


def born_convergence(
    cosmo,
    planes,
    nz,
    *,
    field_size: float | None = None,
    field_npix: int | None = None,
    nside: int | None = None,
    plane_size: float | None = None,
    density: str = "mean",
    kernel: str = "shell",
    interpolation: str = "bilinear",
    deconvolve: bool = False,
    mask: Any = None,
) -> Float[Array, "bins ..."]:
    """Born convergence maps of every source bin from lightcone shells.

    Not jitted; jit the caller. Differentiable w.r.t. `cosmo` (kernel and, through the
    lightcone, the density) and the shells.

    Args:
        cosmo: an `fmt_cosmo.Cosmology`.
        planes: an `fmt_dynamics.Lightcone` (maps in particle counts, shell centres,
            widths and scale factors; see its docstring).
        nz: one n(z) (`Smail`, `TopHat`, `Delta`, `Tabulated`) or a sequence of them.
        field_size: flat only, side of the square field, degrees.
        field_npix: flat only, pixels per side of the field.
        nside: spherical only, optional check that the shells have this HEALPix nside.
        plane_size: flat only, transverse side of the planes in Mpc/h (the box side);
            default `npix · sqrt(pixel_area)` (square pixels).
        density: `"mean"` (default) or `"expected"` (module docstring).
        kernel: `"shell"` (default): the lensing kernel integrated over each shell
            (`shell_weights`); `"midpoint"`: its value at the shell centre times Δχ
            (`lensing_weights`, the textbook sum).
        interpolation: flat only, `"bilinear"` (default; local, smooths like a second
            CIC) or `"fourier"` (exact trigonometric interpolation of the periodic plane,
            separable on the square field grid: O(M n² + M² n) per plane).
        deconvolve: flat with `"fourier"` only, divide the planes by the 2-D CIC window
            sinc²(k_x Δ/2) sinc²(k_y Δ/2) of their painting.
        mask: spherical only, optional (12 nside²,) boolean map of the pixels over which
            the shell means are taken with `density="mean"`.

    Returns:
        κ, shape (n_bins, field_npix, field_npix) (flat, axis 0 along θ_x) or
        (n_bins, 12 nside²) (spherical, RING ordering).

    Raises:
        ValueError: naming the argument: missing or inconsistent `field_size`/`field_npix`/
            `nside`, `nside` not a power of two or unlike the shells', a field wider than
            the planes at the far edge of the last shell (`field_size`), unknown `density`.

    Example:
        >>> kappa = born_convergence(cosmo, planes, (Smail(2.0, 1.5, 0.5), Delta(1.0)),
        ...                          field_size=5.0, field_npix=64)
    """
    bins = as_bins(nz)
    if density not in _DENSITIES:
        raise ValueError(f"density must be one of {_DENSITIES}, got {density!r}")
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}")
    geometry = planes.geometry
    if kernel == "shell":
        weights = shell_weights(cosmo, planes.chi_edges, bins)
    else:
        weights = lensing_weights(cosmo, planes.chi, planes.width, planes.scale_factor, bins)
    if geometry == "spherical":
        if field_size is not None or field_npix is not None:
            raise ValueError("field_size and field_npix are for flat planes, not spherical ones")
        npix = planes.maps.shape[-1]
        map_nside = round(np.sqrt(npix / 12))
        if nside is not None:
            _check_nside(nside)
            if nside != map_nside:
                raise ValueError(f"nside={nside!r} differs from the shells' nside {map_nside}")
        delta = _contrast(planes, density, mask)
        return weights @ delta
    if nside is not None:
        raise ValueError(f"nside is for spherical shells, got nside={nside!r} with flat planes")
    if field_size is None or field_npix is None:
        raise ValueError(
            f"flat planes need field_size and field_npix, got {field_size!r}, {field_npix!r}"
        )
    if not (np.isfinite(field_size) and 0 < field_size < 180):
        raise ValueError(f"field_size must be in (0, 180) degrees, got {field_size!r}")
    if isinstance(field_npix, bool) or not isinstance(field_npix, int) or field_npix < 1:
        raise ValueError(f"field_npix must be a positive int, got {field_npix!r}")
    nx, ny = planes.maps.shape[1:]
    if plane_size is None:
        if not _concrete(planes.pixel_area):
            raise ValueError("plane_size is needed when the lightcone is traced")
        plane_size = float(np.sqrt(np.asarray(planes.pixel_area))) * max(nx, ny)
    dx, dy = plane_size / max(nx, ny), plane_size / max(nx, ny)
    if _concrete(planes.chi_edges):
        far = float(np.asarray(planes.chi_edges).max())
        check_field_fits(field_size, far, min(nx * dx, ny * dy))
    if interpolation not in ("bilinear", "fourier"):
        raise ValueError(f"interpolation must be 'bilinear' or 'fourier', got {interpolation!r}")
    if deconvolve and interpolation != "fourier":
        raise ValueError("deconvolve=True needs interpolation='fourier'")
    theta = jnp.asarray(flat_angles(field_size, field_npix))
    tx, ty = theta[:, None], theta[None, :]
    delta = _contrast(planes, density, None)

    def sample(plane, chi):
        if interpolation == "fourier":
            u = chi * theta / dx + 0.5 * nx - 0.5
            v = chi * theta / dy + 0.5 * ny - 0.5
            return _fourier_sample(plane, u, v, deconvolve)
        return _interp_periodic(plane, chi * tx, chi * ty, dx, dy)

    sampled = jax.vmap(sample)(delta, jnp.asarray(planes.chi))
    return jnp.einsum("bi,ijk->bjk", weights, sampled)


def check_field_fits(field_size: float, max_distance: float, plane_extent: float) -> None:
    """ValueError (naming `field_size`) when the field is wider than the planes allow."""
    width = np.deg2rad(field_size) * max_distance
    if width > plane_extent * (1 + 1e-12):
        raise ValueError(
            f"field_size={field_size!r} deg is larger than the box allows: it spans "
            f"{width:.4g} Mpc/h at the far edge {max_distance:.4g} Mpc/h of the last shell, "
            f"more than the {plane_extent:.4g} Mpc/h transverse box (periodic copies would "
            "repeat in the field)"
        )


def _check_nside(nside) -> int:
    if isinstance(nside, bool) or not isinstance(nside, int | np.integer):
        raise ValueError(f"nside must be a positive power of two, got {nside!r}")
    if nside < 1 or int(nside) & (int(nside) - 1):
        raise ValueError(f"nside must be a positive power of two, got {nside!r}")
    return int(nside)
