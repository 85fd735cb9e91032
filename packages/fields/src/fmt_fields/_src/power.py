"""Turn the `power` argument of the field generators into a function of k."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

import fmt_cosmo


def power_function(power: Any, scale_factor: Any, *, argname: str = "power") -> Callable:
    """A callable k [h/Mpc] -> P(k) [(Mpc/h)^3] from a callable or an fmt-cosmo `Cosmology`.

    Raises:
        TypeError: `power` is neither.
    """
    if isinstance(power, fmt_cosmo.Cosmology):
        return lambda k: fmt_cosmo.linear_power(power, k, scale_factor)
    if callable(power):
        return power
    raise TypeError(
        f"{argname} must be a callable k -> P(k) or an fmt_cosmo.Cosmology, got {power!r}"
    )


def evaluate_nonzero(fn: Callable, k: Any) -> Any:
    """fn(k) where k > 0 and 0 at k = 0, without evaluating fn at 0 (no NaN gradients)."""
    positive = k > 0
    return jnp.where(positive, fn(jnp.where(positive, k, 1.0)), 0.0)


def sqrt_nonzero(x: Any) -> Any:
    """sqrt(x) where x > 0 and 0 elsewhere, with finite derivatives of every order.

    `jnp.sqrt` has an infinite derivative at 0: a forward-mode tangent of exactly zero there
    (the k = 0 mode of a power spectrum) becomes 0 · inf = NaN and spreads through the FFT
    to every cell. Reverse mode hides it only because the cotangent is masked afterwards.
    """
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)
