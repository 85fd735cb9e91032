"""Conversion to and from jax-cosmo's `Cosmology` (jax-cosmo 0.1.0).

jax-cosmo is not a dependency of fmt-cosmo; it is imported only when these functions are
called. Its `Cosmology(Omega_c, Omega_b, h, n_s, sigma8, Omega_k, w0, wa, gamma=None)` has
no radiation (its dark energy closes the budget as 1 − Ω_m − Ω_k) and no T_cmb or N_eff, so:

* `to_jax_cosmo` drops T_cmb, N_eff and `include_radiation`; with radiation on, the two
  backgrounds differ by Ω_r ≈ 9e-5 (relative ~1e-4 in E at z = 0, more at high z).
* `from_jax_cosmo` returns `include_radiation=False` unless told otherwise, which reproduces
  jax-cosmo's expansion history exactly.

The jax-cosmo object built by `to_jax_cosmo` carries jax-cosmo's own mutable workspace:
build it inside the function that uses it, not outside a `jit`.
"""

from __future__ import annotations

from typing import Any

from .cosmology import Cosmology

__all__ = ["from_jax_cosmo", "to_jax_cosmo"]

_SHARED = ("Omega_c", "Omega_b", "h", "n_s", "sigma8", "Omega_k", "w0", "wa")


def _import_jax_cosmo():
    try:
        import jax_cosmo
    except ImportError as err:  # pragma: no cover - exercised only without jax-cosmo
        raise ImportError(
            "to_jax_cosmo/from_jax_cosmo need jax-cosmo, which is not a dependency of "
            "fmt-cosmo: `pip install jax-cosmo`"
        ) from err
    return jax_cosmo


def to_jax_cosmo(cosmo: Cosmology) -> Any:
    """A `jax_cosmo.Cosmology` with the same eight parameters.

    Radiation (T_cmb, N_eff, `include_radiation`) has no counterpart in jax-cosmo and is
    dropped; see the module docstring. Works on traced parameters (inside `jit`/`grad`).

    Args:
        cosmo: an fmt-cosmo `Cosmology`.

    Returns:
        `jax_cosmo.Cosmology(Omega_c, Omega_b, h, n_s, sigma8, Omega_k, w0, wa)`.

    Raises:
        ImportError: jax-cosmo is not installed.
        TypeError: `cosmo` is not a `Cosmology`.

    Example:
        >>> jc = to_jax_cosmo(Planck18())
        >>> jax_cosmo.background.radial_comoving_distance(jc, 0.5)
    """
    if not isinstance(cosmo, Cosmology):
        raise TypeError(f"cosmo must be a fmt_cosmo.Cosmology, got {type(cosmo).__name__}")
    jc = _import_jax_cosmo()
    return jc.Cosmology(**{name: getattr(cosmo, name) for name in _SHARED})


def from_jax_cosmo(jc_cosmo: Any, **extras: Any) -> Cosmology:
    """An fmt-cosmo `Cosmology` from a `jax_cosmo.Cosmology`.

    Args:
        jc_cosmo: a `jax_cosmo.Cosmology` (its `gamma`, if set, has no counterpart: fmt-cosmo
            always solves the growth equations, so a set `gamma` raises).
        **extras: other `Cosmology` fields: `T_cmb`, `N_eff`, `include_radiation` (default
            False, which reproduces jax-cosmo's background), or overrides of the eight
            shared parameters.

    Returns:
        The `Cosmology`.

    Raises:
        ImportError: jax-cosmo is not installed.
        TypeError: `jc_cosmo` is not a `jax_cosmo.Cosmology`, or an unknown field is given.
        ValueError: `jc_cosmo.gamma` is set, or a parameter value is invalid.
    """
    jc = _import_jax_cosmo()
    if not isinstance(jc_cosmo, jc.Cosmology):
        raise TypeError(f"jc_cosmo must be a jax_cosmo.Cosmology, got {type(jc_cosmo).__name__}")
    if getattr(jc_cosmo, "gamma", None) is not None:
        raise ValueError(
            f"jc_cosmo.gamma={jc_cosmo.gamma!r} (growth-index parametrisation) has no "
            "counterpart in fmt-cosmo, which solves the growth equations"
        )
    unknown = set(extras) - set(Cosmology._leaf_names) - {"include_radiation"}
    if unknown:
        raise TypeError(f"Cosmology has no field(s) {sorted(unknown)}")
    params = {name: getattr(jc_cosmo, name) for name in _SHARED}
    params["include_radiation"] = False
    params.update(extras)
    return Cosmology(**params)
