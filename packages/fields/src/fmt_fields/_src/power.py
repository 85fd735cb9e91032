"""Turn the `power` argument of the field generators into a function of k."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

import fmt_cosmo


def power_function(power: Any, scale_factor: Any, *, argname: str = "power") -> Callable:
    """A callable k [h/Mpc] -> P(k) [(Mpc/h)^3] from a callable or an fmt-cosmo `Cosmology`.

    Raises:
        TypeError: `power` is neither; or a Cosmology was given and the installed fmt-cosmo
            has no `linear_power`.
    """
    if isinstance(power, fmt_cosmo.Cosmology):
        linear_power = getattr(fmt_cosmo, "linear_power", None)
        if linear_power is None:
            raise TypeError(
                f"{argname} is a Cosmology but fmt_cosmo {fmt_cosmo.__version__} has no "
                "linear_power; pass a callable k -> P(k) instead"
            )
        return lambda k: linear_power(power, k, scale_factor)
    if callable(power):
        return power
    raise TypeError(
        f"{argname} must be a callable k -> P(k) or an fmt_cosmo.Cosmology, got {power!r}"
    )


def evaluate_nonzero(fn: Callable, k: Any) -> Any:
    """fn(k) where k > 0 and 0 at k = 0, without evaluating fn at 0 (no NaN gradients)."""
    positive = k > 0
    return jnp.where(positive, fn(jnp.where(positive, k, 1.0)), 0.0)
