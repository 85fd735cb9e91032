"""κ spectra of an LPT + PM lightcone (32³ mesh) against linear Limber theory — the small CI
version. The full-accuracy comparison (64³-128³, hundreds of seeds, flat and spherical,
the plots in docs/figures) is `scripts/lensing_validation.py`; see docs/lensing.md.

Valid range (derived in docs/lensing.md, `valid_ell` in the script, reproduced here):
the periodic box holds power only at k ≥ k_f = 2π/L and the painted/interpolated planes
lose power beyond k_max = k_Nyquist/2 = πN/(2L); a κ multipole ℓ samples k = ℓ/χ over
the lens distances χ ∈ [χ_min, χ_s] of the shells. A bin is valid when ≥ 90% of its
Limber integral comes from k_f ≤ k ≤ k_max, and ℓ ≥ 2ℓ_F (ℓ_F = 2π/θ_F). With N = 32,
L = 256 Mpc/h, lenses at 400-1320 Mpc/h (sources at z = 0.5) and a 10° field, this keeps
the lowest bin(s) only (ℓ ≈ 78).

Tolerance: a 32³ box has few modes at those scales, so the seed-to-seed scatter of the
binned C_ℓ is large (measured ±20% for the mean of 16 seeds at ℓ ≈ 78). The test requires
|ratio − 1| < 3σ_stat + 5% (5%: the shell and kernel discretisation) in every valid bin
— a statistical test with a 0.3% false-alarm rate — instead of the issue's 10%/3%, which
the script measures at 128³ on a GPU (max 3.8%, mean −0.9 ± 0.7% for 78 ≤ ℓ ≤ 326). The
planes are sampled by Fourier interpolation with the CIC painting window divided out
(`interpolation="fourier", deconvolve=True`). Every seed draws its own randomised box
replicas (`replica_key`): with the plain periodic tiling the shells one box length apart
repeat the same slab (measured +51% at ℓ ≈ 78 at 64³). The theory is `shell_limber_cl`
(Limber for the same discrete shells). `test_shell_limber_tends_to_continuous` is the
theory-side check: the discrete-shell Limber C_ℓ tends to the continuous integral as the
shells get thinner, error ∝ Δχ².
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fmt_cosmo import Planck18, comoving_distance, growth_table, linear_power
from fmt_fields import white_noise
from fmt_lensing import (
    Delta,
    Smail,
    flat_power_spectrum,
    limber_cl,
    make_full_field_model,
    shell_limber_cl,
)

N, BOX, FIELD, NPIX, SEEDS = 32, 256.0, 10.0, 32, 16
Z_SOURCE, MIN_DISTANCE = 0.5, 400.0
COVERAGE = 0.9
N_SIGMA = 3.0
SYSTEMATIC = 0.05


@pytest.fixture(scope="module")
def comparison():
    cosmo = Planck18()
    nz = Delta(Z_SOURCE)
    model = make_full_field_model(
        box_shape=N,
        box_size=BOX,
        max_redshift=Z_SOURCE,
        geometry="flat",
        field_size=FIELD,
        field_npix=NPIX,
        density_plane_width=BOX / 2,
        min_distance=MIN_DISTANCE,
        n_steps=5,
        interpolation="fourier",
        deconvolve=True,
        observer=(0.5, 0.5, 0.5 / N),
    )
    f = jax.jit(lambda c, w, k: model(c, nz, w, replica_key=k)[0][0])
    ell_f = 2 * np.pi / np.deg2rad(FIELD)
    edges = ell_f * (np.arange(1, NPIX // 2 + 1) + 0.5)
    spectra = []
    for seed in range(SEEDS):
        k_noise, k_rep = jax.random.split(jax.random.key(seed))
        kappa = f(cosmo, white_noise(k_noise, (N, N, N)), k_rep)
        cl = flat_power_spectrum(kappa, FIELD, ell_edges=edges)
        spectra.append(np.asarray(cl.value))
    ell = np.asarray(cl.k)
    spectra = np.array(spectra)
    edges_chi = np.asarray(model.spec.edges)
    theory = np.asarray(shell_limber_cl(cosmo, jnp.asarray(ell), nz, edges_chi)[0])
    k_f, k_max = 2 * np.pi / BOX, 0.5 * np.pi * N / BOX

    def band(k, a):
        return jnp.where((k >= k_f) & (k <= k_max), linear_power(cosmo, k, a), 0.0)

    inside = np.asarray(shell_limber_cl(cosmo, jnp.asarray(ell), nz, edges_chi, power=band))
    valid = (inside[0] / theory >= COVERAGE) & (ell >= 2 * ell_f)
    return ell, spectra, theory, valid


def test_lightcone_spectrum_matches_limber_in_valid_range(comparison):
    ell, spectra, theory, valid = comparison
    ratio = spectra.mean(0) / theory
    sigma = spectra.std(0, ddof=1) / np.sqrt(SEEDS) / theory
    for i in range(ell.size):
        print(
            f"ell {ell[i]:7.1f} ratio {ratio[i]:.3f} ± {sigma[i]:.3f} {'valid' if valid[i] else ''}"
        )
    assert valid.sum() >= 1
    assert np.all(np.abs(ratio[valid] - 1) < N_SIGMA * sigma[valid] + SYSTEMATIC)
    # the mean of the valid bins, weighted by their inverse variance
    w = 1 / sigma[valid] ** 2
    mean = np.sum(w * ratio[valid]) / np.sum(w)
    assert abs(mean - 1) < N_SIGMA / np.sqrt(np.sum(w)) + SYSTEMATIC


# Measured (Planck18, sources at z = 0.5 and a Smail n(z)): 128 Mpc/h shells beyond
# 400 Mpc/h differ from the continuous integral by ≤ 0.68% (flat) / 0.54% (spherical),
# 64 Mpc/h shells by ≤ 0.16%, 16 Mpc/h shells from 0 by ≤ 0.03%. Tolerances: about twice.
THICK_RTOL, THIN_RTOL = 1.2e-2, 6e-4


WIDTHS = ((400.0, 128.0), (400.0, 64.0), (0.0, 16.0))


@pytest.fixture(scope="module")
def discretisation_errors():
    """max_ℓ |discrete/continuous − 1| per (geometry, n(z), shell width)."""
    cosmo = Planck18()
    ell = jnp.asarray([40.0, 80.0, 160.0, 320.0, 1000.0])
    cases = {}
    for nz in (Delta(0.5), Smail(2.0, 1.5, 0.5)):
        z_far = 0.5 if isinstance(nz, Delta) else float(np.max(nz.quadrature()[0]))
        chi_s = float(comoving_distance(cosmo, 1.0 / (1.0 + z_far)))
        for lo, width in WIDTHS if isinstance(nz, Delta) else WIDTHS[:1]:
            n = int(np.ceil((chi_s - lo) / width - 1e-9))
            cases[(type(nz).__name__, width)] = (nz, np.linspace(lo, chi_s, n + 1))

    @jax.jit
    def errors(c):
        table = growth_table(c)  # once, not once per call

        def power(k, a):
            return linear_power(c, k, a, growth_table=table)

        out = {}
        for (name, width), (nz, edges) in cases.items():
            for geometry in ("flat", "spherical"):
                # flat maps: k = ℓ/χ; limber_cl evaluates (ℓ + ½)/χ
                shift = -0.5 if geometry == "flat" else 0.0
                rng = (edges[0], edges[-1])
                cont = limber_cl(c, ell + shift, nz, chi_range=rng, n_chi=1024, power=power)[0]
                disc = shell_limber_cl(c, ell, nz, edges, geometry=geometry, power=power)[0]
                out[(geometry, name, width)] = jnp.max(jnp.abs(disc / cont - 1))
        return out

    return {k: float(v) for k, v in errors(cosmo).items()}


@pytest.mark.parametrize("geometry", ["flat", "spherical"])
@pytest.mark.parametrize("nz", ["Delta", "Smail"])
def test_shell_limber_tends_to_continuous(discretisation_errors, geometry, nz):
    devs = {w: v for (g, n, w), v in discretisation_errors.items() if (g, n) == (geometry, nz)}
    print(f"{geometry} {nz}: max |discrete/continuous - 1| {devs}")
    assert devs[128.0] < THICK_RTOL
    if 16.0 in devs:  # (the full convergence study for the validation's n(z) only)
        assert devs[16.0] < THIN_RTOL
        # second order in the shell width: halving it divides the error by ~4 (≥ 2.5)
        assert devs[64.0] < devs[128.0] / 2.5


def test_shell_limber_bad_input():
    cosmo = Planck18()
    with pytest.raises(ValueError, match="geometry"):
        shell_limber_cl(cosmo, jnp.ones(2), Delta(0.5), [0.0, 100.0], geometry="cubic")
    with pytest.raises(ValueError, match="chi_edges"):
        shell_limber_cl(cosmo, jnp.ones(2), Delta(0.5), [100.0])
    with pytest.raises(ValueError, match="n_sub"):
        shell_limber_cl(cosmo, jnp.ones(2), Delta(0.5), [0.0, 100.0], n_sub=0)
