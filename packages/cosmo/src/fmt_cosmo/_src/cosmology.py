"""The `Cosmology` pytree: parameters only, no cached tables.

jax-cosmo's `Cosmology` carries a mutable workspace that caches growth and distance tables
on the object; closing over one in `jit` leaks tracers into the cache, and two modules
using the same cache key clash. Here a cosmology is an immutable pytree of parameters and
nothing else. Expensive tables are built by pure functions (`growth_table`, ...) whose
results the caller keeps and passes down explicitly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Cosmology", "Planck15", "Planck18"]

# Photon density today for T_cmb = 1 K, in units of the critical density times h^2:
# Omega_gamma h^2 = (pi^2/15) (k_B T)^4 / (hbar^3 c^5) / rho_crit,100. Same constant as
# colossus 1.4 (older colossus releases and some codes round it to 4.48131e-7).
_OMEGA_GAMMA_H2_PER_K4 = 4.4814665013636476e-7
# Massless neutrinos: (7/8) (4/11)^(4/3) per effective species relative to photons.
_NU_PER_SPECIES = 7.0 / 8.0 * (4.0 / 11.0) ** (4.0 / 3.0)


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


@dataclasses.dataclass(frozen=True, eq=False)
class Cosmology:
    """Parameters of a (w0, wa) CDM cosmology with baryons and radiation.

    An immutable JAX pytree: every numeric field is a leaf (so `jit`, `grad`, `vmap` over a
    batch of cosmologies and `tree_map` all work); `include_radiation` is static metadata.
    Nothing is cached on the object. Use `replace` to change fields.

    Args:
        Omega_c: cold dark matter density today.
        Omega_b: baryon density today.
        h: Hubble parameter, H0 = 100 h km/s/Mpc.
        n_s: primordial scalar spectral index.
        sigma8: rms linear density contrast in spheres of 8 Mpc/h at z = 0.
        Omega_k: curvature density today (positive = open).
        w0, wa: dark-energy equation of state w(a) = w0 + wa (1 - a) (CPL).
        T_cmb: CMB temperature today in K (sets the photon density and the EH98 Θ_2.7).
        N_eff: effective number of massless neutrino species.
        include_radiation: whether photons and massless neutrinos enter the expansion
            (colossus' `relspecies`). The dark-energy density closes the budget either way:
            Omega_de = 1 - Omega_m - Omega_r - Omega_k.

    Raises:
        ValueError: a concrete (non-traced) value is non-finite, Omega_c, Omega_b, T_cmb or
            N_eff is negative, or h or sigma8 is not positive. Traced values are not checked.

    Example:
        >>> cosmo = Planck18()
        >>> cosmo.replace(sigma8=0.8).sigma8
        0.8
    """

    Omega_c: Any
    Omega_b: Any
    h: Any
    n_s: Any
    sigma8: Any
    Omega_k: Any = 0.0
    w0: Any = -1.0
    wa: Any = 0.0
    T_cmb: Any = 2.7255
    N_eff: Any = 3.046
    include_radiation: bool = True

    _leaf_names: ClassVar[tuple[str, ...]] = (
        "Omega_c",
        "Omega_b",
        "h",
        "n_s",
        "sigma8",
        "Omega_k",
        "w0",
        "wa",
        "T_cmb",
        "N_eff",
    )
    _non_negative: ClassVar[tuple[str, ...]] = ("Omega_c", "Omega_b", "T_cmb", "N_eff")
    _positive: ClassVar[tuple[str, ...]] = ("h", "sigma8")

    def __post_init__(self) -> None:
        if not isinstance(self.include_radiation, bool):
            raise TypeError(
                f"include_radiation must be a bool, got {self.include_radiation!r} "
                f"of type {type(self.include_radiation).__name__}"
            )
        for name in self._leaf_names:
            value = getattr(self, name)
            if not _is_concrete(value):
                continue
            arr = np.asarray(value)
            if not np.issubdtype(arr.dtype, np.number):
                raise TypeError(f"{name} must be a number or array, got {value!r}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite, got {value!r}")
            if name in self._non_negative and np.any(arr < 0):
                raise ValueError(f"{name} must be >= 0, got {value!r}")
            if name in self._positive and np.any(arr <= 0):
                raise ValueError(f"{name} must be > 0, got {value!r}")

    # -- pytree ---------------------------------------------------------------------------
    def tree_flatten(self):
        return tuple(getattr(self, n) for n in self._leaf_names), self.include_radiation

    @classmethod
    def tree_unflatten(cls, include_radiation, leaves):
        # Bypass validation: JAX unflattens with tracers, None or sentinel objects.
        obj = object.__new__(cls)
        for name, leaf in zip(cls._leaf_names, leaves, strict=True):
            object.__setattr__(obj, name, leaf)
        object.__setattr__(obj, "include_radiation", include_radiation)
        return obj

    def replace(self, **changes: Any) -> Cosmology:
        """A copy with `changes` applied (validated like the constructor)."""
        unknown = set(changes) - set(self._leaf_names) - {"include_radiation"}
        if unknown:
            raise TypeError(f"Cosmology has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        def fmt(v):
            return f"{float(v):.6g}" if _is_concrete(v) and np.ndim(v) == 0 else repr(v)

        body = ", ".join(f"{n}={fmt(getattr(self, n))}" for n in self._leaf_names)
        return f"Cosmology({body}, include_radiation={self.include_radiation})"

    # -- derived densities (all pure functions of the leaves) -----------------------------
    @property
    def Omega_m(self):
        """Total matter density today, Omega_c + Omega_b."""
        return self.Omega_c + self.Omega_b

    @property
    def Omega_gamma(self):
        """Photon density today (0 without radiation)."""
        if not self.include_radiation:
            return jnp.zeros_like(jnp.asarray(self.h, dtype=float))
        return _OMEGA_GAMMA_H2_PER_K4 * self.T_cmb**4 / self.h**2

    @property
    def Omega_nu(self):
        """Massless-neutrino density today (0 without radiation)."""
        return self.Omega_gamma * _NU_PER_SPECIES * self.N_eff

    @property
    def Omega_r(self):
        """Radiation density today: photons plus massless neutrinos."""
        return self.Omega_gamma + self.Omega_nu

    @property
    def Omega_de(self):
        """Dark-energy density today, closing the budget to 1 - Omega_k."""
        return 1.0 - self.Omega_m - self.Omega_r - self.Omega_k

    @property
    def hubble_distance(self):
        """c / H0 in Mpc/h (2997.92458)."""
        return _C_KM_S / 100.0


_C_KM_S = 299792.458  # speed of light in km/s

jax.tree_util.register_pytree_node(Cosmology, Cosmology.tree_flatten, Cosmology.tree_unflatten)


def Planck15(**changes: Any) -> Cosmology:
    """Planck 2015 (TT,TE,EE+lowP+lensing+ext; Planck XIII 2016, table 4 last column).

    Same numbers as colossus' `planck15` and astropy's `Planck15`: H0 = 67.74,
    Omega_m = 0.3089, Omega_b = 0.0486, sigma8 = 0.8159, n_s = 0.9667, T_cmb = 2.7255,
    N_eff = 3.046, flat, radiation on. Keyword arguments override fields.
    """
    return _preset(0.3089, 0.0486, 0.6774, 0.9667, 0.8159, changes)


def Planck18(**changes: Any) -> Cosmology:
    """Planck 2018 (TT,TE,EE+lowE+lensing+BAO; Planck VI 2020, table 2 last column).

    Same numbers as colossus' `planck18`: H0 = 67.66, Omega_m = 0.3111, Omega_b = 0.0490,
    sigma8 = 0.8102, n_s = 0.9665, T_cmb = 2.7255, N_eff = 3.046, flat, radiation on.
    Keyword arguments override fields.
    """
    return _preset(0.3111, 0.0490, 0.6766, 0.9665, 0.8102, changes)


def _preset(Omega_m, Omega_b, h, n_s, sigma8, changes) -> Cosmology:
    params = dict(
        Omega_c=Omega_m - Omega_b,
        Omega_b=Omega_b,
        h=h,
        n_s=n_s,
        sigma8=sigma8,
        T_cmb=2.7255,
        N_eff=3.046,
    )
    params.update(changes)
    return Cosmology(**params)
