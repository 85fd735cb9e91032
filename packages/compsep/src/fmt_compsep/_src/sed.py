"""Spectral energy distributions (SEDs) of sky components as plain jnp functions.

Frequencies are in GHz. Brightness units are thermodynamic (`K_CMB`) or Rayleigh-Jeans
(`K_RJ`) temperature; a `u` or `m` prefix scales the absolute SEDs (thermal SZ,
free-free) by 1e6 or 1e3 and is irrelevant for the SEDs normalised at a reference
frequency. Derivatives with respect to the parameters come from autodiff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

# h / k_B in K / GHz (exact SI values of h and k_B).
H_OVER_K = 6.62607015e-34 * 1e9 / 1.380649e-23
# CMB monopole temperature in K (Fixsen 2009, as in Planck 2015 and fgbuster).
T_CMB = 2.7255

_UNITS = ("K_CMB", "K_RJ", "uK_CMB", "uK_RJ", "mK_CMB", "mK_RJ")


def k_rj_to_k_cmb(nu):
    """Conversion factor from Rayleigh-Jeans to thermodynamic (CMB) temperature.

    Args:
        nu: frequency in GHz (any shape).

    Returns:
        dT_CMB / dT_RJ = (e^x − 1)² / (e^x x²) with x = hν / (k T_CMB).
    """
    x = H_OVER_K * nu / T_CMB
    return jnp.expm1(x) ** 2 / (jnp.exp(x) * x**2)


def _check_units(units: str) -> tuple[bool, float]:
    if units not in _UNITS:
        raise ValueError(f"units must be one of {_UNITS}, got {units!r}")
    scale = {"u": 1e6, "m": 1e3}.get(units[0], 1.0)
    return units.endswith("K_CMB"), scale


class Component:
    """A sky component: an SED `sed(nu, **params)` with named, optionally fixed parameters.

    The free parameters are the names in `param_names` that are not fixed, in that order.
    Instances are immutable static configuration (hashable by identity), used to build
    a `MixingMatrix`; the SED itself is a pure jnp function, differentiable with autodiff.

    Args:
        sed: `sed(nu, **params) -> array` in the output units; `nu` in GHz, broadcasting
            against the parameters.
        param_names: names of all parameters of `sed`, in the order of the free parameters.
        defaults: starting values of the parameters (used for the free ones).
        fixed: values of the parameters held fixed; unknown names raise `ValueError`.
        name: component name used in parameter labels (`"Dust.beta_d"`).

    Raises:
        ValueError: a fixed parameter that `sed` does not have.

    Example:
        >>> dust = Dust(nu0=353.0, temp=19.6)   # beta_d free, temperature fixed
        >>> dust.free_params
        ('beta_d',)
    """

    def __init__(
        self,
        sed: Callable[..., Any],
        param_names: tuple[str, ...],
        defaults: Mapping[str, float],
        fixed: Mapping[str, float | None] | None = None,
        *,
        name: str | None = None,
    ):
        fixed = {k: v for k, v in (fixed or {}).items() if v is not None}
        unknown = sorted(set(fixed) - set(param_names))
        if unknown:
            raise ValueError(
                f"{name or type(self).__name__} has no parameter(s) {unknown}; "
                f"its parameters are {list(param_names)}"
            )
        self._sed = sed
        self.param_names = tuple(param_names)
        self.fixed = {k: float(v) for k, v in fixed.items()}
        self.free_params = tuple(p for p in param_names if p not in self.fixed)
        self.defaults = tuple(float(defaults[p]) for p in self.free_params)
        self.name = name or type(self).__name__
        self._config: tuple = ()

    def _key(self):
        # Components built with the same class and settings are equal, so that jitted
        # functions closing over equal mixing matrices share their compilation.
        if type(self) is Component:
            return (id(self._sed),)
        return (type(self).__name__, self.name, tuple(sorted(self.fixed.items())), self._config)

    def __eq__(self, other):
        return isinstance(other, Component) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    @property
    def n_param(self) -> int:
        """Number of free parameters."""
        return len(self.free_params)

    def __call__(self, nu, *free_values):
        """Evaluate the SED at `nu` (GHz) for the free-parameter values given in order.

        Parameter values broadcast against each other; the result has shape
        `broadcast(params).shape + nu.shape` when each parameter carries trailing unit
        axes for `nu` (the `MixingMatrix` does this).
        """
        if len(free_values) != self.n_param:
            raise ValueError(
                f"{self.name} takes {self.n_param} free parameter(s) {self.free_params}, "
                f"got {len(free_values)}"
            )
        kwargs = dict(self.fixed)
        kwargs.update(zip(self.free_params, free_values, strict=True))
        return jnp.broadcast_to(
            self._sed(nu, **kwargs),
            jnp.broadcast_shapes(jnp.shape(nu), *map(jnp.shape, free_values)),
        )

    def __repr__(self) -> str:
        return f"{self.name}(free={self.free_params}, fixed={self.fixed})"


def _cmb_sed(units):
    is_cmb, _ = _check_units(units)
    if is_cmb:
        return lambda nu: jnp.ones_like(jnp.asarray(nu, dtype=float))
    return lambda nu: 1.0 / k_rj_to_k_cmb(nu)


class CMB(Component):
    """Cosmic microwave background: flat in K_CMB (1 / conversion factor in K_RJ).

    Args:
        units: output units, one of `K_CMB`, `K_RJ` (prefixes `u`, `m` allowed).
    """

    def __init__(self, units: str = "K_CMB"):
        super().__init__(_cmb_sed(units), (), {}, name="CMB")
        self._config = (units,)


class Dust(Component):
    """Modified blackbody (thermal dust), normalised to 1 at `nu0`.

    In K_RJ: `(ν/ν0)^(β_d+1) (e^{hν0/kT} − 1) / (e^{hν/kT} − 1)`; in K_CMB multiplied by
    the conversion factor ratio `c(ν) / c(ν0)`.

    Args:
        nu0: reference frequency in GHz.
        units: `K_CMB` or `K_RJ` (prefixes allowed).
        **fixed: values of `beta_d` (spectral index, default 1.54) and `temp`
            (temperature in K, default 20) held fixed; the others are free.

    Raises:
        ValueError: unknown parameter names or units.
    """

    def __init__(self, nu0: float = 353.0, *, units: str = "K_CMB", **fixed: float | None):
        is_cmb, _ = _check_units(units)
        nu0 = float(nu0)

        def sed(nu, beta_d, temp):
            x, x0 = H_OVER_K * nu / temp, H_OVER_K * nu0 / temp
            out = (nu / nu0) ** (beta_d + 1.0) * jnp.expm1(x0) / jnp.expm1(x)
            return out * k_rj_to_k_cmb(nu) / k_rj_to_k_cmb(nu0) if is_cmb else out

        super().__init__(sed, ("beta_d", "temp"), {"beta_d": 1.54, "temp": 20.0}, fixed)
        self.nu0 = nu0
        self._config = (units, nu0)


ModifiedBlackBody = Dust


class Synchrotron(Component):
    """Power law with running (synchrotron), normalised to 1 at `nu0`.

    In K_RJ: `(ν/ν0)^(β_pl + running · ln(ν/ν_pivot))`; in K_CMB multiplied by
    `c(ν) / c(ν0)`. By default `running = 0` and `nu_pivot = 70` GHz are fixed.

    Args:
        nu0: reference frequency in GHz.
        units: `K_CMB` or `K_RJ` (prefixes allowed).
        **fixed: values of `beta_pl` (default −3), `running` (default 0, fixed unless
            given as `None`) and `nu_pivot` (GHz, default 70, fixed unless `None`).

    Raises:
        ValueError: unknown parameter names or units.
    """

    def __init__(self, nu0: float = 23.0, *, units: str = "K_CMB", **fixed: float | None):
        is_cmb, _ = _check_units(units)
        nu0 = float(nu0)
        given = dict(fixed)
        fixed = {"running": 0.0, "nu_pivot": 70.0}
        fixed.update(given)
        # `None` means free: remove it from the fixed set after validation.
        unknown = sorted(set(fixed) - {"beta_pl", "running", "nu_pivot"})
        if unknown:
            raise ValueError(
                f"Synchrotron has no parameter(s) {unknown}; its parameters are "
                "['beta_pl', 'running', 'nu_pivot']"
            )

        def sed(nu, beta_pl, running, nu_pivot):
            out = (nu / nu0) ** (beta_pl + running * jnp.log(nu / nu_pivot))
            return out * k_rj_to_k_cmb(nu) / k_rj_to_k_cmb(nu0) if is_cmb else out

        super().__init__(
            sed,
            ("beta_pl", "running", "nu_pivot"),
            {"beta_pl": -3.0, "running": 0.0, "nu_pivot": 70.0},
            fixed,
        )
        self.nu0 = nu0
        self._config = (units, nu0)


PowerLaw = Synchrotron


class FreeFree(Component):
    """Free-free (bremsstrahlung), Planck 2015 X (Table 4) / Draine (2011).

    `T_ff = 1e6 T_e (1 − e^{−τ})` with `τ = 0.05468 T_e^{−3/2} ν^{−2} EM g_ff` and
    `g_ff = ln(exp(5.960 − √3/π ln(ν T4^{−3/2})) + e)`, `T4 = T_e / 1e4`, `EM = 10^logEM`
    (cm⁻⁶ pc), in µK_RJ for `units="uK_RJ"` (scaled for the other units).

    Args:
        units: output units (default `uK_CMB`).
        **fixed: values of `logEM` (default 0) and `Te` (K, default 7000) held fixed.

    Raises:
        ValueError: unknown parameter names or units.
    """

    def __init__(self, *, units: str = "uK_CMB", **fixed: float | None):
        is_cmb, scale = _check_units(units)

        def sed(nu, logEM, Te):
            t4 = Te * 1e-4
            gff = jnp.log(jnp.exp(5.960 - (np.sqrt(3.0) / np.pi) * jnp.log(nu * t4**-1.5)) + np.e)
            tau = 0.05468 * Te**-1.5 / nu**2 * 10.0**logEM * gff
            out = scale * Te * -jnp.expm1(-tau)
            return out * k_rj_to_k_cmb(nu) if is_cmb else out

        super().__init__(sed, ("logEM", "Te"), {"logEM": 0.0, "Te": 7000.0}, fixed)
        self._config = (units,)


class ThermalSZ(Component):
    """Thermal Sunyaev-Zel'dovich effect per unit Compton y.

    `ΔT_CMB / y = T_CMB (x coth(x/2) − 4)`, `x = hν / (k T_CMB)`; divided by the
    conversion factor in K_RJ.

    Args:
        units: output units (default `uK_CMB`).
    """

    def __init__(self, *, units: str = "uK_CMB"):
        is_cmb, scale = _check_units(units)

        def sed(nu):
            x = H_OVER_K * nu / T_CMB
            out = scale * T_CMB * (x * (jnp.exp(x) + 1.0) / jnp.expm1(x) - 4.0)
            return out if is_cmb else out / k_rj_to_k_cmb(nu)

        super().__init__(sed, (), {}, name="ThermalSZ")
        self._config = (units,)
