"""Power spectrum estimators: auto, cross, multipoles, transfer function, r(k).

For real fields a, b on a periodic box of volume V with N cells and DFTs δ_k (as `fft3d`
returns them), the estimator of a mode is P̂(k) = Re(δa_k δb_k*) V / N², the inverse of
the normalisation in `linear.py`. Shell averages weight each stored mode by its multiplicity
in the full spectrum (on one device `fft3d` stores half of it: modes with 0 < kz < Nyquist
count twice), so the same field gives the same spectrum on any device grid. Multipoles are
P_ℓ(k) = (2ℓ + 1) ⟨P̂(k) L_ℓ(μ)⟩, μ = k·n̂ / |k| for a fixed line of sight n̂ (plane-parallel).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float

from .binning import bin_index, check_edges, default_edges, half_weights, segment_sums, sharded_sums
from .fft import fft3d
from .geometry import BoxSize, wavevectors
from .layout import check_box_size, pencils_from_sharding, sharding_of

__all__ = [
    "BinnedSpectrum",
    "correlation_coefficient",
    "cross_power_spectrum",
    "power_spectrum",
    "transfer_function",
]


class BinnedSpectrum(NamedTuple):
    """A shell-averaged quantity (a JAX pytree).

    Attributes:
        k: mode-weighted mean |k| in each bin, h/Mpc (ℓ for angular spectra), shape (n_bins,).
        value: the binned quantity, shape (n_bins,) or (n_multipoles, n_bins); NaN in bins
            without modes. P(k) in (Mpc/h)^3; dimensionless for transfer functions and r(k).
        modes: number of Fourier modes in each bin, counting k and -k separately, shape
            (n_bins,).
    """

    k: Array
    value: Array
    modes: Array


def legendre(ell: int, mu: Array) -> Array:
    """Legendre polynomial L_ℓ(μ) by Bonnet's recursion."""
    p_prev, p = jnp.ones_like(mu), mu
    if ell == 0:
        return p_prev
    for n in range(1, ell):
        p_prev, p = p, ((2 * n + 1) * mu * p - n * p_prev) / (n + 1)
    return p


def _check_field(x: Any, argname: str) -> None:
    if jnp.ndim(x) != 3:
        raise ValueError(f"{argname} must be a 3-D mesh, got shape {jnp.shape(x)}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{argname} must be a real field, got dtype {jnp.result_type(x)}")


def _check_multipoles(multipoles: Any) -> tuple[int, ...] | None:
    if multipoles is None:
        return None
    ells = tuple(int(e) for e in np.atleast_1d(multipoles))
    if not ells or any(e < 0 or e % 2 for e in ells):
        # Odd multipoles of Re(δa δb*) vanish identically over the full k sphere; the
        # half-spectrum sums used here cannot represent them, so they are refused.
        raise ValueError(f"multipoles must be non-negative even integers, got {multipoles!r}")
    return ells


def _check_los(los: Any) -> np.ndarray:
    v = np.asarray(los, dtype=float)
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        raise ValueError(f"los must be a non-zero 3-vector, got {los!r}")
    return v / np.linalg.norm(v)


def _spectra(
    fields: Sequence[Array],
    pairs: Sequence[tuple[int, int]],
    box_size: BoxSize,
    k_edges: Any,
    multipoles: tuple[int, ...] | None,
    los: np.ndarray,
    names: Sequence[str] = ("field_a", "field_b"),
) -> tuple[Array, list[Array], Array]:
    """Binned Re(δ_i δ_j*) V/N² for each pair (i, j); returns (k, [value per pair], modes)."""
    shape = tuple(fields[0].shape)
    for i, f in enumerate(fields):
        _check_field(f, names[i])
        if tuple(f.shape) != shape:
            raise ValueError(f"{names[i]} has shape {tuple(f.shape)}, expected {shape}")
    box = check_box_size(box_size)
    layouts = [
        pencils_from_sharding(sharding_of(f), fourier=False, argname=names[i])
        for i, f in enumerate(fields)
    ]
    if len({(p.grid, p.axes0, p.axes1) if p else None for p in layouts}) != 1:
        raise ValueError(
            f"{names[1]} must be split across devices like {names[0]}, got "
            f"{sharding_of(fields[1])} and {sharding_of(fields[0])}"
        )
    pencils = layouts[0]
    edges = default_edges(shape, box) if k_edges is None else check_edges(k_edges)
    n_bins = edges.size - 1
    ells = (0,) if multipoles is None else multipoles
    dtype = jnp.result_type(fields[0])

    spectra_k = [fft3d(f) for f in fields]
    kx, ky, kz = wavevectors(shape, box, sharding=sharding_of(fields[0]), dtype=dtype)
    n_last = spectra_k[0].shape[2]
    wz: jax.Array | np.ndarray = half_weights(shape[2]) if pencils is None else np.ones(n_last)
    wz = jnp.asarray(wz.reshape(1, 1, -1), dtype=dtype)
    norm = float(np.prod(box)) / float(np.prod(shape)) ** 2

    half = pencils is None
    if half and multipoles is not None:
        # A stored half-spectrum mode with weight 2 stands for k and its mirror -k. μ(-k) is
        # -μ(k) except where a component sits at the Nyquist index, whose mirror is itself
        # (aliasing); compute the mirror's μ explicitly so the multipoles equal those of the
        # full spectrum (as a sharded field or a plain numpy fftn gives them) mode by mode.
        # On the kz Nyquist plane (weight 1) the stored mode is the fftfreq one, kz = -N/2.
        axes = [2 * np.pi * np.fft.fftfreq(n, L / n) for n, L in zip(shape, box, strict=True)]
        kx_m = axes[0][_mirror_index(shape[0])].reshape(-1, 1, 1)
        ky_m = axes[1][_mirror_index(shape[1])].reshape(1, -1, 1)
        kz_own = axes[2][: shape[2] // 2 + 1].copy()
        kz_own[1:] = np.abs(kz_own[1:])
        if shape[2] % 2 == 0:
            kz_own[-1] = -kz_own[-1]
        kz_own = kz_own.reshape(1, 1, -1)
        mu_arrays = (kx_m, ky_m, kz_own)
    else:
        mu_arrays = None

    def local(*operands):
        *blocks, kx, ky, kz, wz = operands
        k = jnp.sqrt(kx**2 + ky**2 + kz**2)
        idx = bin_index(k, edges)
        values = [wz, wz * k]
        safe_k = jnp.where(k > 0, k, 1.0)
        if multipoles is None:
            factors = [wz]
        elif mu_arrays is None:
            mu = (kx * los[0] + ky * los[1] + kz * los[2]) / safe_k
            factors = [(2 * ell + 1) * legendre(ell, mu) for ell in ells]
        else:
            kx_m, ky_m, kz_own = (jnp.asarray(a, dtype=dtype) for a in mu_arrays)
            mu = (kx * los[0] + ky * los[1] + kz_own * los[2]) / safe_k
            mu_m = (kx_m * los[0] + ky_m * los[1] - kz * los[2]) / safe_k
            twice = wz > 1
            factors = [
                (2 * ell + 1) * (legendre(ell, mu) + jnp.where(twice, legendre(ell, mu_m), 0.0))
                for ell in ells
            ]
        for i, j in pairs:
            p = (blocks[i] * jnp.conj(blocks[j])).real * norm
            values += [p * f for f in factors]
        return segment_sums(values, idx, n_bins)

    if pencils is None:
        in_specs = None
    else:
        in_specs = [pencils.fourier_spec] * len(spectra_k) + [
            P(),
            P(None, pencils.entry(pencils.axes0), None),
            P(None, None, pencils.entry(pencils.axes1)),
            P(None, None, pencils.entry(pencils.axes1)),
        ]
        wz = _reshard_like(wz, pencils)
    sums = sharded_sums(local, [*spectra_k, kx, ky, kz, wz], in_specs, pencils)
    modes, k_sum, rest = sums[0], sums[1], sums[2:]
    has = modes > 0
    safe = jnp.where(has, modes, 1.0)
    k_mean = jnp.where(has, k_sum / safe, jnp.nan)
    per_pair = []
    n_f = len(ells)
    for p_index in range(len(pairs)):
        chunk = jnp.stack(rest[p_index * n_f : (p_index + 1) * n_f])
        value = jnp.where(has, chunk / safe, jnp.nan)
        per_pair.append(value if multipoles is not None else value[0])
    return k_mean, per_pair, modes


def _mirror_index(n: int) -> np.ndarray:
    """Index of the mirror -k of each fftfreq index (the Nyquist index n/2 maps to itself)."""
    return (-np.arange(n)) % n


def _reshard_like(wz: Array, pencils) -> Array:
    return jax.sharding.reshard(wz, pencils.sharding(P(None, None, pencils.entry(pencils.axes1))))


def power_spectrum(
    field: Float[Array, "X Y Z"],
    box_size: BoxSize,
    *,
    k_edges: Any = None,
    multipoles: Sequence[int] | None = None,
    los: Sequence[float] = (0.0, 0.0, 1.0),
) -> BinnedSpectrum:
    """Shell-averaged auto power spectrum of a real field.

    Args:
        field: real field (density contrast), shape (X, Y, Z); may be sharded.
        box_size: side of the periodic box in Mpc/h (one number or three).
        k_edges: bin edges in h/Mpc (concrete, increasing); default: bins of width
            k_f = 2π / L centred on multiples of k_f up to the Nyquist wavenumber.
        multipoles: even Legendre orders, e.g. (0, 2, 4), for P_ℓ(k) about `los`; None
            for the monopole as a 1-D array.
        los: line of sight (unit vector after normalisation) for the multipoles.

    Returns:
        `BinnedSpectrum(k, value, modes)`; `value` in (Mpc/h)^3, shape (n_bins,) or
        (len(multipoles), n_bins).

    Raises:
        ValueError: `field` not 3-D, bad `box_size`, `k_edges`, `multipoles` or `los`.
    """
    ells = _check_multipoles(multipoles)
    k, (p,), modes = _spectra([field], [(0, 0)], box_size, k_edges, ells, _check_los(los))
    return BinnedSpectrum(k, p, modes)


def cross_power_spectrum(
    field_a: Float[Array, "X Y Z"],
    field_b: Float[Array, "X Y Z"],
    box_size: BoxSize,
    *,
    k_edges: Any = None,
    multipoles: Sequence[int] | None = None,
    los: Sequence[float] = (0.0, 0.0, 1.0),
) -> BinnedSpectrum:
    """Shell-averaged cross power spectrum ⟨Re(δa δb*)⟩ V / N² of two real fields.

    Args and Returns as for `power_spectrum`; `field_b` must match `field_a`'s shape and
    device split.
    """
    ells = _check_multipoles(multipoles)
    fields = [field_a, field_b]
    k, (p,), modes = _spectra(fields, [(0, 1)], box_size, k_edges, ells, _check_los(los))
    return BinnedSpectrum(k, p, modes)


def transfer_function(
    field: Float[Array, "X Y Z"],
    reference: Float[Array, "X Y Z"],
    box_size: BoxSize,
    *,
    k_edges: Any = None,
) -> BinnedSpectrum:
    """T(k) = sqrt(P_field(k) / P_reference(k)), binned as in `power_spectrum`."""
    los = _check_los((0, 0, 1))
    fields, pairs, names = [field, reference], [(0, 0), (1, 1)], ("field", "reference")
    k, (p_a, p_b), modes = _spectra(fields, pairs, box_size, k_edges, None, los, names)
    return BinnedSpectrum(k, jnp.sqrt(p_a / p_b), modes)


def correlation_coefficient(
    field_a: Float[Array, "X Y Z"],
    field_b: Float[Array, "X Y Z"],
    box_size: BoxSize,
    *,
    k_edges: Any = None,
) -> BinnedSpectrum:
    """r(k) = P_ab(k) / sqrt(P_aa(k) P_bb(k)), binned as in `power_spectrum`."""
    los = _check_los((0, 0, 1))
    pairs = [(0, 0), (1, 1), (0, 1)]
    k, (p_aa, p_bb, p_ab), modes = _spectra([field_a, field_b], pairs, box_size, k_edges, None, los)
    return BinnedSpectrum(k, p_ab / jnp.sqrt(p_aa * p_bb), modes)
