"""Source redshift distributions n(z), normalised to unit integral.

Every distribution is a frozen pytree (`equinox.Module`) whose array parameters may be
traced (differentiable), with two methods:

- `__call__(z)`: the normalised density n(z), in 1/redshift;
- `quadrature()`: static-size nodes z_k and weights w_k with Σ w_k f(z_k) ≈ ∫ n(z) f(z) dz
  and Σ w_k = 1, which is how the lensing kernels integrate over the sources.

Several tomographic bins are a tuple (or list) of distributions; `born_convergence` and
`limber_cl` return one map / spectrum per bin in that order.

Validation (negative values, zero integral, bad ranges) happens at construction when the
parameters are concrete and raises `ValueError` naming the argument.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["Delta", "Smail", "Tabulated", "TopHat", "as_bins"]

# Nodes of the composite trapezoid rule used for continuous distributions; the kernel
# (χ_s − χ)/χ_s is smooth except for one kink, so the error is O(1/n²) ≈ 1e-5.
DEFAULT_NODES = 512


def _concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(values))


def _positive(value, name):
    if _concrete(value):
        v = np.asarray(value, dtype=float)
        if v.ndim != 0 or not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite scalar, got {value!r}")


def _trapezoid_weights(n: int) -> np.ndarray:
    w = np.ones(n)
    w[0] = w[-1] = 0.5
    return w


class _NZ(eqx.Module):
    @abc.abstractmethod
    def quadrature(self) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """Redshift nodes and weights whose sum over a function is ∫ f(z) n(z) dz."""

    def mean(self) -> Float[Array, ""]:
        """Mean redshift ∫ z n(z) dz (from the quadrature)."""
        z, w = self.quadrature()
        return jnp.sum(w * z)


class Smail(_NZ):
    """Smail et al. (1994) type n(z) ∝ z^a exp(−(z/z0)^b) on [0, zmax], normalised.

    Args:
        a: power-law index (> 0), e.g. 2.
        b: exponential index (> 0), e.g. 1.5.
        z0: scale redshift (> 0).
        zmax: upper cut of the distribution (> 0, static).
        n_nodes: trapezoid nodes of the quadrature (static, ≥ 16).

    Raises:
        ValueError: a non-positive or non-finite parameter (named), `n_nodes` < 16.
    """

    a: Any
    b: Any
    z0: Any
    zmax: float = eqx.field(static=True)
    n_nodes: int = eqx.field(static=True)

    def __init__(self, a, b, z0, *, zmax: float = 4.0, n_nodes: int = DEFAULT_NODES):
        for name, v in (("a", a), ("b", b), ("z0", z0), ("zmax", zmax)):
            _positive(v, name)
        if not isinstance(n_nodes, int) or n_nodes < 16:
            raise ValueError(f"n_nodes must be an int >= 16, got {n_nodes!r}")
        self.a, self.b, self.z0 = (jnp.asarray(v, dtype=float) for v in (a, b, z0))
        self.zmax, self.n_nodes = float(zmax), n_nodes

    def _unnormalised(self, z):
        return z**self.a * jnp.exp(-((z / self.z0) ** self.b))

    def quadrature(self):
        z = jnp.linspace(0.0, self.zmax, self.n_nodes)
        w = jnp.asarray(_trapezoid_weights(self.n_nodes)) * self._unnormalised(z)
        return z, w / jnp.sum(w)

    def __call__(self, z):
        zq, _wq = self.quadrature()
        norm = jnp.sum(jnp.asarray(_trapezoid_weights(self.n_nodes)) * self._unnormalised(zq))
        norm = norm * self.zmax / (self.n_nodes - 1)
        z = jnp.asarray(z, dtype=float)
        inside = (z >= 0) & (z <= self.zmax)
        return jnp.where(inside, self._unnormalised(jnp.clip(z, 0.0, self.zmax)) / norm, 0.0)


class TopHat(_NZ):
    """Uniform n(z) on [zmin, zmax] (a tomographic bin with sharp edges).

    Args:
        zmin: lower edge (≥ 0).
        zmax: upper edge (> zmin).
        n_nodes: midpoint-rule nodes of the quadrature (static).

    Raises:
        ValueError: `zmin` < 0 or `zmax` ≤ `zmin` (named).
    """

    zmin: Any
    zmax: Any
    n_nodes: int = eqx.field(static=True)

    def __init__(self, zmin, zmax, *, n_nodes: int = 128):
        if _concrete(zmin, zmax):
            if not (np.isfinite(zmin) and zmin >= 0):
                raise ValueError(f"zmin must be >= 0, got {zmin!r}")
            if not (np.isfinite(zmax) and zmax > zmin):
                raise ValueError(f"zmax must exceed zmin={zmin!r}, got {zmax!r}")
        if not isinstance(n_nodes, int) or n_nodes < 1:
            raise ValueError(f"n_nodes must be a positive int, got {n_nodes!r}")
        self.zmin, self.zmax = jnp.asarray(zmin, dtype=float), jnp.asarray(zmax, dtype=float)
        self.n_nodes = n_nodes

    def quadrature(self):
        t = (jnp.arange(self.n_nodes) + 0.5) / self.n_nodes
        z = self.zmin + t * (self.zmax - self.zmin)
        return z, jnp.full(self.n_nodes, 1.0 / self.n_nodes)

    def __call__(self, z):
        z = jnp.asarray(z, dtype=float)
        return jnp.where((z >= self.zmin) & (z <= self.zmax), 1.0 / (self.zmax - self.zmin), 0.0)


class Delta(_NZ):
    """All sources at one redshift, n(z) = δ_D(z − z_s).

    Args:
        z_source: source redshift (> 0).

    Raises:
        ValueError: `z_source` not positive.
    """

    z_source: Any

    def __init__(self, z_source):
        _positive(z_source, "z_source")
        self.z_source = jnp.asarray(z_source, dtype=float)

    def quadrature(self):
        return jnp.reshape(self.z_source, (1,)), jnp.ones(1)

    def __call__(self, z):
        raise TypeError("a Delta n(z) has no density values; use quadrature()")


class Tabulated(_NZ):
    """n(z) given on a grid, linearly interpolated and normalised (trapezoid rule).

    Args:
        z: (n,) strictly increasing redshifts, ≥ 0.
        pz: (n,) non-negative values (any normalisation), not all zero.

    Raises:
        ValueError: shapes differ or n < 2 (`z`), `z` not increasing or negative, `pz`
            negative or with zero integral (named).
    """

    z: Float[Array, " n"]
    pz: Float[Array, " n"]

    def __init__(self, z, pz):
        if _concrete(z, pz):
            zn, pn = np.asarray(z, dtype=float), np.asarray(pz, dtype=float)
            if zn.ndim != 1 or zn.size < 2 or pn.shape != zn.shape:
                raise ValueError(
                    f"z and pz must be 1-D of equal length >= 2, got shapes {zn.shape}, {pn.shape}"
                )
            if not np.all(np.isfinite(zn)) or zn[0] < 0 or np.any(np.diff(zn) <= 0):
                raise ValueError("z must be finite, >= 0 and strictly increasing")
            if not np.all(np.isfinite(pn)) or np.any(pn < 0):
                raise ValueError(f"pz must be finite and non-negative, got min {pn.min()!r}")
            if np.trapezoid(pn, zn) <= 0:
                raise ValueError("pz has zero integral; n(z) cannot be normalised")
        self.z, self.pz = jnp.asarray(z, dtype=float), jnp.asarray(pz, dtype=float)

    def _norm(self):
        return jnp.sum(0.5 * (self.pz[1:] + self.pz[:-1]) * jnp.diff(self.z))

    def quadrature(self):
        dz = jnp.diff(self.z)
        w = jnp.zeros_like(self.z).at[1:].add(0.5 * dz).at[:-1].add(0.5 * dz) * self.pz
        return self.z, w / jnp.sum(w)

    def __call__(self, z):
        return jnp.interp(jnp.asarray(z, dtype=float), self.z, self.pz, left=0.0, right=0.0) / (
            self._norm()
        )


def as_bins(nz: Any) -> tuple:
    """One distribution or a sequence of them → a tuple of bins (validated)."""
    bins = tuple(nz) if isinstance(nz, Sequence) else (nz,)
    if not bins:
        raise ValueError("nz must hold at least one redshift distribution")
    for b in bins:
        if not isinstance(b, _NZ):
            raise TypeError(
                f"nz must be Smail/TopHat/Delta/Tabulated or a sequence of them, got {b!r}"
            )
    return bins
