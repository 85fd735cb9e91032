"""Forward-mode derivatives of the field generators with respect to the power spectrum.

The k = 0 (ℓ = 0) mode has zero power; a plain `sqrt` there has an infinite derivative, so
a jvp with respect to a parameter of the spectrum (e.g. Ω_c) used to be NaN in every cell
(reverse mode was not).
"""

import jax
import jax.numpy as jnp
import numpy as np

import fmt_fields as ff

SHAPE = (8, 8, 8)
BOX = 100.0
# Central differences with step 1e-6 on a smooth function, float64: truncation ~1e-12.
FD_EPS = 1e-6
FD_RTOL = 1e-6


def test_linear_field_jvp_in_spectral_slope_is_finite_and_matches_finite_differences():
    noise = ff.white_noise(jax.random.key(0), SHAPE)

    def field(slope):
        return ff.linear_field(noise, lambda k: 1e3 * (k / 0.1) ** slope, BOX)

    v = jax.random.normal(jax.random.key(1), SHAPE)

    @jax.jit
    def derivatives(x):
        _, tangent = jax.jvp(field, (x,), (1.0,))
        fd = (field(x + FD_EPS) - field(x - FD_EPS)) / (2 * FD_EPS)
        (cotangent,) = jax.vjp(field, x)[1](v)
        return tangent, fd, cotangent

    tangent, fd, cotangent = derivatives(-1.5)
    assert np.all(np.isfinite(tangent))
    np.testing.assert_allclose(tangent, fd, rtol=FD_RTOL, atol=FD_RTOL * np.abs(fd).max())
    # reverse mode agrees with forward mode (dot test along a random cotangent v)
    np.testing.assert_allclose(float(cotangent), float(jnp.vdot(v, tangent)), rtol=1e-10)


def test_flat_sky_map_jvp_in_amplitude_is_finite():
    noise = jax.random.normal(jax.random.key(2), (16, 16))

    def sky(amplitude):
        return ff.flat_sky_gaussian_map(noise, lambda ell: amplitude * ell**-2.0, 0.1)

    _, tangent = jax.jit(lambda a: jax.jvp(sky, (a,), (1.0,)))(1.0)
    # the map is linear in sqrt(amplitude): d map / d amplitude = map / 2 at amplitude 1
    np.testing.assert_allclose(tangent, sky(1.0) / 2, rtol=1e-10, atol=1e-14)
