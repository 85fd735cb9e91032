"""Limber-approximation angular power spectrum of the convergence, on fmt-cosmo.

With the lensing efficiency q_b of `born.py` and the kernel
W_b(χ) = (3/2) Ω_m (H0/c)² q_b(χ) χ / a(χ), the first-order Limber approximation
(Limber 1953; LoVerde & Afshordi 2008 for the ℓ + ½) in a flat universe is

    C_ℓ^{bc} = ∫_0^{χ_max} dχ  W_b(χ) W_c(χ) / χ²  P((ℓ + ½)/χ, a(χ))

(Bartelmann & Schneider 2001, eq. 6.23), with the linear P of `fmt_cosmo.linear_power` by
default. The χ integral uses the midpoint rule on `n_chi` nodes (no node at χ = 0).

`shell_limber_cl` is the same approximation for the *discretised* lightcone that
`born_convergence` sums, κ = Σ_i W_i δ_i (W_i the kernel integrated over shell i,
`shell_weights`; δ_i the shell-averaged contrast). In the Limber approximation the
shells are uncorrelated and

    flat:       C_ℓ = Σ_i W_i² / (χ_i² Δχ_i²) ∫_shell dχ P(ℓ/χ_i, a(χ)),
    spherical:  C_ℓ = Σ_i W_i² ∫_shell dχ χ² P((ℓ + ½)/χ, a(χ)) / (∫_shell χ² dχ)²,

(flat: a plane holds the slab projected at fixed transverse comoving position and is
read at the angle θ = x⊥/χ_i of its centre, with the flat-sky ℓ = k⊥ χ_i; spherical: the
shell map is the χ²-weighted radial average of δ). For thin shells both tend to the
continuous `limber_cl`; the difference for thick shells is the projection error of the
discretisation itself, not of the simulation, so simulated maps are compared with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from fmt_cosmo import comoving_distance, growth_table, linear_power, scale_factor_of_distance

from .born import H0_OVER_C, lensing_efficiency
from .nz import as_bins

__all__ = ["limber_cl", "shell_limber_cl"]


def limber_cl(
    cosmo,
    ell: Any,
    nz,
    *,
    chi_range: tuple[Any, Any] | None = None,
    n_chi: int = 256,
    cross: bool = False,
    power: Callable | None = None,
) -> Float[Array, "..."]:
    """Limber C_ℓ of κ for every source bin (or every pair of bins).

    Args:
        cosmo: an `fmt_cosmo.Cosmology` (may be traced).
        ell: multipoles, 1-D, > 0.
        nz: one n(z) or a sequence of them (tomographic bins).
        chi_range: (χ_min, χ_max) in Mpc/h of the lenses integrated over (e.g. the shells
            of a lightcone); default (0, χ of the highest source node).
        n_chi: midpoint nodes in χ.
        cross: return all pairs (n_bins, n_bins, n_ell) instead of the autos (n_bins, n_ell).
        power: optional `power(k, a)` in (Mpc/h)³, k in h/Mpc; default
            `fmt_cosmo.linear_power(cosmo, k, a)` (EH98 with wiggles).

    Returns:
        C_ℓ (dimensionless, per steradian), (n_bins, n_ell) or (n_bins, n_bins, n_ell).

    Raises:
        ValueError: `ell` not 1-D positive (when concrete), `n_chi` < 8.
    """
    bins = as_bins(nz)
    ell = jnp.asarray(ell, dtype=float)
    if ell.ndim != 1:
        raise ValueError(f"ell must be 1-D, got shape {ell.shape}")
    if not isinstance(n_chi, int) or n_chi < 8:
        raise ValueError(f"n_chi must be an int >= 8, got {n_chi!r}")
    if chi_range is None:
        z_top = jnp.max(jnp.concatenate([b.quadrature()[0] for b in bins]))
        lo, hi = 0.0, comoving_distance(cosmo, 1.0 / (1.0 + z_top))
    else:
        lo, hi = chi_range
    t = (jnp.arange(n_chi) + 0.5) / n_chi
    chi = lo + t * (hi - lo)
    dchi = (hi - lo) / n_chi
    a = scale_factor_of_distance(cosmo, chi)
    w = 1.5 * cosmo.Omega_m * H0_OVER_C**2 * lensing_efficiency(cosmo, chi, bins) * chi / a
    k = (ell[:, None] + 0.5) / chi[None, :]
    if power is None:
        table = growth_table(cosmo)
        pk = linear_power(cosmo, k, a[None, :], growth_table=table)
    else:
        pk = power(k, a[None, :])
    integrand = pk / chi[None, :] ** 2 * dchi  # (n_ell, n_chi)
    if cross:
        return jnp.einsum("bj,cj,lj->bcl", w, w, integrand)
    return jnp.einsum("bj,bj,lj->bl", w, w, integrand)


def shell_limber_cl(
    cosmo,
    ell: Any,
    nz,
    chi_edges: Any,
    *,
    geometry: str = "flat",
    n_sub: int = 16,
    power: Callable | None = None,
) -> Float[Array, "bins ell"]:
    """Limber C_ℓ of the Born sum over discrete shells (module docstring), per source bin.

    Args:
        cosmo: an `fmt_cosmo.Cosmology` (may be traced).
        ell: multipoles, 1-D, > 0 (flat: the 2-D Fourier wavenumber of the map).
        nz: one n(z) or a sequence of them.
        chi_edges: (shells + 1,) increasing shell edges in Mpc/h (`Lightcone.chi_edges`).
        geometry: `"flat"` (planes read at χ_i θ) or `"spherical"` (HEALPix shells).
        n_sub: Gauss-Legendre nodes per shell for the integral of P across it.
        power: optional `power(k, a)`; default `fmt_cosmo.linear_power`.

    Returns:
        C_ℓ, (n_bins, n_ell).

    Raises:
        ValueError: unknown `geometry`, `ell` not 1-D, fewer than 2 edges, `n_sub` < 1.
    """
    from .born import shell_weights

    if geometry not in ("flat", "spherical"):
        raise ValueError(f"geometry must be 'flat' or 'spherical', got {geometry!r}")
    ell = jnp.asarray(ell, dtype=float)
    if ell.ndim != 1:
        raise ValueError(f"ell must be 1-D, got shape {ell.shape}")
    if not isinstance(n_sub, int) or n_sub < 1:
        raise ValueError(f"n_sub must be an int >= 1, got {n_sub!r}")
    edges = jnp.asarray(chi_edges, dtype=float)
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise ValueError(f"chi_edges must be 1-D with >= 2 entries, got shape {edges.shape}")
    bins = as_bins(nz)
    weights = shell_weights(cosmo, edges, bins)  # (bins, shells)
    x, wq = np.polynomial.legendre.leggauss(n_sub)
    lo, hi = edges[:-1], edges[1:]
    half = 0.5 * (hi - lo)
    centre = 0.5 * (hi + lo)
    chi = centre[:, None] + half[:, None] * jnp.asarray(x)[None, :]  # (shells, nodes)
    dchi = half[:, None] * jnp.asarray(wq)[None, :]
    a = scale_factor_of_distance(cosmo, chi.reshape(-1)).reshape(chi.shape)
    if geometry == "flat":
        k = ell[:, None, None] / centre[None, :, None] * jnp.ones_like(chi)[None]
        radial = dchi / (centre[:, None] ** 2 * (hi - lo)[:, None] ** 2)
    else:
        k = (ell[:, None, None] + 0.5) / chi[None]
        radial = dchi * chi**2 / jnp.sum(dchi * chi**2, axis=1, keepdims=True) ** 2
    if power is None:
        table = growth_table(cosmo)
        pk = linear_power(cosmo, k, a[None], growth_table=table)
    else:
        pk = power(k, a[None])
    per_shell = jnp.sum(pk * radial[None], axis=-1)  # (n_ell, shells)
    return jnp.einsum("bs,ls->bl", weights**2, per_shell)


def ell_bin_centres(edges: Any) -> np.ndarray:
    """Centres of ℓ bins (for plotting)."""
    e = np.asarray(edges, dtype=float)
    return 0.5 * (e[1:] + e[:-1])
