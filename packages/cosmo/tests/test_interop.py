"""Interop with jax-cosmo 0.1.0: round trip, same background, same growth."""

import jax
import jax.numpy as jnp
import jax_cosmo
import numpy as np
import pytest

import fmt_cosmo as fc

# jax-cosmo tabulates distances on a coarse grid in a and interpolates (0.3 Mpc/h off at
# z = 0.25, 4e-4 relative: its own precision, ours is 1e-12), and solves growth with odeint
# on a table and interpolates (2e-4 at a = 0.6; ours is 1e-8 against solve_ivp).
JAX_COSMO_DISTANCE_RTOL = 1e-3
JAX_COSMO_GROWTH_RTOL = 5e-4
A = np.array([0.2, 0.4, 0.6, 0.8, 1.0])


def test_round_trip_preserves_parameters():
    cosmo = fc.Planck18(Omega_k=0.01, w0=-0.9, wa=0.1, include_radiation=False)
    jc = fc.to_jax_cosmo(cosmo)
    assert isinstance(jc, jax_cosmo.Cosmology)
    back = fc.from_jax_cosmo(jc)
    assert back.include_radiation is False
    for name in ("Omega_c", "Omega_b", "h", "n_s", "sigma8", "Omega_k", "w0", "wa"):
        assert float(getattr(back, name)) == float(getattr(cosmo, name)), name
    extras = fc.from_jax_cosmo(jc, T_cmb=2.7, include_radiation=True)
    assert extras.include_radiation is True and extras.T_cmb == 2.7


def test_same_background_and_growth_as_jax_cosmo():
    """Without radiation the two backgrounds are identical; jax-cosmo's numerics set the tol."""
    jc = jax_cosmo.Planck15()
    cosmo = fc.from_jax_cosmo(jc)
    np.testing.assert_allclose(fc.E(cosmo, A), jax_cosmo.background.H(jc, A) / 100.0, rtol=1e-12)
    np.testing.assert_allclose(
        fc.comoving_distance(cosmo, A[:-1]),
        jax_cosmo.background.radial_comoving_distance(jc, A[:-1]),
        rtol=JAX_COSMO_DISTANCE_RTOL,
    )
    jc = jax_cosmo.Planck15()  # a fresh object: jax-cosmo caches tables on the first one
    np.testing.assert_allclose(
        fc.growth_factor(cosmo, A),
        jax_cosmo.background.growth_factor(jc, A),
        rtol=JAX_COSMO_GROWTH_RTOL,
    )


def test_to_jax_cosmo_under_grad():
    def distance(omega_c):
        jc = fc.to_jax_cosmo(fc.Planck18(Omega_c=omega_c))
        return jax_cosmo.background.radial_comoving_distance(jc, jnp.array([0.5]))[0]

    assert float(jax.jit(jax.grad(distance))(0.26)) < 0.0


def test_errors():
    with pytest.raises(TypeError, match=r"cosmo must be a fmt_cosmo\.Cosmology"):
        fc.to_jax_cosmo(jax_cosmo.Planck15())
    with pytest.raises(TypeError, match=r"jc_cosmo must be a jax_cosmo\.Cosmology"):
        fc.from_jax_cosmo(fc.Planck18())
    with pytest.raises(ValueError, match="gamma"):
        fc.from_jax_cosmo(jax_cosmo.Planck15(gamma=0.55))
    with pytest.raises(TypeError, match="no field"):
        fc.from_jax_cosmo(jax_cosmo.Planck15(), Omega_nu=0.1)
    with pytest.raises(ValueError, match="h must be > 0"):
        fc.from_jax_cosmo(jax_cosmo.Planck15(), h=-0.7)
