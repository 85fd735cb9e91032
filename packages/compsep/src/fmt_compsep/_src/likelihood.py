"""The spectral likelihood of parametric component separation and its algebra.

For pixels p (and Stokes parameters) with data d_p (n_freq) and white noise N_p,

    logL(β) = ½ Σ_p (Aᵀ N_p⁻¹ d_p)ᵀ (Aᵀ N_p⁻¹ A)⁻¹ (Aᵀ N_p⁻¹ d_p)

(Stompor et al. 2009), the maximum over the component amplitudes of the Gaussian
log-likelihood up to a constant; fgbuster's `logL`. Everything is computed on
prewhitened quantities Ã = N^{-1/2} A, d̃ = N^{-1/2} d with a Cholesky factor of ÃᵀÃ.

Moment reduction (exact): when all the pixels of a group (same mixing matrix) share
their noise, logL = ½ Σ_g tr(P̃_g C_g) with C_g = Σ_{p∈g} d̃_p d̃_pᵀ, so the data enter
only through one n_freq × n_freq matrix per group, computed once; a likelihood
evaluation then costs nothing per pixel.
"""

from __future__ import annotations

import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np

from .mixing import MixingMatrix, _n_freq, as_frequencies
from .patches import PatchLayout, _nside_or_size


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _matvec(m, v):
    """Batched m @ v over the leading axes, broadcasting size-1 axes (unlike einsum)."""
    return (m @ v[..., None])[..., 0]


# Mixing matrices have a handful of columns: Cholesky factorisation and triangular solves
# are unrolled into elementwise operations over the batch of pixels or groups. XLA's
# batched linear-algebra kernels are ~100x slower for 3 x 3 blocks under forward-over-
# reverse autodiff (the Newton Hessian), and these are exact, differentiable formulas.
_UNROLL_MAX = 8


def _cholesky(gram):
    """Lower Cholesky factor of `(..., n, n)` symmetric positive definite matrices."""
    n = gram.shape[-1]
    if n > _UNROLL_MAX:
        return jnp.linalg.cholesky(gram)
    low = [[None] * n for _ in range(n)]
    zero = jnp.zeros_like(gram[..., 0, 0])
    for j in range(n):
        diag = gram[..., j, j] - sum((low[j][k] ** 2 for k in range(j)), zero)
        low[j][j] = jnp.sqrt(diag)
        for i in range(j + 1, n):
            off = gram[..., i, j] - sum((low[i][k] * low[j][k] for k in range(j)), zero)
            low[i][j] = off / low[j][j]
    rows = [jnp.stack([low[i][j] if j <= i else zero for j in range(n)], axis=-1) for i in range(n)]
    return jnp.stack(rows, axis=-2)


def _solve_lower(chol, b):
    """L⁻¹ b for lower-triangular `chol` `(..., n, n)` and `b` `(..., n, m)`."""
    n = chol.shape[-1]
    if n > _UNROLL_MAX:
        return jax.lax.linalg.triangular_solve(chol, b, left_side=True, lower=True)
    rows = []
    for i in range(n):
        acc = b[..., i, :]
        for k in range(i):
            acc = acc - chol[..., i, k, None] * rows[k]
        rows.append(acc / chol[..., i, i, None])
    return jnp.stack(rows, axis=-2)


def _cho_solve(chol, b):
    """(L Lᵀ)⁻¹ b by two triangular solves."""
    return _solve_lower_t(chol, _solve_lower(chol, b))


def _solve_lower_t(chol, y):
    """L⁻ᵀ y (back substitution with the transpose of a lower factor)."""
    n = chol.shape[-1]
    if n > _UNROLL_MAX:
        return jax.lax.linalg.triangular_solve(
            chol, y, left_side=True, lower=True, transpose_a=True
        )
    rows = [None] * n
    for i in reversed(range(n)):
        acc = y[..., i, :]
        for k in range(i + 1, n):
            acc = acc - chol[..., k, i, None] * rows[k]
        rows[i] = acc / chol[..., i, i, None]
    return jnp.stack(rows, axis=-2)


@jax.tree_util.register_pytree_node_class
class SpectralLikelihood:
    """Spectral likelihood of multi-frequency maps for a mixing matrix and a patch layout.

    A pytree (arrays are leaves; the mixing matrix and layout are static), so it can be
    built inside `jit` or `vmap` — e.g. once per noise realisation — and passed to
    `fit`. Pixel arrays may be sharded over devices.

    Args:
        mixing: the `MixingMatrix`.
        freqs: `(n_freq,)` frequencies in GHz or `Bandpasses`.
        data: maps `(n_freq, npix)` or `(n_freq, n_stokes, npix)`.
        noise_std: white-noise standard deviation per pixel, in data units, broadcastable
            to `data` — `(n_freq,)` or `(n_freq, n_stokes, 1)` for noise shared by all
            pixels (then the exact moment reduction is used), or per-pixel maps.
        layout: `PatchLayout` (static) of the parameters and mask; default: global
            parameters, every pixel used.
        use_moments: force (True) or forbid (False) the moment reduction; by default it
            is used whenever the noise is the same in every pixel.

    Raises:
        ValueError: frequencies and data of mismatched shapes, noise not broadcastable
            or not positive, a layout for another number of pixels (nside).
    """

    def __init__(
        self,
        mixing: MixingMatrix,
        freqs,
        data,
        noise_std,
        *,
        layout: PatchLayout | None = None,
        use_moments: bool | None = None,
    ):
        if not isinstance(mixing, MixingMatrix):
            raise ValueError(f"mixing must be a MixingMatrix, got {type(mixing).__name__}")
        freqs = as_frequencies(freqs)
        n_freq = _n_freq(freqs)
        data = jnp.asarray(data, dtype=float)
        if data.ndim == 2:
            data = data[:, None, :]
        if data.ndim != 3 or data.shape[0] != n_freq:
            raise ValueError(
                f"data must have shape (n_freq={n_freq}, [n_stokes,] npix), got {data.shape}"
            )
        npix = data.shape[-1]
        if layout is None:
            layout = PatchLayout(mixing.n_param, npix)
        if layout.npix != npix:
            raise ValueError(
                f"layout (patch maps) has {layout.npix} pixels ({_nside_or_size(layout.npix)}) "
                f"but data has {npix} ({_nside_or_size(npix)})"
            )
        if mixing.n_comp > n_freq:
            raise ValueError(
                f"{mixing.n_comp} components cannot be separated with {n_freq} frequencies"
            )
        if _is_concrete(noise_std) and not np.all(np.asarray(noise_std) > 0):
            raise ValueError(f"noise_std must be positive, got min {np.min(noise_std)}")
        noise = jnp.asarray(noise_std, dtype=float)
        if noise.ndim == 1:
            noise = noise[:, None, None]
        try:
            shape = jnp.broadcast_shapes(noise.shape, data.shape)
        except ValueError:
            shape = None
        if noise.ndim > 3 or shape != data.shape:
            raise ValueError(
                f"noise_std of shape {noise.shape} does not broadcast to data {data.shape}"
            )
        shared = noise.shape[-1] == 1
        if use_moments is None:
            use_moments = shared
        if use_moments and not shared:
            raise ValueError("use_moments=True needs noise_std shared by all pixels (last axis 1)")
        self.mixing, self.layout, self.use_moments = mixing, layout, bool(use_moments)
        self.freqs = freqs
        d = jnp.transpose(data[..., layout.pixels], (2, 1, 0))  # (P, S, F)
        inv = 1.0 / noise
        if use_moments:
            inv = jnp.transpose(inv[..., 0], (1, 0))  # (S', F)
            dw = d * inv[None]
            if layout.n_group == 1:
                # one group: a single (F, P·S) x (P·S, F) product, no per-pixel outer products
                if inv.shape[0] == 1:
                    flat = dw.reshape(-1, dw.shape[-1])
                    self.moments = (flat.T @ flat)[None, None]
                else:
                    self.moments = jnp.einsum("psi,psj->sij", dw, dw)[None]
            else:
                outer = jnp.einsum("psi,psj->psij", dw, dw)
                if inv.shape[0] == 1:
                    outer = outer.sum(axis=1, keepdims=True)
                self.moments = jax.ops.segment_sum(
                    outer, jnp.asarray(layout.group_of_pixel), num_segments=layout.n_group
                )
        else:
            inv = jnp.transpose(jnp.broadcast_to(inv, data.shape)[..., layout.pixels], (2, 1, 0))
            dw = d * inv
            self.moments = None
        self.inv_std = inv
        self.data_w = dw
        self.n_stokes = data.shape[1]

    # -- pytree -------------------------------------------------------------------------
    def tree_flatten(self):
        children = (self.freqs, self.data_w, self.inv_std, self.moments)
        aux = (self.mixing, self.layout, self.use_moments, self.n_stokes)
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.freqs, obj.data_w, obj.inv_std, obj.moments = children
        obj.mixing, obj.layout, obj.use_moments, obj.n_stokes = aux
        return obj

    # -- building blocks ------------------------------------------------------------------
    @property
    def n_x(self) -> int:
        """Length of the fitted parameter vector."""
        return self.layout.n_x

    def x0(self, beta=None):
        """Starting vector: `beta` (default: components' defaults) in every patch."""
        beta = self.mixing.defaults if beta is None else beta
        return self.layout.broadcast_x(jnp.asarray(beta, dtype=float))

    def _check_x(self, x):
        x = jnp.asarray(x, dtype=float)
        if x.shape != (self.n_x,):
            raise ValueError(
                f"x must have shape ({self.n_x},) (parameters x patches), got {x.shape}"
            )
        return x

    def mixing_matrix(self, x):
        """`(n_group, n_freq, n_comp)` mixing matrices of the groups (data units)."""
        x = self._check_x(x)
        return self.mixing.evaluate(self.freqs, self.layout.beta_of_groups(x))

    def _whitened(self, x):
        """Ã: `(G, S', F, C)` in moment mode, `(P, S, F, C)` per pixel."""
        a = self.mixing_matrix(x)
        if self.use_moments:
            return a[:, None] * self.inv_std[None, :, :, None]
        return a[self.layout.group_of_pixel][:, None] * self.inv_std[..., None]

    @staticmethod
    def _factor(aw):
        gram = jnp.einsum("...fi,...fj->...ij", aw, aw)
        return _cholesky(gram)

    # -- likelihood -------------------------------------------------------------------------
    def log_likelihood(self, x):
        """logL(x) (fgbuster's `logL`, summed over pixels and Stokes parameters)."""
        aw = self._whitened(x)
        chol = self._factor(aw)
        if self.use_moments:
            y = _solve_lower(chol, jnp.swapaxes(aw, -1, -2))  # (G,S',C,F)
            return 0.5 * jnp.einsum("gsci,gsij,gscj->", y, self.moments, y)
        b = jnp.einsum("psfc,psf->psc", aw, self.data_w)
        y = _solve_lower(chol, b[..., None])
        return 0.5 * jnp.sum(y**2)

    def grad(self, x):
        """d logL / dx by reverse-mode autodiff."""
        return jax.grad(self.log_likelihood)(x)

    def value_and_grad(self, x):
        """(logL, d logL / dx)."""
        return jax.value_and_grad(self.log_likelihood)(x)

    def hessian(self, x):
        """d² logL / dx² (exact, forward over reverse)."""
        return jax.hessian(self.log_likelihood)(x)

    def fisher(self, x):
        """Fisher matrix of x: Σ_p (D̃ ∂_a Ã s_p)ᵀ (D̃ ∂_b Ã s_p) (fgbuster's `Sigma_inv`).

        D̃ = 1 − Ã(ÃᵀÃ)⁻¹Ãᵀ and s_p are evaluated at `x`; computed as the Hessian of
        ½ Σ_p |D̃ Ã(x') s_p|² at x' = x, whose other term vanishes since D̃ Ã(x) = 0.
        """
        x = self._check_x(x)
        aw = jax.lax.stop_gradient(self._whitened(x))
        chol = self._factor(aw)
        y = _solve_lower(chol, jnp.swapaxes(aw, -1, -2))  # (.., C, F)
        proj = jnp.einsum("...ci,...cj->...ij", y, y)
        deproj = jnp.eye(proj.shape[-1]) - proj
        w = _cho_solve(chol, jnp.swapaxes(aw, -1, -2))  # (..,C,F)
        if self.use_moments:
            s_cov = jnp.einsum("gsci,gsij,gsdj->gscd", w, self.moments, w)

            def half_sq(xp):
                a = self._whitened(xp)
                da = jnp.einsum("gsij,gsjc->gsic", deproj, a)
                return 0.5 * jnp.einsum("gsic,gscd,gsid->", da, s_cov, da)

        else:
            s = jnp.einsum("pscf,psf->psc", w, self.data_w)

            def half_sq(xp):
                a = self._whitened(xp)
                v = jnp.einsum("psij,psjc,psc->psi", deproj, a, s)
                return 0.5 * jnp.sum(v**2)

        return jax.hessian(half_sq)(x)

    def sigma(self, x):
        """Σ = Fisher⁻¹: semi-analytic covariance of the best-fit x (all patches jointly)."""
        return jnp.linalg.inv(self.fisher(x))

    # -- separation ---------------------------------------------------------------------------
    def _weights_whitened(self, x):
        aw = self._whitened(x)
        chol = self._factor(aw)
        return aw, chol, _cho_solve(chol, jnp.swapaxes(aw, -1, -2))

    def weights(self, x):
        """W = (AᵀN⁻¹A)⁻¹AᵀN⁻¹ in data units: `(G, S', C, F)` (moments) or `(P, S, C, F)`."""
        _, _, w = self._weights_whitened(x)
        return w * (
            self.inv_std[None, :, None, :] if self.use_moments else self.inv_std[:, :, None, :]
        )

    def _components_used(self, x):
        _, _, w = self._weights_whitened(x)
        if self.use_moments:
            w = w[self.layout.group_of_pixel]
        return _matvec(w, self.data_w)

    def _to_maps(self, values, fill):
        """Scatter `(P, ...)` values of the used pixels to `(npix, ...)` maps."""
        out = jnp.full((self.layout.npix, *values.shape[1:]), fill, dtype=values.dtype)
        return out.at[self.layout.pixels].set(values)

    def components(self, x, *, fill=hp.UNSEEN):
        """Component maps s = W d (fgbuster's `Wd`): `(n_comp, n_stokes, npix)`.

        Pixels outside the mask hold `fill`.
        """
        s = self._components_used(x)  # (P, S, C)
        if s.shape[1] != self.n_stokes:
            s = jnp.broadcast_to(s, (s.shape[0], self.n_stokes, s.shape[2]))
        return jnp.transpose(self._to_maps(s, fill), (2, 1, 0))

    def inv_AtNA(self, x, *, fill=hp.UNSEEN):
        """(AᵀN⁻¹A)⁻¹, noise covariance of the component maps: `(npix, n_stokes, C, C)`."""
        aw = self._whitened(x)
        gram = jnp.einsum("...fi,...fj->...ij", aw, aw)
        inv = _cho_solve(self._factor(aw), jnp.broadcast_to(jnp.eye(gram.shape[-1]), gram.shape))
        if self.use_moments:
            inv = inv[self.layout.group_of_pixel]
        inv = jnp.broadcast_to(inv, (inv.shape[0], self.n_stokes, *inv.shape[2:]))
        return self._to_maps(inv, fill)

    def chi(self, x, *, fill=hp.UNSEEN):
        """Prewhitened residual maps χ = N^{-1/2}(d − A s): `(n_freq, n_stokes, npix)`."""
        aw, _, w = self._weights_whitened(x)
        if self.use_moments:
            aw, w = aw[self.layout.group_of_pixel], w[self.layout.group_of_pixel]
        res = self.data_w - _matvec(aw, _matvec(w, self.data_w))
        return jnp.transpose(self._to_maps(res, fill), (2, 1, 0))

    def chi2(self, x):
        """χ² = Σ |χ|² over used pixels, Stokes and frequencies (≈ dof at the best fit)."""
        r = self.chi(x, fill=0.0)
        return jnp.sum(r**2)

    @property
    def dof(self) -> int:
        """Degrees of freedom of χ² at the best fit: pixels·Stokes·(n_freq − n_comp) − n_x."""
        n_freq = self.data_w.shape[-1]
        return int(
            self.layout.pixels.size * self.n_stokes * (n_freq - self.mixing.n_comp) - self.n_x
        )
