"""PM lightcone: density planes (flat) or HEALPix shells (spherical) painted during `nbody`.

The light cone of an observer at comoving distance χ(a) sweeps inwards while the
simulation steps forward: during the step a_from → a_to it passes the particles (and their
periodic images) at distances χ(a_to) ≤ r < χ(a_from). The observer function built here
(`lightcone_observer`) is called by `nbody` after every step and, for every particle image,

1. finds whether the light cone crossed it during the step: g = χ − r changes sign from
   g > 0 at the start to g ≤ 0 at the end. Within a step the particle moves on the straight
   segment between its positions before and after the step (what a kick-drift-kick drift
   does with the step's momentum) and the light-cone radius is interpolated linearly along
   the same parameter s ∈ [0, 1]; the crossing is at s* = g₀ / (g₀ − g₁), a linear drift to
   the crossing time. Consecutive steps share their end points, so each image is found in
   exactly one step and the shells tile the cone without gaps or double counting;
2. paints it, at its crossing position, into the shell that contains its crossing radius
   χ* = χ₀ + s*(χ₁ − χ₀), with weight 1 (one particle) — or, with
   `LightconeSpec(shell_assignment="linear")`, into the two shells whose centres bracket
   χ*, with weights linear in χ* (cloud-in-cell along the line of sight; before the first
   centre and after the last one the whole particle goes to the end shell).

Geometry:

- `"flat"`: the line of sight is the +z axis of the box; a shell is the slab
  χ_lo ≤ z − z_obs < χ_hi (plane-parallel distance, the flat-sky approximation), the box
  is replicated along z, and the slab is projected on a periodic npix × npix plane that
  covers the box's transverse extent, centred on the observer, with 2-D CIC.
- `"spherical"`: a shell is χ_lo ≤ |x − x_obs| < χ_hi around the observer, the box is
  replicated in all directions, and particles are deposited on HEALPix maps (`nside`,
  ring ordering) with bilinear weights between the two bracketing rings.

Spherical painting, the choice. Of the three options of the design notes we use (a), our
own pure-JAX HEALPix ring geometry (`healpix.py`, checked against healpy to 1e-8 on 2·10⁵
random directions) with a smooth deposit: healpy's bilinear interpolation rule, transposed.
Why: (1) mass is exact — the four weights sum to one, so the shells' total is the particle
count up to round-off, whereas sampling the 3-D density along each pixel's ray (c) only
approximates the shell integral (and misses structure between rays when pixels are larger
than mesh cells, or repeats the cell-scale smoothing when they are smaller); (2) the
weights are continuous in the particle position, so the maps have non-zero, bounded
gradients w.r.t. positions (a nearest-pixel deposit has zero gradient almost everywhere),
the same quality as CIC; (3) nothing but the ring formulas is needed at run time, so
healpy is only a test dependency (extra `healpix`) and (b) — static tables of pixel
centres and neighbours from healpy — is unnecessary. The resolution is that of the
particles (the deposit is a one-pixel kernel), not of the PM mesh.

Randomised replicas (`LightconeSpec(randomize_replicas=True)`). A lightcone deeper than
the box sees the same periodic box again and again: along the +z line of sight of a flat
lightcone the shells one box length apart are projections of the very same slab, and on
the sphere the shells cross the same structures in neighbouring copies. Their
contributions to a projected map (e.g. lensing convergence) are then correlated, which
adds power that a statistically homogeneous sky does not have (measured on κ spectra of
flat planes: +51% at ℓ ≈ 78 for a 256 Mpc/h box seen out to 1320 Mpc/h). The usual
remedy for replicated lightcones, random rotations and translations of the copies, is
applied here per copy of the box: every periodic copy except the
box itself (offset 0) gets its own rigid symmetry of the periodic box — a signed axis
permutation R (one of the 48 symmetries of a cube, restricted to axes of equal length)
followed by a periodic translation s — and holds the particles at mod(R x + s, L) instead
of x. Each copy is still a full periodic realisation of the same field, so one-point and
power statistics inside a copy are unchanged; between copies the cross-correlation averages
to zero over the random draws (exactly for the translation: the mean of a periodic
field's correlation function over the box vanishes). The price is a discontinuity of
the large-scale structure at copy boundaries (particles are still counted exactly once per
copy, so the shells' mass is unchanged): the true correlations across a boundary are lost,
which lowers projected power at the lowest multipoles (measured −4% on average at
78 ≤ ℓ ≤ 326 with three boundaries; docs/lensing.md). A box as deep as the lightcone
needs neither. The transforms are drawn from a JAX key
(`lightcone(..., replica_key=...)`, traced keys allowed), by default
`jax.random.key(spec.replica_seed)`; they are fixed for the whole run.

All painting is masked and fixed-shape (non-crossing images get weight 0), so it jits,
shards (particles may be sharded, the maps are replicated and summed by XLA) and
differentiates; the maps are accumulated additively, so under `Reversible` the memory is
independent of the number of steps. With `shell_assignment="nearest"` (the default) shell
assignment is piecewise constant: a particle moving across a shell edge jumps between
shells (measure zero for gradients, but the maps, and any likelihood of them, are
discontinuous in the particle positions). `shell_assignment="linear"` makes the maps
continuous in the positions and gives the radial displacement a gradient: Hamiltonian
Monte Carlo needs this (each jump is an energy error that no step size removes; measured
on the 16³ lensing model of `scripts/run_lensing_model.py`: ~60 jumps of ~0.4 in the log
density per unit of path of the whitened field, which left NUTS stuck). Mass is exact in
both (the two weights sum to one); the expected counts of a shell are unchanged for equal
widths (its tent of weights integrates to the shell width) and approximate for unequal
ones (`density="mean"` in fmt-lensing normalises each shell by its own mean anyway).

Units: distances in Mpc/h; maps hold particle counts (number of particles per pixel);
`Lightcone.expected_counts` is the mean count per pixel of a uniform distribution, so
`counts / expected_counts − 1` is the shell's (projected) overdensity.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec
from jaxtyping import Array, Float

from fmt_cosmo import comoving_distance, scale_factor_of_distance

from .healpix import check_nside, interpolation_weights_ring
from .nbody import nbody

__all__ = ["Lightcone", "LightconeSpec", "lightcone", "lightcone_init", "lightcone_observer"]

_GEOMETRIES = ("flat", "spherical")
_SPACINGS = ("width", "volume")
_SHELL_ASSIGNMENTS = ("nearest", "linear")
# Culling margin of periodic images (cells): a particle may move this far out of its box.
_IMAGE_MARGIN_CELLS = 4.0


def _tuple3(value, name, kind):
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        value = (value,) * 3
    try:
        out = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be one number or three, got {value!r}") from None
    if len(out) != 3:
        raise ValueError(f"{name} must be one number or three, got {value!r}")
    return out


def _shell_edges(geometry, chi_min, chi_max, n_shells, spacing, min_width) -> tuple:
    if spacing == "width" or geometry == "flat":
        return tuple(float(x) for x in np.linspace(chi_min, chi_max, n_shells + 1))
    # Equal volume, outermost first; each shell at least `min_width` wide.
    edges = [chi_max]
    for k in range(n_shells, 0, -1):
        outer = edges[-1]
        vol = (outer**3 - chi_min**3) / k
        inner = min(np.cbrt(max(outer**3 - vol, 0.0)), outer - min_width)
        edges.append(inner)
    if edges[-1] < chi_min - 1e-9 * max(chi_max, 1.0):
        raise ValueError(
            f"min_width={min_width} is too large for n_shells={n_shells} between "
            f"{chi_min} and {chi_max} Mpc/h"
        )
    edges[-1] = chi_min
    return tuple(float(x) for x in edges[::-1])


class LightconeSpec(eqx.Module):
    """What lightcone to paint: geometry, observer, shells and map resolution (all static).

    Args:
        geometry: `"flat"` (planes perpendicular to the +z line of sight) or
            `"spherical"` (HEALPix onion shells).
        box_size: periodic box side(s), Mpc/h (one number or three).
        mesh_shape: cells per axis of the mesh the particle displacements are measured in
            (the PM mesh; the particle lattice by default in `nbody`).
        observer: observer position in box units, each in [0, 1] (0.5: box centre).
        max_distance: outer edge of the last shell, Mpc/h. Give it or `max_redshift`.
        max_redshift: alternative to `max_distance`, converted with `cosmo` once here; the
            edges are then fixed in Mpc/h (their scale factors still follow the cosmology
            passed to `lightcone`).
        cosmo: a concrete `fmt_cosmo.Cosmology`, needed with `max_redshift` only.
        n_shells: number of shells.
        spacing: `"width"` (equal comoving width) or `"volume"` (equal volume, spherical
            only; flat slabs of equal volume have equal width).
        min_width: smallest shell width allowed with `spacing="volume"`, Mpc/h.
        min_distance: inner edge of the first shell, Mpc/h (default 0).
        npix: flat only, pixels per side of the planes (one int or two); at most the
            mesh's cells per side (no pixel smaller than a mesh cell).
        nside: spherical only, HEALPix resolution (a power of two); the pixel side
            √(4π/12nside²)·max_distance at the outer edge must not be smaller than a
            mesh cell.
        replicas: periodic copies of the box allowed on each side of it (spherical: in
            every direction; flat: beyond the box along +z). All shells must lie in the
            replicated volume.
        randomize_replicas: give every periodic copy of the box (not the box itself) its
            own random rotation/reflection and translation (module docstring), so that
            copies seen along the line of sight are uncorrelated. Default False here (the
            plain periodic tiling); `fmt_lensing.make_full_field_model` turns it on.
        replica_seed: seed of the default key of the random transforms
            (`lightcone(..., replica_key=None)` uses `jax.random.key(replica_seed)`).
        shell_assignment: `"nearest"` (default: the shell holding the crossing radius) or
            `"linear"` (split between the two shells whose centres bracket it, so that the
            maps are continuous in the particle positions; module docstring).

    Raises:
        ValueError: naming the argument, for an unknown geometry or spacing, an observer
            outside the box, shells beyond the replicated volume, `nside` not a power of
            two, a plane resolution finer than the mesh, inconsistent or missing options.
    """

    geometry: str = eqx.field(static=True)
    box_size: tuple[float, float, float] = eqx.field(static=True)
    mesh_shape: tuple[int, int, int] = eqx.field(static=True)
    observer: tuple[float, float, float] = eqx.field(static=True)
    edges: tuple[float, ...] = eqx.field(static=True)
    npix: tuple[int, int] | None = eqx.field(static=True)
    nside: int | None = eqx.field(static=True)
    replicas: int = eqx.field(static=True)
    randomize_replicas: bool = eqx.field(static=True)
    replica_seed: int = eqx.field(static=True)
    shell_assignment: str = eqx.field(static=True)

    def __init__(
        self,
        geometry: str,
        box_size,
        mesh_shape,
        *,
        observer=(0.5, 0.5, 0.5),
        max_distance: float | None = None,
        max_redshift: float | None = None,
        cosmo: Any = None,
        n_shells: int = 8,
        spacing: str = "width",
        min_width: float = 0.0,
        min_distance: float = 0.0,
        npix: int | tuple[int, int] | None = None,
        nside: int | None = None,
        replicas: int = 1,
        randomize_replicas: bool = False,
        replica_seed: int = 0,
        shell_assignment: str = "nearest",
    ):
        if geometry not in _GEOMETRIES:
            raise ValueError(f"geometry must be one of {_GEOMETRIES}, got {geometry!r}")
        box = _tuple3(box_size, "box_size", float)
        if not all(np.isfinite(b) and b > 0 for b in box):
            raise ValueError(f"box_size must be positive, got {box_size!r}")
        mesh = _tuple3(mesh_shape, "mesh_shape", int)
        if not all(m >= 1 for m in mesh):
            raise ValueError(f"mesh_shape must be positive ints, got {mesh_shape!r}")
        obs = _tuple3(observer, "observer", float)
        if not all(np.isfinite(o) and 0.0 <= o <= 1.0 for o in obs):
            raise ValueError(
                f"observer must lie in the box, each coordinate in [0, 1] box units, got "
                f"{observer!r}"
            )
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ValueError(f"replicas must be an integer >= 0, got {replicas!r}")
        if not isinstance(randomize_replicas, bool | np.bool_):
            raise ValueError(f"randomize_replicas must be a bool, got {randomize_replicas!r}")
        if isinstance(replica_seed, bool) or not isinstance(replica_seed, int | np.integer):
            raise ValueError(f"replica_seed must be an int, got {replica_seed!r}")
        if spacing not in _SPACINGS:
            raise ValueError(f"spacing must be one of {_SPACINGS}, got {spacing!r}")
        if shell_assignment not in _SHELL_ASSIGNMENTS:
            raise ValueError(
                f"shell_assignment must be one of {_SHELL_ASSIGNMENTS}, got {shell_assignment!r}"
            )
        if isinstance(n_shells, bool) or not isinstance(n_shells, int) or n_shells < 1:
            raise ValueError(f"n_shells must be an integer >= 1, got {n_shells!r}")
        if (max_distance is None) == (max_redshift is None):
            raise ValueError(
                "give exactly one of max_distance and max_redshift, got "
                f"max_distance={max_distance!r}, max_redshift={max_redshift!r}"
            )
        if max_redshift is not None:
            if cosmo is None:
                raise ValueError("max_redshift needs a concrete cosmo to convert it")
            if not (np.isfinite(max_redshift) and max_redshift > 0):
                raise ValueError(f"max_redshift must be > 0, got {max_redshift!r}")
            max_distance = float(comoving_distance(cosmo, 1.0 / (1.0 + max_redshift)))
        chi_max = float(max_distance)
        if not (np.isfinite(min_distance) and min_distance >= 0):
            raise ValueError(f"min_distance must be >= 0, got {min_distance!r}")
        if not (np.isfinite(chi_max) and chi_max > min_distance):
            raise ValueError(
                f"max_distance must exceed min_distance={min_distance}, got {max_distance!r}"
            )
        if not (np.isfinite(min_width) and min_width >= 0):
            raise ValueError(f"min_width must be >= 0, got {min_width!r}")
        edges = _shell_edges(geometry, float(min_distance), chi_max, n_shells, spacing, min_width)

        o_phys = [o * b for o, b in zip(obs, box, strict=True)]
        if geometry == "flat":
            reach = (replicas + 1) * box[2] - o_phys[2]
            what = f"the box and {replicas} replicas along +z"
        else:
            reach = min(
                min(o + replicas * b, (replicas + 1) * b - o)
                for o, b in zip(o_phys, box, strict=True)
            )
            what = f"the box and {replicas} replicas on each side"
        if chi_max > reach * (1 + 1e-12):
            raise ValueError(
                f"max_distance={chi_max:.6g} Mpc/h: shells beyond the replicated volume "
                f"({what} reach {reach:.6g} Mpc/h from the observer); increase replicas "
                "or reduce max_distance/max_redshift"
            )

        cell = [b / m for b, m in zip(box, mesh, strict=True)]
        if geometry == "flat":
            if nside is not None:
                raise ValueError(f"nside is for spherical lightcones, got nside={nside!r}")
            if npix is None:
                npix = mesh[:2]
            np2 = (npix, npix) if isinstance(npix, int | np.integer) else tuple(npix)
            if len(np2) != 2 or not all(
                isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 1 for n in np2
            ):
                raise ValueError(f"npix must be a positive int or two, got {npix!r}")
            if np2[0] > mesh[0] or np2[1] > mesh[1]:
                raise ValueError(
                    f"npix={npix!r}: plane resolution finer than allowed (at most the mesh's "
                    f"{mesh[0]} x {mesh[1]} cells per side)"
                )
            self.npix, self.nside = (int(np2[0]), int(np2[1])), None
        else:
            if npix is not None:
                raise ValueError(f"npix is for flat lightcones, got npix={npix!r}")
            if nside is None:
                raise ValueError("spherical lightcones need nside (a power of two)")
            nside = check_nside(nside)
            pix_side = np.sqrt(4 * np.pi / (12 * nside**2)) * chi_max
            if pix_side < min(cell) * (1 - 1e-12):
                raise ValueError(
                    f"nside={nside}: plane resolution finer than allowed (pixel side "
                    f"{pix_side:.4g} Mpc/h at max_distance, smaller than a mesh cell "
                    f"{min(cell):.4g} Mpc/h)"
                )
            self.npix, self.nside = None, nside
        self.geometry = geometry
        self.box_size = box
        self.mesh_shape = mesh
        self.observer = obs
        self.edges = edges
        self.replicas = replicas
        self.randomize_replicas = bool(randomize_replicas)
        self.replica_seed = int(replica_seed)
        self.shell_assignment = shell_assignment

    @property
    def n_shells(self) -> int:
        """Number of shells."""
        return len(self.edges) - 1

    @property
    def map_shape(self) -> tuple[int, ...]:
        """Shape of one map: (npix_x, npix_y) flat, (12 nside²,) spherical."""
        return self.npix if self.geometry == "flat" else (12 * self.nside**2,)

    def image_offsets(self) -> np.ndarray:
        """Periodic images (in box units, (n, 3) ints) that can hold shell particles."""
        box = np.asarray(self.box_size)
        cell = box / np.asarray(self.mesh_shape)
        margin = _IMAGE_MARGIN_CELLS * cell
        o = np.asarray(self.observer) * box
        lo_chi, hi_chi = self.edges[0], self.edges[-1]
        if self.geometry == "flat":
            n = np.arange(-1, self.replicas + 2)
            z_lo, z_hi = n * box[2] - margin[2] - o[2], (n + 1) * box[2] + margin[2] - o[2]
            keep = (z_hi >= lo_chi) & (z_lo <= hi_chi)
            return np.stack([np.zeros_like(n), np.zeros_like(n), n], axis=-1)[keep]
        r = self.replicas + 1
        grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        lo = grid * box - margin - o
        hi = (grid + 1) * box + margin - o
        nearest = np.linalg.norm(np.clip(0.0, lo, hi), axis=-1)
        farthest = np.linalg.norm(np.maximum(np.abs(lo), np.abs(hi)), axis=-1)
        keep = (nearest <= hi_chi) & (farthest >= lo_chi)
        return grid[keep]

    def symmetries(self) -> np.ndarray:
        """Signed axis permutations that map the periodic box onto itself, (n, 3, 3).

        All 48 symmetries of the cube for a cubic box; for unequal sides only the
        permutations among axes of equal length (with every reflection).
        """
        box = self.box_size
        out = []
        for perm in itertools.permutations(range(3)):
            if any(box[perm[i]] != box[i] for i in range(3)):
                continue
            for signs in itertools.product((1.0, -1.0), repeat=3):
                r = np.zeros((3, 3))
                r[np.arange(3), perm] = signs
                out.append(r)
        return np.asarray(out)

    def replica_transforms(self, key=None) -> tuple[Array, Array]:
        """The random symmetry and translation of every image of `image_offsets()`.

        Args:
            key: a JAX PRNG key (may be traced); default `jax.random.key(replica_seed)`.

        Returns:
            `(rotations, shifts)`: (n_images, 3, 3) signed permutation matrices and
            (n_images, 3) translations in Mpc/h, uniform in [0, box_size); the image at
            offset (0, 0, 0) (the box itself) gets the identity and no translation.
            Without `randomize_replicas` every image gets the identity.
        """
        offsets = self.image_offsets()
        n = offsets.shape[0]
        if not self.randomize_replicas:
            return jnp.broadcast_to(jnp.eye(3), (n, 3, 3)), jnp.zeros((n, 3))
        key = jax.random.key(self.replica_seed) if key is None else key
        k_rot, k_shift = jax.random.split(key)
        sym = jnp.asarray(self.symmetries())
        pick = jax.random.randint(k_rot, (n,), 0, sym.shape[0])
        shifts = jax.random.uniform(k_shift, (n, 3)) * jnp.asarray(self.box_size)
        home = jnp.asarray(np.all(offsets == 0, axis=-1))
        rot = jnp.where(home[:, None, None], jnp.eye(3), sym[pick])
        shifts = jnp.where(home[:, None], 0.0, shifts)
        return jax.lax.stop_gradient(rot), jax.lax.stop_gradient(shifts)


class Lightcone(eqx.Module):
    """Painted shells with everything fmt-lensing needs to use them.

    Attributes:
        maps: (n_shells, npix_x, npix_y) flat planes or (n_shells, 12 nside²) HEALPix
            ring-ordered maps; particle counts per pixel (each particle weighs 1).
        chi_edges: (n_shells + 1,) shell edges, comoving Mpc/h.
        chi: (n_shells,) shell centres, Mpc/h.
        width: (n_shells,) shell widths, Mpc/h.
        scale_factor: (n_shells,) scale factor a(chi) at the centres.
        particle_density: mean comoving number density n̄ of particles, (Mpc/h)⁻³.
        pixel_area: flat: transverse pixel area, (Mpc/h)²; spherical: solid angle, sr.
        expected_counts: (n_shells,) mean count per pixel of a uniform distribution:
            n̄·A_pix·Δχ (flat) or n̄·Ω_pix·(χ_hi³ − χ_lo³)/3 (spherical).
        geometry: `"flat"` or `"spherical"` (static).
    """

    maps: Float[Array, "shells ..."]
    chi_edges: Float[Array, " shells1"]
    chi: Float[Array, " shells"]
    width: Float[Array, " shells"]
    scale_factor: Float[Array, " shells"]
    particle_density: Float[Array, ""]
    pixel_area: Float[Array, ""]
    expected_counts: Float[Array, " shells"]
    geometry: str = eqx.field(static=True)

    def overdensity(self) -> Float[Array, "shells ..."]:
        """Shell-averaged density contrast per pixel, counts / expected_counts − 1."""
        norm = self.expected_counts.reshape((-1,) + (1,) * (self.maps.ndim - 1))
        return self.maps / norm - 1.0

    def surface_density(self) -> Float[Array, "shells ..."]:
        """∫(1 + δ) dχ over each shell per pixel, Mpc/h: counts / (n̄ A_pix) (flat) or
        counts / (n̄ Ω_pix χ²) with χ² → (χ_hi³ − χ_lo³)/(3Δχ) (spherical)."""
        width = self.width.reshape((-1,) + (1,) * (self.maps.ndim - 1))
        norm = self.expected_counts.reshape(width.shape) / width
        return self.maps / norm


def _normalisation(spec: LightconeSpec, n_particles: int):
    box = np.asarray(spec.box_size)
    nbar = n_particles / float(np.prod(box))
    edges = np.asarray(spec.edges)
    if spec.geometry == "flat":
        area = box[0] * box[1] / (spec.npix[0] * spec.npix[1])
        expected = nbar * area * np.diff(edges)
    else:
        area = 4 * np.pi / (12 * spec.nside**2)
        expected = nbar * area * np.diff(edges**3) / 3.0
    return nbar, area, expected


def lightcone_init(spec: LightconeSpec, cosmo, dtype: Any = None, *, replica_key=None):
    """Initial carry of `lightcone_observer(spec)`: zero maps and the cosmology, and with
    `spec.randomize_replicas` the replica transforms drawn from `replica_key`
    (`LightconeSpec.replica_transforms`).

    The cosmology rides in the carry (read, never changed) so that χ(a) is differentiated
    correctly under every adjoint; so do the transforms (read only, so that a traced key
    is no closed-over tracer of the adjoints' `custom_vjp`).
    """
    dtype = jnp.zeros((), float).dtype if dtype is None else jnp.dtype(dtype)
    maps = jnp.zeros((spec.n_shells, *spec.map_shape), dtype)
    if not spec.randomize_replicas:
        return maps, cosmo
    rot, shift = spec.replica_transforms(replica_key)
    return maps, cosmo, (rot.astype(dtype), shift.astype(dtype))


def _take_small(table, index):
    """`table[index]` for a short 1-D table, elementwise: a gather with explicitly sharded
    indices has no sharding rule (the particles may be sharded, the table is not)."""
    return sum(jnp.where(index == k, table[k], 0.0) for k in range(table.shape[0]))


def _scatter_add(target, index, values):
    """`target.at[index].add(values)`; with explicitly sharded particles the (small) maps
    come out replicated, XLA summing the devices' partial deposits."""
    mesh = getattr(jax.typeof(values).sharding, "mesh", None)
    if mesh is not None and not mesh.empty and mesh.axis_names:
        return target.at[index].add(values, out_sharding=PartitionSpec())
    return target.at[index].add(values)


def _paint_flat(spec, maps, rel, w, shell):
    nx, ny = spec.npix
    box = spec.box_size
    flat = maps.reshape(-1)
    out = []
    for axis, n in ((0, nx), (1, ny)):
        # pixel i is centred (i + 1/2 - n/2) pixels from the observer; periodic wrap
        u = jnp.mod(rel[..., axis] / (box[axis] / n) + 0.5 * n - 0.5, n)
        i0 = jnp.floor(u)
        out.append((i0.astype(jnp.int32), u - i0))
    (ix, fx), (iy, fy) = out
    base = shell * (nx * ny)
    for dx in (0, 1):
        wx = fx if dx else 1.0 - fx
        jx = jnp.mod(ix + dx, nx)
        for dy in (0, 1):
            wy = fy if dy else 1.0 - fy
            jy = jnp.mod(iy + dy, ny)
            flat = _scatter_add(flat, (base + jx * ny + jy).ravel(), (w * wx * wy).ravel())
    return flat.reshape(maps.shape)


def _paint_spherical(spec, maps, rel, w, shell):
    npix = 12 * spec.nside**2
    r2 = jnp.sum(rel * rel, axis=-1, keepdims=True)
    # masked images may sit on the observer: a safe direction keeps gradients finite
    safe = jnp.where(r2 > 0, rel, jnp.asarray([0.0, 0.0, 1.0], rel.dtype))
    pix, wts = interpolation_weights_ring(spec.nside, safe)
    flat = maps.reshape(-1)
    idx = shell[..., None] * npix + pix
    flat = _scatter_add(flat, idx.ravel(), (w[..., None] * wts).ravel())
    return flat.reshape(maps.shape)


def lightcone_observer(spec: LightconeSpec) -> Callable:
    """The `nbody` observer that paints the lightcone of `spec` (see the module docstring).

    Use with `observer_init=lightcone_init(spec, cosmo)` and `mesh_shape=spec.mesh_shape`;
    `nbody(...).observed[0]` are the maps. Affine in the maps (they are only added to), so
    valid under every adjoint. The cosmology in the carry gives χ(a_from), χ(a_to).

    Returns:
        `observer(carry, state_before, state_after, a_from, a_to) -> carry`.
    """
    if not isinstance(spec, LightconeSpec):
        raise TypeError(f"spec must be a LightconeSpec, got {type(spec).__name__}")
    offsets_np = spec.image_offsets()
    box = np.asarray(spec.box_size)
    mesh = np.asarray(spec.mesh_shape)
    cell_np = box / mesh
    obs_cells = np.asarray(spec.observer) * mesh
    edges_np = np.asarray(spec.edges)
    centres_np = 0.5 * (edges_np[1:] + edges_np[:-1])
    flat_geom = spec.geometry == "flat"
    linear = spec.shell_assignment == "linear"

    randomize = spec.randomize_replicas

    def observer(carry, before, after, a_from, a_to):
        maps, cosmo = carry[:2]
        d0, d1 = before[0], after[0]
        dtype = d0.dtype
        lattice = d0.shape[:3]
        comps = []
        for axis in range(3):
            shape = [1, 1, 1]
            shape[axis] = lattice[axis]
            site = jnp.arange(lattice[axis], dtype=dtype) * (mesh[axis] / lattice[axis])
            x0 = jnp.mod(site.reshape(shape) + d0[..., axis], jnp.asarray(mesh[axis], dtype))
            comps.append(x0 if randomize else x0 - obs_cells[axis])
        cell = jnp.asarray(cell_np, dtype)
        box_d = jnp.asarray(box, dtype)
        obs_d = jnp.asarray(obs_cells * cell_np, dtype)
        # Mpc/h from the observer, in the box (randomised: Mpc/h from the box corner)
        rel0 = jnp.stack(comps, axis=-1) * cell
        step = (d1 - d0) * cell
        if randomize:
            rotations, shifts = carry[2]
            offsets_all = (jnp.asarray(offsets_np, dtype), rotations, shifts)
        else:
            offsets_all = jnp.asarray(offsets_np, dtype)
        chi0 = comoving_distance(cosmo, a_from).astype(dtype)
        chi1 = comoving_distance(cosmo, a_to).astype(dtype)
        edges = jnp.asarray(edges_np, dtype)
        centres = jnp.asarray(centres_np, dtype)

        def paint_image(maps, image):
            if randomize:
                offset, rot, shift = image
                # the copy holds mod(R x + s, L); the step turns with it
                x_img = jnp.mod(jnp.einsum("...j,ij->...i", rel0, rot) + shift, box_d)
                r0v = x_img - obs_d + offset * box_d
                move = jnp.einsum("...j,ij->...i", step, rot)
            else:
                r0v = rel0 + image * box_d
                move = step
            r1v = r0v + move
            if flat_geom:
                r0, r1 = r0v[..., 2], r1v[..., 2]
            else:
                r0 = jnp.sqrt(jnp.sum(r0v * r0v, axis=-1))
                r1 = jnp.sqrt(jnp.sum(r1v * r1v, axis=-1))
            g0, g1 = chi0 - r0, chi1 - r1
            crossed = (g0 > 0) & (g1 <= 0)
            s = g0 / jnp.where(crossed, g0 - g1, 1.0)
            s = jnp.where(crossed, s, 0.0)
            chi_x = chi0 + s * (chi1 - chi0)
            if not linear:  # piecewise constant: no gradient
                chi_x = jax.lax.stop_gradient(chi_x)
            # elementwise (searchsorted has no rule for explicitly sharded operands)
            shell = sum((chi_x >= edges[k]).astype(jnp.int32) for k in range(len(edges_np)))
            shell = shell - 1
            inside = crossed & (shell >= 0) & (shell < edges.shape[0] - 1)
            shell = jnp.where(inside, shell, 0)
            w = inside.astype(dtype)
            pos = r0v + s[..., None] * move  # crossing position, Mpc/h from the observer
            paint = _paint_flat if flat_geom else _paint_spherical
            if not linear:
                return paint(spec, maps, pos, w, shell), None
            # the two shells whose centres bracket χ* (one shell before the first centre
            # and after the last), weights linear in χ*
            n = len(centres_np)
            lower = sum((chi_x >= centres[k]).astype(jnp.int32) for k in range(n)) - 1
            lo, hi = jnp.clip(lower, 0, n - 1), jnp.clip(lower + 1, 0, n - 1)
            c_lo, c_hi = _take_small(centres, lo), _take_small(centres, hi)
            gap = jnp.where(hi > lo, c_hi - c_lo, 1.0)
            frac = jnp.where(hi > lo, jnp.clip((chi_x - c_lo) / gap, 0.0, 1.0), 0.0)
            maps = paint(spec, maps, pos, w * (1.0 - frac), jnp.where(inside, lo, 0))
            return paint(spec, maps, pos, w * frac, jnp.where(inside, hi, 0)), None

        maps, _ = jax.lax.scan(paint_image, maps, offsets_all)
        return (maps, cosmo, *carry[2:])

    return observer


def lightcone(
    cosmo,
    state,
    scale_factors,
    spec: LightconeSpec,
    *,
    solver: Any = "fastpm",
    adjoint: Any = "checkpointed",
    force: Callable | None = None,
    r_split: float = 0.0,
    table=None,
    replica_key=None,
) -> tuple[Lightcone, Any]:
    """Integrate particles with `nbody` and paint the lightcone of `spec` on the way.

    Not jitted; jit the caller. Differentiable w.r.t. the initial state and the cosmology
    with every adjoint of `nbody`.

    Args:
        cosmo: an `fmt_cosmo.Cosmology`.
        state: initial `ParticleState` / `(displacement, momentum)` in cells of
            `spec.mesh_shape` (e.g. from `lpt`), possibly sharded.
        scale_factors: strictly increasing step boundaries; they must span the shells:
            χ(a[0]) ≥ max edge and χ(a[-1]) ≤ min edge (checked when concrete).
        spec: the `LightconeSpec`.
        solver, adjoint, force, r_split, table: passed to `nbody` (`mesh_shape` is
            `spec.mesh_shape`).
        replica_key: with `spec.randomize_replicas`, the JAX key of the replica
            transforms (may be traced, e.g. one per realisation); default
            `jax.random.key(spec.replica_seed)`. Ignored otherwise.

    Returns:
        `(Lightcone, final_state)`.

    Raises:
        TypeError: `spec` is not a `LightconeSpec`.
        ValueError: the steps do not span the shells, the state's mesh disagrees with
            `spec.mesh_shape` (its lattice must divide it), and `nbody`'s own errors.

    Example:
        >>> spec = LightconeSpec("flat", 256.0, (32, 32, 32), observer=(0.5, 0.5, 0.0),
        ...                      max_distance=512.0, n_shells=4, npix=32, replicas=1)
        >>> planes, _ = lightcone(cosmo, lpt(cosmo, delta, 0.4, box_size=256.0),
        ...                       jnp.linspace(0.4, 1.0, 11), spec)
        >>> delta_2d = planes.overdensity()
    """
    if not isinstance(spec, LightconeSpec):
        raise TypeError(f"spec must be a LightconeSpec, got {type(spec).__name__}")
    disp = state[0]
    lattice = tuple(jnp.shape(disp)[:3])
    misfit = any(m % n for m, n in zip(spec.mesh_shape, lattice, strict=False))
    if len(jnp.shape(disp)) != 4 or misfit:
        raise ValueError(
            f"state displacement shape {jnp.shape(disp)} does not fit spec.mesh_shape "
            f"{spec.mesh_shape} (the lattice must divide the mesh)"
        )
    concrete = not any(
        isinstance(v, jax.core.Tracer) for v in jax.tree.leaves((cosmo, scale_factors))
    )
    if concrete:
        a = np.asarray(scale_factors, dtype=float)
        if a.ndim == 1 and a.size >= 2 and np.all(a > 0):
            with jax.ensure_compile_time_eval():  # concrete even while a caller traces
                chi_first = float(comoving_distance(cosmo, a[0]))
                chi_last = float(comoving_distance(cosmo, a[-1]))
            tol = 1e-9 * max(spec.edges[-1], 1.0)
            if chi_first < spec.edges[-1] - tol or chi_last > spec.edges[0] + tol:
                raise ValueError(
                    f"scale_factors span χ in [{chi_last:.6g}, {chi_first:.6g}] Mpc/h, which "
                    f"does not cover the shells [{spec.edges[0]:.6g}, {spec.edges[-1]:.6g}]"
                )
    dtype = jnp.result_type(disp)
    out = nbody(
        cosmo,
        state,
        scale_factors,
        solver=solver,
        adjoint=adjoint,
        observer=lightcone_observer(spec),
        observer_init=lightcone_init(spec, cosmo, dtype, replica_key=replica_key),
        force=force,
        mesh_shape=spec.mesh_shape,
        r_split=r_split,
        table=table,
    )
    maps = out.observed[0]
    edges = jnp.asarray(spec.edges, dtype=float)
    chi = 0.5 * (edges[1:] + edges[:-1])
    nbar, area, expected = _normalisation(spec, int(np.prod(lattice)))
    result = Lightcone(
        maps=maps,
        chi_edges=edges,
        chi=chi,
        width=jnp.diff(edges),
        scale_factor=scale_factor_of_distance(cosmo, chi),
        particle_density=jnp.asarray(nbar, dtype=float),
        pixel_area=jnp.asarray(area, dtype=float),
        expected_counts=jnp.asarray(expected, dtype=float),
        geometry=spec.geometry,
    )
    return result, out.state
