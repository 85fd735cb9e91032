"""High-level recipes mirroring fgbuster's: basic, weighted, adaptive, multi-resolution, ILC.

Recipes take maps in fgbuster's layout `(n_freq, [n_stokes,] npix)`, treat pixels equal to
`healpy.UNSEEN` (or non-finite) at any frequency as masked, fit with `fit` (jitted) and
return a `CompSepResult` with maps in the same layout (`healpy.UNSEEN` where masked).
They run outside `jit` (they build the static patch layout with numpy); for batches of
noise realisations vmap `fit` over `SpectralLikelihood`s directly.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np

from .likelihood import SpectralLikelihood
from .mixing import MixingMatrix, _n_freq, as_frequencies
from .optimize import fit
from .patches import PatchLayout, nside_of, patch_ids_from_nside
from .sed import Component


@dataclasses.dataclass
class CompSepResult:
    """Result of a component-separation recipe.

    Attributes:
        params: names of the free parameters (`"Dust.beta_d"`, ...).
        x: best-fit flat vector (each parameter's patches in turn).
        x_maps: per parameter, its best-fit value in each patch (NaN for empty patches;
            length 1 for a global parameter).
        sigma: Σ, the semi-analytic covariance of `x` (inverse Fisher, all patches jointly).
        s: component maps `(n_comp, n_stokes, npix)` (`UNSEEN` where masked).
        inv_AtNA: noise covariance of the component maps `(npix, n_stokes, n_comp, n_comp)`.
        chi: prewhitened residuals `(n_freq, n_stokes, npix)`.
        log_likelihood: logL at `x`.
        chi2: χ² of the residuals; `dof` its degrees of freedom.
        dof: degrees of freedom.
        converged: the Newton decrement fell below the tolerance.
        n_steps: Newton steps.
        decrement: final Newton decrement (log-likelihood units).
        mask_good: boolean `(npix,)` map of the pixels used.
        layout: the `PatchLayout`.
        likelihood: the `SpectralLikelihood` (for further algebra at other x).
    """

    params: tuple[str, ...]
    x: np.ndarray
    x_maps: list[np.ndarray]
    sigma: np.ndarray
    s: np.ndarray
    inv_AtNA: np.ndarray
    chi: np.ndarray
    log_likelihood: float
    chi2: float
    dof: int
    converged: bool
    n_steps: int
    decrement: float
    mask_good: np.ndarray
    layout: PatchLayout
    likelihood: SpectralLikelihood


@functools.partial(jax.jit, static_argnames=("tol", "max_steps"))
def _fit_and_separate(like, x0, lower, upper, *, tol, max_steps):
    res = fit(like, x0, lower=lower, upper=upper, tol=tol, max_steps=max_steps)
    x = res.x
    return (
        res,
        like.sigma(x),
        like.components(x),
        like.inv_AtNA(x),
        like.chi(x),
        like.chi2(x),
    )


def _prepare(freqs, data, noise_std, mask):
    freqs = as_frequencies(freqs)
    data = np.array(data, dtype=float)
    if data.ndim == 2:
        data = data[:, None, :]
    if data.ndim != 3 or data.shape[0] != _n_freq(freqs):
        raise ValueError(
            f"data must have shape (n_freq={_n_freq(freqs)}, [n_stokes,] npix), got {data.shape}"
        )
    bad = ~np.isfinite(data) | (data == hp.UNSEEN)
    noise = np.asarray(noise_std, dtype=float)
    if noise.ndim == 1:
        noise = noise[:, None, None]
    if noise.ndim == 3 and noise.shape[-1] == data.shape[-1]:
        bad |= np.broadcast_to(~np.isfinite(noise) | (noise == hp.UNSEEN), data.shape)
    good = ~bad.any(axis=(0, 1))
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != good.shape:
            raise ValueError(f"mask must have shape {good.shape}, got {mask.shape}")
        good &= mask
    data = np.where(bad, 0.0, data)
    if noise.ndim == 3 and noise.shape[-1] == data.shape[-1]:
        noise = np.where(np.broadcast_to(good, noise.shape), noise, 1.0)
    return freqs, data, noise, good


def _bounds(mixing, layout, bounds):
    if bounds is None:
        return None, None
    unknown = sorted(set(bounds) - set(mixing.params))
    if unknown:
        raise ValueError(
            f"bounds for unknown parameter(s) {unknown}; free are {list(mixing.params)}"
        )
    lo = np.array([bounds.get(p, (-np.inf, np.inf))[0] for p in mixing.params], dtype=float)
    hi = np.array([bounds.get(p, (-np.inf, np.inf))[1] for p in mixing.params], dtype=float)
    return jnp.asarray(lo[layout.x_param]), jnp.asarray(hi[layout.x_param])


def _separate(
    components,
    freqs,
    data,
    noise_std,
    patch_ids,
    *,
    mask=None,
    x0=None,
    bounds=None,
    warm_start=True,
    tol=1e-9,
    max_steps=100,
):
    mixing = components if isinstance(components, MixingMatrix) else MixingMatrix(components)
    freqs, data, noise, good = _prepare(freqs, data, noise_std, mask)
    npix = data.shape[-1]
    layout = PatchLayout(mixing.n_param, npix, patch_ids, mask=good)
    like = SpectralLikelihood(mixing, freqs, data, noise, layout=layout)
    beta0 = mixing.defaults if x0 is None else np.asarray(x0, dtype=float)
    if beta0.shape == (mixing.n_param,):
        start = like.x0(beta0)
        if warm_start and layout.n_x > mixing.n_param:
            # Low-resolution warm start: the global fit, broadcast to every patch.
            glob = PatchLayout(mixing.n_param, npix, None, mask=good)
            g_like = SpectralLikelihood(mixing, freqs, data, noise, layout=glob)
            lo, hi = _bounds(mixing, glob, bounds)
            g_res = _fit_and_separate(
                g_like, jnp.asarray(beta0), lo, hi, tol=tol, max_steps=max_steps
            )
            start = layout.broadcast_x(g_res[0].x)
    elif beta0.shape == (layout.n_x,):
        start = jnp.asarray(beta0)
    else:
        raise ValueError(
            f"x0 must have shape ({mixing.n_param},) or ({layout.n_x},), got {beta0.shape}"
        )
    lo, hi = _bounds(mixing, layout, bounds)
    res, sigma, s, inv, chi, chi2 = _fit_and_separate(
        like, start, lo, hi, tol=tol, max_steps=max_steps
    )
    return CompSepResult(
        params=mixing.params,
        x=np.asarray(res.x),
        x_maps=layout.x_maps(res.x),
        sigma=np.asarray(sigma),
        s=np.asarray(s),
        inv_AtNA=np.asarray(inv),
        chi=np.asarray(chi),
        log_likelihood=float(res.log_likelihood),
        chi2=float(chi2),
        dof=like.dof,
        converged=bool(res.converged),
        n_steps=int(res.n_steps),
        decrement=float(res.decrement),
        mask_good=good,
        layout=layout,
        likelihood=like,
    )


def basic_comp_sep(
    components: Sequence[Component] | MixingMatrix,
    freqs,
    data,
    noise_std,
    *,
    nside: int = 0,
    **kwargs,
) -> CompSepResult:
    """Parametric component separation, global (`nside=0`) or in independent patches.

    With `nside > 0` every parameter takes one value per pixel of an `nside` map (the
    patches are independent, as in fgbuster's `multi_comp_sep`; they are fitted jointly
    here, which gives the same maximum and a joint Σ).

    Args:
        components: the components (or a `MixingMatrix`).
        freqs: frequencies in GHz or `Bandpasses`.
        data: `(n_freq, [n_stokes,] npix)` maps; `UNSEEN` pixels are masked.
        noise_std: white-noise standard deviation per pixel, `(n_freq,)` (use
            `noise_std_from_depth`) or broadcastable to `data`.
        nside: resolution of the patches (0: global).
        **kwargs: `mask`, `x0` (per parameter or flat), `bounds` (`{name: (lo, hi)}`),
            `warm_start` (global fit first, default True), `tol`, `max_steps`.

    Returns:
        `CompSepResult`.

    Raises:
        ValueError: mismatched shapes, non-positive noise, bad patch resolution.
    """
    mixing = components if isinstance(components, MixingMatrix) else MixingMatrix(components)
    data_nside = nside_of(np.shape(data)[-1], name="data") if nside else 0
    patch_ids = None if not nside else [patch_ids_from_nside(nside, data_nside)] * mixing.n_param
    return _separate(mixing, freqs, data, noise_std, patch_ids, **kwargs)


def adaptive_comp_sep(
    components: Sequence[Component] | MixingMatrix,
    freqs,
    data,
    noise_std,
    patch_ids: Sequence[np.ndarray | None],
    **kwargs,
) -> CompSepResult:
    """Component separation with arbitrary patches (clusters) per parameter, fitted jointly.

    Args:
        components: the components (or a `MixingMatrix`).
        freqs: frequencies in GHz or `Bandpasses`.
        data: `(n_freq, [n_stokes,] npix)` maps.
        noise_std: white-noise standard deviation per pixel (see `basic_comp_sep`).
        patch_ids: one `(npix,)` integer map per free parameter (`None`: global).
        **kwargs: as `basic_comp_sep`.

    Returns:
        `CompSepResult` (with Σ of all patches jointly, which fgbuster does not give).

    Raises:
        ValueError: patch maps of the wrong size (nside) or count.
    """
    return _separate(components, freqs, data, noise_std, list(patch_ids), **kwargs)


def multi_res_comp_sep(
    components: Sequence[Component] | MixingMatrix,
    freqs,
    data,
    noise_std,
    nsides: Sequence[int],
    **kwargs,
) -> CompSepResult:
    """Each parameter fitted on the pixels of its own HEALPix resolution (`0`: global).

    Args:
        components: the components (or a `MixingMatrix`).
        freqs: frequencies in GHz or `Bandpasses`.
        data: `(n_freq, [n_stokes,] npix)` maps.
        noise_std: white-noise standard deviation per pixel (see `basic_comp_sep`).
        nsides: one nside per free parameter.
        **kwargs: as `basic_comp_sep` (a global warm start is the default).

    Raises:
        ValueError: wrong number of nsides, or an nside above the data's.
    """
    mixing = components if isinstance(components, MixingMatrix) else MixingMatrix(components)
    if len(nsides) != mixing.n_param:
        raise ValueError(
            f"nsides needs one entry per free parameter ({mixing.n_param}), got {nsides}"
        )
    data_nside = nside_of(np.shape(data)[-1], name="data")
    ids = [None if n == 0 else patch_ids_from_nside(n, data_nside) for n in nsides]
    return _separate(mixing, freqs, data, noise_std, ids, **kwargs)


def weighted_comp_sep(
    components: Sequence[Component] | MixingMatrix,
    freqs,
    data,
    cov,
    *,
    nside: int = 0,
    **kwargs,
) -> CompSepResult:
    """Component separation with per-pixel noise variance maps `cov` (broadcastable to data).

    Same as `basic_comp_sep` with `noise_std = sqrt(cov)`; pixels where `cov` is `UNSEEN`
    are masked.
    """
    cov = np.asarray(cov, dtype=float)
    std = np.where(cov == hp.UNSEEN, hp.UNSEEN, np.sqrt(np.abs(cov)) * np.sign(cov))
    return basic_comp_sep(components, freqs, data, std, nside=nside, **kwargs)


@dataclasses.dataclass
class ILCResult:
    """Result of `ilc` / `harmonic_ilc`.

    Attributes:
        s: component maps `(n_comp, [n_stokes,] npix)`.
        W: weights `(n_patch or n_bin, [n_stokes,] n_comp, n_freq)`.
        freq_cov: empirical frequency covariances used.
    """

    s: np.ndarray
    W: np.ndarray
    freq_cov: np.ndarray


def _ilc_weights(a, cov):
    """(Aᵀ C⁻¹ A)⁻¹ Aᵀ C⁻¹ with C⁻¹ from the inverse correlation (robust to noisy channels)."""
    std = jnp.sqrt(jnp.diagonal(cov, axis1=-2, axis2=-1))
    corr = cov / (std[..., :, None] * std[..., None, :])
    inv = jnp.linalg.inv(corr) / (std[..., :, None] * std[..., None, :])
    ata = jnp.swapaxes(a, -1, -2) @ inv @ a
    return jnp.linalg.solve(ata, jnp.swapaxes(a, -1, -2) @ inv)


def ilc(components, freqs, data, patch_ids=None) -> ILCResult:
    """Internal linear combination in pixel space, independently in each patch.

    The weights W = (AᵀC⁻¹A)⁻¹AᵀC⁻¹ use the empirical covariance C of the frequency maps
    over each patch (Stokes parameters pooled); the components must have no free
    parameter. Masked (`UNSEEN`) pixels are ignored and stay `UNSEEN`.

    Args:
        components: components without free parameters (or a `MixingMatrix`).
        freqs: frequencies in GHz or `Bandpasses`.
        data: `(n_freq, [n_stokes,] npix)` maps.
        patch_ids: optional `(npix,)` integer map of the patches.

    Returns:
        `ILCResult` with `W` of shape `(n_patch, n_comp, n_freq)`.

    Raises:
        ValueError: components with free parameters, or mismatched shapes.
    """
    mixing = components if isinstance(components, MixingMatrix) else MixingMatrix(components)
    if mixing.n_param:
        raise ValueError(f"ILC needs components without free parameters, got {list(mixing.params)}")
    freqs, d, _, good = _prepare(freqs, data, np.ones(_n_freq(as_frequencies(freqs))), None)
    npix = d.shape[-1]
    ids = np.zeros(npix, np.int64) if patch_ids is None else np.asarray(patch_ids)
    if ids.shape != (npix,):
        raise ValueError(f"patch_ids must have shape ({npix},), got {ids.shape}")
    a = mixing.evaluate(freqs)
    n_patch = int(ids.max()) + 1
    s = np.full((mixing.n_comp, *d.shape[1:]), hp.UNSEEN)
    w_all = np.full((n_patch, mixing.n_comp, d.shape[0]), np.nan)
    cov_all = np.full((n_patch, d.shape[0], d.shape[0]), np.nan)
    for i in range(n_patch):
        sel = good & (ids == i)
        if not sel.any():
            continue
        x = d[:, :, sel].reshape(d.shape[0], -1)
        cov = np.cov(x)
        w = np.asarray(_ilc_weights(a, jnp.asarray(cov)))
        s[:, :, sel] = np.einsum("cf,fsp->csp", w, d[:, :, sel])
        w_all[i], cov_all[i] = w, cov
    if np.ndim(data) == 2:
        s = s[:, 0]
    return ILCResult(s=s, W=w_all, freq_cov=cov_all)


def harmonic_ilc(components, freqs, data, lbins, *, iter: int = 3) -> ILCResult:
    """Internal linear combination in harmonic space, one set of weights per ℓ bin.

    Maps `(n_freq, npix)` are treated as scalar fields, `(n_freq, 3, npix)` as I, Q, U
    (ILC done independently for T, E and B). The covariance of bin b is
    Σ_{ℓ∈b, m} Re(a_ℓm a_ℓm*) (m > 0 counted twice) over Σ (2ℓ + 1).

    Args:
        components: components without free parameters.
        freqs: frequencies in GHz or `Bandpasses`.
        data: full-sky maps `(n_freq, npix)` or `(n_freq, 3, npix)`.
        lbins: increasing bin edges; bin b is `lbins[b] <= ℓ < lbins[b+1]`
            (ℓ ≤ 3 nside − 1; multipoles outside every bin are set to zero).
        iter: `healpy.map2alm` iterations.

    Returns:
        `ILCResult`: maps of the components, `W` `(n_bin, [3,] n_comp, n_freq)`.

    Raises:
        ValueError: components with free parameters, bad shapes or bins.
    """
    mixing = components if isinstance(components, MixingMatrix) else MixingMatrix(components)
    if mixing.n_param:
        raise ValueError(f"ILC needs components without free parameters, got {list(mixing.params)}")
    data = np.asarray(data, dtype=float)
    if data.ndim not in (2, 3) or data.shape[0] != _n_freq(as_frequencies(freqs)):
        raise ValueError(f"data must be (n_freq, npix) or (n_freq, 3, npix), got {data.shape}")
    if data.ndim == 3 and data.shape[1] != 3:
        raise ValueError(f"polarised data must hold I, Q, U (3 maps), got {data.shape[1]}")
    nside = nside_of(data.shape[-1], name="data")
    lmax = 3 * nside - 1
    lbins = np.asarray(lbins, dtype=int)
    if lbins.ndim != 1 or lbins.size < 2 or np.any(np.diff(lbins) <= 0):
        raise ValueError(f"lbins must be increasing edges (>= 2), got {lbins}")
    alms = np.array([hp.map2alm(m, lmax=lmax, iter=iter, pol=data.ndim == 3) for m in data])
    if alms.ndim == 2:
        alms = alms[:, None]
    ell, emm = hp.Alm.getlm(lmax)
    weight = np.where(emm > 0, 2.0, 1.0)
    a = np.asarray(mixing.evaluate(as_frequencies(freqs)))
    n_bin = lbins.size - 1
    out = np.zeros((mixing.n_comp, *alms.shape[1:]), dtype=complex)
    w_all = np.full((n_bin, alms.shape[1], mixing.n_comp, data.shape[0]), np.nan)
    cov_all = np.full((n_bin, alms.shape[1], data.shape[0], data.shape[0]), np.nan)
    for b in range(n_bin):
        sel = (ell >= lbins[b]) & (ell < min(lbins[b + 1], lmax + 1))
        if not sel.any():
            continue
        for k in range(alms.shape[1]):
            x = alms[:, k, sel]
            cov = np.real(np.einsum("fl,gl,l->fg", x, x.conj(), weight[sel])) / np.sum(weight[sel])
            w = np.asarray(_ilc_weights(jnp.asarray(a), jnp.asarray(cov)))
            out[:, k, sel] = w @ x
            w_all[b, k], cov_all[b, k] = w, cov
    if data.ndim == 2:
        maps = np.array([hp.alm2map(out[c, 0], nside) for c in range(mixing.n_comp)])
        w_all, cov_all = w_all[:, 0], cov_all[:, 0]
    else:
        maps = np.array([hp.alm2map(out[c], nside, pol=True) for c in range(mixing.n_comp)])
    return ILCResult(s=maps, W=w_all, freq_cov=cov_all)
