"""Source distributions: normalisation, quadrature, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

from fmt_lensing import Delta, Smail, Tabulated, TopHat

# 512-node trapezoid on a smooth n(z): error O(h²) ~ 1e-5 of the mean.
QUAD_RTOL = 1e-4


def test_smail_normalised_and_mean():
    nz = Smail(2.0, 1.5, 0.5, zmax=6.0)
    _z, w = nz.quadrature()
    np.testing.assert_allclose(float(jnp.sum(w)), 1.0, rtol=1e-14)
    # analytic mean of z^a exp(-(z/z0)^b) on [0, ∞): z0 Γ((a+2)/b)/Γ((a+1)/b)
    expected = 0.5 * special.gamma(4 / 1.5) / special.gamma(3 / 1.5)
    np.testing.assert_allclose(float(nz.mean()), expected, rtol=QUAD_RTOL)
    val, _ = integrate.quad(lambda x: float(nz(x)), 0, 6.0, limit=200)
    np.testing.assert_allclose(val, 1.0, rtol=QUAD_RTOL)


def test_tophat_delta_tabulated():
    th = TopHat(0.5, 1.0)
    np.testing.assert_allclose(float(th.mean()), 0.75, rtol=1e-12)
    z, w = Delta(1.2).quadrature()
    assert z.shape == (1,) and float(z[0]) == 1.2 and float(w[0]) == 1.0
    zz = np.linspace(0, 2, 201)
    tab = Tabulated(zz, 7.0 * zz * (2 - zz))
    np.testing.assert_allclose(float(tab.mean()), 1.0, rtol=1e-10)
    np.testing.assert_allclose(float(tab(1.0)), 0.75, rtol=1e-3)  # 3/4 z(2-z) normalised


def test_nz_is_a_differentiable_pytree():
    def mean_of(z0):
        return Smail(2.0, 1.5, z0).mean()

    g = jax.grad(mean_of)(0.5)
    fd = (mean_of(0.5 + 1e-6) - mean_of(0.5 - 1e-6)) / 2e-6
    np.testing.assert_allclose(float(g), float(fd), rtol=1e-6)
    leaves = jax.tree.leaves((Smail(2.0, 1.5, 0.5), TopHat(0.1, 0.4)))
    assert len(leaves) == 5


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: Tabulated([0.0, 1.0, 2.0], [1.0, -0.1, 1.0]), "pz"),
        (lambda: Tabulated([0.0, 1.0, 2.0], [0.0, 0.0, 0.0]), "zero integral"),
        (lambda: Tabulated([0.0, 2.0, 1.0], [1.0, 1.0, 1.0]), "increasing"),
        (lambda: Smail(2.0, 1.5, -0.5), "z0"),
        (lambda: TopHat(1.0, 0.5), "zmax"),
        (lambda: Delta(0.0), "z_source"),
    ],
)
def test_bad_nz_raises(make, name):
    with pytest.raises(ValueError, match=name):
        make()
