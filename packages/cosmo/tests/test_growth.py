"""Growth D1, f1, D2, f2 and FastPM factors against an independent scipy solution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import fmt_cosmo as fc

# Issue 3: agreement with solve_ivp (rtol 1e-10) to <= 1e-6 relative over a in [1e-3, 1].
GROWTH_RTOL = 1e-6
# Central finite differences of D1 w.r.t. parameters; the table is a smooth function of the
# parameters (fixed grid, fixed steps), so FD and autodiff see the same discrete function.
GRAD_FD_RTOL = 1e-6
FD_STEP = 1e-5
# jvp/vjp and jit/eager consistency are exact up to float64 rounding.
TRANSFORM_RTOL = 1e-12
# Einstein-de Sitter: D1 = a, D2 = -3/7 a^2 exactly; the RK4 table (global error ~h^4, h =
# 0.007 in ln a) reaches ~2e-8 on D2, the same as against scipy.
EDS_RTOL = 1e-7
SMALL_STEP_RTOL = 1e-5

A_TEST = np.geomspace(1e-3, 1.0, 300)

MODELS = {
    "lcdm": fc.Planck18(),
    "open": fc.Planck18(Omega_k=0.1),
    "w0wa": fc.Planck18(w0=-0.9, wa=0.2),
}


def scipy_growth(cosmo, a_eval):
    """Reference D1, f1, D2, f2 from solve_ivp in the variable a (not ln a).

    Written independently of fmt_cosmo: its own E(a), the growth equations in the form
    d/da (a^3 E dD/da) = 3/2 Omega_m D / (a^2 E), started at a = 1e-10 deep in radiation
    domination from the leading terms of the growing modes D1 = 1 + 3y/2 and
    D2 = -3/2 y - 9/8 y^2 (y = a/a_eq), whose neglected terms are O(y^3) ~ 1e-20.
    """
    om, orad, ok, ode = (
        float(x) for x in (cosmo.Omega_m, cosmo.Omega_r, cosmo.Omega_k, cosmo.Omega_de)
    )
    w0, wa = float(cosmo.w0), float(cosmo.wa)

    def rho_de(a):
        return a ** (-3.0 * (1.0 + w0 + wa)) * np.exp(-3.0 * wa * (1.0 - a))

    def e2(a):
        return orad / a**4 + om / a**3 + ok / a**2 + ode * rho_de(a)

    def de2_da(a):
        return (
            -4.0 * orad / a**5
            - 3.0 * om / a**4
            - 2.0 * ok / a**3
            + ode * rho_de(a) * (-3.0 * (1.0 + w0 + wa) / a + 3.0 * wa)
        )

    def rhs(a, y):
        d1, v1, d2, v2 = y
        friction = 3.0 / a + 0.5 * de2_da(a) / e2(a)
        source = 1.5 * om / (a**5 * e2(a))
        return [v1, source * d1 - friction * v1, v2, source * (d2 - d1**2) - friction * v2]

    a0 = 1e-10
    a_eq = orad / om
    y, u = a0 / a_eq, 2.0 / 3.0 * a_eq
    y0 = [u * (1 + 1.5 * y), 1.0, u**2 * (-1.5 * y - 1.125 * y**2), u**2 * (-1.5 - 2.25 * y) / a_eq]
    a_eval = np.asarray(a_eval, dtype=float)
    t_eval = np.unique(np.append(a_eval, 1.0))
    sol = solve_ivp(rhs, (a0, 1.0), y0, method="DOP853", rtol=1e-10, atol=1e-300, t_eval=t_eval)
    assert sol.success
    keep = np.searchsorted(t_eval, a_eval)  # a_eval are among the t_eval nodes
    d1, v1, d2, v2 = sol.y[:, keep]
    n = sol.y[0, -1]
    return {
        "D1": d1 / n,
        "f1": a_eval * v1 / d1,
        "D2": d2 / n**2,
        "f2": a_eval * v2 / d2,
        "dD1_da": v1 / n,
        "e": np.sqrt(e2(a_eval)),
        "rhs": rhs,
        "de2_da": de2_da,
    }


@pytest.fixture(scope="module")
def evaluate():
    """One compiled function for every model (same static structure, different leaves)."""

    def f(cosmo, a):
        table = fc.growth_table(cosmo)
        return {
            "D1": fc.growth_factor(cosmo, a, table),
            "f1": fc.growth_rate(cosmo, a, table),
            "D2": fc.growth_factor_second(cosmo, a, table),
            "f2": fc.growth_rate_second(cosmo, a, table),
        }

    return jax.jit(f)


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    cosmo = MODELS[request.param]
    return request.param, cosmo, scipy_growth(cosmo, A_TEST)


@pytest.mark.parametrize("quantity", ["D1", "f1", "D2", "f2"])
def test_growth_matches_scipy(evaluate, model, quantity):
    _, cosmo, ref = model
    got = np.asarray(evaluate(cosmo, A_TEST)[quantity])
    np.testing.assert_allclose(got, ref[quantity], rtol=GROWTH_RTOL, atol=0)


def test_normalisation_and_sign_convention(evaluate):
    out = evaluate(fc.Planck18(), jnp.array([1.0]))
    assert float(out["D1"][0]) == pytest.approx(1.0, abs=1e-15)
    # D2 ~ -3/7 Omega_m(a)^(-1/143) D1^2 (Bouchet et al. 1995) within its ~0.1% accuracy.
    om_a = float(fc.Omega_m_a(fc.Planck18(), 1.0))
    assert float(out["D2"][0]) == pytest.approx(-3 / 7 * om_a ** (-1 / 143), rel=2e-3)


def test_einstein_de_sitter_is_exact():
    eds = fc.Cosmology(
        Omega_c=0.95, Omega_b=0.05, h=0.7, n_s=0.96, sigma8=0.8, include_radiation=False
    )
    a = np.geomspace(1e-5, 1.0, 50)
    table = fc.growth_table(eds)
    np.testing.assert_allclose(fc.growth_factor(eds, a, table), a, rtol=EDS_RTOL)
    np.testing.assert_allclose(fc.growth_rate(eds, a, table), 1.0, rtol=EDS_RTOL)
    np.testing.assert_allclose(fc.growth_factor_second(eds, a, table), -3 / 7 * a**2, rtol=EDS_RTOL)
    np.testing.assert_allclose(fc.growth_rate_second(eds, a, table), 2.0, rtol=EDS_RTOL)


def test_builds_table_when_not_given(evaluate):
    cosmo = fc.Planck18()
    a = jnp.array([0.1, 0.5])
    np.testing.assert_allclose(
        fc.growth_factor(cosmo, a), evaluate(cosmo, a)["D1"], rtol=TRANSFORM_RTOL
    )


def test_extended_table_past_today():
    cosmo = fc.Planck18()
    a = np.array([0.3, 0.7, 1.0])
    ext = fc.growth_table(cosmo, a_max=2.0)
    assert np.exp(ext.log_a_max) >= 2.0
    np.testing.assert_allclose(
        fc.growth_factor(cosmo, a, ext), fc.growth_factor(cosmo, a), rtol=TRANSFORM_RTOL
    )
    d_late = fc.growth_factor(cosmo, np.array([1.5, 2.0]), ext)
    assert np.all(np.diff(np.asarray(d_late)) > 0) and float(d_late[0]) > 1.0


@pytest.fixture(scope="module")
def d1_of_params():
    return jax.jit(jax.value_and_grad(lambda c: fc.growth_factor(c, 0.5)))


@pytest.mark.parametrize("field", ["Omega_c", "w0"])
def test_grad_matches_finite_differences(d1_of_params, field):
    cosmo = fc.Planck18(w0=-0.95, wa=0.1)
    _, grad = d1_of_params(cosmo)
    x0 = getattr(cosmo, field)
    plus, _ = d1_of_params(cosmo.replace(**{field: x0 + FD_STEP}))
    minus, _ = d1_of_params(cosmo.replace(**{field: x0 - FD_STEP}))
    fd = (float(plus) - float(minus)) / (2 * FD_STEP)
    assert float(getattr(grad, field)) == pytest.approx(fd, rel=GRAD_FD_RTOL)
    assert abs(fd) > 1e-3  # a real dependence, not 0 == 0


def test_jvp_vjp_consistency():
    cosmo = fc.Planck18(Omega_k=0.05, w0=-0.9, wa=0.2)
    a = jnp.array([0.05, 0.3, 0.8])

    def f(c):
        table = fc.growth_table(c)
        return jnp.concatenate([fc.growth_factor(c, a, table), fc.growth_rate_second(c, a, table)])

    tangent = jax.tree.map(lambda x: jnp.asarray(0.1 + 0.01 * x), cosmo)
    cotangent = jnp.linspace(-1.0, 2.0, 6)
    jv = jax.jit(lambda c, t: jax.jvp(f, (c,), (t,))[1])(cosmo, tangent)
    (vj,) = jax.jit(lambda c, v: jax.vjp(f, c)[1](v))(cosmo, cotangent)
    lhs = float(jnp.dot(cotangent, jv))
    pairs = zip(jax.tree.leaves(vj), jax.tree.leaves(tangent), strict=True)
    rhs = sum(float(x * y) for x, y in pairs)
    assert lhs == pytest.approx(rhs, rel=TRANSFORM_RTOL)


def test_fastpm_factors_match_reference():
    """Drift/kick factors from the scipy solution (Feng et al. 2016, eqs. 21-22).

    G_p = D1, G_f = a^3 E dD1/da, g_f = a^2 E dG_f/da; dG_f/da is evaluated from the
    reference's own equation, a^3 E (D1'' + (3/a + E'/E) D1') with D1'' from its rhs.
    """
    cosmo = MODELS["w0wa"]
    a_i = np.array([0.02, 0.1, 0.5, 0.9])
    a_f = np.array([0.05, 0.2, 0.6, 1.0])
    a_c = 0.5 * (a_i + a_f)
    ref = {}
    for name, x in (("i", a_i), ("c", a_c), ("f", a_f)):
        ref[name] = scipy_growth(cosmo, x)
    g_f = {
        k: x**3 * ref[k]["e"] * ref[k]["dD1_da"] for k, x in (("i", a_i), ("c", a_c), ("f", a_f))
    }
    rc = ref["c"]
    dg_f_da = []
    for x, d1, v1, e in zip(a_c, rc["D1"], rc["dD1_da"], rc["e"], strict=True):
        dv1 = rc["rhs"](x, [d1, v1, 0.0, 0.0])[1]
        e_prime_over_e = rc["de2_da"](x) / (2 * e**2)
        dg_f_da.append(x**3 * e * (dv1 + (3 / x + e_prime_over_e) * v1))
    drift_ref = (ref["f"]["D1"] - ref["i"]["D1"]) / g_f["c"]
    kick_ref = (g_f["f"] - g_f["i"]) / (a_c**2 * rc["e"] * np.asarray(dg_f_da))

    table = fc.growth_table(cosmo)
    drift = fc.fastpm_drift_factor(cosmo, a_i, a_c, a_f, table)
    kick = fc.fastpm_kick_factor(cosmo, a_i, a_c, a_f, table)
    np.testing.assert_allclose(drift, drift_ref, rtol=GROWTH_RTOL)
    np.testing.assert_allclose(kick, kick_ref, rtol=GROWTH_RTOL)


def test_fastpm_small_step_limit():
    """For a_f -> a_i the factors tend to the leapfrog ones, da/(a^3 E) and da/(a^2 E)."""
    cosmo = fc.Planck18()
    a, da = 0.4, 1e-3
    drift = fc.fastpm_drift_factor(cosmo, a - da / 2, a, a + da / 2)
    kick = fc.fastpm_kick_factor(cosmo, a - da / 2, a, a + da / 2)
    e = float(fc.E(cosmo, a))
    # Midpoint rule O(da^2) ~ 1e-7, plus table error (~1e-10 in D1) / da ~ 1e-7: 1e-5 still
    # separates the a^3 E and a^2 E conventions (a factor a = 0.4 apart).
    assert float(drift) == pytest.approx(da / (a**3 * e), rel=SMALL_STEP_RTOL)
    assert float(kick) == pytest.approx(da / (a**2 * e), rel=SMALL_STEP_RTOL)


@pytest.mark.parametrize(
    ("a", "error", "match"),
    [
        (0.0, ValueError, "a must be > 0"),
        (-0.5, ValueError, "a must be > 0"),
        (np.nan, ValueError, "a must be finite"),
        (1.5, ValueError, "growth table's range"),
        (1e-8, ValueError, "growth table's range"),
        ("0.5", TypeError, "a must be a number"),
    ],
)
def test_bad_scale_factor(a, error, match):
    cosmo = fc.Planck18()
    with pytest.raises(error, match=match):
        fc.growth_factor(cosmo, a)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a_min": 0.5}, "a_min"),
        ({"a_min": -1.0}, "a_min"),
        ({"num": 4}, "num"),
        ({"num": 100.5}, "num"),
        ({"a_max": 0.9}, "a_max"),
        ({"method": "euler"}, "method"),
    ],
)
def test_bad_table_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fc.growth_table(fc.Planck18(), **kwargs)


# The two integrations run the same RK4 steps, composed in another order.
METHODS_RTOL = 1e-12


def test_parallel_integration_equals_sequential():
    """`method="parallel"` (the accelerators' default) against the sequential loop: every
    table entry, and the gradient of a table-derived scalar w.r.t. Ω_c and w0."""
    cosmo = MODELS["w0wa"]

    def table(params, method):
        c = cosmo.replace(Omega_c=params[0], w0=params[1])
        return fc.growth_table(c, a_max=2.0, method=method)

    def scalar(params, method):
        c = cosmo.replace(Omega_c=params[0], w0=params[1])
        t = table(params, method)
        return fc.growth_factor_second(c, 0.3, t) + fc.growth_rate(c, 1.5, t)

    params = jnp.array([cosmo.Omega_c, cosmo.w0])
    run = jax.jit(lambda p: {m: (table(p, m), jax.grad(scalar)(p, m)) for m in fc.GROWTH_METHODS})
    out = run(params)
    (seq, g_seq), (par, g_par) = out["sequential"], out["parallel"]
    for name in fc.GrowthTable._array_names:
        a, b = getattr(par, name), getattr(seq, name)
        np.testing.assert_allclose(a, b, rtol=0, atol=METHODS_RTOL * float(jnp.max(jnp.abs(b))))
    np.testing.assert_allclose(g_par, g_seq, rtol=METHODS_RTOL)
    cpu = jax.default_backend() == "cpu"
    assert fc.default_growth_method() == ("sequential" if cpu else "parallel")


def test_bad_table_type():
    with pytest.raises(TypeError, match="table must be a GrowthTable"):
        fc.growth_rate(fc.Planck18(), 0.5, table={"D1": 1})


def test_fastpm_names_bad_argument():
    with pytest.raises(ValueError, match="a_c must be > 0"):
        fc.fastpm_kick_factor(fc.Planck18(), 0.5, -0.1, 0.6)


@pytest.mark.multidevice
def test_float32_gradient_with_sharded_arrays():
    """A growth factor multiplying explicitly sharded float32 arrays: its Ω_c gradient
    traces (JAX leaves the sum over the shards pending in the scalar cotangent, which the
    table's indexing must accept) and equals the single-device gradient."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    n = jax.device_count()
    mesh = jax.make_mesh((n, 1), ("x", "y"))

    def loss(v, oc):
        c = fc.Planck18(Omega_c=oc)
        t = fc.growth_table(c)
        return jnp.sum(fc.growth_factor(c, 0.5, t) * v**2) + fc.growth_rate(c, 0.7, t)

    with jax.enable_x64(False):
        v = jnp.linspace(-1.0, 1.0, 8 * n * 8 * 8, dtype=jnp.float32).reshape(8 * n, 8, 8)
        grad = jax.jit(jax.grad(loss, argnums=1))
        ref = grad(v, 0.26)
        got = grad(jax.device_put(v, NamedSharding(mesh, P("x", "y"))), 0.26)
        assert ref.dtype == got.dtype == jnp.float32
        np.testing.assert_allclose(got, ref, rtol=1e-5)
