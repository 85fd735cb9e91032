"""Linear (D1) and second-order (D2) growth, their rates, and FastPM's kick and drift factors.

One pure function, `growth_table`, integrates the growth equations for a cosmology and
returns a `GrowthTable` pytree; the evaluation functions read it. Nothing is cached on the
cosmology: build the table once inside your own jitted function and pass it down.

Equations, in x = ln a with ' = d/d ln a and Ω_m(a) = Ω_m a⁻³ / E²(a):

    D1'' + (2 + d ln E/d ln a) D1' = 3/2 Ω_m(a) D1
    D2'' + (2 + d ln E/d ln a) D2' = 3/2 Ω_m(a) (D2 − D1²)

(e.g. Bouchet et al. 1995; Feng et al. 2016, appendix). All matter clusters, E(a) contains
radiation, curvature and CPL dark energy, so the equations hold for every `Cosmology`.

Normalisation and sign convention: D1(a=1) = 1; D2 solves the second equation with that
normalised D1 as its source, so D2 ≈ −3/7 D1² (exactly −3/7 D1² in Einstein-de Sitter; at
a = 1 in ΛCDM D2 ≈ −3/7 Ω_m^(−1/143) D1²). The second-order Lagrangian displacement is then
x = q + D1 ψ1 + D2 ψ2 with ∇·ψ2 = Σ_{i<j} (ψ1_{i,i} ψ1_{j,j} − ψ1_{i,j}²), i.e. the sign of
the −3/7 lives in D2, not in ψ2. f1 = d ln D1/d ln a and f2 = d ln D2/d ln a (f2 ≈ 2 f1).

Initial conditions (growing modes only) at a_min, deep in the radiation or matter era where
curvature and dark energy are negligible: with y = a/a_eq, a_eq = Ω_r/Ω_m, the exact growing
mode of a matter + radiation universe is D1 ∝ 1 + 3y/2 (Mészáros 1974). For D2 we use the
particular solution with no homogeneous part as y → 0 (D2/D1² → 0), a power series in y
derived in `_d2_series_coefficients`. Without radiation (or when a_eq ≪ a_min) these reduce to
D1 = a, D2 = −3/7 a².

Integration: classical fixed-step RK4 in ln a (pure JAX, `lax.scan`, differentiable by
reverse- and forward-mode), `_SUBSTEPS` steps per table interval. The table stores D, D' and
D'' on a uniform ln a grid and evaluation uses cubic Hermite interpolation with those exact
derivatives: plain linear `jnp.interp` would need ~10⁵ nodes to reach the 1e-6 accuracy
required by the tests, the Hermite cubic (error ∝ h⁴) reaches ~1e-10 with a few hundred.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .background import _E2, _check_scale_factor
from .cosmology import Cosmology

__all__ = [
    "GROWTH_METHODS",
    "GrowthTable",
    "default_growth_method",
    "fastpm_drift_factor",
    "fastpm_kick_factor",
    "growth_factor",
    "growth_factor_second",
    "growth_rate",
    "growth_rate_second",
    "growth_table",
]

_DEFAULT_A_MIN = 1e-6
_DEFAULT_NUM = 512
_SUBSTEPS = 4  # RK4 steps per table interval (step ~ 0.007 in ln a with the defaults)

# Series D2 = Σ c_n y^n (in units of (2/3 a_eq)², the unit in which D1 = 1 + 3y/2) is used
# while y_min = a_min/a_eq < _Y_SERIES_MAX. The series converges for y < 1; with 40 terms the
# truncation error at y = 0.25 is < 1e-24. For larger y_min (radiation negligible at a_min,
# e.g. include_radiation=False) the Einstein-de Sitter value −3/7 D1² is used instead.
_Y_SERIES_MAX = 0.25
_SERIES_TERMS = 40


def _d2_series_coefficients(n_terms: int) -> np.ndarray:
    """Coefficients c_n of the second-order growing mode in a matter + radiation universe.

    With y = a/a_eq and D1 = 1 + 3y/2, the D2 equation becomes
    2y(1+y) D2_yy + (2+3y) D2_y − 3 D2 = −3 (1 + 3y + 9y²/4). For D2 = Σ c_n y^n, matching
    powers of y^m gives 2(m+1)² c_{m+1} + (2m+3)(m−1) c_m = −3 s_m with s = (1, 3, 9/4),
    and c_0 = 0 selects the solution with no homogeneous part at y → 0.
    """
    source = [1.0, 3.0, 2.25]
    c = [0.0]
    for m in range(n_terms - 1):
        s_m = source[m] if m < len(source) else 0.0
        c.append((-3.0 * s_m - (2 * m + 3) * (m - 1) * c[m]) / (2.0 * (m + 1) ** 2))
    return np.asarray(c)


_D2_SERIES = _d2_series_coefficients(_SERIES_TERMS)


@dataclasses.dataclass(frozen=True, eq=False)
class GrowthTable:
    """Growth solutions on a uniform grid in ln a (a JAX pytree).

    Arrays have shape `(num_nodes,)` (plus leading batch axes under `vmap`); primes are
    derivatives with respect to ln a. D1 is normalised to 1 at a = 1, D2 ≈ −3/7 D1² (see the
    module docstring).

    Attributes:
        D1, dD1, d2D1: D1, D1', D1''.
        D2, dD2, d2D2: D2, D2', D2''.
        log_a_min: ln a of the first node (static).
        step: node spacing in ln a (static).
    """

    D1: jax.Array
    dD1: jax.Array
    d2D1: jax.Array
    D2: jax.Array
    dD2: jax.Array
    d2D2: jax.Array
    log_a_min: float
    step: float

    _array_names = ("D1", "dD1", "d2D1", "D2", "dD2", "d2D2")

    @property
    def num_nodes(self) -> int:
        return int(self.D1.shape[-1])

    @property
    def log_a_max(self) -> float:
        return self.log_a_min + self.step * (self.num_nodes - 1)

    @property
    def log_a(self) -> jax.Array:
        """The ln a grid, shape `(num_nodes,)`."""
        return self.log_a_min + self.step * jnp.arange(self.num_nodes)


jax.tree_util.register_pytree_node(
    GrowthTable,
    lambda t: (
        tuple(getattr(t, n) for n in GrowthTable._array_names),
        (t.log_a_min, t.step),
    ),
    lambda aux, leaves: GrowthTable(*leaves, *aux),  # type: ignore[call-arg]  # mypy miscounts *leaves, *aux
)


def _rhs_factory(cosmo: Cosmology):
    """Right-hand side of the growth system for y = (D1, D1', D2, D2') in x = ln a.

    The density parameters are computed once, outside the integration loop, and E² and
    dE²/d ln a share their exponentials: this keeps the scanned body (and its compile
    time under `grad`) small.
    """
    om, orad, ok, ode = cosmo.Omega_m, cosmo.Omega_r, cosmo.Omega_k, cosmo.Omega_de
    w0, wa = cosmo.w0, cosmo.wa

    def rhs(x, y):
        a = jnp.exp(x)
        r = orad * jnp.exp(-4.0 * x)
        m = om * jnp.exp(-3.0 * x)
        k = ok * jnp.exp(-2.0 * x)
        de = ode * jnp.exp(-3.0 * (1.0 + w0 + wa) * x - 3.0 * wa * (1.0 - a))
        e2 = r + m + k + de
        de2 = -4.0 * r - 3.0 * m - 2.0 * k - 3.0 * (1.0 + w0 + wa * (1.0 - a)) * de
        friction = 2.0 + 0.5 * de2 / e2
        source = 1.5 * m / e2
        d1, v1, d2, v2 = y
        return jnp.stack(
            [v1, source * d1 - friction * v1, v2, source * (d2 - d1**2) - friction * v2]
        )

    return rhs


def _initial_conditions(cosmo: Cosmology, a_min: float):
    """Growing-mode (D1, D1', D2, D2') at a_min, unnormalised (D1 ≈ a + 2/3 a_eq)."""
    a_eq = cosmo.Omega_r / cosmo.Omega_m
    # D1 = a + 2/3 a_eq is the exact Meszaros growing mode, valid for any a/a_eq.
    d1 = a_min + 2.0 / 3.0 * a_eq
    v1 = a_min + 0.0 * a_eq
    # D2: series in y = a/a_eq while radiation still matters at a_min, else EdS.
    use_series = a_eq * _Y_SERIES_MAX > a_min
    a_eq_safe = jnp.where(use_series, a_eq, 1.0)
    y = jnp.where(use_series, a_min / a_eq_safe, 0.0)
    powers = y ** jnp.arange(_SERIES_TERMS)
    unit = (2.0 / 3.0 * a_eq_safe) ** 2
    d2_series = unit * jnp.sum(jnp.asarray(_D2_SERIES) * powers)
    v2_series = unit * jnp.sum(jnp.asarray(_D2_SERIES * np.arange(_SERIES_TERMS)) * powers)
    d2 = jnp.where(use_series, d2_series, -3.0 / 7.0 * d1**2)
    v2 = jnp.where(use_series, v2_series, -6.0 / 7.0 * d1 * v1)
    return jnp.stack([d1, v1, d2, v2])


GROWTH_METHODS = ("sequential", "parallel")


def default_growth_method() -> str:
    """`growth_table`'s integration when `method=None`: "sequential" on CPUs, "parallel"
    on accelerators (where each step of a sequential loop costs kernel launches)."""
    return "sequential" if jax.default_backend() == "cpu" else "parallel"


def _check_growth_method(method) -> str:
    if method is None:
        return default_growth_method()
    if method not in GROWTH_METHODS:
        raise ValueError(f"method must be one of {GROWTH_METHODS} or None, got {method!r}")
    return method


def _rk4_step(rhs, h):
    def step(y, lna):
        k1 = rhs(lna, y)
        k2 = rhs(lna + 0.5 * h, y + 0.5 * h * k1)
        k3 = rhs(lna + 0.5 * h, y + 0.5 * h * k2)
        k4 = rhs(lna + h, y + h * k3)
        return y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    return step


def _integrate_sequential(rhs, h, y0, starts):
    """The states after each RK4 step, one step after the other (`lax.scan`)."""
    step = _rk4_step(rhs, h)

    def body(y, lna):
        y = step(y, lna)
        return y, y

    # The scan body is one RK4 step (the smallest to compile). On CPUs a loop iteration
    # is nearly free; on accelerators each costs kernel launches and a device->host sync
    # (~10 us), which the "parallel" method avoids. An H200 (float64, Planck18; table / its
    # gradient) ran this loop in 21.6 ms / 161 ms (unroll 1), 13.1 / 67 ms (unroll 4),
    # 13.0 / 51 ms (unroll 32, but 68 s to compile the gradient).
    unroll = 1 if jax.default_backend() == "cpu" else 4
    _, ys = jax.lax.scan(body, y0, starts, unroll=unroll)
    return ys


def _integrate_parallel(rhs, h, y0, starts):
    """The same RK4 states as `_integrate_sequential`, with no sequential loop.

    The growth system is linear in (D1, D1') and, given D1, affine in (D2, D2'), and so is
    one RK4 step: y1 -> M_n y1 and y2 -> M'_n y2 + c_n(y1), with c_n the step's D2 part
    applied to (y1, 0). The matrices (2x2) of all steps are evaluated at once (the step
    applied to unit vectors), the D1 states are prefix products of the M_n, then the c_n
    at those states, then the D2 states as prefix compositions of the affine maps. Prefix
    compositions use log2(steps) doubling rounds (Hillis & Steele 1986). Equal to the
    sequential loop up to the order of the floating-point operations (~1e-14 in float64).
    """
    step = jax.vmap(_rk4_step(rhs, h))
    n = starts.shape[0]
    eye = jnp.eye(4, dtype=y0.dtype)

    def matrix(i, j):  # columns i, j of the step's matrix, rows i and j
        cols = [step(jnp.broadcast_to(eye[k], (n, 4)), starts)[:, (i, j)] for k in (i, j)]
        return jnp.stack(cols, axis=-1)  # (n, 2, 2)

    zeros = jnp.zeros((n, 2), y0.dtype)
    m1, _ = _prefix_affine(matrix(0, 1), zeros)
    y1 = jnp.einsum("nij,j->ni", m1, y0[:2])
    y1_before = jnp.concatenate([y0[None, :2], y1[:-1]], axis=0)
    c = step(jnp.concatenate([y1_before, zeros], axis=-1), starts)[:, 2:]
    m2, c2 = _prefix_affine(matrix(2, 3), c)
    y2 = jnp.einsum("nij,j->ni", m2, y0[2:]) + c2
    return jnp.concatenate([y1, y2], axis=-1)


def _prefix_affine(m, c):
    """Inclusive prefix compositions of x -> m[k] x + c[k]: after round r, element k holds
    the composition of elements max(0, k - 2^r + 1) .. k (later maps applied last)."""
    n, shift = m.shape[0], 1
    while shift < n:
        eye = jnp.broadcast_to(jnp.eye(m.shape[-1], dtype=m.dtype), (shift, *m.shape[1:]))
        m_before = jnp.concatenate([eye, m[:-shift]], axis=0)
        c_before = jnp.concatenate([jnp.zeros_like(c[:shift]), c[:-shift]], axis=0)
        c = jnp.einsum("nij,nj->ni", m, c_before) + c
        m = jnp.einsum("nij,njk->nik", m, m_before)
        shift *= 2
    return m, c


def growth_table(
    cosmo: Cosmology,
    *,
    a_min: float = _DEFAULT_A_MIN,
    num: int = _DEFAULT_NUM,
    a_max: float = 1.0,
    method: str | None = None,
) -> GrowthTable:
    """Solve the first- and second-order growth equations; return them on a ln a grid.

    Integrates the system of the module docstring with fixed-step RK4 in ln a from `a_min`
    (growing-mode initial conditions, radiation included) and stores D, D', D'' of both
    orders at `num` nodes uniform in ln a over [a_min, 1] (extended with the same spacing up
    to `a_max` if `a_max > 1`). Pure and differentiable in the cosmological parameters; call
    it once inside your jitted function and pass the table to the evaluation functions.

    With the defaults the table reproduces a scipy `solve_ivp` (rtol 1e-10) solution to
    within 4e-8 relative (D1 within 5e-9) for a ∈ [1e-3, 1] (see the tests).

    Args:
        cosmo: the cosmology.
        a_min: first node; must be deep in radiation or matter domination (static).
        num: number of nodes over [a_min, 1] (static, ≥ 8).
        a_max: last scale factor covered, ≥ 1 (static).
        method: "sequential" (a `lax.scan` of RK4 steps), "parallel" (the same RK4 steps
            as prefix compositions of their linear/affine maps: no loop, a few dozen
            kernels on accelerators) or None for `default_growth_method()` ("sequential"
            on CPUs, "parallel" elsewhere). Both give the same table to ~1e-14 (float64).

    Returns:
        A `GrowthTable`.

    Raises:
        ValueError: `a_min` not in (0, 1e-2], `num` < 8, `a_max` < 1 or an unknown
            `method`.

    Example:
        >>> table = growth_table(Planck18())
        >>> growth_factor(Planck18(), 0.5, table)
    """
    if not (isinstance(a_min, int | float) and 0.0 < a_min <= 1e-2):
        raise ValueError(f"a_min must be a float in (0, 1e-2], got {a_min!r}")
    if not (isinstance(num, int | np.integer) and num >= 8):
        raise ValueError(f"num must be an integer >= 8, got {num!r}")
    if not (isinstance(a_max, int | float) and math.isfinite(a_max) and a_max >= 1.0):
        raise ValueError(f"a_max must be a finite float >= 1, got {a_max!r}")
    method = _check_growth_method(method)

    log_a_min = math.log(a_min)
    step = -log_a_min / (num - 1)
    n_above = math.ceil(math.log(a_max) / step - 1e-9) if a_max > 1.0 else 0
    n_nodes = num + n_above
    h = step / _SUBSTEPS

    rhs = _rhs_factory(cosmo)
    y0 = _initial_conditions(cosmo, a_min)
    starts = log_a_min + h * jnp.arange((n_nodes - 1) * _SUBSTEPS)  # ln a of each RK4 step
    if method == "sequential":
        ys = _integrate_sequential(rhs, h, y0, starts)
    else:
        ys = _integrate_parallel(rhs, h, y0, starts)
    # Keep every _SUBSTEPS-th state as a table node.
    ys = jnp.concatenate([y0[None], ys[_SUBSTEPS - 1 :: _SUBSTEPS]], axis=0)  # (n_nodes, 4)
    lna = log_a_min + step * jnp.arange(n_nodes)
    # Second derivatives from the equations themselves (exact for the stored states).
    dys = jax.vmap(rhs)(lna, ys)

    norm = ys[num - 1, 0]  # D1 at a = 1 (node num-1 is exactly ln a = 0)
    n1, n2 = 1.0 / norm, 1.0 / norm**2
    return GrowthTable(
        D1=ys[:, 0] * n1,
        dD1=ys[:, 1] * n1,
        d2D1=dys[:, 1] * n1,
        D2=ys[:, 2] * n2,
        dD2=ys[:, 3] * n2,
        d2D2=dys[:, 3] * n2,
        log_a_min=log_a_min,
        step=step,
    )


_ONE_HOT_MAX_POINTS = 64


def _hermite(table: GrowthTable, values, slopes, lna):
    """Cubic Hermite interpolation on the uniform ln a grid (values and exact slopes)."""
    t = (lna - table.log_a_min) / table.step
    i = jnp.clip(jnp.floor(t).astype(int), 0, table.num_nodes - 2)
    s = t - i
    h = table.step
    # Node values by one-hot sums rather than `values[..., i]`: the transpose of dynamic
    # indexing (a dynamic_update_slice) rejects the "unreduced" scalar cotangents that JAX
    # produces when the result multiplies explicitly sharded arrays (float32, sharded
    # particles: the sum over particles is still pending there).
    # (For many points at once, e.g. one per particle, the one-hot arrays would be large:
    # plain indexing is used there.)
    if i.size <= _ONE_HOT_MAX_POINTS:
        nodes = jnp.arange(table.num_nodes)
        hot0 = (nodes == jnp.expand_dims(i, -1)).astype(values.dtype)
        hot1 = (nodes == jnp.expand_dims(i + 1, -1)).astype(values.dtype)

        def pick(v, hot):
            v = jnp.expand_dims(v, tuple(range(v.ndim - 1, v.ndim - 1 + i.ndim)))
            return jnp.sum(v * hot, -1)

        y0, y1 = pick(values, hot0), pick(values, hot1)
        m0, m1 = pick(slopes, hot0) * h, pick(slopes, hot1) * h
    else:
        y0, y1 = values[..., i], values[..., i + 1]
        m0, m1 = slopes[..., i] * h, slopes[..., i + 1] * h
    s2, s3 = s * s, s * s * s
    return (
        (2 * s3 - 3 * s2 + 1) * y0
        + (s3 - 2 * s2 + s) * m0
        + (-2 * s3 + 3 * s2) * y1
        + (s3 - s2) * m1
    )


def _resolve_table(cosmo: Cosmology, table: GrowthTable | None) -> GrowthTable:
    if table is None:
        return growth_table(cosmo)
    if not isinstance(table, GrowthTable):
        raise TypeError(f"table must be a GrowthTable or None, got {type(table).__name__}")
    if table.D1.ndim != 1:
        raise ValueError(
            f"table has batch axes (D1 shape {table.D1.shape}); evaluate it under the same "
            "vmap that built it"
        )
    return table


def _check_in_table(a: Any, table: GrowthTable, name: str) -> jax.Array:
    """Validate a concrete `a` against the table's range; return ln a."""
    _check_scale_factor(a, name)
    if not isinstance(a, jax.core.Tracer):
        lna = np.log(np.asarray(a, dtype=float))
        tol = 1e-12 * table.step
        if np.any(lna < table.log_a_min - tol) or np.any(lna > table.log_a_max + tol):
            raise ValueError(
                f"{name} must lie in the growth table's range "
                f"[{math.exp(table.log_a_min):.3g}, {math.exp(table.log_a_max):.6g}], got {a!r}"
            )
    return jnp.log(jnp.asarray(a, dtype=float))


def _prepare(cosmo: Cosmology, a: Any, table: GrowthTable | None):
    _check_scale_factor(a)  # before the (costly) table build
    table = _resolve_table(cosmo, table)
    return _check_in_table(a, table, "a"), table


def growth_factor(cosmo: Cosmology, a: Any, table: GrowthTable | None = None) -> jax.Array:
    """Linear growth factor D1(a), normalised to D1(1) = 1.

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, within the table's range ([1e-6, 1] by default).
        table: a `growth_table(cosmo)`; built here when `None` (costs one ODE solve).

    Returns:
        D1(a), same shape as `a`.

    Raises:
        ValueError: a concrete `a` is not finite, not positive or outside the table.

    Example:
        >>> growth_factor(Planck18(), jnp.array([0.5, 1.0]))
    """
    lna, table = _prepare(cosmo, a, table)
    return _hermite(table, table.D1, table.dD1, lna)


def growth_rate(cosmo: Cosmology, a: Any, table: GrowthTable | None = None) -> jax.Array:
    """Linear growth rate f1(a) = d ln D1 / d ln a.

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, within the table's range.
        table: a `growth_table(cosmo)`; built here when `None`.

    Returns:
        f1(a), same shape as `a` (≈ Ω_m(a)^0.55).
    """
    lna, table = _prepare(cosmo, a, table)
    d = _hermite(table, table.D1, table.dD1, lna)
    dd = _hermite(table, table.dD1, table.d2D1, lna)
    return dd / d


def growth_factor_second(cosmo: Cosmology, a: Any, table: GrowthTable | None = None) -> jax.Array:
    """Second-order growth factor D2(a) ≈ −3/7 D1(a)², with D1(1) = 1.

    D2 is negative in this convention; the 2LPT displacement is q + D1 ψ1 + D2 ψ2 (see the
    module docstring for ψ2).

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, within the table's range.
        table: a `growth_table(cosmo)`; built here when `None`.

    Returns:
        D2(a), same shape as `a`.
    """
    lna, table = _prepare(cosmo, a, table)
    return _hermite(table, table.D2, table.dD2, lna)


def growth_rate_second(cosmo: Cosmology, a: Any, table: GrowthTable | None = None) -> jax.Array:
    """Second-order growth rate f2(a) = d ln D2 / d ln a (≈ 2 Ω_m(a)^(6/11)).

    Args:
        cosmo: the cosmology.
        a: scale factor, any shape, within the table's range.
        table: a `growth_table(cosmo)`; built here when `None`.

    Returns:
        f2(a), same shape as `a`.
    """
    lna, table = _prepare(cosmo, a, table)
    d = _hermite(table, table.D2, table.dD2, lna)
    dd = _hermite(table, table.dD2, table.d2D2, lna)
    return dd / d


def _momentum_growth(cosmo: Cosmology, lna, table: GrowthTable):
    """G_f(a) = a³ E(a) dD1/da = a² E(a) D1'(a): the momentum of the growing mode."""
    a = jnp.exp(lna)
    return a**2 * jnp.sqrt(_E2(cosmo, a)) * _hermite(table, table.dD1, table.d2D1, lna)


def fastpm_drift_factor(
    cosmo: Cosmology, a_i: Any, a_c: Any, a_f: Any, table: GrowthTable | None = None
) -> jax.Array:
    """FastPM drift factor from a_i to a_f with momenta taken at a_c (Feng et al. 2016, eq. 22).

    Conventions: comoving positions x (Mpc/h), time variable a, momentum
    p = a³ E(a) dx/da (= a² dx/d(H0 t)), so that dx/da = p/(a³ E) and dp/da = F/(a² E) with
    F = −∇Φ, ∇²Φ = 3/2 Ω_m δ. The drift is x(a_f) = x(a_i) + p(a_c) · factor with

        factor = [D1(a_f) − D1(a_i)] / G_f(a_c),   G_f(a) = a³ E(a) dD1/da,

    which moves a particle on the linear growing mode exactly, for any step size. (In FastPM's
    notation this is (G_p(a_f) − G_p(a_i)) / g_p(a_c) / (a_c³ E(a_c)) with G_p = D1, g_p =
    dD1/da.) The normalisation of D1 cancels.

    Args:
        cosmo: the cosmology.
        a_i, a_f: start and end of the drift (broadcastable).
        a_c: where the momentum is evaluated (usually the kick time between them).
        table: a `growth_table(cosmo)`; built here when `None`.

    Returns:
        The drift factor, the broadcast shape of the inputs, in the units of 1/(a³E).
    """
    for name, val in (("a_i", a_i), ("a_c", a_c), ("a_f", a_f)):
        _check_scale_factor(val, name)
    table = _resolve_table(cosmo, table)
    lna_i, lna_c, lna_f = (
        _check_in_table(x, table, n) for x, n in ((a_i, "a_i"), (a_c, "a_c"), (a_f, "a_f"))
    )
    d_f = _hermite(table, table.D1, table.dD1, lna_f)
    d_i = _hermite(table, table.D1, table.dD1, lna_i)
    return (d_f - d_i) / _momentum_growth(cosmo, lna_c, table)


def fastpm_kick_factor(
    cosmo: Cosmology, a_i: Any, a_c: Any, a_f: Any, table: GrowthTable | None = None
) -> jax.Array:
    """FastPM kick factor from a_i to a_f with the force taken at a_c (Feng et al. 2016, eq. 21).

    Same conventions as `fastpm_drift_factor` (p = a³ E dx/da, dp/da = F/(a² E), F = −∇Φ with
    ∇²Φ = 3/2 Ω_m δ, i.e. the force includes the 3/2 Ω_m factor). The kick is
    p(a_f) = p(a_i) + F(a_c) · factor with

        factor = [G_f(a_f) − G_f(a_i)] / g_f(a_c),   G_f = a³ E dD1/da,  g_f = a² E dG_f/da,

    and the growth equation gives g_f(a) = 3/2 Ω_m D1(a) exactly, which is what is used
    here. On the linear growing mode F(a) = 3/2 Ω_m D1(a) ψ, so the kick reproduces
    p = G_f ψ exactly for any step. The normalisation of D1 cancels.

    Args:
        cosmo: the cosmology.
        a_i, a_f: start and end of the kick (broadcastable).
        a_c: where the force is evaluated (usually the drift time between them).
        table: a `growth_table(cosmo)`; built here when `None`.

    Returns:
        The kick factor, the broadcast shape of the inputs, in the units of 1/(a² E).
    """
    for name, val in (("a_i", a_i), ("a_c", a_c), ("a_f", a_f)):
        _check_scale_factor(val, name)
    table = _resolve_table(cosmo, table)
    lna_i, lna_c, lna_f = (
        _check_in_table(x, table, n) for x, n in ((a_i, "a_i"), (a_c, "a_c"), (a_f, "a_f"))
    )
    g_diff = _momentum_growth(cosmo, lna_f, table) - _momentum_growth(cosmo, lna_i, table)
    d_c = _hermite(table, table.D1, table.dD1, lna_c)
    return g_diff / (1.5 * cosmo.Omega_m * d_c)
