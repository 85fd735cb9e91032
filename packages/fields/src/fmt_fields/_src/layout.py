"""Where a mesh lives: which device-grid axes split a 3-D field, read from its type.

A real-space field of shape (X, Y, Z) is either on one device (or replicated), or split in
pencils: X over the mesh axes named in `PartitionSpec[0]` (p0 devices), Y over those in
`PartitionSpec[1]` (p1 devices), Z whole on every device. The layout is read from the array's
type (`jax.typeof(x).sharding`), which carries the partition spec under `jit`, `grad` and
`vmap` for meshes whose axes are `AxisType.Explicit` (the default of `jax.make_mesh` in JAX 0.10).
Fields on meshes with `AxisType.Auto` axes show no spec in their type and are treated as
single-device fields: every function still returns the right numbers, and XLA partitions
the single-device code on its own (with more communication).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AxisNames = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Pencils:
    """A pencil decomposition of a 3-D field (internal).

    Attributes:
        mesh: the device mesh (concrete `Mesh` or `AbstractMesh`).
        axes0: mesh axis names splitting the first array axis (may be empty).
        axes1: mesh axis names splitting the second array axis (may be empty).
    """

    mesh: Any
    axes0: AxisNames
    axes1: AxisNames

    @property
    def p0(self) -> int:
        return math.prod(self.mesh.shape[a] for a in self.axes0)

    @property
    def p1(self) -> int:
        return math.prod(self.mesh.shape[a] for a in self.axes1)

    @property
    def grid(self) -> tuple[int, int]:
        return (self.p0, self.p1)

    def entry(self, axes: AxisNames):
        """A PartitionSpec entry for `axes` (None when empty)."""
        if not axes:
            return None
        return axes[0] if len(axes) == 1 else axes

    @property
    def real_spec(self) -> P:
        """Spec of a real-space field: X over axes0, Y over axes1, Z whole."""
        return P(self.entry(self.axes0), self.entry(self.axes1), None)

    @property
    def fourier_spec(self) -> P:
        """Spec of a spectrum: kx whole, ky over axes0, kz over axes1."""
        return P(None, self.entry(self.axes0), self.entry(self.axes1))

    @property
    def all_axes(self) -> AxisNames:
        return self.axes0 + self.axes1

    def sharding(self, spec: P) -> NamedSharding:
        return NamedSharding(self.mesh, spec)


def _names(entry: Any) -> AxisNames:
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    return tuple(entry)


def _mesh_size(mesh: Any, names: AxisNames) -> int:
    return math.prod(mesh.shape[a] for a in names)


def pencils_from_sharding(sharding: Any, *, fourier: bool, argname: str) -> Pencils | None:
    """The pencil layout a sharding describes, or None for a single-device layout.

    Args:
        sharding: a `NamedSharding` (concrete or abstract mesh), another `Sharding`, or None.
        fourier: whether `sharding` is that of a spectrum (spec (None, axes0, axes1)) rather
            than of a real-space field (spec (axes0, axes1, None)).
        argname: the argument name quoted in errors.

    Raises:
        ValueError: the spec splits the axis that must stay whole on every device.
    """
    if sharding is None or not isinstance(sharding, NamedSharding):
        return None
    mesh = sharding.mesh
    spec = tuple(sharding.spec) + (None,) * (3 - len(sharding.spec))
    if len(spec) != 3:
        raise ValueError(f"{argname}: expected a 3-D partition spec, got {sharding.spec}")
    whole = 0 if fourier else 2
    split = (1, 2) if fourier else (0, 1)
    if _mesh_size(mesh, _names(spec[whole])) > 1:
        which = "first (kx)" if fourier else "last (z)"
        raise ValueError(
            f"{argname}: the {which} axis must not be sharded for the FFT, "
            f"got partition spec {sharding.spec}"
        )
    axes0, axes1 = _names(spec[split[0]]), _names(spec[split[1]])
    if _mesh_size(mesh, axes0) * _mesh_size(mesh, axes1) == 1:
        return None
    return Pencils(mesh=mesh, axes0=axes0, axes1=axes1)


def sharding_of(x: Any) -> Any:
    """The sharding carried by `x`'s type; concrete arrays give their concrete mesh."""
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        sharding = x.sharding
        # Only explicit-axis meshes show their spec in the type; keep the rule identical
        # inside and outside `jit` by reading the spec from the type in both cases.
        typed = jax.typeof(x).sharding
        if isinstance(sharding, NamedSharding) and _padded(typed.spec, x.ndim) == _padded(
            sharding.spec, x.ndim
        ):
            return sharding
        return typed
    return getattr(jax.typeof(x), "sharding", None)


def check_divisible(
    mesh_shape: Sequence[int], pencils: Pencils | None, *, argname: str, value: Any
) -> None:
    """Raise ValueError unless the pencil decomposition divides `mesh_shape` both ways.

    The distributed FFT needs X and Y divisible by p0 (X split in real space, Y in Fourier
    space) and Y and Z divisible by p1.
    """
    if pencils is None:
        return
    nx, ny, nz = mesh_shape
    p0, p1 = pencils.grid
    if nx % p0 or ny % p0 or ny % p1 or nz % p1:
        raise ValueError(
            f"{argname}: mesh shape {tuple(mesh_shape)} is not divisible by the device grid "
            f"{p0}x{p1} (need X and Y divisible by {p0}, Y and Z divisible by {p1}); "
            f"got {value}"
        )


def check_mesh_shape(mesh_shape: Any, *, ndim: int = 3, argname: str = "mesh_shape"):
    """A tuple of `ndim` positive ints, or ValueError/TypeError naming `argname`."""
    try:
        shape = tuple(int(n) for n in mesh_shape)
        ok = all(int(n) == n for n in mesh_shape)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{argname} must be a sequence of {ndim} ints, got {mesh_shape!r}") from err
    if not ok or len(shape) != ndim or any(n < 1 for n in shape):
        raise ValueError(f"{argname} must be {ndim} positive ints, got {mesh_shape!r}")
    return shape


def check_box_size(box_size: Any, *, ndim: int = 3, argname: str = "box_size"):
    """A tuple of `ndim` positive floats (a scalar is broadcast), or ValueError/TypeError."""
    if isinstance(box_size, jax.core.Tracer):
        raise TypeError(f"{argname} must be a concrete number or sequence, not a traced value")
    try:
        values = [float(box_size)] * ndim if _is_scalar(box_size) else [float(b) for b in box_size]
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{argname} must be a positive number or {ndim} of them, got {box_size!r}"
        ) from err
    if len(values) != ndim or not all(math.isfinite(b) and b > 0 for b in values):
        raise ValueError(f"{argname} must be a positive number or {ndim} of them, got {box_size!r}")
    return tuple(values)


def _is_scalar(v: Any) -> bool:
    return getattr(v, "ndim", None) == 0 or isinstance(v, int | float)


def _padded(spec: Any, ndim: int) -> tuple:
    return tuple(spec) + (None,) * (ndim - len(tuple(spec)))
