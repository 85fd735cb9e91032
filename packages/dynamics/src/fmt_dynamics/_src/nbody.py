"""`nbody`: integrate particles through a list of scale factors with a solver and an adjoint."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from fmt_cosmo import growth_table

from .adjoints import (
    AbstractAdjoint,
    Backsolve,
    Checkpointed,
    Reversible,
    integrate_checkpointed,
    integrate_reconstructing,
    supports,
)
from .solvers import AbstractSolver, DiffraxODE, FastPM, LeapfrogKDK, ParticleState, PMForce

__all__ = ["NBodyResult", "nbody"]

_SOLVERS: dict[str, Callable[[], AbstractSolver]] = {
    "fastpm": FastPM,
    "leapfrog": LeapfrogKDK,
    "diffrax": DiffraxODE,
}
_ADJOINTS: dict[str, Callable[[], AbstractAdjoint]] = {
    "checkpointed": Checkpointed,
    "reversible": Reversible,
    "backsolve": Backsolve,
}


class NBodyResult(NamedTuple):
    """What `nbody` returns.

    Attributes:
        state: the particles at the last scale factor.
        saved: the particles at each of `save_at` (arrays with a leading axis of
            `len(save_at)`), or `None` without `save_at`.
        observed: the observer's final carry, or `None` without an observer.
    """

    state: ParticleState
    saved: ParticleState | None
    observed: Any


_T = TypeVar("_T")


def _resolve(
    name_or_obj: str | _T, table: dict[str, Callable[[], _T]], base: type, what: str
) -> _T:
    if isinstance(name_or_obj, str):
        if name_or_obj not in table:
            raise ValueError(f"unknown {what} {name_or_obj!r}; expected one of {sorted(table)}")
        return table[name_or_obj]()
    if not isinstance(name_or_obj, base):
        raise ValueError(
            f"{what} must be one of {sorted(table)} or a {base.__name__}, got {name_or_obj!r}"
        )
    return name_or_obj


def _check_scale_factors(scale_factors) -> jax.Array:
    a = scale_factors
    if isinstance(a, jax.core.Tracer):
        if a.ndim != 1 or a.shape[0] < 2:
            raise ValueError(f"scale_factors must be 1-D with >= 2 entries, got shape {a.shape}")
        return eqx.error_if(a, jnp.any(jnp.diff(a) <= 0), "scale_factors must increase")
    arr = np.asarray(a, dtype=float)
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"scale_factors must be 1-D with >= 2 entries, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"scale_factors must be finite and > 0, got {arr}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"scale_factors must be strictly increasing, got {arr}")
    return jnp.asarray(arr)


def _check_grid(name: str, shape, sharding) -> None:
    """Raise if `shape` is not divisible by the device grid of a `NamedSharding`."""
    if not isinstance(sharding, NamedSharding):
        return
    for axis, entry in enumerate(sharding.spec):
        names = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        n_dev = int(np.prod([sharding.mesh.shape[n] for n in names])) if names else 1
        if axis < len(shape) and shape[axis] % n_dev:
            raise ValueError(
                f"{name} axis {axis} of size {shape[axis]} is not divisible by the {n_dev} "
                f"devices of mesh axes {names} (device grid {dict(sharding.mesh.shape)}); "
                f"shape {tuple(shape)}"
            )


def _sharding_of(x):
    try:
        return jax.typeof(x).sharding
    except (AttributeError, TypeError):
        return getattr(x, "sharding", None)


def _check_state(state, mesh_shape) -> ParticleState:
    if not (isinstance(state, tuple) and len(state) == 2):
        raise ValueError(
            "initial state must be a ParticleState or a (displacement, momentum) pair, "
            f"got {type(state).__name__}"
        )
    x, p = state
    shape = jnp.shape(x)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"displacement must have shape mesh_shape + (3,), got {shape}")
    if jnp.shape(p) != shape:
        raise ValueError(f"momentum shape {jnp.shape(p)} differs from displacement {shape}")
    sharding = _sharding_of(x)
    _check_grid("displacement", shape, sharding)
    _check_grid("momentum", shape, _sharding_of(p))
    if mesh_shape is not None:
        if len(tuple(mesh_shape)) != 3:
            raise ValueError(f"mesh_shape must have 3 entries, got {mesh_shape!r}")
        _check_grid("mesh_shape", tuple(mesh_shape), sharding)
    return ParticleState(x, p)


def _save_steps(save_at, scale_factors) -> np.ndarray:
    if isinstance(save_at, jax.core.Tracer) or isinstance(scale_factors, jax.core.Tracer):
        raise ValueError("save_at and scale_factors must be concrete to use save_at")
    s = np.atleast_1d(np.asarray(save_at, dtype=float))
    a = np.asarray(scale_factors, dtype=float)
    idx = np.searchsorted(a, s)
    ok = (idx < a.size) & np.isclose(a[np.minimum(idx, a.size - 1)], s, rtol=1e-12, atol=0)
    if s.ndim != 1 or not np.all(ok):
        raise ValueError(f"save_at must be a subset of scale_factors {a}, got {save_at!r}")
    return idx.astype(np.int32)


def nbody(
    cosmo,
    state,
    scale_factors,
    *,
    solver: str | AbstractSolver = "fastpm",
    adjoint: str | AbstractAdjoint = "checkpointed",
    save_at=None,
    observer: Callable | None = None,
    observer_init: Any = None,
    force: Callable | None = None,
    mesh_shape: tuple[int, int, int] | None = None,
    r_split: float = 0.0,
    table=None,
) -> NBodyResult:
    """Integrate particles through `scale_factors` (one solver step per interval).

    The equations of motion are those of the module `solvers` (dx/da = p/(a³E),
    dp/da = F/(a²E), F = 3/2 Ω_m ∇∇⁻²(−δ) from the PM force). fmt-cosmo's growth table is
    built here once (inside the caller's `jit`) and passed to the solver. Not jitted; jit
    the caller.

    Args:
        cosmo: an `fmt_cosmo.Cosmology` (differentiable).
        state: initial `ParticleState` or `(displacement, momentum)`, each of shape
            `mesh_shape + (3,)` in grid units (e.g. from `lpt`), sharded like the mesh.
        scale_factors: 1-D, strictly increasing scale factors; the first is the time of
            `state`. Each interval is one step (the diffrax path may substep).
        solver: `"fastpm"` (Feng et al. 2016), `"leapfrog"` (kick-drift-kick), `"diffrax"`
            (`DiffraxODE()`: Tsit5, one step per interval) or a solver object.
        adjoint: `"checkpointed"`, `"reversible"` (Li et al. 2022), `"backsolve"` or an
            adjoint object (see `adjoints`).
        save_at: scale factors (a subset of `scale_factors`) at which to return the state.
        observer: `observer(carry, state_before, state_after, a_from, a_to) -> carry`, a
            pure function called after every step with the `ParticleState`s before and
            after it; its final carry is returned. Under the reversible and backsolve
            adjoints it must be affine in the carry entries it updates, and values it needs
            gradients for must be in the carry rather than closed over (see `adjoints`).
        observer_init: the initial carry of `observer` (a pytree of arrays).
        force: the force model `force(displacement, cosmo) -> F` (F including 3/2 Ω_m);
            default `PMForce(mesh_shape, r_split)`.
        mesh_shape: force mesh shape for the default force (default: the particle lattice).
        r_split: long-range smoothing scale of the default force, in cells.
        table: a precomputed `fmt_cosmo.growth_table(cosmo)` covering `scale_factors`;
            built here when `None`.

    Returns:
        `NBodyResult(state, saved, observed)`.

    Raises:
        ValueError: unknown solver or adjoint name, an adjoint the solver cannot support,
            scale factors not strictly increasing (or fewer than two), `save_at` not among
            them, state shapes inconsistent, or arrays not divisible by their device grid.

    Example:
        >>> dx, p = lpt(cosmo, delta_linear, 0.1, box_size=box)
        >>> out = nbody(cosmo, (dx, p), jnp.linspace(0.1, 1.0, 11), adjoint="reversible")
        >>> final = out.state
    """
    solver = _resolve(solver, _SOLVERS, AbstractSolver, "solver")
    adjoint = _resolve(adjoint, _ADJOINTS, AbstractAdjoint, "adjoint")
    if not supports(adjoint, solver):
        raise ValueError(
            f"adjoint {type(adjoint).__name__} does not support solver {type(solver).__name__}"
            + (" (not time-reversible)" if isinstance(adjoint, Reversible) else "")
        )
    if observer is not None and not callable(observer):
        raise ValueError(f"observer must be callable, got {observer!r}")
    a = _check_scale_factors(scale_factors)
    state = _check_state(state, mesh_shape)
    save_steps = None if save_at is None else _save_steps(save_at, scale_factors)

    if isinstance(solver, DiffraxODE) and solver.ode_adjoint is None:
        if isinstance(adjoint, Backsolve):
            solver = dataclasses.replace(solver, ode_adjoint=diffrax.BacksolveAdjoint())
    if force is None:
        force = PMForce(mesh_shape=mesh_shape, r_split=r_split)
    if table is None:
        a_max = 1.0 if isinstance(a, jax.core.Tracer) else max(1.0, float(a[-1]))
        table = growth_table(cosmo, a_max=a_max)
    a = a.astype(jnp.result_type(float))

    def observe(carry, i, before, after, a_from, a_to):
        user, saved = carry
        if observer is not None:
            user = observer(user, before, after, a_from, a_to)
        if save_steps is not None:
            hit = jnp.asarray(save_steps) == i + 1
            saved = ParticleState(
                *(
                    jnp.where(hit[:, None, None, None, None], new[None], buf)
                    for new, buf in zip(after, saved, strict=True)
                )
            )
        return user, saved

    saved0 = None
    if save_steps is not None:
        at0 = jnp.asarray(save_steps == 0)[:, None, None, None, None]
        saved0 = ParticleState(
            *(
                jnp.where(at0, v[None], jnp.zeros((len(save_steps), *v.shape), v.dtype))
                for v in state
            )
        )
    carry0 = (observer_init if observer is not None else None, saved0)

    if isinstance(solver, DiffraxODE):
        # The step loop is differentiated by plain autodiff; inside each interval diffrax's
        # own adjoint (checkpointed or backsolve) does the work.
        integrate = integrate_checkpointed
        if not isinstance(adjoint, Checkpointed):
            adjoint = Checkpointed()
    elif isinstance(adjoint, Checkpointed):
        integrate = integrate_checkpointed
    else:
        integrate = integrate_reconstructing
    final, (observed, saved) = integrate(
        adjoint, solver, force, observe, cosmo, table, state, carry0, a
    )
    return NBodyResult(ParticleState(*final), saved, observed)
