"""Adjoint strategies: what the N-body integration keeps for the backward pass.

- `Checkpointed(checkpoints=None)`: plain reverse-mode autodiff through `lax.scan`; stores
  every step, or with `checkpoints=N` only N segment boundaries (each segment is a
  `jax.checkpoint`ed scan recomputed during the backward pass). Memory grows with the number
  of steps (or N plus one segment). Supports forward mode (`jax.jvp`).
- `Reversible(anchors=0)`: a `jax.custom_vjp` over the whole integration (Li et al. 2022,
  pmwd). The forward pass keeps only the final state; the backward pass reconstructs the
  states by running the solver's exact inverse step (`reverse`) and, step by step, pulls the
  cotangents back through the vjp of one step. Memory is independent of the number of
  steps. In float32 the reconstruction drifts from the forward trajectory (round-off is not
  reversible); `anchors=K` stores K evenly spaced states in the forward pass and re-anchors
  the backward reconstruction there (memory K states, still independent of the steps).
- `Backsolve()`: the continuous adjoint. For the diffrax path, diffrax's
  `BacksolveAdjoint` inside each interval. For the kick-drift-kick solvers, the adjoint
  equations of the equations of motion,

      dλ_x/da = −(∂F/∂x)ᵀ λ_p / (a² E),   dλ_p/da = −λ_x / (a³ E),
      dθ̄/da = −λ_p · ∂F/∂θ / (a² E) − (terms of the prefactors),

  integrated backwards in a with the same kick-drift-kick splitting and factors, alongside
  the state reconstructed by the inverse step. Written out explicitly here (one force vjp
  per kick), not obtained by differentiating the step. Because the splitting is symplectic
  (a composition of shears), this discretisation of the continuous adjoint coincides with
  the exact discrete adjoint (Sanz-Serna 2016, SIAM Review 58, 3), so its gradients equal
  the checkpointed ones to round-off; it costs one force vjp more per step than
  `Reversible` (which reuses the carried force) and has the same memory.

Per-step observer (`nbody(..., observer=...)`): a pure function
`observer(carry, state_before, state_after, a_from, a_to) -> carry` folded through the
integration. Under `Reversible` and `Backsolve` its vjp is evaluated at the final carry
(intermediate carries are not stored), so the observer must be affine in the parts of the
carry it updates (adding to or overwriting slots, e.g. painting lightcone planes); parts it
reads but never changes (parameters) may enter nonlinearly. Values the observer needs
gradients for (e.g. distances that depend on the cosmology) belong in its carry, not in a
closure: the `custom_vjp` cannot differentiate closed-over tracers.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ._fourier import is_split, sharding
from .solvers import AbstractSolver, DiffraxODE, _as, _KickDriftKick

__all__ = ["AbstractAdjoint", "Backsolve", "Checkpointed", "Reversible"]


class AbstractAdjoint(eqx.Module):
    """How gradients of `nbody` are computed (see the module docstring)."""


class Checkpointed(AbstractAdjoint):
    """Plain autodiff through the step loop (`lax.scan`).

    Args:
        checkpoints: `None` stores every step; an integer N ≥ 1 splits the steps into N
            segments and stores only their boundaries (`jax.checkpoint`), recomputing one
            segment at a time in the backward pass.
    """

    checkpoints: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.checkpoints is not None and not (
            isinstance(self.checkpoints, int) and self.checkpoints >= 1
        ):
            raise ValueError(
                f"checkpoints must be None or an integer >= 1, got {self.checkpoints!r}"
            )


class Reversible(AbstractAdjoint):
    """Reverse-time adjoint with O(1) memory in the number of steps (Li et al. 2022, pmwd).

    Args:
        anchors: number of states stored evenly along the forward pass to re-anchor the
            backward reconstruction (0: none, pure reversibility). A remedy for float32
            round-off drift; memory grows with `anchors`, not with the number of steps.
    """

    anchors: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if not (isinstance(self.anchors, int) and self.anchors >= 0):
            raise ValueError(f"anchors must be an integer >= 0, got {self.anchors!r}")


class Backsolve(AbstractAdjoint):
    """Continuous adjoint integrated backwards in time (see the module docstring)."""


# ----------------------------------------------------------------------------------------
# Integration drivers. `observe(carry, i, before, after, a_from, a_to) -> carry` is the
# internal observer (user observer + saving), `i` the step index.


def _zeros_like_tree(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


def integrate_checkpointed(adjoint, solver, force, observe, cosmo, table, state0, carry0, a):
    """Forward integration differentiated by plain autodiff (see `Checkpointed`)."""
    n_steps = a.shape[0] - 1
    s0 = solver.init(cosmo, state0, a[0], force=force, table=table)

    def body(c, i):
        s, carry = c
        s1 = solver.step(s, a[i], a[i + 1], cosmo=cosmo, force=force, table=table)
        carry = observe(carry, i, solver.particles(s), solver.particles(s1), a[i], a[i + 1])
        return (s1, carry), None

    c = (s0, carry0)
    if adjoint.checkpoints is None:
        c, _ = jax.lax.scan(body, c, jnp.arange(n_steps))
    else:
        for seg in np.array_split(np.arange(n_steps), min(adjoint.checkpoints, n_steps)):
            seg = jnp.asarray(seg)
            c = jax.checkpoint(lambda c, seg=seg: jax.lax.scan(body, c, seg)[0])(c)
    s, carry = c
    return solver.particles(s), carry


def _stacked_zeros(v, n: int):
    """(n, *v.shape) zeros split like `v` on its axes. With explicit-axis sharding types a
    replicated buffer rejects writing a split state into it (`ShardingTypeError`); the
    sharding is set explicitly because `zeros_like` does not carry it on every jax."""
    zeros = jnp.zeros((n, *v.shape), v.dtype)
    if not is_split(v):
        return zeros
    split = sharding(v)
    return jax.sharding.reshard(zeros, NamedSharding(split.mesh, P(None, *split.spec)))


def _anchor_steps(n_steps: int, anchors: int) -> np.ndarray:
    """Step indices (1 .. n_steps-1) whose states are stored to re-anchor the backward pass."""
    if anchors <= 0 or n_steps < 2:
        return np.zeros((0,), dtype=np.int32)
    idx = np.unique(np.round(np.linspace(0, n_steps, anchors + 2)[1:-1]).astype(np.int32))
    return idx[(idx > 0) & (idx < n_steps)]


def _kdk_backsolve_step(solver, s0, s1, lam1, a_from, a_to, cosmo, force, table):
    """Adjoint of one kick-drift-kick step, written as the discretised adjoint ODE.

    Given the states before (`s0`, reconstructed) and after (`s1`) the step and the adjoint
    (λ_x, λ_p) at a_to, integrate the adjoint equations back to a_from with the step's
    kick-drift-kick splitting, in reverse order of the sub-steps:

        closing kick  p⁺ = p½ + K₂(θ) F(x₁, θ):  λ_x += K₂ (∂F/∂x)ᵀ λ_p,  θ̄ += ∂(K₂F)/∂θ · λ_p
        drift         x₁ = x₀ + D(θ) p½:          λ_p += D λ_x,            θ̄ += ∂D/∂θ · (p½·λ_x)
        opening kick  p½ = p₀ + K₁(θ) F(x₀, θ):  λ_x += K₁ (∂F/∂x)ᵀ λ_p,  θ̄ += ∂(K₁F)/∂θ · λ_p

    Returns the adjoint at a_from (shaped like the solver state, zero force slot) and the
    cotangents of (cosmo, table).
    """
    a_half = 0.5 * (a_from + a_to)
    x0, x1, p1 = s0[0], s1[0], s1[1]
    lam_x, lam_p = lam1[0], lam1[1]

    def kicked(x, c, t, a_i, a_c, a_f):
        return _as(solver.kick_factor(c, t, a_i, a_c, a_f), x) * force(x, c)

    # closing kick at x1
    f1, vjp_k2 = jax.vjp(lambda x, c, t: kicked(x, c, t, a_half, a_to, a_to), x1, cosmo, table)
    gx, g_cosmo, g_table = vjp_k2(lam_p)
    lam_x = lam_x + gx
    p_half = p1 - f1
    # drift
    _, vjp_d = jax.vjp(
        lambda c, t: _as(solver.drift_factor(c, t, a_from, a_half, a_to), x0) * p_half,
        cosmo,
        table,
    )
    gc, gt = vjp_d(lam_x)
    d = _as(solver.drift_factor(cosmo, table, a_from, a_half, a_to), x0)
    lam_p = lam_p + d * lam_x
    # opening kick at x0
    _, vjp_k1 = jax.vjp(lambda x, c, t: kicked(x, c, t, a_from, a_from, a_half), x0, cosmo, table)
    gx0, gc1, gt1 = vjp_k1(lam_p)
    lam_x = lam_x + gx0
    lam0 = type(lam1)(lam_x, lam_p, *(jnp.zeros_like(v) for v in lam1[2:]))
    return lam0, _add(_add(g_cosmo, gc), gc1), _add(_add(g_table, gt), gt1)


def integrate_reconstructing(adjoint, solver, force, observe, cosmo, table, state0, carry0, a):
    """Forward integration keeping only the final state; backward by reconstruction.

    Used for `Reversible` (vjp of each step) and `Backsolve` with a kick-drift-kick solver
    (explicit adjoint equations, `_kdk_backsolve_step`). Both reconstruct the states with
    `solver.reverse`; `Reversible(anchors=K)` resets the reconstruction to K stored states.
    """
    n_steps = a.shape[0] - 1
    anchor_steps = _anchor_steps(n_steps, getattr(adjoint, "anchors", 0))
    n_anchors = anchor_steps.shape[0]
    backsolve = isinstance(adjoint, Backsolve)

    def kw(c, t):
        return dict(cosmo=c, force=force, table=t)

    def forward(cosmo, table, state0, carry0, a):
        s0 = solver.init(cosmo, state0, a[0], force=force, table=table)
        buf0 = jax.tree.map(lambda v: _stacked_zeros(v, n_anchors), s0)
        slots = jnp.asarray(anchor_steps)

        def body(c, i):
            s, carry, buf = c
            s1 = solver.step(s, a[i], a[i + 1], **kw(cosmo, table))
            carry = observe(carry, i, solver.particles(s), solver.particles(s1), a[i], a[i + 1])
            if n_anchors:
                hit = slots == i + 1
                slot = jnp.argmax(hit)
                buf = jax.tree.map(
                    lambda b, v: lax.dynamic_update_index_in_dim(
                        b,
                        jnp.where(hit.any(), v, lax.dynamic_index_in_dim(b, slot, 0, False)),
                        slot,
                        0,
                    ),
                    buf,
                    s1,
                )
            return (s1, carry, buf), None

        (s_end, carry_end, buf), _ = jax.lax.scan(body, (s0, carry0, buf0), jnp.arange(n_steps))
        return s_end, carry_end, buf

    @jax.custom_vjp
    def run(cosmo, table, state0, carry0, a):
        s_end, carry_end, _ = forward(cosmo, table, state0, carry0, a)
        return solver.particles(s_end), carry_end

    def run_fwd(cosmo, table, state0, carry0, a):
        s_end, carry_end, buf = forward(cosmo, table, state0, carry0, a)
        out = (solver.particles(s_end), carry_end)
        return out, (s_end, carry_end, buf, cosmo, table, state0, a)

    def run_bwd(res, cts):
        s_end, carry_end, buf, cosmo, table, state0, a = res
        ct_particles, ct_carry = cts
        lam = _zeros_like_tree(s_end)
        lam = type(s_end)(ct_particles[0], ct_particles[1], *lam[2:])
        if not backsolve and not n_anchors and isinstance(solver, _KickDriftKick):
            return _kdk_reversible_bwd(
                solver, force, observe, cosmo, table, s_end, carry_end, state0, a, lam, ct_carry
            )
        slots = jnp.asarray(anchor_steps)

        def body(c, i):
            s1, lam1, ct_carry, g_cosmo, g_table = c
            s0 = solver.reverse(s1, a[i], a[i + 1], **kw(cosmo, table))
            if n_anchors:
                hit = slots == i
                stored = jax.tree.map(
                    lambda b: lax.dynamic_index_in_dim(b, jnp.argmax(hit), 0, False), buf
                )
                s0 = jax.tree.map(lambda r, st: jnp.where(hit.any(), st, r), s0, stored)
            # Observer: pull its carry cotangent back, inject its state cotangents.
            _, vjp_obs = jax.vjp(
                lambda cr, pb, pa: observe(cr, i, pb, pa, a[i], a[i + 1]),
                carry_end,
                solver.particles(s0),
                solver.particles(s1),
            )
            ct_carry, g_before, g_after = vjp_obs(ct_carry)
            lam1 = type(lam1)(lam1[0] + g_after[0], lam1[1] + g_after[1], *lam1[2:])
            if backsolve:
                lam0, gc, gt = _kdk_backsolve_step(
                    solver, s0, s1, lam1, a[i], a[i + 1], cosmo, force, table
                )
            else:
                _, vjp_step = jax.vjp(
                    lambda s, c, t: solver.step(s, a[i], a[i + 1], **kw(c, t)), s0, cosmo, table
                )
                lam0, gc, gt = vjp_step(lam1)
            lam0 = type(lam0)(lam0[0] + g_before[0], lam0[1] + g_before[1], *lam0[2:])
            return (s0, lam0, ct_carry, _add(g_cosmo, gc), _add(g_table, gt)), None

        init = (s_end, lam, ct_carry, _zeros_like_tree(cosmo), _zeros_like_tree(table))
        (_, lam0, ct_carry0, g_cosmo, g_table), _ = jax.lax.scan(
            body, init, jnp.arange(n_steps - 1, -1, -1)
        )
        _, vjp_init = jax.vjp(
            lambda st, c, t: solver.init(c, st, a[0], force=force, table=t), state0, cosmo, table
        )
        g_state0, gc, gt = vjp_init(lam0)
        return (
            _add(g_cosmo, gc),
            _add(g_table, gt),
            g_state0,
            ct_carry0,
            jnp.zeros_like(a),
        )

    run.defvjp(run_fwd, run_bwd)
    return run(cosmo, table, state0, carry0, a)


def _kdk_reversible_bwd(
    solver, force, observe, cosmo, table, s_end, carry_end, state0, a, lam, ct_carry
):
    """Backward pass of `Reversible` for kick-drift-kick solvers: one force evaluation and
    one force vjp per step.

    The generic path (vjp of `solver.step` after `solver.reverse`) evaluates the force three
    times per step: at x_i in `reverse`, and at x_{i+1} twice inside the step's vjp (primal
    and linearisation). Here the step's adjoint is written out,

        p_h = p_i + K1 F(x_i),  x_{i+1} = x_i + D p_h,  p_{i+1} = p_h + K2 F(x_{i+1}):
        λ_x(i+1) += J(x_{i+1})ᵀ (λ_F(i+1) + K2 λ_p(i+1)),  λ_p(h) = λ_p(i+1) + D λ_x(i+1),
        λ_x(i) = λ_x(i+1),  λ_p(i) = λ_p(h),  λ_F(i) = K1 λ_p(h),

    and the force's vjp at x_i is built where `reverse` evaluates F(x_i) (`jax.vjp`), its
    residuals carried to the next (earlier) step, where J(x_i)ᵀ is applied. Gradients of
    the scalar factors K1, D, K2 come from the vjp of the three factor-vector products.
    Equal to the generic path to round-off (tests compare with `Checkpointed`).
    """
    n_steps = a.shape[0] - 1

    def factors(c, t, a0, a1):
        ah = 0.5 * (a0 + a1)
        return (
            solver.kick_factor(c, t, ah, a1, a1),
            solver.drift_factor(c, t, a0, ah, a1),
            solver.kick_factor(c, t, a0, a0, ah),
        )

    x_end = s_end[0]
    _, vjp_end = jax.vjp(force, x_end, cosmo)
    leaves_end, treedef = jax.tree.flatten(vjp_end)
    # Residuals that are the displacement itself (JAX forwards inputs as residuals) are
    # not carried: the state holds it already, and a duplicate carry costs a copy per step.
    is_x = tuple(leaf is x_end for leaf in leaves_end)

    def strip(leaves, x):
        if tuple(leaf is x for leaf in leaves) != is_x:  # pragma: no cover - defensive
            raise RuntimeError("the force's vjp residuals changed structure between steps")
        return [leaf for leaf, dup in zip(leaves, is_x, strict=True) if not dup]

    def restore(kept, x):
        kept = iter(kept)
        return jax.tree.unflatten(treedef, [x if dup else next(kept) for dup in is_x])

    def body(c, i):
        s1, res1, lam1, ct_carry, g_cosmo, g_table = c
        x1, p1, f1 = s1
        k2, d, k1 = factors(cosmo, table, a[i], a[i + 1])
        # Reconstruct the state at a_i (the inverse step, as `solver.reverse`).
        p_h = p1 - _as(k2, p1) * f1
        x0 = x1 - _as(d, x1) * p_h
        f0, vjp0 = jax.vjp(force, x0, cosmo)
        p0 = p_h - _as(k1, p_h) * f0
        s0 = type(s1)(x0, p0, f0)
        # Observer: pull its carry cotangent back, inject its state cotangents.
        _, vjp_obs = jax.vjp(
            lambda cr, pb, pa: observe(cr, i, pb, pa, a[i], a[i + 1]),
            carry_end,
            solver.particles(s0),
            solver.particles(s1),
        )
        ct_carry, g_before, g_after = vjp_obs(ct_carry)
        lam_x1 = lam1[0] + g_after[0]
        lam_p1 = lam1[1] + g_after[1]
        # Adjoint of the closing kick, the drift and the opening kick.
        vjp1 = restore(res1, x1)
        gx1, gc_force = vjp1(lam1[2] + _as(k2, lam_p1) * lam_p1)
        lam_x1 = lam_x1 + gx1
        lam_ph = lam_p1 + _as(d, lam_x1) * lam_x1
        # Factor gradients: the vjp of (K2 F1, D p_h, K1 F0) in (cosmo, table) at fixed
        # vectors (JAX's transpose does the sums ⟨F, λ_p⟩, ⟨p_h, λ_x⟩ with any sharding).
        _, vjp_factors = jax.vjp(
            lambda c_, t_: tuple(
                _as(k, v) * v
                for k, v in zip(factors(c_, t_, a[i], a[i + 1]), (f1, p_h, f0), strict=True)
            ),
            cosmo,
            table,
        )
        gc_fac, gt_fac = vjp_factors((lam_p1, lam_x1, lam_ph))
        lam0 = type(s1)(lam_x1 + g_before[0], lam_ph + g_before[1], _as(k1, lam_ph) * lam_ph)
        g_cosmo = _add(_add(g_cosmo, gc_force), gc_fac)
        g_table = _add(g_table, gt_fac)
        leaves0 = strip(jax.tree.leaves(vjp0), x0)
        return (s0, leaves0, lam0, ct_carry, g_cosmo, g_table), None

    init = (
        s_end,
        strip(leaves_end, x_end),
        lam,
        ct_carry,
        _zeros_like_tree(cosmo),
        _zeros_like_tree(table),
    )
    (s0, leaves0, lam0, ct_carry0, g_cosmo, g_table), _ = jax.lax.scan(
        body, init, jnp.arange(n_steps - 1, -1, -1)
    )
    # The initial state: (x, p) -> (x, p, F(x)); J(x_0)ᵀ from the carried residuals.
    gx0, gc_force = restore(leaves0, s0[0])(lam0[2])
    g_state0 = type(state0)(lam0[0] + gx0.astype(lam0[0].dtype), lam0[1])
    return (
        _add(g_cosmo, gc_force),
        g_table,
        g_state0,
        ct_carry0,
        jnp.zeros_like(a),
    )


def supports(adjoint: AbstractAdjoint, solver: AbstractSolver) -> bool:
    """Whether `adjoint` can differentiate `solver` (see `nbody` for the error raised)."""
    if isinstance(adjoint, Checkpointed):
        return True
    if isinstance(adjoint, Reversible):
        return bool(getattr(solver, "reversible", False))
    if isinstance(adjoint, Backsolve):
        return isinstance(solver, _KickDriftKick | DiffraxODE)
    return False
