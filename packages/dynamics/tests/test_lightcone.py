"""PM lightcone: HEALPix geometry vs healpy, mass bookkeeping, straight-line crossings,
linear-theory plane spectra, gradients across adjoints, O(1) memory, bad input.

Sharded-vs-single-device checks are in `test_lightcone_sharded.py`.
"""

import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, interpolate, optimize, stats

from fmt_cosmo import E, Planck18, comoving_distance, growth_factor
from fmt_dynamics import (
    Backsolve,
    Checkpointed,
    LeapfrogKDK,
    LightconeSpec,
    Reversible,
    lightcone,
    lpt,
)
from fmt_dynamics._src.healpix import ang2pix_ring, interpolation_weights_ring
from fmt_fields import angular_power_spectrum, linear_field, white_noise

# healpy's own float64 arithmetic differs in the last bits of the ring θ (measured 5e-9 at
# nside 64 on 2e5 random directions; weights are O(1)).
HEALPY_WEIGHT_ATOL = 1e-7
# Issue: the mass in all shells equals mean density × shell volumes within 1%.
MASS_RTOL = 1e-2
GRAD_RTOL_F64 = 1e-8
# Central differences along a random direction, step 1e-6 in float64 (small enough that no
# particle image crosses a shell edge, where the maps jump): truncation ~ε², round-off
# ~1e-16/ε = 1e-10 relative.
FD_EPS = 1e-6
FD_RTOL = 1e-6
# χ² of the binned plane spectrum against linear theory: false-alarm probability 1e-3.
CHI2_PVALUE = 1e-3
# Reversible adjoint: extra temporary memory allowed for 30 more steps, in particle states.
MEMORY_SLACK_STATES = 0.1

N, BOX = 16, 128.0


@pytest.fixture(scope="module")
def cosmo():
    return Planck18()


def power(k):
    return 2.0e4 * (k / 0.02) / (1.0 + (k / 0.02) ** 2.5)


# ---------------------------------------------------------------------------- HEALPix


@pytest.mark.parametrize("nside", [1, 2, 4, 16, 64])
def test_healpix_matches_healpy(nside):
    rng = np.random.default_rng(nside)
    v = rng.normal(size=(20000, 3))
    v[:4] = [[0, 0, 1], [0, 0, -1], [1, 0, 0], [0, 1e-9, 1]]  # poles, φ = 0, near pole
    pix = np.asarray(ang2pix_ring(nside, jnp.asarray(v)))
    np.testing.assert_array_equal(pix, hp.vec2pix(nside, *v.T))
    theta, phi = hp.vec2ang(v)
    p_ref, w_ref = hp.get_interp_weights(nside, theta, phi)
    p, w = (np.asarray(t).T for t in interpolation_weights_ring(nside, jnp.asarray(v)))
    # compare the (pixel → weight) maps point by point (zero weights may name any pixel)
    for k in range(4):
        np.testing.assert_array_equal(
            np.where(w_ref[k] > 1e-12, p[k], -1)[w_ref[k] > 1e-12], p_ref[k][w_ref[k] > 1e-12]
        )
    np.testing.assert_allclose(w, w_ref, atol=HEALPY_WEIGHT_ATOL)
    np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-14)


# ------------------------------------------------------------------- specs and helpers

DZ = 0.5 / N  # observer half a cell off the lattice planes (box units)


def flat_spec(n=N, **kw):
    args = dict(observer=(0.5, 0.5, DZ), max_distance=2 * BOX, n_shells=4, npix=n, replicas=2)
    args.update(kw)
    return LightconeSpec("flat", BOX, (n, n, n), **args)


def sphere_spec(n=N, **kw):
    args = dict(max_distance=1.5 * BOX, n_shells=4, spacing="volume", min_width=10.0, nside=4)
    args.update(kw)
    return LightconeSpec("spherical", BOX, (n, n, n), **args)


def scale_factors(cosmo, chi_max, n_lc=6, a_start=None):
    """Steps from a_start (or the cone's start) to a = 1; the last n_lc ones span the cone."""
    a_edge = (
        float(optimize.brentq(lambda a: float(comoving_distance(cosmo, a)) - chi_max, 0.05, 1.0))
        * 0.995
    )
    a = np.linspace(a_edge, 1.0, n_lc + 1)
    return a if a_start is None else np.concatenate([[a_start], a])


_compiled = {}


def run(cosmo, spec, state, a, adjoint="checkpointed", solver="fastpm", force=None):
    key = (spec, len(a), adjoint, solver, force, jnp.shape(state[0]))
    if key not in _compiled:
        _compiled[key] = jax.jit(
            lambda c, s, a_: lightcone(c, s, a_, spec, adjoint=adjoint, solver=solver, force=force)[
                0
            ]
        )
    return _compiled[key](cosmo, state, jnp.asarray(a))


def mass_error(lc, spec):
    painted = float(jnp.sum(lc.maps))
    expected = float(jnp.sum(lc.expected_counts)) * np.prod(spec.map_shape)
    return painted / expected - 1.0


# ------------------------------------------------------------------- mass bookkeeping

SPECS = {"flat": flat_spec, "spherical": sphere_spec}


@pytest.mark.parametrize("geometry", list(SPECS))
def test_mass_uniform_lattice(cosmo, geometry):
    spec = SPECS[geometry]()
    zero = jnp.zeros((N, N, N, 3))
    # Same steps as the evolved field below (one compiled function for both): the lattice
    # feels no force and has no momentum, so it stays put from a = 0.3 on.
    lc = run(cosmo, spec, (zero, zero), scale_factors(cosmo, spec.edges[-1], a_start=0.3))
    err = mass_error(lc, spec)
    print(f"{geometry} uniform lattice: relative mass error {err:.2e}")
    assert abs(err) < MASS_RTOL
    # Flat: 32 lattice planes in 256 Mpc/h, 8 per shell, nothing lost: exact.
    if geometry == "flat":
        np.testing.assert_allclose(lc.maps.sum(axis=(1, 2)), 8 * N * N)


@pytest.fixture(scope="module")
def evolved_state(cosmo):
    noise = white_noise(jax.random.key(1), (N, N, N))
    return lpt(cosmo, linear_field(noise, power, BOX), 0.3, order=2, box_size=BOX)


@pytest.mark.parametrize("geometry", list(SPECS))
def test_mass_evolved_field(cosmo, evolved_state, geometry):
    spec = SPECS[geometry]()
    lc = run(cosmo, spec, evolved_state, scale_factors(cosmo, spec.edges[-1], a_start=0.3))
    err = mass_error(lc, spec)
    rms = float(jnp.std(lc.overdensity()))
    print(f"{geometry} evolved: relative mass error {err:.2e}, pixel δ rms {rms:.2f}")
    assert rms > 0.1  # the field did evolve
    assert abs(err) < MASS_RTOL


# ------------------------------------------------------------- randomised replicas

# Correlation coefficient of two flat planes: one box apart they are the same slab under
# the plain periodic tiling (measured 0.999: only the growth between their crossing times
# differs); with randomised copies they are independent (16² pixels of a smooth field,
# few independent modes: measured r = -0.12, the bound is ~3 times that scatter).
SAME_SLAB_MIN_R = 0.9
INDEPENDENT_MAX_R = 0.4


def test_replica_transforms_are_box_symmetries():
    spec = flat_spec(randomize_replicas=True, replica_seed=5)
    rot, shift = (np.asarray(t) for t in spec.replica_transforms())
    offsets = spec.image_offsets()
    assert rot.shape == (offsets.shape[0], 3, 3) and shift.shape == (offsets.shape[0], 3)
    for r in rot:  # signed permutation matrices: orthogonal, entries 0 or ±1
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=0)
        assert set(np.abs(r).ravel()) <= {0.0, 1.0}
    home = np.all(offsets == 0, axis=-1)
    np.testing.assert_array_equal(rot[home][0], np.eye(3))
    np.testing.assert_array_equal(shift[home][0], 0.0)
    assert np.all((shift >= 0) & (shift < BOX))
    assert len({(tuple(r.ravel()), tuple(s)) for r, s in zip(rot, shift, strict=True)}) == len(rot)
    # same seed, same draw; another key, another draw; no randomisation: identities
    np.testing.assert_array_equal(np.asarray(spec.replica_transforms()[1]), shift)
    other = np.asarray(spec.replica_transforms(jax.random.key(9))[1])
    assert not np.allclose(other[~home], shift[~home])
    plain_rot, plain_shift = flat_spec().replica_transforms()
    np.testing.assert_array_equal(np.asarray(plain_rot), np.broadcast_to(np.eye(3), rot.shape))
    np.testing.assert_array_equal(np.asarray(plain_shift), 0.0)
    # unequal sides: only the permutations that keep the box
    long = LightconeSpec("flat", (BOX, BOX, 2 * BOX), (N, N, 2 * N), max_distance=BOX)
    assert long.symmetries().shape == (16, 3, 3)
    assert np.all(np.abs(long.symmetries()[:, 2, 2]) == 1.0)
    with pytest.raises(ValueError, match="randomize_replicas"):
        flat_spec(randomize_replicas="yes")
    with pytest.raises(ValueError, match="replica_seed"):
        flat_spec(replica_seed=1.5)


@pytest.mark.parametrize("geometry", list(SPECS))
def test_randomised_replicas_decorrelate_copies(cosmo, evolved_state, geometry):
    """Flat planes 0 and 2 (half a box deep each) are one box apart: the same slab under
    the periodic tiling, independent with randomised copies. The box itself is untouched
    (plane 0 is identical) and every copy keeps its particles (mass within MASS_RTOL)."""
    spec = SPECS[geometry]()
    rand = SPECS[geometry](randomize_replicas=True, replica_seed=3)
    a = scale_factors(cosmo, spec.edges[-1], a_start=0.3)
    plain = run(cosmo, spec, evolved_state, a)
    lc = run(cosmo, rand, evolved_state, a)
    err = mass_error(lc, rand)
    print(f"{geometry} randomised replicas: relative mass error {err:.2e}")
    assert abs(err) < MASS_RTOL
    assert not np.allclose(np.asarray(lc.maps), np.asarray(plain.maps))
    if geometry == "flat":
        d_plain, d_rand = np.asarray(plain.overdensity()), np.asarray(lc.overdensity())
        np.testing.assert_allclose(d_rand[0], d_plain[0], atol=1e-9)
        r_plain = np.corrcoef(d_plain[0].ravel(), d_plain[2].ravel())[0, 1]
        r_rand = np.corrcoef(d_rand[0].ravel(), d_rand[2].ravel())[0, 1]
        print(f"planes 0 and 2 correlation: periodic {r_plain:.3f}, randomised {r_rand:.3f}")
        assert r_plain > SAME_SLAB_MIN_R
        assert abs(r_rand) < INDEPENDENT_MAX_R


# ------------------------------------------------------------- straight-line crossing


def test_particle_on_straight_line_is_painted_where_it_crosses(cosmo):
    """No force (leapfrog drift is exactly ∫da/(a³E)), so x(a) = x0 + p·∫da/(a³E). One
    particle moves, the others stay: the map difference against an all-static run is +1
    in the shell where the cone meets each image of the moving particle and −1 where it
    meets the static copy — found here with brentq on the exact straight line."""
    n = 4
    spec = LightconeSpec(
        "spherical",
        BOX,
        (n, n, n),
        observer=(0.45, 0.5, 0.55),
        max_distance=1.4 * BOX,
        n_shells=6,
        nside=1,
        replicas=1,
    )
    a = scale_factors(cosmo, spec.edges[-1], n_lc=12, a_start=0.5)
    zero = jnp.zeros((n, n, n, 3))
    mover, momentum = (1, 2, 3), np.array([0.9, -0.6, 0.4])  # cells · (a³E)
    p = zero.at[mover].set(momentum)

    def no_force(x, c):
        return jnp.zeros_like(x)

    moving = run(cosmo, spec, (zero, p), a, solver=LeapfrogKDK(), force=no_force)
    static = run(cosmo, spec, (zero, zero), a, solver=LeapfrogKDK(), force=no_force)
    diff = np.asarray((moving.maps - static.maps).sum(axis=1))

    # χ(a) and the drift ∫da/(a³E) on a fine grid (cubic splines, error ≪ the 0.5 Mpc/h margin)
    grid = np.linspace(a[0], 1.0, 4001)
    e_grid = np.asarray(E(cosmo, jnp.asarray(grid)))
    chi_of = interpolate.CubicSpline(grid, np.asarray(comoving_distance(cosmo, jnp.asarray(grid))))
    drift = interpolate.CubicSpline(
        grid, integrate.cumulative_trapezoid(1.0 / (grid**3 * e_grid), grid, initial=0.0)
    )

    cell = BOX / n
    obs = np.asarray(spec.observer) * BOX
    site = np.asarray(mover) * cell
    expected = np.zeros(spec.n_shells)
    lo = a[0]
    for off in spec.image_offsets():
        for sign, mom in ((1, momentum), (-1, 0 * momentum)):

            def g(x, off=off, mom=mom):
                pos = site + off * BOX + mom * cell * drift(x)
                return float(chi_of(x)) - np.linalg.norm(pos - obs)

            if g(lo) > 0 and g(1.0) <= 0:
                a_x = optimize.brentq(g, lo, 1.0, xtol=1e-14)
                chi_x = float(chi_of(a_x))
                shell = np.searchsorted(spec.edges, chi_x, side="right") - 1
                if 0 <= shell < spec.n_shells:
                    # far from shell edges, or the linear in-step drift could flip it
                    assert min(abs(chi_x - e) for e in spec.edges) > 0.5
                    expected[shell] += sign
    assert np.abs(expected).sum() > 0
    np.testing.assert_allclose(diff, expected, atol=1e-9)


# Linear shell assignment: between neighbouring momenta the crossing radius moves by
# ~0.2 Mpc/h, ~1% of a 27.5 Mpc/h shell (bound: 5 times that).
LINEAR_MAX_CHANGE = 0.05


def test_linear_shell_assignment_is_continuous(cosmo):
    """A particle with radial momentum t: its crossing radius sweeps over shell edges and
    centres as t varies. "nearest" moves the whole particle from shell to shell (a jump of
    1, zero gradient); "linear" shares it between the two nearest shell centres, so the
    maps change continuously, have a gradient, and hold the same mass."""
    n = 4
    # shells 27.5 Mpc/h wide up to 110 Mpc/h, no replica: the particle at 48 Mpc/h from the
    # observer sweeps over a shell centre (41.25) and an edge (55), never out of the cone
    kw = dict(observer=(0.5, 0.5, 0.5 / n), max_distance=110.0, n_shells=4, replicas=0)
    a = scale_factors(cosmo, 110.0, n_lc=3, a_start=0.5)
    zero = jnp.zeros((n, n, n, 3))

    def no_force(x, c):
        return jnp.zeros_like(x)

    def maps_of(mode):
        spec = LightconeSpec("flat", BOX, (n, n, n), npix=n, shell_assignment=mode, **kw)

        def maps(t):
            p = zero.at[1, 2, 2].set(jnp.stack([0.0, 0.0, t]))
            lc, _ = lightcone(cosmo, (zero, p), a, spec, solver=LeapfrogKDK(), force=no_force)
            return lc.maps

        return jax.jit(jax.vmap(maps)), jax.jit(jax.vmap(jax.jacfwd(maps)))

    ts = jnp.linspace(-0.6, 0.6, 161)  # cells · (a³E): ±17 Mpc/h by the crossing
    out = {}
    for mode in ("nearest", "linear"):
        maps, dmaps = maps_of(mode)
        # particles per shell (each particle is spread over pixels by the 2-D CIC)
        m, dm = np.asarray(maps(ts)).sum(axis=(2, 3)), np.asarray(dmaps(ts)).sum(axis=(2, 3))
        out[mode] = m, np.abs(np.diff(m, axis=0)).max(), np.abs(dm).max()
    (m_n, jump_n, grad_n), (m_l, jump_l, grad_l) = out["nearest"], out["linear"]
    np.testing.assert_allclose(m_l.sum(axis=1), m_n.sum(axis=1), rtol=1e-12)
    assert jump_n == pytest.approx(1.0)  # a whole particle changed shell
    assert grad_n == 0.0  # radial motion: no transverse change, no gradient
    print(f"largest change between neighbouring t: linear {jump_l:.3g}, nearest {jump_n:.3g}")
    assert jump_l < LINEAR_MAX_CHANGE
    assert grad_l > 0.0


# --------------------------------------------------------- linear theory of the planes


def test_lpt_planes_follow_linear_theory(cosmo):
    """Planes one box deep, far in the linear regime (power × 1e-6): the projection of a
    full periodic box depth keeps only its k_z = 0 modes, so P_2D(k) = D̄² P(k) W(k)² / L
    with W the response of a 2-D CIC deposit of a lattice half a pixel off the pixel
    centres to a small displacement, (k_x² sinc(k_xΔ/2) cos(k_yΔ/2) + x↔y) / k². χ² over
    k ≤ k_Nyq/2 with the Gaussian variance 2P²/modes; the ratio of two planes' spectra is
    the squared growth ratio."""
    n, box = 32, 256.0
    spec = LightconeSpec(
        "flat",
        box,
        (n, n, n),
        observer=(0.5, 0.5, 0.5 / n),
        max_distance=2 * box,
        n_shells=2,
        npix=n,
        replicas=2,
    )
    amp = 1e-6
    noise = white_noise(jax.random.key(7), (n, n, n))
    delta = linear_field(noise, lambda k: amp * power(k), box)
    a = scale_factors(cosmo, spec.edges[-1], n_lc=8, a_start=0.1)
    state = lpt(cosmo, delta, a[0], order=1, box_size=box)
    lc = run(cosmo, spec, state, a)
    chi_of = jax.jit(lambda x: comoving_distance(cosmo, x))  # not op by op in brentq
    d_mean = []
    for lo, hi in zip(spec.edges[:-1], spec.edges[1:], strict=True):
        chis = np.linspace(lo, hi, 65)
        aa = [
            optimize.brentq(lambda x, c=c: float(chi_of(x)) - c, 0.05, 1) if c > 0 else 1.0
            for c in chis
        ]
        d_mean.append(float(np.mean(growth_factor(cosmo, jnp.asarray(aa)))))
    spectra = [angular_power_spectrum(m, box) for m in lc.overdensity()]
    k_nyq = np.pi * n / box
    delta_pix = box / n
    for j, sp in enumerate(spectra):
        k = np.asarray(sp.k)
        sel = (k > 0) & (k <= k_nyq / 2)
        # window averaged over the bin's modes by its value at the mean k along a diagonal
        kx = k / np.sqrt(2)
        s, c = np.sinc(kx * delta_pix / 2 / np.pi), np.cos(kx * delta_pix / 2)
        window = s * c
        theory = d_mean[j] ** 2 * amp * power(k) * window**2 / box
        modes = np.asarray(sp.modes) / 2  # ±k pairs of a real field are one mode
        chi2 = float(np.sum(((np.asarray(sp.value) - theory) ** 2 / (2 * theory**2 / modes))[sel]))
        dof = int(sel.sum())
        print(f"plane {j}: χ² = {chi2:.1f} for {dof} bins (p = {stats.chi2.sf(chi2, dof):.3f})")
        assert stats.chi2.sf(chi2, dof) > CHI2_PVALUE
    ratio = np.asarray(spectra[1].value) / np.asarray(spectra[0].value)
    growth = (d_mean[1] / d_mean[0]) ** 2
    print(f"P1/P0 over k ≤ k_Nyq/2: {ratio[sel].mean():.4f} (growth² {growth:.4f})")
    np.testing.assert_allclose(ratio[sel], growth, rtol=2e-2)


# ----------------------------------------------------------------------------- gradients

NG = 8
GRAD_SPECS = {
    "flat": LightconeSpec(
        "flat",
        64.0,
        (NG,) * 3,
        observer=(0.5, 0.5, 0.5 / NG),
        max_distance=120.0,
        n_shells=3,
        npix=NG,
        replicas=1,
    ),
    "spherical": LightconeSpec(
        "spherical", 64.0, (NG,) * 3, max_distance=60.0, n_shells=3, nside=2, replicas=1
    ),
}


def grad_loss(spec, adjoint, cosmo):
    a = jnp.asarray(scale_factors(cosmo, spec.edges[-1], n_lc=3, a_start=0.3))
    weights = jax.random.normal(jax.random.key(5), (spec.n_shells, *spec.map_shape))

    def loss(noise):
        state = lpt(cosmo, linear_field(noise, power, 64.0), 0.3, order=2)
        lc, _ = lightcone(cosmo, state, a, spec, adjoint=adjoint)
        return jnp.sum(weights * lc.overdensity()) + 0.1 * jnp.sum(lc.overdensity() ** 2)

    return loss


@pytest.fixture(scope="module")
def small_noise():
    return white_noise(jax.random.key(11), (NG, NG, NG))


def rel(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


# Backsolve shares Reversible's observer path; once (flat) to keep the compile time down.
ADJOINT_CASES = [("flat", Reversible()), ("flat", Backsolve()), ("spherical", Reversible())]
FD_DIRECTION = jax.random.key(2)


@pytest.fixture(scope="module")
def grad_results(cosmo, small_noise):
    """Every lightcone gradient and finite-difference loss, in ONE jitted function.

    Each adjoint runs its own code path; one program only shares XLA's fixed per-compile
    cost (compilation dominates the runtime of these small problems on CPU).
    """
    v = jax.random.normal(FD_DIRECTION, small_noise.shape)

    # the losses (and their scale factors, found with brentq) are built outside the trace
    losses = {
        (geometry, adjoint): grad_loss(spec, adjoint, cosmo)
        for geometry, spec in GRAD_SPECS.items()
        for adjoint in [Checkpointed()] + [a for g, a in ADJOINT_CASES if g == geometry]
    }

    def everything(noise):
        out = {}
        for (geometry, adjoint), loss in losses.items():
            out[f"{geometry}-{adjoint!r}"] = jax.value_and_grad(loss)(noise)
        for geometry in GRAD_SPECS:
            ns = jnp.stack([noise + FD_EPS * v, noise - FD_EPS * v])
            out[f"fd-{geometry}"] = jax.vmap(losses[(geometry, Checkpointed())])(ns)
        return out

    return v, jax.jit(everything)(small_noise)


@pytest.mark.parametrize(
    ("geometry", "adjoint"),
    ADJOINT_CASES,
    ids=[f"{g}-{type(a).__name__}" for g, a in ADJOINT_CASES],
)
def test_gradients_agree_across_adjoints(grad_results, geometry, adjoint):
    out = grad_results[1]
    v_ref, g_ref = out[f"{geometry}-{Checkpointed()!r}"]
    v, g = out[f"{geometry}-{adjoint!r}"]
    print(f"{geometry} {type(adjoint).__name__}: rel. gradient difference {rel(g, g_ref):.1e}")
    assert g.dtype == jnp.float64
    assert float(jnp.linalg.norm(g_ref)) > 0
    np.testing.assert_allclose(v, v_ref, rtol=1e-12)
    assert rel(g, g_ref) < GRAD_RTOL_F64


@pytest.mark.parametrize("geometry", list(GRAD_SPECS))
def test_gradient_matches_finite_differences(grad_results, geometry):
    v, out = grad_results
    _, g = out[f"{geometry}-{Checkpointed()!r}"]
    up, down = out[f"fd-{geometry}"]
    fd = (up - down) / (2 * FD_EPS)
    ad = jnp.vdot(g, v)
    print(f"{geometry}: directional derivative AD {float(ad):.10e} FD {float(fd):.10e}")
    np.testing.assert_allclose(ad, fd, rtol=FD_RTOL)


def _temp_bytes(n_steps, cosmo):
    spec = GRAD_SPECS["flat"]
    a0 = scale_factors(cosmo, spec.edges[-1], n_lc=1)[0]
    a = jnp.asarray(np.linspace(a0, 1.0, n_steps + 1))
    zero = jnp.zeros((NG, NG, NG, 3))

    def loss(x, a):
        lc, _ = lightcone(cosmo, (x, zero), a, spec, adjoint=Reversible())
        return jnp.sum(lc.maps**2)

    # the step boundaries are an argument: their (tiny) buffer is not a temporary
    f = jax.jit(jax.grad(loss))
    return f.lower(zero, a).compile().memory_analysis().temp_size_in_bytes


def test_reversible_memory_is_independent_of_steps(cosmo):
    m10, m40 = _temp_bytes(10, cosmo), _temp_bytes(40, cosmo)
    state_bytes = NG**3 * 3 * 8
    print(f"reversible lightcone temp bytes: 10 steps {m10}, 40 steps {m40}")
    # 30 more steps may only add per-step scalars (the scale-factor arrays and their
    # cotangent, measured 448 bytes), never a particle state (12 kB) or a map per step.
    assert abs(m40 - m10) < MEMORY_SLACK_STATES * state_bytes


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(observer=(0.5, 1.2, 0.5)), "observer"),
        (dict(observer=(-0.1, 0.5, 0.5)), "observer"),
        (dict(max_distance=2.0 * BOX), "max_distance=.*replicated volume"),
        (dict(replicas=0), "max_distance=.*replicated volume"),
        (dict(nside=3), "nside"),
        (dict(nside=0), "nside"),
        (dict(nside=64), "nside=64: plane resolution finer"),
        (dict(spacing="log"), "spacing"),
        (dict(n_shells=40, min_width=10.0), "min_width"),
        (dict(nside=4, npix=8), "npix"),
    ],
)
def test_bad_spherical_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sphere_spec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(observer=(0.5, 0.5, 1.5)), "observer"),
        (dict(max_distance=3 * BOX), "max_distance=.*replicated volume"),
        (dict(npix=2 * N), "npix=.*finer than allowed"),
        (dict(npix=(N, 0)), "npix"),
        (dict(max_distance=None), "max_distance"),
    ],
)
def test_bad_flat_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        flat_spec(**kwargs)


def test_bad_call(cosmo):
    spec = flat_spec()
    zero = jnp.zeros((N, N, N, 3))
    with pytest.raises(ValueError, match="geometry"):
        LightconeSpec("cylindrical", BOX, (N, N, N), max_distance=10.0)
    with pytest.raises(ValueError, match="scale_factors"):
        lightcone(cosmo, (zero, zero), jnp.linspace(0.95, 1.0, 3), spec)
    with pytest.raises(ValueError, match="mesh_shape"):
        small = jnp.zeros((5, 5, 5, 3))
        lightcone(cosmo, (small, small), jnp.linspace(0.5, 1.0, 3), spec)
    with pytest.raises(TypeError, match="LightconeSpec"):
        lightcone(cosmo, (zero, zero), jnp.linspace(0.5, 1.0, 3), {"geometry": "flat"})


def test_max_redshift_and_equal_volume(cosmo):
    spec = sphere_spec(max_distance=None, max_redshift=0.06, cosmo=cosmo, min_width=0.0)
    edges = np.asarray(spec.edges)
    np.testing.assert_allclose(edges[-1], float(comoving_distance(cosmo, 1 / 1.06)))
    np.testing.assert_allclose(np.diff(edges**3), edges[-1] ** 3 / 4, rtol=1e-10)
    wide = sphere_spec(min_width=40.0)
    assert np.all(np.diff(wide.edges) >= 40.0 - 1e-9)
    assert wide.edges[0] == 0.0 and wide.edges[-1] == 1.5 * BOX
