"""3-D FFTs of fields on one device or split over many, differentiable to every order.

On one device (or a replicated array) `fft3d` is `jnp.fft.rfftn`: the half spectrum of
shape (X, Y, Z//2 + 1). On a field split in pencils over a device grid p0 x p1 (spec
(axes0, axes1, None), see `layout.py`) it is a distributed complex-to-complex transform
written in pure JAX: a 1-D FFT along the local Z axis, an `all_to_all` over axes1 that
makes Y local (Z now split), a 1-D FFT along Y, an `all_to_all` over axes0 that makes X local
(Y now split), a 1-D FFT along X, all inside one `jax.shard_map`. The spectrum has the full
shape (X, Y, Z), natural axis order (kx, ky, kz) and spec (None, axes0, axes1); values equal
`jnp.fft.fftn` of the global field. `ifft3d` runs the same steps backwards.

Why not jaxdecomp (DESIGN decision 2 asked to wrap its `pfft3d` in a `custom_jvp`)? Checked
with jaxdecomp 0.3.1 on JAX 0.10.2, 8 fake CPU devices, its pure-JAX backend:

* on meshes with `AxisType.Auto` axes `pfft3d` is correct (matches `fftn` transposed to
  (Y, Z, X)) and has first derivatives, but `jvp(grad)` and `grad(grad)` fail with
  "Differentiation rule for 'spmd_fft' not implemented";
* wrapping it in a `custom_jvp` whose tangent calls the wrapper does not help: reverse mode
  transposes the primal body (partial evaluation drops custom JVP rules), which exposes the
  `spmd_fft` primitive again and its transpose has no JVP, so HVPs fail the same way;
* on meshes with `AxisType.Explicit` axes (the default of `jax.make_mesh` in JAX 0.10) even
  the forward transform fails inside its custom partitioner (`JaxRuntimeError: INTERNAL:
  custom_partitioner`).

jaxdecomp's own JAX backend is itself `shard_map` + `all_to_all` + 1-D FFTs hidden behind a
custom primitive; written directly, every piece (`jnp.fft`, `all_to_all`, `shard_map`) has
JAX's own JVP, transpose and batching rules, so `grad`, `jvp`, `jacfwd`, `jacrev`,
`hessian`, both HVP orders and `vmap` need no custom rule at all, on both axis types. No
transposed layout leaks out either: the spectrum keeps the (kx, ky, kz) axis order.
jaxdecomp is therefore not a runtime dependency; `benchmarks/fields.py` times it side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

from .layout import Pencils, check_divisible, check_mesh_shape, pencils_from_sharding, sharding_of

__all__ = ["fft3d", "ifft3d"]


def _check_3d(x, argname: str) -> None:
    if jnp.ndim(x) != 3:
        raise ValueError(
            f"{argname} must be a 3-D mesh (use jax.vmap for batches), got shape {jnp.shape(x)}"
        )


def _forward_local(block: Array, pencils: Pencils) -> Array:
    # block: (X/p0, Y/p1, Z) -> (X, Y/p0, Z/p1)
    block = jnp.fft.fft(block, axis=2)
    if pencils.axes1:
        block = jax.lax.all_to_all(block, pencils.axes1, 2, 1, tiled=True)
    block = jnp.fft.fft(block, axis=1)
    if pencils.axes0:
        block = jax.lax.all_to_all(block, pencils.axes0, 1, 0, tiled=True)
    return jnp.fft.fft(block, axis=0)


def _inverse_local(block: Array, pencils: Pencils) -> Array:
    # block: (X, Y/p0, Z/p1) -> (X/p0, Y/p1, Z)
    block = jnp.fft.ifft(block, axis=0)
    if pencils.axes0:
        block = jax.lax.all_to_all(block, pencils.axes0, 0, 1, tiled=True)
    block = jnp.fft.ifft(block, axis=1)
    if pencils.axes1:
        block = jax.lax.all_to_all(block, pencils.axes1, 1, 2, tiled=True)
    return jnp.fft.ifft(block, axis=2).real


# Jitted with the layout static so that eager calls compile once per layout instead of
# dispatching every collective on its own; inside a caller's `jit` they inline.
@partial(jax.jit, static_argnums=1)
def _forward(x: Array, pencils: Pencils) -> Array:
    fn = jax.shard_map(
        lambda b: _forward_local(b, pencils),
        mesh=pencils.mesh,
        in_specs=pencils.real_spec,
        out_specs=pencils.fourier_spec,
    )
    return fn(x)


@partial(jax.jit, static_argnums=1)
def _inverse(field_k: Array, pencils: Pencils) -> Array:
    fn = jax.shard_map(
        lambda b: _inverse_local(b, pencils),
        mesh=pencils.mesh,
        in_specs=pencils.fourier_spec,
        out_specs=pencils.real_spec,
    )
    return fn(field_k)


def fft3d(x: Float[Array, "X Y Z"]) -> Complex[Array, "X Y Zk"]:
    """Forward 3-D FFT of a real field, unnormalised (numpy's "backward" convention).

    On one device this is `jnp.fft.rfftn(x)`, shape (X, Y, Z//2 + 1). On a field split in
    pencils (partition spec (axes0, axes1, None) on a mesh with explicit axes) it is the
    full complex transform, shape (X, Y, Z), spec (None, axes0, axes1), equal to
    `jnp.fft.fftn(x)`. Either way the axes are in (kx, ky, kz) order;
    `wavevectors(x.shape, box_size, sharding=jax.typeof(x).sharding)` returns the matching
    grid. Differentiable to every order, and `vmap`-able.

    Args:
        x: real field, shape (X, Y, Z).

    Returns:
        The complex spectrum, shape (X, Y, Z//2 + 1) on one device, (X, Y, Z) when sharded.

    Raises:
        ValueError: `x` is not 3-D, its last axis is sharded, or the device grid p0 x p1
            does not divide the mesh (X, Y by p0; Y, Z by p1).

    Example:
        >>> x = white_noise(jax.random.key(0), (16, 16, 16))
        >>> fft3d(x).shape
        (16, 16, 9)
    """
    _check_3d(x, "x")
    if jnp.iscomplexobj(x):
        raise TypeError(f"x must be real, got dtype {jnp.result_type(x)}")
    pencils = pencils_from_sharding(sharding_of(x), fourier=False, argname="x")
    if pencils is None:
        return jnp.fft.rfftn(x)
    check_divisible(jnp.shape(x), pencils, argname="x", value=f"shape {jnp.shape(x)}")
    return _forward(x, pencils)


def ifft3d(
    field_k: Complex[Array, "X Y Zk"], *, mesh_shape: Sequence[int] | None = None
) -> Float[Array, "X Y Z"]:
    """Inverse of `fft3d`: the real field whose spectrum is `field_k`.

    On one device this is `jnp.fft.irfftn(field_k, s=mesh_shape)`; on a spectrum split as
    `fft3d` leaves it (spec (None, axes0, axes1)) it is the distributed inverse complex
    transform, real part kept, spec (axes0, axes1, None) out.

    Args:
        field_k: complex spectrum as returned by `fft3d` (possibly multiplied by kernels).
        mesh_shape: real-space mesh shape (X, Y, Z). Needed only for an odd Z on one device
            (the half spectrum does not record Z's parity); default: Z even.

    Returns:
        The real field, shape (X, Y, Z).

    Raises:
        ValueError: `field_k` is not 3-D, its first axis is sharded, `mesh_shape` does not
            match it, or the device grid does not divide the mesh.
    """
    _check_3d(field_k, "field_k")
    shape_k = tuple(jnp.shape(field_k))
    pencils = pencils_from_sharding(sharding_of(field_k), fourier=True, argname="field_k")
    if pencils is None:
        nx, ny, nzk = shape_k
        if mesh_shape is None:
            mesh_shape = (nx, ny, 2 * (nzk - 1))
        mesh_shape = check_mesh_shape(mesh_shape)
        if mesh_shape[:2] != (nx, ny) or mesh_shape[2] // 2 + 1 != nzk:
            raise ValueError(
                f"mesh_shape {mesh_shape} does not match the half spectrum field_k of shape "
                f"{shape_k} (expected (X, Y, Z//2 + 1))"
            )
        return jnp.fft.irfftn(field_k, s=mesh_shape)
    if mesh_shape is not None and check_mesh_shape(mesh_shape) != shape_k:
        raise ValueError(
            f"mesh_shape {tuple(mesh_shape)} does not match the sharded full spectrum "
            f"field_k of shape {shape_k}"
        )
    check_divisible(shape_k, pencils, argname="field_k", value=f"shape {shape_k}")
    return _inverse(field_k, pencils)
