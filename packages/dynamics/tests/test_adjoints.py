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
# intervals: 1.1e-2 for the noise gradient, 2.7e-5 for Ω_c; 3e-2 and 0.46 with 1 substep;
# first-order convergence with the steps: benchmarks/diffrax_backsolve.py).
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


def make_loss(solver, adjoint, a=SCALE_FACTORS, force=None):
    def loss(noise, omega_c):
        cosmo = Planck18(Omega_c=omega_c)
        dx, p = lpt(cosmo, linear_field(noise, power, BOX), a[0], order=2)
        dx, p = dx.astype(noise.dtype), p.astype(noise.dtype)
        out = nbody(cosmo, (dx, p), a, solver=solver, adjoint=adjoint, force=force).state
        delta = density_from_displacement(out.displacement)
        return jnp.sum(delta**2) + 1e-3 * jnp.sum(out.momentum**2)

    return loss


def rel(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


def adjoint_inputs():
    """The white noise and Ω_c every gradient of this module and test_adjoints_more.py
    is taken at."""
    return white_noise(jax.random.key(3), (N, N, N)), jnp.asarray(Planck18().Omega_c)


@pytest.fixture(scope="module")
def noise():
    return adjoint_inputs()[0]


@pytest.fixture(scope="module")
def omega_c():
    return adjoint_inputs()[1]


def key(name, adjoint, dtype="float64"):
    return f"{dtype}-{name}-{adjoint!r}"


REFERENCE = Checkpointed()
F32_CASES = [("fastpm", Reversible()), ("fastpm", Backsolve())]
JVP_TANGENT_OMEGA = 0.3


def observer(carry, before, after, a_from, a_to):
    """Accumulates a weighted density per step (lightcone-like)."""
    delta = density_from_displacement(after.displacement)
    return carry + (a_to - a_from) * delta**2


def observer_loss(adjoint):
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

    return loss


def gradient_results(noise, omega_c, names):
    """Every gradient, jvp and finite-difference loss for the solvers `names`, in ONE
    jitted function (the float32 and observer cases with "fastpm").

    Each adjoint still runs its own code path (its own custom_vjp / backward scan); putting
    them in one program only shares XLA's fixed per-compile cost (the runtime on small CPUs
    is ~10 s of compilation per gradient, ~0.05 s of execution). The solvers are split
    over two test modules so that pytest-xdist compiles them on two workers.
    """
    v = jax.random.normal(jax.random.key(8), noise.shape)
    v_fd = jax.random.normal(jax.random.key(7), noise.shape)

    def everything(noise, omega_c):
        out = {}
        for name in names:
            solver = SOLVERS[name]
            for adjoint in [REFERENCE] + [a for n, a in CASES if n == name]:
                loss = make_loss(solver, adjoint)
                out[key(name, adjoint)] = jax.value_and_grad(loss, argnums=(0, 1))(noise, omega_c)
            # jvp (forward mode through plain autodiff; diffrax's ForwardMode inside intervals)
            fwd = solver
            if name == "diffrax":
                fwd = DiffraxODE(substeps=4, ode_adjoint=diffrax.ForwardMode())
            out[f"jvp-{name}"] = jax.jvp(
                make_loss(fwd, REFERENCE), (noise, omega_c), (v, JVP_TANGENT_OMEGA)
            )[1]
            # central differences: the loss at noise ± ε v_fd and at Ω_c (1 ± ε)
            eps_o = FD_EPS * omega_c
            ns = jnp.stack([noise + FD_EPS * v_fd, noise - FD_EPS * v_fd, noise, noise])
            os_ = jnp.stack([omega_c, omega_c, omega_c + eps_o, omega_c - eps_o])
            out[f"fd-{name}"] = jax.vmap(make_loss(solver, REFERENCE))(ns, os_)
        if "fastpm" in names:
            for name, adjoint in [("fastpm", REFERENCE), *F32_CASES]:
                loss = make_loss(SOLVERS[name], adjoint)
                out[key(name, adjoint, "float32")] = jax.value_and_grad(loss, argnums=(0, 1))(
                    noise.astype("float32"), omega_c
                )
            for adjoint in (REFERENCE, Reversible()):
                out[f"observer-{adjoint!r}"] = jax.grad(observer_loss(adjoint), argnums=(0, 1))(
                    noise, omega_c
                )
        return out

    return v, v_fd, jax.jit(everything)(noise, omega_c)


def check_gradient_float64(results, name, adjoint):
    out = results[2]
    v_ref, (g_ref, o_ref) = out[key(name, REFERENCE)]
    v, (g, o) = out[key(name, adjoint)]
    assert g.dtype == jnp.float64
    tol = DIFFRAX_BACKSOLVE_RTOL if (name, adjoint) == ("diffrax", Backsolve()) else GRAD_RTOL_F64
    np.testing.assert_allclose(v, v_ref, rtol=1e-12)
    assert rel(g, g_ref) < tol and rel(o, o_ref) < tol, (rel(g, g_ref), rel(o, o_ref))


def check_finite_differences(results, omega_c, name):
    _, v, out = results
    _, (g, o) = out[key(name, REFERENCE)]
    up, down, o_up, o_down = out[f"fd-{name}"]
    np.testing.assert_allclose(jnp.vdot(g, v), (up - down) / (2 * FD_EPS), rtol=FD_RTOL)
    np.testing.assert_allclose(o, (o_up - o_down) / (2 * FD_EPS * omega_c), rtol=FD_RTOL)


def check_jvp_dot_vjp(results, name, adjoint):
    """jvp (forward mode through plain autodiff) · v == v · vjp (the adjoint under test)."""
    v, _, out = results
    _, (g, o) = out[key(name, adjoint)]
    tol = DIFFRAX_BACKSOLVE_RTOL if (name, adjoint) == ("diffrax", Backsolve()) else DOT_RTOL
    np.testing.assert_allclose(jnp.vdot(g, v) + JVP_TANGENT_OMEGA * o, out[f"jvp-{name}"], rtol=tol)


# This module: the FastPM solver (and the float32 and observer cases);
# test_adjoints_more.py: leapfrog and diffrax.
HERE = ("fastpm",)
HERE_CASES = [c for c in CASES if c[0] in HERE]
IDS = [f"{n}-{a}" for n, a in HERE_CASES]


@pytest.fixture(scope="module")
def results(noise, omega_c):
    return gradient_results(noise, omega_c, HERE)


@pytest.mark.parametrize(("name", "adjoint"), HERE_CASES, ids=IDS)
def test_gradients_match_checkpointed_float64(results, name, adjoint):
    check_gradient_float64(results, name, adjoint)


@pytest.mark.parametrize(("name", "adjoint"), F32_CASES, ids=[f"{n}-{a}" for n, a in F32_CASES])
def test_gradients_match_checkpointed_float32(results, name, adjoint):
    out = results[2]
    _, (g_ref, o_ref) = out[key(name, REFERENCE, "float32")]
    _, (g, o) = out[key(name, adjoint, "float32")]
    assert g.dtype == g_ref.dtype == jnp.float32
    assert rel(g, g_ref) < GRAD_RTOL_F32 and rel(o, o_ref) < GRAD_RTOL_F32


@pytest.mark.parametrize("name", HERE)
def test_gradient_matches_finite_differences(results, omega_c, name):
    check_finite_differences(results, omega_c, name)


@pytest.mark.parametrize(("name", "adjoint"), HERE_CASES, ids=IDS)
def test_jvp_dot_vjp(results, name, adjoint):
    check_jvp_dot_vjp(results, name, adjoint)


def _temp_bytes(adjoint, n_steps):
    """Compiled temporary memory of the gradient of a FastPM run w.r.t. its initial state
    (the adjoint's whole backward pass; the ICs and cosmology are left out of the program
    to keep the four compiles cheap: they add the same buffers for 10 and 40 steps)."""
    a = np.linspace(0.1, 1.0, n_steps + 1)

    def loss(dx, p):
        out = nbody(Planck18(), (dx, p), a, solver=FastPM(), adjoint=adjoint).state
        return jnp.sum(density_from_displacement(out.displacement) ** 2)

    x = jnp.zeros((N, N, N, 3))
    f = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return f.lower(x, x).compile().memory_analysis().temp_size_in_bytes


def test_reversible_memory_is_independent_of_steps():
    rev10, rev40 = _temp_bytes(Reversible(), 10), _temp_bytes(Reversible(), 40)
    ck10, ck40 = _temp_bytes(Checkpointed(), 10), _temp_bytes(Checkpointed(), 40)
    state_bytes = N**3 * 3 * 8
    # equal up to the scale-factor vectors (a few bytes per step), far below one state
    assert abs(rev40 - rev10) < state_bytes, (rev10, rev40)
    # plain autodiff stores at least one state per step: 30 more steps, ≥ 30 more states
    assert ck40 - ck10 >= 30 * state_bytes, (ck10, ck40)


def test_observer_gradients_under_every_adjoint(results):
    """An observer that accumulates a weighted density per step (lightcone-like)."""
    out = results[2]
    g_ref, o_ref = out[f"observer-{REFERENCE!r}"]
    g, o = out[f"observer-{Reversible()!r}"]
    assert float(jnp.linalg.norm(g_ref)) > 0 and float(jnp.abs(o_ref)) > 0
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


SHARDED_N = 16  # 2 cells per device on an 8-device axis
SHARDED_ADJOINTS = (Reversible(), Checkpointed(), Reversible(anchors=2), Backsolve())
# The Ω_c derivative is one float32 sum with cancellations: single-device and sharded runs
# sum in different orders (measured 7e-7 to 1.6e-5 apart, 16³, 3 steps), while float32's
# own error on it against float64 is 1.3e-4 here. Everything else: SHARDED_RTOL.
SHARDED_OMEGA_RTOL = 5e-5
SHARDED_KEY = jax.random.key(5)


def _sharded_loss(adjoint):
    def loss(noise, omega_c):
        cosmo = Planck18(Omega_c=omega_c)
        dx, p = lpt(cosmo, linear_field(noise, power, 128.0), 0.1, order=1)
        out = nbody(cosmo, (dx, p), SCALE_FACTORS, adjoint=adjoint).state
        delta = density_from_displacement(out.displacement)
        return jnp.sum(delta**2), out.displacement

    return loss


# Forward and gradient under both adjoints in one program (one compile per input layout).
_sharded_run = jax.jit(
    lambda noise, omega_c: {
        repr(adjoint): jax.value_and_grad(_sharded_loss(adjoint), argnums=(0, 1), has_aux=True)(
            noise, omega_c
        )
        for adjoint in SHARDED_ADJOINTS
    }
)


@pytest.fixture(scope="module")
def sharded_reference():
    n = SHARDED_N
    return _sharded_run(white_noise(SHARDED_KEY, (n, n, n), dtype=jnp.float32), 0.26)


@pytest.mark.multidevice
@pytest.mark.parametrize("grid", GRIDS, ids=[f"{a}x{b}" for a, b in GRIDS])
def test_sharded_equals_single_device(sharded_reference, grid):
    n = SHARDED_N
    mesh = jax.make_mesh(grid, ("x", "y"), devices=jax.devices()[: grid[0] * grid[1]])
    sharding = NamedSharding(mesh, P("x", "y"))
    noise_s = white_noise(SHARDED_KEY, (n, n, n), dtype=jnp.float32, sharding=sharding)
    assert tuple(noise_s.sharding.spec[:2]) == ("x", "y")
    out = _sharded_run(noise_s, 0.26)
    for adjoint in SHARDED_ADJOINTS:
        (v1, x1), (g1, o1) = sharded_reference[repr(adjoint)]
        (vs, xs), (gs, os_) = out[repr(adjoint)]
        assert gs.dtype == jnp.float32
        np.testing.assert_allclose(vs, v1, rtol=SHARDED_RTOL)
        assert rel(xs, x1) < SHARDED_RTOL and rel(gs, g1) < SHARDED_RTOL, adjoint
        np.testing.assert_allclose(os_, o1, rtol=SHARDED_OMEGA_RTOL)
