"""Gradients of nbody for the leapfrog and diffrax solvers: the checks of test_adjoints.py
(against plain autodiff, finite differences, the jvp/vjp dot test), compiled in this
module's own program so that pytest-xdist builds it on another worker."""

import pathlib
import sys

import jax
import pytest

from fmt_dynamics import FastPM, PMForce, Reversible

# pytest runs with --import-mode=importlib (test folders are not on sys.path).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_adjoints import (
    CASES,
    GRAD_RTOL_F64,
    REFERENCE,
    adjoint_inputs,
    check_finite_differences,
    check_gradient_float64,
    check_jvp_dot_vjp,
    gradient_results,
    make_loss,
    rel,
)

HERE = ("leapfrog", "diffrax")
HERE_CASES = [c for c in CASES if c[0] in HERE]
IDS = [f"{n}-{a}" for n, a in HERE_CASES]


@pytest.fixture(scope="module")
def omega_c():
    return adjoint_inputs()[1]


@pytest.fixture(scope="module")
def results():
    return gradient_results(*adjoint_inputs(), HERE)


@pytest.mark.parametrize(("name", "adjoint"), HERE_CASES, ids=IDS)
def test_gradients_match_checkpointed_float64(results, name, adjoint):
    check_gradient_float64(results, name, adjoint)


@pytest.mark.parametrize("name", HERE)
def test_gradient_matches_finite_differences(results, omega_c, name):
    check_finite_differences(results, omega_c, name)


@pytest.mark.parametrize(("name", "adjoint"), HERE_CASES, ids=IDS)
def test_jvp_dot_vjp(results, name, adjoint):
    check_jvp_dot_vjp(results, name, adjoint)


def test_reversible_with_pallas_kernels_matches_checkpointed():
    """The GPU default kernels (Pallas; its interpreter here) forward the displacement as
    a residual of the force's vjp: the reversible adjoint then carries it once, as the
    state's displacement, and must give the plain-autodiff gradient (float64)."""
    force = PMForce(options=(("cic_method", "pallas"),))

    def grad(adjoint):
        return jax.grad(make_loss(FastPM(), adjoint, force=force), argnums=(0, 1))

    (gn, go), (rn, ro) = jax.jit(lambda n, o: [grad(Reversible())(n, o), grad(REFERENCE)(n, o)])(
        *adjoint_inputs()
    )
    assert rel(gn, rn) < GRAD_RTOL_F64
    assert rel(go, ro) < GRAD_RTOL_F64
