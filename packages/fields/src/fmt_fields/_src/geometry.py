"""Fourier grids of a periodic box and the usual kernels, in the layout `fft3d` returns.

Every helper takes the real-space `mesh_shape` (X, Y, Z), the `box_size` in Mpc/h and the
`sharding` of the real-space field (`jax.typeof(x).sharding`; None on one device). It
returns arrays that broadcast against `fft3d(x)`: on one device the half-spectrum grid
(X, Y, Z//2 + 1); on a split field the full grid (X, Y, Z) with the 1-D factors sharded like
the spectrum (ky over axes0, kz over axes1), so that |k|^2 and every kernel built from them
are as sharded as the spectrum and no device ever holds a full mesh of wavenumbers.
Wavenumbers are angular, k = 2π n / L, in h/Mpc.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Complex, Float

from .layout import (
    Pencils,
    check_box_size,
    check_divisible,
    check_mesh_shape,
    pencils_from_sharding,
)

__all__ = [
    "cic_compensation",
    "cic_window",
    "gradient_kernel",
    "inverse_laplacian",
    "wavenumber",
    "wavevectors",
]

Shape = Sequence[int]
BoxSize = float | Sequence[float]


def _layout(mesh_shape: Shape, box_size: BoxSize, sharding: Any):
    shape = check_mesh_shape(mesh_shape)
    box = check_box_size(box_size)
    pencils = pencils_from_sharding(sharding, fourier=False, argname="sharding")
    check_divisible(shape, pencils, argname="mesh_shape", value=f"{shape}")
    return shape, box, pencils


def _mode_numbers(shape: tuple[int, int, int], half: bool) -> list[np.ndarray]:
    """Integer mode numbers n per axis (numpy's fftfreq order; rfftfreq on the last axis)."""
    out = [np.fft.fftfreq(n, 1.0 / n) for n in shape]
    if half:
        out[2] = np.fft.rfftfreq(shape[2], 1.0 / shape[2])
    return [np.rint(v).astype(np.int64) for v in out]


def _place_axis(values: np.ndarray, axis: int, pencils: Pencils | None, dtype: Any) -> Array:
    """A 1-D factor along `axis` as a broadcastable array, sharded like a spectrum's axis."""
    shape = [1, 1, 1]
    shape[axis] = values.size
    a = jnp.asarray(values.reshape(shape), dtype=dtype)
    if pencils is not None and axis > 0:
        spec = [None, None, None]
        spec[axis] = pencils.entry(pencils.axes0 if axis == 1 else pencils.axes1)
        a = jax.sharding.reshard(a, pencils.sharding(P(*spec)))
    return a


def _place(values: list[np.ndarray], pencils: Pencils | None, dtype: Any) -> tuple[Array, ...]:
    """1-D factors as (n,1,1), (1,n,1), (1,1,n) arrays, sharded like a spectrum."""
    return tuple(_place_axis(v, axis, pencils, dtype) for axis, v in enumerate(values))


def _float_dtype(dtype: Any) -> Any:
    return jnp.zeros((), float).dtype if dtype is None else jnp.dtype(dtype)


def wavevectors(
    mesh_shape: Shape, box_size: BoxSize, *, sharding: Any = None, dtype: Any = None
) -> tuple[Float[Array, "X 1 1"], Float[Array, "1 Y 1"], Float[Array, "1 1 Zk"]]:
    """Wavevector components (kx, ky, kz) in h/Mpc, broadcastable against `fft3d`'s output.

    Args:
        mesh_shape: real-space mesh (X, Y, Z).
        box_size: side of the periodic box in Mpc/h (one number or three).
        sharding: sharding of the real-space field (`jax.typeof(x).sharding`); None or an
            unsplit sharding for the one-device half-spectrum layout.
        dtype: float dtype of the result; default float64 with x64 enabled, else float32.

    Returns:
        kx of shape (X, 1, 1), ky of shape (1, Y, 1), kz of shape (1, 1, Zk), where Zk is
        Z//2 + 1 on one device and Z on a split field. Values 2π n / L with n in numpy's
        FFT order.

    Raises:
        ValueError: bad `mesh_shape` or `box_size`, or a device grid that does not divide
            the mesh.

    Example:
        >>> kx, ky, kz = wavevectors((16, 16, 16), 100.0)
        >>> kz.shape, float(kx[1, 0, 0])  # 2π / 100
        ((1, 1, 9), 0.06283185307179587)
    """
    shape, box, pencils = _layout(mesh_shape, box_size, sharding)
    modes = _mode_numbers(shape, half=pencils is None)
    values = [2 * np.pi * n / L for n, L in zip(modes, box, strict=True)]
    return cast(tuple[Array, Array, Array], _place(values, pencils, _float_dtype(dtype)))


def wavenumber(
    mesh_shape: Shape, box_size: BoxSize, *, sharding: Any = None, dtype: Any = None
) -> Float[Array, "X Y Zk"]:
    """|k| in h/Mpc on the layout of `fft3d`'s output (see `wavevectors`)."""
    kx, ky, kz = wavevectors(mesh_shape, box_size, sharding=sharding, dtype=dtype)
    return jnp.sqrt(kx**2 + ky**2 + kz**2)


def gradient_kernel(
    mesh_shape: Shape, box_size: BoxSize, axis: int, *, sharding: Any = None, dtype: Any = None
) -> Complex[Array, "..."]:
    """Fourier kernel of ∂/∂x_axis, i k_axis, with the Nyquist mode set to zero.

    The Nyquist mode (n = -N/2 for even N) is its own mirror image, so i k there is not
    Hermitian; zeroing it keeps the derivative of a real field real and makes the
    one-device (half spectrum) and split (full spectrum) layouts agree exactly.

    Args:
        mesh_shape, box_size, sharding, dtype: as for `wavevectors`.
        axis: 0, 1 or 2.

    Returns:
        A complex array broadcastable against `fft3d`'s output, in h/Mpc.

    Raises:
        ValueError: `axis` is not 0, 1 or 2 (and as for `wavevectors`).
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    shape, box, pencils = _layout(mesh_shape, box_size, sharding)
    modes = _mode_numbers(shape, half=pencils is None)
    n, size = modes[axis], shape[axis]
    k = 2 * np.pi * n / box[axis]
    if size % 2 == 0:
        k = np.where(np.abs(n) == size // 2, 0.0, k)
    return 1j * _place_axis(k, axis, pencils, _float_dtype(dtype))


def inverse_laplacian(
    mesh_shape: Shape, box_size: BoxSize, *, sharding: Any = None, dtype: Any = None
) -> Float[Array, "X Y Zk"]:
    """Fourier kernel of ∇^-2, -1/k^2 in (Mpc/h)^2, with the k = 0 mode set to zero."""
    kx, ky, kz = wavevectors(mesh_shape, box_size, sharding=sharding, dtype=dtype)
    k2 = kx**2 + ky**2 + kz**2
    return jnp.where(k2 > 0, -1.0 / jnp.where(k2 > 0, k2, 1.0), 0.0)


def cic_window(
    mesh_shape: Shape, box_size: BoxSize = 1.0, *, sharding: Any = None, dtype: Any = None
) -> Float[Array, "X Y Zk"]:
    """Fourier window of cloud-in-cell assignment, Π_i sinc^2(k_i H_i / 2), H_i = L_i / N_i.

    Depends only on the mode numbers (k_i H_i / 2 = π n_i / N_i), so `box_size` does not
    matter; it is accepted for a uniform signature. Hockney & Eastwood (1988); Jing (2005).
    """
    shape, _, pencils = _layout(mesh_shape, box_size, sharding)
    modes = _mode_numbers(shape, half=pencils is None)
    # jnp.sinc(u) = sin(πu)/(πu), so sinc(n/N) = sin(k H / 2)/(k H / 2).
    factors = [np.sinc(n / size) ** 2 for n, size in zip(modes, shape, strict=True)]
    wx, wy, wz = _place(factors, pencils, _float_dtype(dtype))
    return wx * wy * wz


def cic_compensation(
    mesh_shape: Shape, box_size: BoxSize = 1.0, *, sharding: Any = None, dtype: Any = None
) -> Float[Array, "X Y Zk"]:
    """1 / `cic_window`: multiply a painted field's spectrum by it to undo the CIC smoothing.

    The window is at least sinc^2(1/2)^3 ≈ 0.067 (corner Nyquist mode), so this is finite.
    """
    shape, _, pencils = _layout(mesh_shape, box_size, sharding)
    modes = _mode_numbers(shape, half=pencils is None)
    factors = [np.sinc(n / size) ** -2 for n, size in zip(modes, shape, strict=True)]
    cx, cy, cz = _place(factors, pencils, _float_dtype(dtype))
    return cx * cy * cz
