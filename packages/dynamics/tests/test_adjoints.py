"""Gradients of nbody: every solver × adjoint against plain autodiff, finite differences,
the jvp/vjp dot test, O(1) memory of the reversible adjoint, observers, sharding."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fmt_cosmo import Planck18
from fmt_dynamics import (
    Backsolve,
    Checkpointed,
    DiffraxODE,
    FastPM,
    LeapfrogKDK,
    Reversible,
    density_from_displacement,
    lpt,
    nbody,
)
from fmt_fields import linear_field, white_noise

N, BOX = 8, 64.0
SCALE_FACTORS = np.linspace(0.1, 1.0, 4)  # 3 steps

# Same discrete gradient computed another way: round-off only (issue: 1e-8 in float64,
# 1e-3 in float32).
GRAD_RTOL_F64 = 1e-8
GRAD_RTOL_F32 = 1e-3
# diffrax's BacksolveAdjoint solves the continuous adjoint ODE: it differs from the
# discrete gradient by the truncation error of the solve (measured with 4 substeps and 3
# intervals: 1.1e-2 for the noise gradient, 1.1e-5 for Ω_c; 3e-2 and 0.46 with 1 substep).
DIFFRAX_BACKSOLVE_RTOL = 2e-2
# Central differences in float64. CIC is piecewise linear, so the loss has kinks where a
# particle crosses a cell face: the step must be small enough that none does (at ε = 1e-4
# the difference is off by 7%, at 1e-5 to 1e-7 it agrees to ~1e-8); round-off ~1e-16/ε.
FD_EPS = 1e-6
FD_RTOL = 1e-6
DOT_RTOL = 1e-10
SHARDED_RTOL = 1e-5

# 4 Tsit5 steps per interval: diffrax's continuous (backsolve) adjoint needs them to come
# near the discrete gradient (the CIC force is only piecewise smooth).
SOLVERS = {"fastpm": FastPM(), "leapfrog": LeapfrogKDK(), "diffrax": DiffraxODE(substeps=4)}
# Checkpointed(checkpoints=N) segments the step loop the same way for every solver; it is
# tested once (compiles dominate the runtime on small CPUs).
CASES = [
    ("fastpm", Checkpointed(checkpoints=2)),
    ("fastpm", Reversible()),
    ("fastpm", Reversible(anchors=1)),
    ("fastpm", Backsolve()),
    ("leapfrog", Reversible()),
    ("leapfrog", Backsolve()),
    ("diffrax", Backsolve()),
]


def power(k):
    return 2.0e4 * (k / 0.02) / (1.0 + (k / 0.02) ** 2.5)


def make_loss(solver, adjoint, a=SCALE_FACTORS):
    def loss(noise, omega_c):
        cosmo = Planck18(Omega_c=omega_c)
        dx, p = lpt(cosmo, linear_field(noise, power, BOX), a[0], order=2)
        dx, p = dx.astype(noise.dtype), p.astype(noise.dtype)
        out = nbody(cosmo, (dx, p), a, solver=solver, adjoint=adjoint).state
        delta = density_from_displacement(out.displacement)
        return jnp.sum(delta**2) + 1e-3 * jnp.sum(out.momentum**2)

    return loss


def rel(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


@pytest.fixture(scope="module")
def noise():
    return white_noise(jax.random.key(3), (N, N, N))


@pytest.fixture(scope="module")
def omega_c():
    return jnp.asarray(Planck18().Omega_c)


_cache = {}


def gradient(name, adjoint, noise, omega_c, dtype):
    key = (name, adjoint, dtype)
    if key not in _cache:
        f = jax.jit(jax.value_and_grad(make_loss(SOLVERS[name], adjoint), argnums=(0, 1)))
        _cache[key] = f(noise.astype(dtype), omega_c)
    return _cache[key]


@pytest.mark.parametrize(("name", "adjoint"), CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_gradients_match_checkpointed_float64(noise, omega_c, name, adjoint):
    v_ref, (g_ref, o_ref) = gradient(name, Checkpointed(), noise, omega_c, "float64")
    v, (g, o) = gradient(name, adjoint, noise, omega_c, "float64")
    tol = DIFFRAX_BACKSOLVE_RTOL if (name, adjoint) == ("diffrax", Backsolve()) else GRAD_RTOL_F64
    np.testing.assert_allclose(v, v_ref, rtol=1e-12)
    assert rel(g, g_ref) < tol and rel(o, o_ref) < tol, (rel(g, g_ref), rel(o, o_ref))


F32_CASES = [("fastpm", Reversible()), ("fastpm", Backsolve())]


@pytest.mark.parametrize(("name", "adjoint"), F32_CASES, ids=[f"{n}-{a}" for n, a in F32_CASES])
def test_gradients_match_checkpointed_float32(noise, omega_c, name, adjoint):
    _, (g_ref, o_ref) = gradient(name, Checkpointed(), noise, omega_c, "float32")
    _, (g, o) = gradient(name, adjoint, noise, omega_c, "float32")
    assert g.dtype == jnp.float32
    assert rel(g, g_ref) < GRAD_RTOL_F32 and rel(o, o_ref) < GRAD_RTOL_F32


@pytest.mark.parametrize("name", list(SOLVERS))
def test_gradient_matches_finite_differences(noise, omega_c, name):
    loss = jax.jit(make_loss(SOLVERS[name], Checkpointed()))
    _, (g, o) = gradient(name, Checkpointed(), noise, omega_c, "float64")
    v = jax.random.normal(jax.random.key(7), noise.shape)
    fd = (loss(noise + FD_EPS * v, omega_c) - loss(noise - FD_EPS * v, omega_c)) / (2 * FD_EPS)
    np.testing.assert_allclose(jnp.vdot(g, v), fd, rtol=FD_RTOL)
    eps = FD_EPS * omega_c
    fd_o = (loss(noise, omega_c + eps) - loss(noise, omega_c - eps)) / (2 * eps)
    np.testing.assert_allclose(o, fd_o, rtol=FD_RTOL)


@pytest.mark.parametrize(("name", "adjoint"), CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_jvp_dot_vjp(noise, omega_c, name, adjoint):
    """jvp (forward mode through plain autodiff) · v == v · vjp (the adjoint under test)."""
    solver = SOLVERS[name]
    if name == "diffrax":
        solver = DiffraxODE(substeps=4, ode_adjoint=diffrax.ForwardMode())
    key = ("jvp", name)
    if key not in _cache:
        loss = make_loss(solver, Checkpointed())
        v = jax.random.normal(jax.random.key(8), noise.shape)
        _cache[key] = (v, jax.jit(lambda n, o: jax.jvp(loss, (n, o), (v, 0.3))[1])(noise, omega_c))
    v, jvp = _cache[key]
    _, (g, o) = gradient(name, adjoint, noise, omega_c, "float64")
    tol = DIFFRAX_BACKSOLVE_RTOL if (name, adjoint) == ("diffrax", Backsolve()) else DOT_RTOL
    np.testing.assert_allclose(jnp.vdot(g, v) + 0.3 * o, jvp, rtol=tol)


def _temp_bytes(adjoint, n_steps):
    a = np.linspace(0.1, 1.0, n_steps + 1)
    f = jax.jit(jax.grad(make_loss(FastPM(), adjoint, a)))
    x = jnp.zeros((N, N, N))
    return f.lower(x, 0.26).compile().memory_analysis().temp_size_in_bytes


def test_reversible_memory_is_independent_of_steps():
    rev10, rev40 = _temp_bytes(Reversible(), 10), _temp_bytes(Reversible(), 40)
    ck10, ck40 = _temp_bytes(Checkpointed(), 10), _temp_bytes(Checkpointed(), 40)
    state_bytes = N**3 * 3 * 8
    # equal up to the scale-factor vectors (a few bytes per step), far below one state
    assert abs(rev40 - rev10) < state_bytes, (rev10, rev40)
    # plain autodiff stores at least one state per step: 30 more steps, ≥ 30 more states
    assert ck40 - ck10 >= 30 * state_bytes, (ck10, ck40)


def test_observer_gradients_under_every_adjoint(noise, omega_c):
    """An observer that accumulates a weighted density per step (lightcone-like)."""

    def observer(carry, before, after, a_from, a_to):
        delta = density_from_displacement(after.displacement)
        return carry + (a_to - a_from) * delta**2

    def run(adjoint):
        def loss(noise, omega_c):
            cosmo = Planck18(Omega_c=omega_c)
            dx, p = lpt(cosmo, linear_field(noise, power, BOX), 0.1, order=1)
            out = nbody(
                cosmo,
                (dx, p),
                SCALE_FACTORS,
                adjoint=adjoint,
                observer=observer,
                observer_init=jnp.zeros((N, N, N)),
            )
            return jnp.sum(out.observed)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(noise, omega_c)

    g_ref, o_ref = run(Checkpointed())
    for adjoint in (Reversible(),):
        g, o = run(adjoint)
        assert rel(g, g_ref) < GRAD_RTOL_F64 and rel(o, o_ref) < GRAD_RTOL_F64


def _grids():
    n = jax.device_count()
    if n == 1:
        return [(1, 1)]
    if n == 2:
        return [(2, 1), (1, 2)]
    if n >= 8:
        return [(2, 4), (8, 1)]
    return [(n, 1)]


GRIDS = _grids()


@pytest.mark.multidevice
@pytest.mark.parametrize("grid", GRIDS, ids=[f"{a}x{b}" for a, b in GRIDS])
@pytest.mark.parametrize("adjoint", [Reversible(), Checkpointed()], ids=["reversible", "ckpt"])
def test_sharded_equals_single_device(grid, adjoint):
    n = 16
    mesh = jax.make_mesh(grid, ("x", "y"), devices=jax.devices()[: grid[0] * grid[1]])
    sharding = NamedSharding(mesh, P("x", "y"))
    key = jax.random.key(5)
    noise1 = white_noise(key, (n, n, n), dtype=jnp.float32)
    noise_s = white_noise(key, (n, n, n), dtype=jnp.float32, sharding=sharding)

    def loss(noise, omega_c):
        cosmo = Planck18(Omega_c=omega_c)
        dx, p = lpt(cosmo, linear_field(noise, power, 128.0), 0.1, order=1)
        out = nbody(cosmo, (dx, p), SCALE_FACTORS, adjoint=adjoint).state
        delta = density_from_displacement(out.displacement)
        return jnp.sum(delta**2), out.displacement

    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (v1, x1), (g1, o1) = f(noise1, 0.26)
    (vs, xs), (gs, os_) = f(noise_s, 0.26)
    np.testing.assert_allclose(vs, v1, rtol=SHARDED_RTOL)
    assert rel(xs, x1) < SHARDED_RTOL and rel(gs, g1) < SHARDED_RTOL
    np.testing.assert_allclose(os_, o1, rtol=SHARDED_RTOL)
