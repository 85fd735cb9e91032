"""The mixing matrix A(β, ν): components' SEDs evaluated at the observed frequencies."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .sed import Component


@jax.tree_util.register_pytree_node_class
class Bandpasses:
    """Tabulated bandpasses, integrated with the trapezoid rule over frequency in Hz.

    Each band is a pair `(nu, weight)`; bands of different lengths are padded with zero
    weights at their last frequency (zero-width trapezoids add nothing). As in fgbuster,
    the SED is multiplied by the weights and integrated over ν in Hz without any
    normalisation or unit conversion, unless `normalize=True`, which divides the weights
    by their integral so that a narrow band reproduces the SED at its centre.

    Args:
        bands: sequence of `(nu [GHz], weight)` pairs, one per channel.
        normalize: rescale each band's weights to unit integral over ν in Hz.

    Raises:
        ValueError: a band with mismatched or fewer than two samples.
    """

    def __init__(self, bands: Sequence[tuple], *, normalize: bool = False):
        if isinstance(bands, tuple) and len(bands) == 2 and np.ndim(bands[0]) == 2:
            nu, w = bands  # already padded arrays (pytree unflattening)
            self.nu, self.weight = nu, w
            return
        sizes = []
        for i, band in enumerate(bands):
            nu_i, w_i = (np.asarray(b, dtype=float) for b in band)
            if nu_i.ndim != 1 or nu_i.shape != w_i.shape or nu_i.size < 2:
                raise ValueError(
                    f"band {i}: nu and weight must be 1-d of equal length >= 2, got shapes "
                    f"{nu_i.shape} and {w_i.shape}"
                )
            sizes.append(nu_i.size)
        n = max(sizes)
        nu = np.empty((len(bands), n))
        w = np.zeros((len(bands), n))
        for i, band in enumerate(bands):
            nu_i, w_i = (np.asarray(b, dtype=float) for b in band)
            nu[i, : nu_i.size] = nu_i
            nu[i, nu_i.size :] = nu_i[-1]
            w[i, : nu_i.size] = w_i
            if normalize:
                w[i] /= np.trapezoid(w[i], nu[i] * 1e9)
        self.nu, self.weight = jnp.asarray(nu), jnp.asarray(w)

    def __len__(self) -> int:
        return int(self.nu.shape[0])

    def tree_flatten(self):
        return (self.nu, self.weight), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(tuple(children))


def _n_freq(freqs) -> int:
    return len(freqs) if isinstance(freqs, Bandpasses) else int(np.shape(freqs)[0])


def as_frequencies(freqs):
    """Frequencies as a 1-d float array (GHz) or `Bandpasses`; validates the shape.

    Raises:
        ValueError: frequencies that are not a non-empty 1-d array of positive values.
    """
    if isinstance(freqs, Bandpasses):
        return freqs
    if isinstance(freqs, (list, tuple)) and freqs and np.ndim(freqs[0]) > 0:
        return Bandpasses(freqs)
    arr = jnp.asarray(freqs, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"freqs must be a 1-d array of frequencies in GHz, got shape {arr.shape}")
    if not isinstance(freqs, jax.core.Tracer) and not np.all(np.asarray(freqs) > 0):
        raise ValueError(f"freqs must be positive (GHz), got {np.asarray(freqs)}")
    return arr


class MixingMatrix:
    """Components stacked into the mixing matrix A(β) of shape `(..., n_freq, n_comp)`.

    The free parameters are those of each component, in component order; `params`
    labels them `"Component.name"` (as fgbuster does).

    Args:
        components: the sky components (`CMB()`, `Dust(...)`, ...).

    Raises:
        ValueError: no components, or one that is not a `Component`.

    Example:
        >>> mm = MixingMatrix([CMB(), Dust(150.0), Synchrotron(20.0)])
        >>> mm.params
        ('Dust.beta_d', 'Dust.temp', 'Synchrotron.beta_pl')
        >>> A = mm.evaluate(jnp.array([30.0, 90.0, 150.0]), jnp.array([1.54, 20.0, -3.0]))
    """

    def __init__(self, components: Sequence[Component]):
        components = tuple(components)
        if not components or not all(isinstance(c, Component) for c in components):
            raise ValueError(
                f"components must be a non-empty sequence of Component, got {components!r}"
            )
        self.components = components
        self.params = tuple(f"{c.name}.{p}" for c in components for p in c.free_params)
        self.defaults = np.array([d for c in components for d in c.defaults], dtype=float)
        self.comp_of_param = tuple(i for i, c in enumerate(components) for _ in c.free_params)
        starts = np.cumsum([0] + [c.n_param for c in components])
        self._slices = tuple(slice(int(a), int(b)) for a, b in itertools.pairwise(starts))

    def __eq__(self, other):
        return isinstance(other, MixingMatrix) and self.components == other.components

    def __hash__(self):
        return hash(self.components)

    @property
    def n_param(self) -> int:
        """Number of free parameters."""
        return len(self.params)

    @property
    def n_comp(self) -> int:
        """Number of components (columns of A)."""
        return len(self.components)

    def param_vector(self, values: Mapping[str, float]) -> np.ndarray:
        """Parameter vector from `{"Dust.beta_d": 1.5, ...}`, missing ones at their defaults.

        Raises:
            ValueError: a name that is not a free parameter of this mixing matrix.
        """
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown}; free parameters are {list(self.params)}"
            )
        return np.array([values.get(p, d) for p, d in zip(self.params, self.defaults, strict=True)])

    def evaluate(self, freqs, beta=None):
        """A(β) at `freqs` (GHz array or `Bandpasses`).

        Args:
            freqs: `(n_freq,)` frequencies in GHz, or `Bandpasses`.
            beta: free parameters, shape `(..., n_param)` (may be omitted when there
                are none).

        Returns:
            Array `(..., n_freq, n_comp)`.

        Raises:
            ValueError: `beta` whose last axis is not `n_param`.
        """
        if beta is None:
            beta = jnp.zeros((0,))
        beta = jnp.asarray(beta, dtype=float)
        if beta.ndim == 0 or beta.shape[-1] != self.n_param:
            raise ValueError(
                f"beta must have a last axis of size n_param={self.n_param} {self.params}, "
                f"got shape {beta.shape}"
            )
        band = isinstance(freqs, Bandpasses)
        nu = freqs.nu if band else jnp.asarray(freqs, dtype=float)
        extra = (None, None) if band else (None,)
        cols = []
        for comp, sl in zip(self.components, self._slices, strict=True):
            values = [beta[(..., i, *extra)] for i in range(sl.start, sl.stop)]
            sed = comp(nu, *values)
            if comp.n_param == 0:
                sed = jnp.broadcast_to(sed, beta.shape[:-1] + sed.shape)
            if band:
                sed = jnp.trapezoid(sed * freqs.weight, freqs.nu * 1e9, axis=-1)
            cols.append(sed)
        return jnp.stack(cols, axis=-1)

    def diff(self, freqs, beta):
        """dA/dβ_k by forward-mode autodiff: shape `(..., n_param, n_freq, n_comp)`."""
        beta = jnp.asarray(beta, dtype=float)
        flat = beta.reshape(-1, self.n_param)
        jac = jax.vmap(jax.jacfwd(lambda b: self.evaluate(freqs, b)))(flat)
        jac = jnp.moveaxis(jac, -1, 1)
        return jac.reshape(beta.shape[:-1] + jac.shape[1:])

    def diff_diff(self, freqs, beta):
        """Second derivatives d²A/dβ_k dβ_l: shape `(..., n_param, n_param, n_freq, n_comp)`."""
        beta = jnp.asarray(beta, dtype=float)
        flat = beta.reshape(-1, self.n_param)
        hess = jax.vmap(jax.jacfwd(jax.jacfwd(lambda b: self.evaluate(freqs, b))))(flat)
        hess = jnp.moveaxis(jnp.moveaxis(hess, -1, 1), -1, 1)
        return hess.reshape(beta.shape[:-1] + hess.shape[1:])

    def __repr__(self) -> str:
        return f"MixingMatrix({', '.join(c.name for c in self.components)})"
