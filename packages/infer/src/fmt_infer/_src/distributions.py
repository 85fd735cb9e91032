"""NumPyro distributions over whole 3-D fields that may be sharded over devices.

A whitened field is one event of shape `mesh_shape`: `log_prob` sums over every cell (an
all-reduce when the value is sharded, nothing gathered), and `sample` draws through
`fmt_fields.white_noise`, so a seed gives the same field on any number of devices and each
device only draws the cells it owns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.sharding import Sharding
from jaxtyping import Array, Float
from numpyro.distributions import constraints

from fmt_fields import white_noise

__all__ = ["DistributedLogNormal", "DistributedNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _event_shape(loc: Array, scale: Array, mesh_shape: Sequence[int] | None) -> tuple[int, ...]:
    broadcast = jnp.broadcast_shapes(jnp.shape(loc), jnp.shape(scale))
    if mesh_shape is None:
        shape = broadcast
    else:
        try:
            shape = tuple(int(n) for n in mesh_shape)
        except TypeError:
            raise TypeError(
                f"mesh_shape must be a sequence of 3 ints, got {mesh_shape!r}"
            ) from None
        if jnp.broadcast_shapes(broadcast, shape) != shape:
            raise ValueError(
                f"loc {jnp.shape(loc)} and scale {jnp.shape(scale)} do not broadcast to "
                f"mesh_shape {shape}"
            )
    if len(shape) != 3 or any(n <= 0 for n in shape):
        raise ValueError(
            f"mesh_shape must be 3 positive ints (pass mesh_shape= when loc and scale are "
            f"scalars), got {shape}"
        )
    return shape


class DistributedNormal(dist.Distribution):
    """Independent normal cells of a 3-D field: `loc + scale * white_noise`.

    The whole field is a single event (`event_shape == mesh_shape`, `batch_shape == ()`), so
    `log_prob` returns one number per field. With `sharding`, samples are created sharded
    (each device draws only its own cells) and are the same bit for bit on any device grid.

    Args:
        loc: mean, a scalar or an array broadcastable to `mesh_shape`.
        scale: standard deviation (> 0), a scalar or an array broadcastable to `mesh_shape`.
        mesh_shape: (X, Y, Z) cells; default: the broadcast shape of `loc` and `scale`.
        sharding: where samples are created, a `NamedSharding` with spec (axes0, axes1, None)
            as accepted by `fmt_fields.white_noise`, or None for the default device.
        validate_args: NumPyro's argument validation switch.

    Raises:
        ValueError: `mesh_shape` is not 3 positive ints or `loc`/`scale` do not broadcast.
        TypeError: `sharding` is not a `jax.sharding.Sharding`.

    Example:
        >>> def model():
        ...     field = numpyro.sample("field", DistributedNormal(0.0, 1.0, mesh_shape=(16,) * 3))
    """

    arg_constraints: ClassVar = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.independent(constraints.real, 3)
    reparametrized_params: ClassVar = ["loc", "scale"]

    def __init__(
        self,
        loc: Any = 0.0,
        scale: Any = 1.0,
        *,
        mesh_shape: Sequence[int] | None = None,
        sharding: Sharding | None = None,
        validate_args: bool | None = None,
    ):
        if sharding is not None and not isinstance(sharding, Sharding):
            raise TypeError(f"sharding must be a jax.sharding.Sharding or None, got {sharding!r}")
        self.loc = loc
        self.scale = scale
        self.sharding = sharding
        event_shape = _event_shape(loc, scale, mesh_shape)
        super().__init__(batch_shape=(), event_shape=event_shape, validate_args=validate_args)

    @property
    def mesh_shape(self) -> tuple[int, ...]:
        """(X, Y, Z), the shape of one field."""
        return self.event_shape

    def _dtype(self) -> Any:
        return jnp.result_type(self.loc, self.scale, float)

    def _white(self, key: Any, sample_shape: tuple[int, ...]) -> Float[Array, "... X Y Z"]:
        def one(k):
            return white_noise(k, self.event_shape, sharding=self.sharding, dtype=self._dtype())

        if not sample_shape:
            return one(key)
        keys = jax.random.split(key, math.prod(sample_shape))
        noise = jnp.stack([one(k) for k in keys])
        return noise.reshape(tuple(sample_shape) + self.event_shape)

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Float[Array, "... X Y Z"]:
        """Draw fields: `loc + scale * fmt_fields.white_noise(key, mesh_shape)`.

        Args:
            key: a JAX PRNG key.
            sample_shape: leading shape of independent draws (each from its own split key).

        Returns:
            Array of shape `sample_shape + mesh_shape`, created with `sharding`.
        """
        return self.loc + self.scale * self._white(key, tuple(sample_shape))

    def log_prob(self, value: Float[Array, "... X Y Z"]) -> Float[Array, "..."]:
        """Sum over the field's cells of the normal log density (one value per field)."""
        z = (value - self.loc) / self.scale
        cell = -0.5 * z**2 - jnp.log(self.scale) - _HALF_LOG_2PI
        return jnp.sum(jnp.broadcast_to(cell, jnp.shape(value)), axis=(-3, -2, -1))

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(self.loc, self.event_shape)

    @property
    def variance(self) -> Array:
        return jnp.broadcast_to(self.scale**2, self.event_shape)


class DistributedLogNormal(dist.Distribution):
    """A lognormal 3-D field, `exp(loc + scale * white_noise)`, one event per field.

    Same arguments, sharding and device invariance as `DistributedNormal`; the support is
    positive, so NumPyro samplers work on `log(field)`, a `DistributedNormal`-like latent.

    Args:
        loc: mean of the log field, broadcastable to `mesh_shape`.
        scale: standard deviation of the log field (> 0), broadcastable to `mesh_shape`.
        mesh_shape: (X, Y, Z) cells; default: the broadcast shape of `loc` and `scale`.
        sharding: where samples are created (see `DistributedNormal`).
        validate_args: NumPyro's argument validation switch.
    """

    arg_constraints: ClassVar = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.independent(constraints.positive, 3)
    reparametrized_params: ClassVar = ["loc", "scale"]

    def __init__(
        self,
        loc: Any = 0.0,
        scale: Any = 1.0,
        *,
        mesh_shape: Sequence[int] | None = None,
        sharding: Sharding | None = None,
        validate_args: bool | None = None,
    ):
        self.base = DistributedNormal(
            loc, scale, mesh_shape=mesh_shape, sharding=sharding, validate_args=validate_args
        )
        self.loc, self.scale, self.sharding = loc, scale, sharding
        super().__init__(
            batch_shape=(), event_shape=self.base.event_shape, validate_args=validate_args
        )

    @property
    def mesh_shape(self) -> tuple[int, ...]:
        """(X, Y, Z), the shape of one field."""
        return self.event_shape

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Float[Array, "... X Y Z"]:
        """Draw fields `exp(loc + scale * white_noise)` (see `DistributedNormal.sample`)."""
        return jnp.exp(self.base.sample(key, sample_shape))

    def log_prob(self, value: Float[Array, "... X Y Z"]) -> Float[Array, "..."]:
        """Sum over cells of the lognormal log density (one value per field)."""
        log_value = jnp.log(value)
        return self.base.log_prob(log_value) - jnp.sum(log_value, axis=(-3, -2, -1))

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(jnp.exp(self.loc + 0.5 * self.scale**2), self.event_shape)

    @property
    def variance(self) -> Array:
        s2 = self.scale**2
        v = (jnp.exp(s2) - 1.0) * jnp.exp(2.0 * self.loc + s2)
        return jnp.broadcast_to(v, self.event_shape)
