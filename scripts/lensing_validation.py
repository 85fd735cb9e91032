"""Flat-sky κ spectra of PM lightcones from early-time LPT fields against linear Limber theory.

Runs `fmt_lensing.make_full_field_model` (flat geometry, FastPM steps from an early LPT
start) for several white-noise seeds, measures the binned C_ℓ of κ and compares its seed
average with `fmt_lensing.limber_cl` (linear EH98 P(k), same n(z), lenses restricted to
the simulated shells). Writes the comparison plot to docs/figures/lensing_validation.png
and prints the ratio per ℓ bin.

Valid range (see `valid_ell_range`): the simulation holds power only at
k_f = 2π/L ≤ k ≤ k_max (k_max = k_Nyquist/2 = π N/(2L) by default: beyond it the 2-D CIC
painting, the bilinear interpolation of the planes and the PM force resolution suppress
power by > 10%), and a κ mode ℓ receives the power at k = ℓ/χ from every lens distance χ.
An ℓ bin is valid when at least `--coverage` (default 90%) of its Limber integral comes
from distances where k_f ≤ (ℓ + ½)/χ ≤ k_max, and when ℓ ≥ 2 ℓ_F (ℓ_F = 2π/θ_F: the
lowest bins of the field hold a handful of modes) and ℓ ≤ ℓ_Nyquist(field)/2.

Usage:
    python scripts/lensing_validation.py --mesh 64 --box 400 --seeds 8
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from fmt_cosmo import Planck18  # noqa: E402
from fmt_fields import white_noise  # noqa: E402
from fmt_lensing import Delta, flat_power_spectrum, limber_cl, make_full_field_model  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def valid_ell_range(cosmo, ell, nz, chi_range, k_min, k_max, coverage):
    """Boolean per ℓ: the Limber integral from k_min ≤ ℓ/χ ≤ k_max is ≥ `coverage` of it."""
    full = limber_cl(cosmo, ell, nz, chi_range=chi_range)[0]

    def windowed(k, a):
        from fmt_cosmo import linear_power

        inside = (k >= k_min) & (k <= k_max)
        return jnp.where(inside, linear_power(cosmo, k, a), 0.0)

    part = limber_cl(cosmo, ell, nz, chi_range=chi_range, power=windowed)[0]
    return np.asarray(part / full) >= coverage, np.asarray(part / full)


def run(args):
    cosmo = Planck18()
    n, box = args.mesh, args.box
    nz = Delta(args.z_source)
    model = make_full_field_model(
        box_shape=(n, n, n),
        box_size=box,
        max_redshift=args.z_source,
        geometry="flat",
        field_size=args.field,
        field_npix=args.npix,
        density_plane_width=args.plane_width,
        min_distance=args.min_distance,
        interpolation=args.interpolation,
        deconvolve=args.deconvolve,
        n_steps=args.steps,
        a_init=args.a_init,
        lpt_order=2,
        observer=(0.5, 0.5, 0.5 / n),  # half a cell off the lattice planes
    )
    f = jax.jit(lambda c, w: model(c, nz, w)[0][0])
    edges_chi = model.spec.edges
    theta = np.deg2rad(args.field)
    ell_f = 2 * np.pi / theta
    ell_edges = ell_f * (np.arange(1, args.npix // 2 + 1) + 0.5)
    spectra = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        kappa = f(cosmo, white_noise(jax.random.key(seed), (n, n, n)))
        cl = flat_power_spectrum(kappa, args.field, ell_edges=ell_edges)
        spectra.append(np.asarray(cl.value))
    ell = np.asarray(cl.k)
    print(f"{args.seeds} maps in {time.perf_counter() - t0:.1f} s")
    spectra = np.array(spectra)
    measured = spectra.mean(0)
    err = spectra.std(0, ddof=1) / np.sqrt(args.seeds) if args.seeds > 1 else 0 * measured
    chi_range = (edges_chi[0], edges_chi[-1])
    theory = np.asarray(limber_cl(cosmo, jnp.asarray(ell), nz, chi_range=chi_range)[0])
    k_f, k_max = 2 * np.pi / box, args.kmax_frac * np.pi * n / box
    ok, frac = valid_ell_range(cosmo, jnp.asarray(ell), nz, chi_range, k_f, k_max, args.coverage)
    ok &= (ell >= 2 * ell_f) & (ell <= 0.5 * np.pi * args.npix / theta)
    ratio = measured / theory
    for i in range(ell.size):
        print(
            f"ell {ell[i]:8.1f}  ratio {ratio[i]:.4f} ± {err[i] / theory[i]:.4f}  "
            f"coverage {frac[i]:.3f} {'valid' if ok[i] else ''}"
        )
    if ok.any():
        print(
            f"valid range ell in [{ell[ok].min():.0f}, {ell[ok].max():.0f}]: max |ratio-1| "
            f"{np.max(np.abs(ratio[ok] - 1)):.4f}, mean ratio-1 {np.mean(ratio[ok]) - 1:+.4f}"
        )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, height_ratios=(2, 1))
        ax.errorbar(ell, measured, err, fmt="o", ms=3, label=f"PM lightcone, {args.seeds} seeds")
        ax.loglog(ell, theory, label="linear Limber (fmt-cosmo)")
        ax.set_ylabel(r"$C_\ell^{\kappa\kappa}$")
        ax.legend()
        bx.errorbar(ell, ratio, err / theory, fmt="o", ms=3)
        bx.axhline(1, color="k", lw=0.5)
        bx.axhspan(0.9, 1.1, color="0.9")
        if ok.any():
            bx.axvspan(ell[ok].min(), ell[ok].max(), color="C2", alpha=0.15, label="valid range")
            bx.legend()
        bx.set_ylim(0.5, 1.5)
        bx.set_xlabel(r"$\ell$")
        bx.set_ylabel("ratio")
        ax.set_title(
            f"{n}³ mesh, L={box:g} Mpc/h, field {args.field:g}°, $z_s$={args.z_source:g}",
            fontsize=9,
        )
        out = ROOT / "docs" / "figures" / "lensing_validation.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120, bbox_inches="tight")
        print("wrote", out.relative_to(ROOT))
    return ell, ratio, ok


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mesh", type=int, default=64)
    p.add_argument("--box", type=float, default=400.0)
    p.add_argument("--z-source", type=float, default=0.5)
    p.add_argument("--field", type=float, default=10.0, help="degrees")
    p.add_argument("--npix", type=int, default=64)
    p.add_argument("--plane-width", type=float, default=None)
    p.add_argument("--min-distance", type=float, default=0.0, help="inner shell edge, Mpc/h")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--interpolation", default="fourier", choices=["bilinear", "fourier"])
    p.add_argument("--deconvolve", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--a-init", type=float, default=None)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--kmax-frac", type=float, default=0.5, help="k_max / k_Nyquist")
    p.add_argument("--coverage", type=float, default=0.9)
    p.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True)
    run(p.parse_args())


if __name__ == "__main__":
    main()
