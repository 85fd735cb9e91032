"""Time integrators for the particle-mesh equations of motion, behind one interface.

State and units (shared with the PM core): particles sit on the Lagrangian lattice of the
mesh; the state holds their displacements `x` from their lattice sites (grid units) and
momenta `p`, both of shape `mesh_shape + (3,)` and sharded like the mesh. The time variable
is the scale factor `a`, and the equations of motion are

    dx/da = p / (a³ E(a)),        dp/da = F(x) / (a² E(a)),        F = 3/2 Ω_m ∇∇⁻²(−δ),

so that the growing mode of linear theory has x = D1 ψ and p = a³ E dD1/da ψ (what LPT
returns).

A solver is a static configuration (an `eqx.Module` whose fields are all static) with

- `init(cosmo, state, a, *, force, table) -> solver_state`: the integrator's state at `a`
  (the particles plus whatever the scheme carries between steps, e.g. the force);
- `step(solver_state, a_from, a_to, *, cosmo, force, table) -> solver_state`;
- `reverse(solver_state, a_from, a_to, *, cosmo, force, table) -> solver_state`, only for
  time-reversible schemes (`reversible = True`): the exact algebraic inverse of `step`
  (state at `a_to` in, state at `a_from` out), used by the reversible adjoint;
- `particles(solver_state) -> ParticleState`.

`force(displacement, cosmo) -> F` is the force model (see `PMForce`), `table` the fmt-cosmo
growth table built once per `nbody` call. The adjoint strategies in `adjoints.py` only use
this interface.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from fmt_cosmo import E, fastpm_drift_factor, fastpm_kick_factor

__all__ = [
    "AbstractSolver",
    "DiffraxODE",
    "FastPM",
    "KDKState",
    "LeapfrogKDK",
    "PMForce",
    "ParticleState",
]


class ParticleState(NamedTuple):
    """Particles on the Lagrangian lattice.

    Attributes:
        displacement: displacement from the lattice site, grid units,
            shape `mesh_shape + (3,)`.
        momentum: p = a³ E(a) dx/da, grid units, same shape.
    """

    displacement: Float[Array, "*mesh 3"]
    momentum: Float[Array, "*mesh 3"]


class KDKState(NamedTuple):
    """State of a kick-drift-kick integrator: the particles and the force at their positions.

    Carrying the force makes one step cost one force evaluation (the closing kick of a step
    and the opening kick of the next use the same force).
    """

    displacement: Float[Array, "*mesh 3"]
    momentum: Float[Array, "*mesh 3"]
    force: Float[Array, "*mesh 3"]


class PMForce(eqx.Module):
    """The particle-mesh force F = 3/2 Ω_m · `pm_forces(displacement)` (grid units).

    Args:
        mesh_shape: shape of the force mesh (static); `None` for the particle lattice.
        r_split: long-range smoothing scale in grid cells (0: none).
        options: further keyword arguments of `fmt_dynamics.pm_forces` as a tuple of
            (name, value) pairs (static, hashable).
    """

    mesh_shape: tuple[int, int, int] | None = eqx.field(static=True, default=None)
    r_split: float = eqx.field(static=True, default=0.0)
    options: tuple[tuple[str, Any], ...] = eqx.field(static=True, default=())

    def __call__(self, displacement: Float[Array, "*mesh 3"], cosmo) -> Float[Array, "*mesh 3"]:
        from .forces import pm_forces

        f = pm_forces(
            displacement, mesh_shape=self.mesh_shape, r_split=self.r_split, **dict(self.options)
        )
        return jnp.asarray(1.5 * cosmo.Omega_m).astype(f.dtype) * f


def _as(x, like):
    """Cast a scalar factor to the dtype of the state (float32 states stay float32)."""
    return jnp.asarray(x).astype(like.dtype)


class AbstractSolver(eqx.Module):
    """Interface of a time integrator (see the module docstring)."""

    reversible: ClassVar[bool] = False

    @abc.abstractmethod
    def init(self, cosmo, state: ParticleState, a, *, force: Callable, table) -> Any:
        """The solver state at scale factor `a` from the particles."""

    @abc.abstractmethod
    def step(self, solver_state, a_from, a_to, *, cosmo, force: Callable, table) -> Any:
        """One step from `a_from` to `a_to`."""

    def reverse(self, solver_state, a_from, a_to, *, cosmo, force: Callable, table) -> Any:
        """The inverse of `step` (only solvers with `reversible = True` have one: the
        `Reversible` adjoint checks this before calling it)."""
        raise NotImplementedError(f"{type(self).__name__} is not time-reversible")

    def particles(self, solver_state) -> ParticleState:
        return ParticleState(solver_state[0], solver_state[1])


class _KickDriftKick(AbstractSolver):
    """Kick-drift-kick with scheme-specific kick and drift factors.

    One step from a_i to a_f, with a_h = (a_i + a_f)/2:

        p ← p + K(a_i, a_i, a_h) F(x)          (half kick, force at a_i)
        x ← x + D(a_i, a_h, a_f) p             (drift, momentum at a_h)
        p ← p + K(a_h, a_f, a_f) F(x)          (half kick, force at a_f)

    where K(a_0, a_c, a_1) and D(a_0, a_c, a_1) are the kick and drift factors from a_0 to
    a_1 with the force (momentum) taken at a_c. Every sub-step is a shear, so the step is
    symplectic and `reverse` inverts it exactly in exact arithmetic.
    """

    reversible: ClassVar[bool] = True

    @abc.abstractmethod
    def kick_factor(self, cosmo, table, a0, ac, a1):
        """K(a0, ac, a1) of the class docstring."""

    @abc.abstractmethod
    def drift_factor(self, cosmo, table, a0, ac, a1):
        """D(a0, ac, a1) of the class docstring."""

    def init(self, cosmo, state, a, *, force, table) -> KDKState:
        x, p = state
        return KDKState(x, p, force(x, cosmo))

    def step(self, solver_state, a_from, a_to, *, cosmo, force, table) -> KDKState:
        x, p, f = solver_state
        a_half = 0.5 * (a_from + a_to)
        p = p + _as(self.kick_factor(cosmo, table, a_from, a_from, a_half), p) * f
        x = x + _as(self.drift_factor(cosmo, table, a_from, a_half, a_to), x) * p
        # Materialise (x, p_half) before the force: otherwise XLA recomputes p_half in
        # the closing kick, the old force stays live across the new one and the loop
        # carry needs a copy of the force every step.
        x, p = jax.lax.optimization_barrier((x, p))
        f = force(x, cosmo)
        p = p + _as(self.kick_factor(cosmo, table, a_half, a_to, a_to), p) * f
        return KDKState(x, p, f)

    def reverse(self, solver_state, a_from, a_to, *, cosmo, force, table) -> KDKState:
        x, p, f = solver_state
        a_half = 0.5 * (a_from + a_to)
        p = p - _as(self.kick_factor(cosmo, table, a_half, a_to, a_to), p) * f
        x = x - _as(self.drift_factor(cosmo, table, a_from, a_half, a_to), x) * p
        f = force(x, cosmo)
        p = p - _as(self.kick_factor(cosmo, table, a_from, a_from, a_half), p) * f
        return KDKState(x, p, f)


# Gauss-Legendre rule on [-1, 1] for the time integrals of the leapfrog prefactors.
def _gauss_legendre(order: int):
    nodes, weights = np.polynomial.legendre.leggauss(order)
    return tuple(float(n) for n in nodes), tuple(float(w) for w in weights)


class LeapfrogKDK(_KickDriftKick):
    """Symplectic leapfrog (kick-drift-kick) in the scale factor.

    The kick and drift factors are the exact time integrals of the prefactors over each
    sub-step (Quinn et al. 1997, eqs. 19-21, in the variable a):

        K(a_0, a_1) = ∫ da / (a² E(a)),      D(a_0, a_1) = ∫ da / (a³ E(a)),

    computed with a Gauss-Legendre rule of `quadrature_order` nodes (E is smooth, so 4 nodes
    are exact to round-off for the steps used in practice). Second order in the step size;
    time-reversible (`reverse`).

    Args:
        quadrature_order: number of Gauss-Legendre nodes per sub-step (static, ≥ 1).
    """

    quadrature_order: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        if not (isinstance(self.quadrature_order, int) and self.quadrature_order >= 1):
            raise ValueError(
                f"quadrature_order must be an integer >= 1, got {self.quadrature_order!r}"
            )

    def _integral(self, cosmo, a0, a1, power):
        nodes, weights = _gauss_legendre(self.quadrature_order)
        half, mid = 0.5 * (a1 - a0), 0.5 * (a1 + a0)
        total = 0.0
        for n, w in zip(nodes, weights, strict=True):
            a = mid + half * n
            total = total + w / (a**power * E(cosmo, a))
        return half * total

    def kick_factor(self, cosmo, table, a0, ac, a1):
        return self._integral(cosmo, a0, a1, 2)

    def drift_factor(self, cosmo, table, a0, ac, a1):
        return self._integral(cosmo, a0, a1, 3)


class FastPM(_KickDriftKick):
    """FastPM kick-drift-kick with growth-aware factors (Feng et al. 2016, eqs. 21-22).

    The kick and drift factors are ratios of linear growth functions from fmt-cosmo's growth
    table (`fastpm_kick_factor`, `fastpm_drift_factor`), chosen so that a particle on the
    linear growing mode is moved exactly for any step size: a single step from a = 0.1 to
    a = 1 reproduces linear growth on large scales. Second order on small scales like the
    leapfrog; time-reversible (`reverse`).
    """

    def kick_factor(self, cosmo, table, a0, ac, a1):
        return fastpm_kick_factor(cosmo, a0, ac, a1, table)

    def drift_factor(self, cosmo, table, a0, ac, a1):
        return fastpm_drift_factor(cosmo, a0, ac, a1, table)


class DiffraxODE(AbstractSolver):
    """The equations of motion as an ODE in a, integrated by any diffrax solver.

    Each step (a_from → a_to) is one `diffrax.diffeqsolve` over the interval: with the
    default constant step size, `substeps` solver steps; with an adaptive
    `stepsize_controller`, as many as it takes (bounded by `max_steps`). Not time-reversible;
    gradients use diffrax's own adjoints (chosen by `nbody` from the adjoint strategy, or
    `ode_adjoint` when given).

    Args:
        solver: a diffrax solver, e.g. `diffrax.Tsit5()` (default) or `diffrax.Dopri8()`.
        substeps: solver steps per interval with the constant step size (static, ≥ 1).
        stepsize_controller: a diffrax step-size controller; `None` for a constant step.
        max_steps: bound on the solver steps per interval (static); `None` for
            `substeps + 1` with the constant step and 4096 otherwise.
        ode_adjoint: diffrax adjoint used inside each interval; `None` lets `nbody` choose
            (`RecursiveCheckpointAdjoint` for checkpointed, `BacksolveAdjoint` for backsolve).
            Give `diffrax.ForwardMode()` to differentiate in forward mode (`jax.jvp`).
    """

    solver: Any = eqx.field(static=True, default_factory=diffrax.Tsit5)
    substeps: int = eqx.field(static=True, default=1)
    stepsize_controller: Any = eqx.field(static=True, default=None)
    max_steps: int | None = eqx.field(static=True, default=None)
    ode_adjoint: Any = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise TypeError(f"solver must be a diffrax solver, got {self.solver!r}")
        if not (isinstance(self.substeps, int) and self.substeps >= 1):
            raise ValueError(f"substeps must be an integer >= 1, got {self.substeps!r}")

    def init(self, cosmo, state, a, *, force, table) -> ParticleState:
        return ParticleState(*state)

    def vector_field(self, force: Callable):
        """The right-hand side (a, (x, p), cosmo) ↦ (dx/da, dp/da) of the equations of motion."""

        def rhs(a, y, cosmo):
            x, p = y
            e = E(cosmo, a)
            return ParticleState(
                _as(1.0 / (a**3 * e), p) * p, _as(1.0 / (a**2 * e), x) * force(x, cosmo)
            )

        return rhs

    def step(self, solver_state, a_from, a_to, *, cosmo, force, table) -> ParticleState:
        y0 = ParticleState(*solver_state)
        adaptive = self.stepsize_controller is not None
        controller = self.stepsize_controller if adaptive else diffrax.ConstantStepSize()
        max_steps = self.max_steps or (4096 if adaptive else self.substeps + 1)
        adjoint = self.ode_adjoint or diffrax.RecursiveCheckpointAdjoint()
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(self.vector_field(force)),
            self.solver,
            t0=a_from,
            t1=a_to,
            dt0=(a_to - a_from) / self.substeps,
            y0=y0,
            args=cosmo,
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=controller,
            adjoint=adjoint,
            max_steps=max_steps,
        )
        return jax.tree.map(lambda v: v[-1], sol.ys)
