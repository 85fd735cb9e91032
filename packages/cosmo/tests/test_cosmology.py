"""The `Cosmology` pytree: jax-cosmo's three failures as regressions, validation, `replace`."""

import dataclasses

import jax
import jax.numpy as jnp
import jax_cosmo
import numpy as np
import pytest

import fmt_cosmo as fc

# Same computation through different transformations: equal to float64 rounding.
TRANSFORM_RTOL = 1e-12

A = jnp.array([0.2, 0.5, 1.0])


def _is_tracer(x):
    return isinstance(x, jax.core.Tracer)


def _observables(cosmo, a):
    table = fc.growth_table(cosmo)
    return jnp.stack(
        [
            fc.growth_factor(cosmo, a, table),
            fc.growth_rate(cosmo, a, table),
            fc.growth_factor_second(cosmo, a, table),
            fc.comoving_distance(cosmo, a),
        ]
    )


@pytest.fixture(scope="module")
def observables():
    return jax.jit(_observables)


# -- jax-cosmo failure 1: a cosmology closed over in jit, then reused ---------------------


def test_closed_over_in_jit_then_eager_then_other_jit():
    cosmo = fc.Planck18()
    first = jax.jit(lambda a: fc.growth_factor(cosmo, a) * fc.comoving_distance(cosmo, a))(A)
    # jax-cosmo raises UnexpectedTracerError here: its cache now holds tracers.
    eager_d = fc.growth_factor(cosmo, A)
    eager_chi = fc.comoving_distance(cosmo, A)
    other = jax.jit(lambda a: fc.growth_rate(cosmo, a) + fc.growth_factor(cosmo, a))(A)
    eager_f = fc.growth_rate(cosmo, A)
    np.testing.assert_allclose(first, eager_d * eager_chi, rtol=TRANSFORM_RTOL)
    np.testing.assert_allclose(other, eager_f + eager_d, rtol=TRANSFORM_RTOL)
    assert not any(_is_tracer(x) for x in jax.tree.leaves(cosmo))
    assert set(vars(cosmo)) == {*fc.Cosmology._leaf_names, "include_radiation"}


def test_jax_cosmo_itself_leaks_tracers():
    """The upstream failure this package exists to avoid (jax-cosmo 0.1.0)."""
    jc = jax_cosmo.Planck15()
    jax.jit(lambda a: jax_cosmo.background.growth_factor(jc, a))(A)
    with pytest.raises(jax.errors.UnexpectedTracerError):
        jax_cosmo.background.growth_factor(jc, A)


# -- jax-cosmo failure 2: several quantities on one object, in any order -----------------


def test_any_evaluation_order_gives_the_same_numbers():
    cosmo = fc.Planck18(w0=-0.9, wa=0.1)
    d_first = fc.growth_factor(cosmo, A)
    chi_then = fc.comoving_distance(cosmo, A)
    f_then = fc.growth_rate(cosmo, A)

    other = fc.Planck18(w0=-0.9, wa=0.1)
    chi_first = fc.comoving_distance(other, A)
    f_first = fc.growth_rate(other, A)
    d_then = fc.growth_factor(other, A)

    np.testing.assert_array_equal(d_first, d_then)
    np.testing.assert_array_equal(chi_first, chi_then)
    np.testing.assert_array_equal(f_first, f_then)


# -- jax-cosmo failure 3: every optional field set, through jit, grad, vmap, tree_map -----

FULL = fc.Cosmology(
    Omega_c=0.26,
    Omega_b=0.048,
    h=0.69,
    n_s=0.97,
    sigma8=0.81,
    Omega_k=0.02,
    w0=-0.95,
    wa=0.1,
    T_cmb=2.7,
    N_eff=3.2,
    include_radiation=True,
)


def test_full_cosmology_jit_matches_eager(observables):
    np.testing.assert_allclose(observables(FULL, A), _observables(FULL, A), rtol=TRANSFORM_RTOL)


def test_full_cosmology_grad_reaches_every_field():
    def loss(c):
        obs = _observables(c, A)
        return jnp.sum(obs[0] + obs[3])

    grad = jax.jit(jax.grad(loss))(FULL)
    assert isinstance(grad, fc.Cosmology)
    for name in ("Omega_c", "Omega_b", "h", "Omega_k", "w0", "wa", "T_cmb", "N_eff"):
        value = float(getattr(grad, name))
        assert np.isfinite(value) and value != 0.0, name
    # n_s and sigma8 do not enter growth or distances.
    assert float(grad.n_s) == 0.0 and float(grad.sigma8) == 0.0


def test_vmap_over_a_batch_of_cosmologies(observables):
    members = [FULL, FULL.replace(Omega_c=0.3, w0=-1.1), FULL.replace(Omega_k=-0.03, N_eff=2.5)]
    batch = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *members)
    assert isinstance(batch, fc.Cosmology) and batch.h.shape == (3,)
    batched = jax.jit(jax.vmap(_observables, in_axes=(0, None)))(batch, A)
    for i, member in enumerate(members):
        np.testing.assert_allclose(batched[i], observables(member, A), rtol=TRANSFORM_RTOL)


def test_tree_map_round_trip():
    doubled = jax.tree.map(lambda x: 2 * x, FULL)
    assert isinstance(doubled, fc.Cosmology)
    assert doubled.include_radiation is True
    assert float(doubled.Omega_k) == pytest.approx(0.04)
    restored = jax.tree.map(lambda x: x / 2, doubled)
    assert jax.tree.structure(restored) == jax.tree.structure(FULL)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(FULL), strict=True):
        assert float(a) == pytest.approx(float(b), rel=TRANSFORM_RTOL)


def test_include_radiation_is_static():
    assert jax.tree.leaves(FULL.replace(include_radiation=False)) == jax.tree.leaves(FULL)
    assert jax.tree.structure(FULL) != jax.tree.structure(FULL.replace(include_radiation=False))
    assert float(FULL.replace(include_radiation=False).Omega_r) == 0.0


# -- validation and replace --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("Omega_c", -0.1, "Omega_c must be >= 0"),
        ("Omega_b", -1e-3, "Omega_b must be >= 0"),
        ("h", 0.0, "h must be > 0"),
        ("sigma8", -0.8, "sigma8 must be > 0"),
        ("T_cmb", -2.7, "T_cmb must be >= 0"),
        ("N_eff", -1.0, "N_eff must be >= 0"),
        ("n_s", np.nan, "n_s must be finite"),
        ("Omega_k", np.inf, "Omega_k must be finite"),
        ("w0", np.array([-1.0, np.nan]), "w0 must be finite"),
    ],
)
def test_bad_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        fc.Planck18(**{field: value})
    with pytest.raises(ValueError, match=match):
        fc.Planck18().replace(**{field: value})


def test_bad_types():
    with pytest.raises(TypeError, match="include_radiation must be a bool"):
        fc.Planck18(include_radiation=1)
    with pytest.raises(TypeError, match="wa must be a number"):
        fc.Planck18(wa="zero")


def test_traced_values_are_not_checked():
    def build(omega_c):
        return fc.Planck18(Omega_c=omega_c).Omega_m

    # A negative traced value passes construction (checks need concrete values).
    assert float(jax.jit(build)(-0.1)) == pytest.approx(-0.1 + 0.049)


def test_replace():
    base = fc.Planck18()
    changed = base.replace(sigma8=0.75, include_radiation=False)
    assert changed.sigma8 == 0.75 and changed.include_radiation is False
    assert base.sigma8 == 0.8102 and base.include_radiation is True  # original untouched
    assert changed.Omega_c == base.Omega_c
    with pytest.raises(TypeError, match="no field"):
        base.replace(Omega_m=0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.h = 0.7


def test_presets_close_the_budget():
    for preset in (fc.Planck15(), fc.Planck18()):
        total = preset.Omega_m + preset.Omega_r + preset.Omega_k + preset.Omega_de
        assert float(total) == pytest.approx(1.0, abs=1e-15)
        assert float(fc.E(preset, 1.0)) == pytest.approx(1.0, abs=1e-15)
