"""Unit Gaussian white noise that does not depend on how the mesh is split.

Each value is a function of the key and its global index only: row (i, j) of the mesh (all
Z cells at x-index i, y-index j) is drawn from `fold_in(fold_in(key, i), j)`. A device
draws exactly the rows it owns, so the field is the same bit for bit on 1, 2, 4 or 8 devices
and any device grid, and no device ever generates more than its share. (Splitting the key
by device count, as JaxPM and jax_fli do, changes the field with the machine.)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jaxtyping import Array, Float

from .layout import Pencils, check_divisible, check_mesh_shape, pencils_from_sharding

__all__ = ["white_noise"]


def _rows(key: Any, rows_x: Array, rows_y: Array, nz: int, dtype: Any) -> Array:
    def row(i, j):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, i), j), (nz,), dtype)

    return jax.vmap(lambda i: jax.vmap(lambda j: row(i, j))(rows_y))(rows_x)


def white_noise(
    key: Any,
    mesh_shape: Sequence[int],
    *,
    sharding: NamedSharding | None = None,
    dtype: Any = None,
) -> Float[Array, "X Y Z"]:
    """Unit-variance Gaussian white noise on a 3-D mesh, identical on any device grid.

    Args:
        key: a JAX PRNG key (`jax.random.key` or `jax.random.PRNGKey`).
        mesh_shape: (X, Y, Z), number of cells per axis.
        sharding: where to create the field: None for the default device, or a
            `NamedSharding` with a spec (axes0, axes1, None) splitting X and Y over the device
            grid (use a mesh with explicit axes so that later FFTs see the split).
        dtype: a real floating dtype; default float64 when x64 is enabled, else float32.

    Returns:
        The noise, shape `mesh_shape`, with `sharding`. Values depend only on `key` and the
        global cell index.

    Raises:
        ValueError: `mesh_shape` is not 3 positive ints, `sharding` splits Z, or the device
            grid does not divide the mesh.
        TypeError: `dtype` is not a real floating dtype.

    Example:
        >>> mesh = jax.make_mesh((2, 4), ("x", "y"))
        >>> sharding = NamedSharding(mesh, P("x", "y"))
        >>> w = white_noise(jax.random.key(0), (32, 32, 32), sharding=sharding)
        >>> bool((w == white_noise(jax.random.key(0), (32, 32, 32))).all())
        True
    """
    shape = check_mesh_shape(mesh_shape)
    if dtype is None:
        dtype = jnp.zeros((), float).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a real floating dtype, got {dtype!r}")
    if sharding is not None and not isinstance(sharding, jax.sharding.Sharding):
        raise TypeError(f"sharding must be a jax Sharding or None, got {sharding!r}")
    pencils = pencils_from_sharding(sharding, fourier=False, argname="sharding")
    if pencils is None:
        noise = _generate(key, shape, jnp.dtype(dtype), None)
        return noise if sharding is None else jax.device_put(noise, sharding)
    check_divisible(shape, pencils, argname="sharding", value=f"mesh_shape {shape}")
    return _generate(key, shape, jnp.dtype(dtype), pencils)


# Jitted (with static layout) because the eager, op-by-op execution of thousands of small
# threefry calls inside `shard_map` takes seconds; under an outer `jit` this simply inlines.
@partial(jax.jit, static_argnums=(1, 2, 3))
def _generate(key: Any, shape: tuple[int, int, int], dtype: Any, pencils: Pencils | None):
    nx, ny, nz = shape
    if pencils is None:
        return _rows(key, jnp.arange(nx), jnp.arange(ny), nz, dtype)
    bx, by = nx // pencils.p0, ny // pencils.p1

    def local(key):
        i0 = jax.lax.axis_index(pencils.axes0) * bx if pencils.axes0 else 0
        j0 = jax.lax.axis_index(pencils.axes1) * by if pencils.axes1 else 0
        return _rows(key, i0 + jnp.arange(bx), j0 + jnp.arange(by), nz, dtype)

    fn = jax.shard_map(
        local, mesh=pencils.mesh, in_specs=jax.sharding.PartitionSpec(), out_specs=pencils.real_spec
    )
    return fn(key)
