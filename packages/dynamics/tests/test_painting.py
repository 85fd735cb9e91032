"""CIC painting and reading on one device: mass, adjointness, window, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fmt_dynamics import cic_paint, cic_read, density_from_displacement, positions

# float64 rounding of sums over ~4e3 particles of weights that add up to 1 each.
MASS_RTOL = 1e-13
ADJOINT_RTOL = 1e-12
# Midpoint rule over 256 stratified sub-cell offsets: error O(256^-2) ~ 2e-5.
WINDOW_ATOL = 1e-4
# Central differences of a piecewise-linear map (CIC): exact up to rounding unless a
# particle crosses a cell edge within ±EPS (probability ~ 1e-5 here).
FD_EPS = 1e-6
FD_RTOL = 1e-6
DOT_RTOL = 1e-12

N = 16


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(42)


@pytest.fixture(scope="module")
def disp(rng):
    # Several cells of displacement: many clouds wrap around the periodic box.
    return jnp.asarray(rng.normal(scale=3.0, size=(N, N, N, 3)))


def test_uniform_lattice_paints_ones():
    rho = cic_paint(jnp.zeros((N, N, N, 3)))
    assert rho.shape == (N, N, N)
    np.testing.assert_array_equal(np.asarray(rho), 1.0)
    # Integer shifts move every particle onto another site: still exactly uniform.
    rho = cic_paint(jnp.full((N, N, N, 3), -5.0))
    np.testing.assert_array_equal(np.asarray(rho), 1.0)


def test_mass_conserved_with_wrapping(disp):
    paint = jax.jit(cic_paint)
    rho = paint(disp)
    assert np.asarray(disp).max() > N / 4  # some clouds cross the box edge
    np.testing.assert_allclose(float(rho.sum()), N**3, rtol=MASS_RTOL)
    assert float(rho.min()) >= 0.0
    # Far outside the box (several box lengths): same mass, same field as wrapped inputs.
    far = paint(disp + 3 * N)
    np.testing.assert_allclose(np.asarray(far), np.asarray(rho), atol=1e-10)


def test_mass_conserved_other_mesh(disp, rng):
    w = jnp.asarray(rng.uniform(0.5, 1.5, size=(N, N, N)))
    for mesh_shape in [(8, 8, 8), (24, 16, 32)]:
        rho = cic_paint(disp, mesh_shape, weights=w)
        assert rho.shape == mesh_shape
        np.testing.assert_allclose(float(rho.sum()), float(w.sum()), rtol=MASS_RTOL)
    delta = density_from_displacement(disp, (24, 16, 32))
    np.testing.assert_allclose(float(delta.mean()), 0.0, atol=1e-13)


def test_paint_read_adjoint(disp, rng):
    w = jnp.asarray(rng.normal(size=(N, N, N)))
    m = jnp.asarray(rng.normal(size=(N, N, N)))
    lhs = jnp.vdot(cic_paint(disp, weights=w), m)
    rhs = jnp.vdot(w, cic_read(m, disp))
    np.testing.assert_allclose(float(lhs), float(rhs), rtol=ADJOINT_RTOL)
    # Same on a mesh finer than the lattice, and for vector-valued meshes.
    m2 = jnp.asarray(rng.normal(size=(24, 16, 32, 2)))
    w2 = jnp.asarray(rng.normal(size=(N, N, N, 2)))
    lhs = sum(
        jnp.vdot(cic_paint(disp, (24, 16, 32), weights=w2[..., c]), m2[..., c]) for c in range(2)
    )
    rhs = jnp.vdot(w2, cic_read(m2, disp))
    np.testing.assert_allclose(float(lhs), float(rhs), rtol=ADJOINT_RTOL)


def test_read_constant_and_positions(disp):
    np.testing.assert_allclose(np.asarray(cic_read(jnp.full((N, N, N), 2.5), disp)), 2.5)
    x = positions(disp)
    assert float(x.min()) >= 0.0 and float(x.max()) < N
    # A linear function along an axis (periodic away from the edge) is read exactly.
    small = disp * 0.1
    ramp = jnp.broadcast_to(jnp.arange(N, dtype=float)[:, None, None], (N, N, N))
    got = cic_read(ramp, small)
    x0 = positions(small)[..., 0]
    inside = (x0 > 1) & (x0 < N - 2)
    np.testing.assert_allclose(np.asarray(got)[inside], np.asarray(x0)[inside], atol=1e-12)


def _stratified_offsets():
    # Particle (i, j, k) sits at x = i + s with s = (j N + k + 1/2) / N^2: every sub-cell
    # offset appears once, so averages over particles are midpoint-rule integrals over s.
    j, k = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    s = (j * N + k + 0.5) / N**2
    disp = np.zeros((N, N, N, 3))
    disp[..., 0] = s[None]
    return jnp.asarray(disp), np.arange(N)[:, None, None] + s[None]


@pytest.mark.parametrize("mode", [1, 3, 5])
def test_compensation_undoes_the_window(mode):
    """Reading cos(kx) at uniformly spread sub-cell offsets averages to W(k) cos(kx), with
    W(k) = sinc²(k/2) (Hockney & Eastwood): the correlation with the true cos(kx) is W/2
    uncompensated and 1/2 once the mesh is deconvolved. Painting is the transpose."""
    k = 2 * np.pi * mode / N
    window = np.sinc(k / (2 * np.pi)) ** 2
    disp, x = _stratified_offsets()
    wave = jnp.asarray(np.broadcast_to(np.cos(k * np.arange(N))[:, None, None], (N, N, N)))
    for compensate, expected in [(False, window), (True, 1.0)]:
        got = cic_read(wave, disp, compensate=compensate)
        corr = 2 * float(jnp.mean(got * np.cos(k * x)))
        assert abs(corr - expected) < WINDOW_ATOL, (compensate, corr, expected)
        painted = cic_paint(disp, weights=jnp.asarray(np.cos(k * x)), compensate=compensate)
        corr = 2 * float(jnp.mean(painted * wave))
        assert abs(corr - expected) < WINDOW_ATOL, (compensate, corr, expected)
    assert abs(window - 1.0) > 10 * WINDOW_ATOL  # the test can tell the two apart


def _fd_check(fun, x, v):
    """Central difference along v against jvp, and jvp·u == u·vjp (one jitted program)."""
    u = jnp.asarray(np.random.default_rng(1).normal(size=jax.eval_shape(fun, x).shape))

    @jax.jit
    def check(x, v, u):
        _, tangent = jax.jvp(fun, (x,), (v,))
        fd = (fun(x + FD_EPS * v) - fun(x - FD_EPS * v)) / (2 * FD_EPS)
        (cot,) = jax.vjp(fun, x)[1](u)
        return tangent, fd, jnp.vdot(u, tangent), jnp.vdot(cot, v)

    tangent, fd, u_jvp, vjp_v = check(x, v, u)
    np.testing.assert_allclose(np.asarray(tangent), np.asarray(fd), rtol=FD_RTOL, atol=FD_RTOL)
    np.testing.assert_allclose(float(u_jvp), float(vjp_v), rtol=DOT_RTOL)


def test_gradients(disp, rng):
    # Forward mode needs the reference kernels (the others are custom_vjp, reverse only;
    # their vjps are compared with the reference's in test_fast_methods_equal_reference).
    small = disp * 0.2
    v = jnp.asarray(rng.normal(size=small.shape))
    m = jnp.asarray(rng.normal(size=(N, N, N)))
    w = jnp.asarray(rng.normal(size=(N, N, N)))
    ref = "reference"
    _fd_check(lambda d: cic_paint(d, weights=w, method=ref), small, v)
    _fd_check(lambda d: cic_read(m, d, method=ref), small, v)
    # Linear in the weights and in the mesh: transposes of each other.
    _fd_check(lambda ww: cic_paint(small, weights=ww, method=ref), w, m)
    _fd_check(lambda mm: cic_read(mm, small, method=ref), m, w)


# The "fused" (XLA) and "pallas" (Pallas/Triton; Pallas' interpreter on CPUs) kernels with
# hand-written vjps against the reference: the same forward arithmetic, and backward
# passes that differ only in summation order.
FUSED_RTOL = 1e-12


@pytest.mark.parametrize("method", ["fused", "pallas"])
@pytest.mark.parametrize("mesh_shape", [None, (12, 20, 16)])
def test_fast_methods_equal_reference(disp, rng, mesh_shape, method):
    shape = mesh_shape or (N, N, N)
    w = jnp.asarray(rng.uniform(size=(N, N, N)))
    m1 = jnp.asarray(rng.normal(size=shape))
    m3 = jnp.asarray(rng.normal(size=(*shape, 3)))
    ct = jnp.asarray(rng.normal(size=(N, N, N, 3)))

    def losses(method):
        def paint(d, w):
            return jnp.sum(jnp.sin(cic_paint(d, mesh_shape, weights=w, method=method)) * m1)

        def read(m, d):
            return jnp.sum(jnp.cos(cic_read(m, d, method=method)) * ct)

        def read1(m, d):
            return jnp.sum(jnp.cos(cic_read(m, d, method=method)) * ct[..., 0])

        return [
            jax.value_and_grad(paint, argnums=(0, 1))(disp, w),
            jax.value_and_grad(read, argnums=(0, 1))(m3, disp),
            jax.value_and_grad(read1, argnums=(0, 1))(m1, disp),
        ]

    ref, fused = losses("reference"), losses(method)
    for (v_ref, g_ref), (v_fused, g_fused) in zip(ref, fused, strict=True):
        np.testing.assert_allclose(float(v_fused), float(v_ref), rtol=FUSED_RTOL)
        for a, b in zip(g_fused, g_ref, strict=True):
            scale = float(jnp.max(jnp.abs(b)))
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=FUSED_RTOL * scale)


def test_pallas_merged_neighbours_equal_reference(rng):
    """Small displacements: z-neighbours mostly share cells, so the Pallas deposits merge
    their contributions (half the atomics); sums and gradients still equal the
    reference's. The mix of merged and unmerged pairs is checked in numpy."""
    d = jnp.asarray(0.5 + rng.normal(scale=0.25, size=(8, 8, 8, 3)))
    z = np.arange(8) + np.asarray(d[..., 2])
    cell = np.floor(z).astype(int)
    floor_xy = np.floor(np.asarray(d[..., :2]))
    same_xy = np.all(floor_xy[:, :, 1:] == floor_xy[:, :, :-1], axis=-1)
    joined = same_xy & (cell[:, :, 1:] == cell[:, :, :-1] + 1)
    assert 0.2 < joined.mean() < 0.95
    m1 = jnp.asarray(rng.normal(size=(8, 8, 8)))
    ct = jnp.asarray(rng.normal(size=(8, 8, 8, 3)))
    m3 = jnp.asarray(rng.normal(size=(8, 8, 8, 3)))

    def grads(method):
        def paint(d):
            return jnp.sum(jnp.sin(cic_paint(d, method=method)) * m1)

        def read(m, d):
            return jnp.sum(jnp.cos(cic_read(m, d, method=method)) * ct)

        return jax.grad(paint)(d), jax.grad(read, argnums=(0, 1))(m3, d)

    pal, ref = jax.tree.leaves(grads("pallas")), jax.tree.leaves(grads("reference"))
    for a, b in zip(pal, ref, strict=True):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=FUSED_RTOL * scale)


def test_unknown_method_is_rejected(disp):
    with pytest.raises(ValueError, match="method must be one of"):
        cic_paint(disp, method="triton")


@pytest.mark.parametrize("halo", [(3, 0), (2, 4)])
def test_pallas_halo_blocks_equal_reference(rng, halo):
    """The local kernels on a padded block (the sharded path's inner step, one device):
    clouds inside the padding, and clouds clamped at its edge, as the reference does."""
    from fmt_dynamics._src import painting

    lattice, mesh = (6, 4, 5), (12, 8, 10)  # one device's particles, the global mesh
    block = (6 + 2 * halo[0], 8 + 2 * halo[1], 10)  # its padded block (axes 0, 1 split)
    d = jnp.asarray(rng.normal(scale=2.0, size=(*lattice, 3)))
    w = jnp.asarray(rng.uniform(size=lattice))
    table = jnp.asarray(rng.normal(size=(*block, 3)))
    ct_mesh = jnp.asarray(rng.normal(size=block))
    ct_read = jnp.asarray(rng.normal(size=(*lattice, 3)))

    def both(method):
        def paint(d, w):
            out, n_out = painting._deposit(d, w, mesh, lattice, block, halo, method)
            return jnp.sum(out * ct_mesh), n_out

        def read(t, d):
            out, n_out = painting._gather(t, d, mesh, lattice, halo, method)
            return jnp.sum(out * ct_read), n_out

        return (
            jax.value_and_grad(paint, argnums=(0, 1), has_aux=True)(d, w),
            jax.value_and_grad(read, argnums=(0, 1), has_aux=True)(table, d),
        )

    ref, pal = both("reference"), both("pallas")
    assert int(ref[0][0][1]) > 0  # some clouds leave the padded block (clamped, counted)
    for a, b in zip(jax.tree.leaves(pal), jax.tree.leaves(ref), strict=True):
        scale = float(jnp.max(jnp.abs(b))) or 1.0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=FUSED_RTOL * scale)


@pytest.mark.parametrize(
    ("backend", "flags", "available", "expected"),
    [
        ("cpu", "", True, "reference"),
        ("gpu", "", True, "pallas"),
        ("cuda", "--xla_gpu_deterministic_ops=true", True, "fused"),
        ("gpu", "", False, "fused"),
    ],
)
def test_default_method_by_backend(backend, flags, available, expected):
    from fmt_dynamics._src.painting import _pick_method

    assert _pick_method(backend, flags, available) == expected
