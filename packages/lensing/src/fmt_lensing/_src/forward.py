"""The full-field forward model: white noise → linear field → LPT → PM lightcone → κ maps.

`make_full_field_model` validates everything that is static (geometry, box, observer,
field size, nside, shells, steps) once and returns a pure function
`forward_model(cosmo, nz, white_noise) -> (kappa_maps, lightcone, initial_field)`
to be jitted, differentiated and sharded by the caller.

Shells: `ceil((χ_max − χ_min)/density_plane_width)` shells of equal width between
`min_distance` and χ_max = χ(max_redshift) of the fiducial cosmology (fixed in Mpc/h; their
scale factors follow the cosmology of each call). Steps: `scale_factors` if given, else
`n_steps` equal steps in a from `a_init` (default: 0.9 × the scale factor of the far edge,
so that LPT places the particles before the light cone reaches them) to 1; the particles
start from `lpt_order` LPT at the first step.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fmt_cosmo import Planck18, comoving_distance, growth_table, scale_factor_of_distance
from fmt_dynamics import LightconeSpec, lightcone, lpt
from fmt_fields import linear_field

from .born import _check_nside, born_convergence, check_field_fits
from .visibility import check_observer, visibility_mask, visible_pixels

__all__ = ["make_full_field_model"]


def make_full_field_model(
    *,
    box_shape: Any,
    box_size: Any,
    max_redshift: float,
    geometry: str = "flat",
    field_size: float | None = None,
    field_npix: int | None = None,
    density_plane_width: float | None = None,
    density_plane_npix: int | None = None,
    nside: int | None = None,
    observer: Any = None,
    min_distance: float = 0.0,
    replicas: int | None = None,
    scale_factors: Any = None,
    n_steps: int = 10,
    a_init: float | None = None,
    lpt_order: int = 2,
    solver: Any = "fastpm",
    adjoint: Any = "checkpointed",
    fiducial: Any = None,
    density: str = "mean",
    interpolation: str = "bilinear",
    deconvolve: bool = False,
    randomize_replicas: bool = True,
    replica_seed: int = 0,
    shell_assignment: str = "nearest",
    growth_a_min: float | None = None,
    growth_num: int | None = None,
):
    """Build `forward_model(cosmo, nz, white_noise) -> (kappa_maps, lightcone, initial_field)`.

    Args:
        box_shape: mesh cells per axis (one int or three); the white noise has this shape.
        box_size: box side(s), Mpc/h.
        max_redshift: redshift of the far edge of the last shell.
        geometry: `"flat"` (line of sight +z, square field) or `"spherical"` (HEALPix).
        field_size: flat, side of the field in degrees.
        field_npix: flat, pixels per side of the κ maps.
        density_plane_width: shell width in Mpc/h (default: the box side along z / 4).
        density_plane_npix: flat, pixels per side of the density planes (default: the
            mesh's transverse cells).
        nside: spherical, HEALPix resolution (power of two).
        observer: position in box units (default (0.5, 0.5, 0) flat, box centre spherical).
        min_distance: inner edge of the first shell, Mpc/h.
        replicas: periodic copies of the box allowed (flat: along +z; spherical: on each
            side, defining the visibility mask). Default: the fewest that hold all shells.
        scale_factors: explicit step boundaries (increasing, ending at 1); overrides
            `n_steps` and `a_init`.
        n_steps: number of PM steps (if `scale_factors` is None).
        a_init: first scale factor (LPT); default 0.9 a(χ_max).
        lpt_order: 1 or 2.
        solver, adjoint: passed to `fmt_dynamics.nbody` (e.g. "fastpm"/"leapfrog",
            "checkpointed"/"reversible"/"backsolve").
        fiducial: concrete cosmology converting `max_redshift` to a distance (default
            Planck18).
        density: shell contrast convention of `born_convergence`.
        interpolation, deconvolve: flat plane sampling of `born_convergence`.
        randomize_replicas: give every periodic copy of the box its own random
            rotation/reflection and translation (`fmt_dynamics.LightconeSpec`), so that the
            copies met along the line of sight are uncorrelated (default True: with the
            plain periodic tiling, shells one box length apart repeat the same structures
            and κ has excess power at low ℓ). No effect when the shells fit in the box.
        replica_seed: seed of the default replica transforms; `forward_model(...,
            replica_key=key)` draws them from `key` instead (one per realisation).
        shell_assignment: `"nearest"` (default) or `"linear"`: how a particle is shared
            between shells (`fmt_dynamics.LightconeSpec`); `"linear"` makes κ continuous in
            the initial field, which Hamiltonian Monte Carlo needs.
        growth_a_min, growth_num: first node and node count of the one
            `fmt_cosmo.growth_table` that LPT and the PM steps share (default: fmt-cosmo's,
            1e-6 and 512). Reverse-mode differentiation through the table's ODE dominates
            the gradient of small models on CPU (~20 ms for the default table); e.g.
            `growth_a_min=1e-3, growth_num=64` costs ~6x less and changes D1 and f by
            < 1e-5 (relative) for a in [0.1, 1].

    Returns:
        `forward_model(cosmo, nz, white_noise, replica_key=None)` returning κ of shape
        (n_bins, field_npix, field_npix) (flat) or (n_bins, n_visible) (spherical, visible
        pixels in increasing RING order; `forward_model.mask` is the visibility mask), the
        `Lightcone` and the linear density at a = 1. Attributes `spec`, `scale_factors`,
        `mask` (spherical) and `pixels` (spherical) are attached to the function.

    Raises:
        ValueError: naming the argument: unknown geometry, `nside` not a power of two,
            observer outside the box, a field larger than the box allows, too few steps.
    """
    if geometry not in ("flat", "spherical"):
        raise ValueError(f"geometry must be 'flat' or 'spherical', got {geometry!r}")
    mesh = tuple(int(n) for n in np.broadcast_to(np.asarray(box_shape), (3,)))
    box = tuple(float(b) for b in np.broadcast_to(np.asarray(box_size, dtype=float), (3,)))
    if not all(b > 0 for b in box):
        raise ValueError(f"box_size must be positive, got {box_size!r}")
    if observer is None:
        observer = (0.5, 0.5, 0.0) if geometry == "flat" else (0.5, 0.5, 0.5)
    obs = tuple(float(o) for o in check_observer(observer))
    if not (np.isfinite(max_redshift) and max_redshift > 0):
        raise ValueError(f"max_redshift must be > 0, got {max_redshift!r}")
    fid = Planck18() if fiducial is None else fiducial
    chi_max = float(comoving_distance(fid, 1.0 / (1.0 + max_redshift)))
    width = box[2] / 4 if density_plane_width is None else float(density_plane_width)
    if not width > 0:
        raise ValueError(f"density_plane_width must be > 0, got {density_plane_width!r}")
    n_shells = max(1, math.ceil((chi_max - min_distance) / width - 1e-9))

    if geometry == "flat":
        if nside is not None:
            raise ValueError(f"nside is for geometry='spherical', got nside={nside!r}")
        if field_size is None or field_npix is None:
            raise ValueError("geometry='flat' needs field_size and field_npix")
        check_field_fits(field_size, chi_max, min(box[0], box[1]))
        need = max(0, math.ceil((chi_max + obs[2] * box[2]) / box[2] - 1 - 1e-12))
        reps = need if replicas is None else replicas
        npix = density_plane_npix if density_plane_npix is not None else mesh[0]
        spec = LightconeSpec(
            "flat",
            box,
            mesh,
            observer=obs,
            max_distance=chi_max,
            min_distance=min_distance,
            n_shells=n_shells,
            npix=npix,
            replicas=reps,
            randomize_replicas=randomize_replicas,
            replica_seed=replica_seed,
            shell_assignment=shell_assignment,
        )
        mask = pixels = None
    else:
        if field_size is not None or field_npix is not None:
            raise ValueError("field_size/field_npix are for geometry='flat'")
        if nside is None:
            raise ValueError("geometry='spherical' needs nside (a power of two)")
        nside = _check_nside(nside)
        o = np.asarray(obs) * np.asarray(box)

        def reach(r):  # distance to the nearest face of the box and r copies per side
            return min(min(oi + r * b, (r + 1) * b - oi) for oi, b in zip(o, box, strict=True))

        need = 0
        while reach(need) < chi_max:
            need += 1
        allowed = need if replicas is None else replicas
        spec = LightconeSpec(
            "spherical",
            box,
            mesh,
            observer=obs,
            max_distance=chi_max,
            min_distance=min_distance,
            n_shells=n_shells,
            nside=nside,
            replicas=need,
            randomize_replicas=randomize_replicas,
            replica_seed=replica_seed,
            shell_assignment=shell_assignment,
        )
        mask = visibility_mask(
            nside, box_size=box, observer=obs, max_distance=chi_max, replicas=allowed
        )
        if not mask.any():
            raise ValueError(f"replicas={replicas!r}: no pixel is visible up to max_redshift")
        pixels = visible_pixels(mask)

    if scale_factors is None:
        a_far = float(scale_factor_of_distance(fid, chi_max))
        a0 = 0.9 * a_far if a_init is None else float(a_init)
        if not 0 < a0 < 1:
            raise ValueError(f"a_init must be in (0, 1), got {a_init!r}")
        if not (isinstance(n_steps, int) and n_steps >= 1):
            raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
        a_steps = np.linspace(a0, 1.0, n_steps + 1)
    else:
        a_steps = np.asarray(scale_factors, dtype=float)
        if a_steps.ndim != 1 or a_steps.size < 2 or np.any(np.diff(a_steps) <= 0):
            raise ValueError("scale_factors must be 1-D, increasing, with at least 2 entries")
    steps = jnp.asarray(a_steps)
    table_options = {"a_max": max(1.0, float(a_steps[-1]))}
    if growth_a_min is not None:
        table_options["a_min"] = float(growth_a_min)
    if growth_num is not None:
        table_options["num"] = int(growth_num)
    jax.eval_shape(lambda: growth_table(fid, **table_options))  # bad options raise here
    plane_size = min(box[0], box[1])
    pix_idx = None if pixels is None else jnp.asarray(pixels)
    mask_j = None if mask is None else jnp.asarray(mask)

    def forward_model(cosmo, nz, white_noise, replica_key=None):
        if tuple(white_noise.shape) != mesh:
            raise ValueError(f"white_noise has shape {white_noise.shape}, expected {mesh}")
        field = linear_field(white_noise, cosmo, box)
        # one growth table for LPT and the PM steps (each would otherwise solve its own)
        table = growth_table(cosmo, **table_options)
        state = lpt(cosmo, field, steps[0], order=lpt_order, table=table)
        planes, _ = lightcone(
            cosmo,
            state,
            steps,
            spec,
            solver=solver,
            adjoint=adjoint,
            replica_key=replica_key,
            table=table,
        )
        if geometry == "flat":
            kappa = born_convergence(
                cosmo,
                planes,
                nz,
                field_size=field_size,
                field_npix=field_npix,
                plane_size=plane_size,
                density=density,
                interpolation=interpolation,
                deconvolve=deconvolve,
            )
        else:
            kappa = born_convergence(cosmo, planes, nz, density=density, mask=mask_j)
            kappa = kappa[:, pix_idx]
        return kappa, planes, field

    forward_model.spec = spec  # type: ignore[attr-defined]  # function attribute
    forward_model.scale_factors = a_steps  # type: ignore[attr-defined]  # function attribute
    forward_model.mask = mask  # type: ignore[attr-defined]  # function attribute
    forward_model.pixels = pixels  # type: ignore[attr-defined]  # function attribute
    return forward_model
