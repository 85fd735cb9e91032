"""Shell averages over Fourier modes (internal): bins, mode multiplicities, binned sums."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jaxtyping import Array

from .layout import Pencils, sharding_of


def half_weights(n_last: int) -> np.ndarray:
    """Multiplicity in the full spectrum of each mode along a half (rfft) last axis.

    Modes 0 and (for even n) n/2 are their own mirror images and count once; every other
    mode stands for itself and its complex conjugate at -k, and counts twice.
    """
    w = np.full(n_last // 2 + 1, 2.0)
    w[0] = 1.0
    if n_last % 2 == 0:
        w[-1] = 1.0
    return w


def default_edges(mesh_shape: Sequence[int], box_size: Sequence[float]) -> np.ndarray:
    """Bins of width k_f = 2π / max(L) centred on multiples of k_f, up to the lowest Nyquist.

    k_f is the fundamental frequency of the largest side; the last edge is the smallest
    per-axis Nyquist wavenumber π N_i / L_i, so every bin is complete (spherical shells).
    """
    kf = 2 * np.pi / max(box_size)
    k_nyquist = min(np.pi * n / L for n, L in zip(mesh_shape, box_size, strict=True))
    n_bins = max(int(np.floor(k_nyquist / kf - 0.5)), 1)
    return kf * (np.arange(n_bins + 1) + 0.5)


def check_edges(edges: Any, argname: str = "k_edges") -> np.ndarray:
    """Strictly increasing non-negative 1-D edges with at least two entries."""
    if isinstance(edges, jax.core.Tracer):
        raise TypeError(f"{argname} must be concrete (numpy or a list), not a traced value")
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0) or e[0] < 0:
        raise ValueError(
            f"{argname} must be a 1-D increasing sequence of >= 2 non-negative edges, got {edges!r}"
        )
    return e


def bin_index(k: Array, edges: np.ndarray) -> Array:
    """Bin number of each |k| (edges[i] <= k < edges[i+1]); len(edges) - 1 when outside."""
    n_bins = edges.size - 1
    b = jnp.searchsorted(jnp.asarray(edges, dtype=k.dtype), k, side="right") - 1
    return jnp.where((b >= 0) & (b < n_bins), b, n_bins)


def segment_sums(values: Sequence[Array], index: Array, n_bins: int) -> list[Array]:
    """Σ over cells of each `values[i]` per bin (entries with index == n_bins are dropped)."""
    flat = _replicated(index).reshape(-1)
    return [
        jax.ops.segment_sum(
            jnp.broadcast_to(_replicated(v), index.shape).reshape(-1), flat, n_bins + 1
        )[:-1]
        for v in values
    ]


def _replicated(x: Array) -> Array:
    """`x` without a sharding in its type (only ever reached for one-device meshes).

    Flattening an array whose type says it is split over mesh axes is refused under explicit
    sharding, even when those axes have size 1; the multi-device case never gets here
    (`sharded_sums` hands each device its own block).
    """
    sharding = sharding_of(x)
    spec = getattr(sharding, "spec", ())
    if not isinstance(sharding, NamedSharding) or all(e is None for e in spec):
        return x
    return jax.sharding.reshard(x, NamedSharding(sharding.mesh, jax.sharding.PartitionSpec()))


def sharded_sums(local_fn, operands: Sequence[Array], in_specs, pencils: Pencils | None):
    """Run `local_fn(*operands) -> list of per-bin sums` per device and add the results."""
    if pencils is None:
        return local_fn(*operands)

    def per_device(*blocks):
        return [jax.lax.psum(s, pencils.all_axes) for s in local_fn(*blocks)]

    fn = jax.shard_map(
        per_device,
        mesh=pencils.mesh,
        in_specs=tuple(in_specs),
        out_specs=jax.sharding.PartitionSpec(),
    )
    return fn(*operands)
