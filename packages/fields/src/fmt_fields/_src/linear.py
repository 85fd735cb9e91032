"""Gaussian and lognormal fields with a given power spectrum, from white noise.

Conventions (V = box volume, N = number of cells, δ_k = DFT of δ as `fft3d` returns it):
the continuous transform is δ(k) ≈ (V/N) δ_k and ⟨|δ(k)|²⟩ = V P(k), so ⟨|δ_k|²⟩ =
N² P(k) / V. Unit-variance white noise has ⟨|w_k|²⟩ = N, hence the whitened
parametrisation δ_k = w_k sqrt(P(k) N / V). The k = 0 mode is set to zero (mean-free field).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .binning import half_weights
from .fft import fft3d, ifft3d
from .geometry import BoxSize, wavenumber
from .layout import check_box_size, check_mesh_shape, sharding_of
from .power import evaluate_nonzero, power_function, sqrt_nonzero

__all__ = ["linear_field", "lognormal_field", "mesh_variance"]


def _check_noise(white_noise: Any) -> None:
    if jnp.ndim(white_noise) != 3:
        raise ValueError(f"white_noise must be a 3-D mesh, got shape {jnp.shape(white_noise)}")
    if not jnp.issubdtype(jnp.result_type(white_noise), jnp.floating):
        raise TypeError(f"white_noise must be real, got dtype {jnp.result_type(white_noise)}")


def _power_on_grid(white_noise, power, box_size, scale_factor):
    box = check_box_size(box_size)
    sharding = sharding_of(white_noise)
    k = wavenumber(white_noise.shape, box, sharding=sharding, dtype=jnp.result_type(white_noise))
    return box, evaluate_nonzero(power_function(power, scale_factor), k)


def linear_field(
    white_noise: Float[Array, "X Y Z"],
    power: Any,
    box_size: BoxSize,
    *,
    scale_factor: Any = 1.0,
) -> Float[Array, "X Y Z"]:
    """Gaussian field with power spectrum `power`, from unit white noise (whitened).

    Args:
        white_noise: unit-variance white noise, shape (X, Y, Z), e.g. `white_noise(...)`;
            may be sharded, the result is sharded alike.
        power: a callable k [h/Mpc] -> P(k) [(Mpc/h)^3], or an fmt-cosmo `Cosmology`
            (then `fmt_cosmo.linear_power(cosmo, k, scale_factor)` is used).
        box_size: side of the periodic box in Mpc/h (one number or three).
        scale_factor: scale factor a at which a Cosmology's linear power is evaluated.

    Returns:
        The density contrast δ(x), shape (X, Y, Z), mean exactly zero.

    Raises:
        ValueError: `white_noise` is not 3-D or `box_size` is not positive.
        TypeError: `power` is neither a callable nor a Cosmology.

    Example:
        >>> noise = white_noise(jax.random.key(0), (32, 32, 32))
        >>> delta = linear_field(noise, lambda k: 1e3 * (k / 0.1) ** -1.5, 200.0)
    """
    _check_noise(white_noise)
    box, pk = _power_on_grid(white_noise, power, box_size, scale_factor)
    cell_volume = float(np.prod(box)) / float(np.prod(white_noise.shape))
    amplitude = sqrt_nonzero(pk / cell_volume)
    return ifft3d(fft3d(white_noise) * amplitude, mesh_shape=white_noise.shape)


def mesh_variance(
    power: Any,
    mesh_shape: Any,
    box_size: BoxSize,
    *,
    scale_factor: Any = 1.0,
) -> Any:
    """Variance of a `linear_field` on this mesh: Σ_{k≠0} P(k) / V over all mesh modes.

    Args:
        power: callable or Cosmology, as for `linear_field`.
        mesh_shape: (X, Y, Z).
        box_size: side of the box in Mpc/h (one number or three).
        scale_factor: as for `linear_field`.

    Returns:
        A scalar, the expected one-point variance of the Gaussian field on the mesh.
    """
    box = check_box_size(box_size)
    shape = check_mesh_shape(mesh_shape)
    k = wavenumber(shape, box)
    pk = evaluate_nonzero(power_function(power, scale_factor), k)
    return jnp.sum(jnp.asarray(half_weights(shape[2])) * pk) / float(np.prod(box))


def lognormal_field(
    white_noise: Float[Array, "X Y Z"],
    power: Any,
    box_size: BoxSize,
    *,
    scale_factor: Any = 1.0,
) -> Float[Array, "X Y Z"]:
    """Lognormal density contrast δ = exp(G - σ²/2) - 1 with G = `linear_field(...)`.

    `power` is the power spectrum of the Gaussian (log) field G; σ² = `mesh_variance` is
    G's variance on this mesh, so that ⟨1 + δ⟩ = 1 exactly in the ensemble (Coles & Jones
    1991). δ > -1 everywhere.

    Args:
        white_noise, power, box_size, scale_factor: as for `linear_field`.

    Returns:
        δ(x), shape (X, Y, Z), sharded like `white_noise`.
    """
    gaussian = linear_field(white_noise, power, box_size, scale_factor=scale_factor)
    variance = mesh_variance(power, white_noise.shape, box_size, scale_factor=scale_factor)
    return jnp.expm1(gaussian - 0.5 * variance.astype(gaussian.dtype))
