"""κ spectra of PM lightcones from early-time LPT fields against linear Limber theory.

Runs `fmt_lensing.make_full_field_model` (flat or spherical geometry; 2LPT at a_init,
FastPM steps to a = 1) for several white-noise seeds, each with its own draw of the
randomised box replicas, measures the binned C_ℓ of κ and compares the seed average with

- `shell_limber_cl`: Limber theory of the *same discrete shells* (the honest theory of the
  discretised lightcone; differs from the continuous integral by < 1% for 128 Mpc/h
  shells beyond 400 Mpc/h, see docs/lensing.md), and
- `limber_cl`: the continuous Limber integral over the same lens range (flat maps: at
  k = ℓ/χ, the flat-sky Fourier convention; spherical maps: k = (ℓ + ½)/χ).

Valid range (`valid_ell`; derived in docs/lensing.md): a κ multipole ℓ receives the power
at k = ℓ/χ of every lens distance χ of the shells. The periodic box holds no power below
k_f = 2π/L, and the painted planes, their interpolation and the PM forces damp it above
k_max = `--kmax-frac` × k_Nyquist. An ℓ bin is valid when ≥ `--coverage` of its Limber
integral comes from k_f·`--kmin-factor` ≤ k ≤ k_max, and, flat, ℓ ≥ 2ℓ_F (ℓ_F = 2π/θ_F)
and ℓ ≤ ℓ_Nyquist(field)/2; spherical, ℓ ≥ `--lmin` and ℓ ≤ nside.

Spherical maps: C_ℓ from `spherical_power_spectrum` (anafast / f_sky), divided by the
HEALPix deposit window b_ℓ² unless `--no-deconvolve`; `--mask-sims N` also measures the
bias of that estimator from the mask alone on N Gaussian maps of the same-shell theory
(stored as `mask_transfer`; on an octant it is 0.93-0.98 ± 0.03 for the lowest bin,
ℓ < 18, and consistent with 1 beyond, hence `--lmin 20` there).

Outputs: a table on stdout, a JSON file of every number (`--json`) and the comparison plot
(`--plot`, default docs/figures/lensing_validation_<geometry>.png).

Usage:
    python scripts/lensing_validation.py --geometry flat --mesh 64 --box 256 --seeds 32
    python scripts/lensing_validation.py --geometry spherical --mesh 64 --box 512 --nside 64
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from fmt_cosmo import Planck18, comoving_distance, linear_power  # noqa: E402
from fmt_fields import white_noise  # noqa: E402
from fmt_lensing import (  # noqa: E402
    Delta,
    flat_power_spectrum,
    healpix_deposit_window,
    limber_cl,
    make_full_field_model,
    reconstruct_full_kappa,
    shell_limber_cl,
    shell_weights,
    spherical_power_spectrum,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def band_fraction(cosmo, ell, nz, edges, geometry, k_min, k_max):
    """Fraction of the discrete-shell Limber C_ℓ that comes from k_min ≤ k ≤ k_max."""

    def band(k, a):
        return jnp.where((k >= k_min) & (k <= k_max), linear_power(cosmo, k, a), 0.0)

    full = shell_limber_cl(cosmo, ell, nz, edges, geometry=geometry)[0]
    part = shell_limber_cl(cosmo, ell, nz, edges, geometry=geometry, power=band)[0]
    return np.asarray(part / full)


def valid_ell(cosmo, ell, nz, edges, args):
    """Boolean per ℓ bin (module docstring) and the band fraction."""
    n, box = args.mesh, args.box
    k_f = 2 * np.pi / box  # transverse sides are `box` (flat: z may be longer)
    k_max = args.kmax_frac * np.pi * n / box
    frac = band_fraction(
        cosmo, jnp.asarray(ell), nz, edges, args.geometry, args.kmin_factor * k_f, k_max
    )
    ok = frac >= args.coverage
    if args.geometry == "flat":
        theta = np.deg2rad(args.field)
        ell_f = 2 * np.pi / theta
        ok &= (ell >= 2 * ell_f) & (ell <= 0.5 * np.pi * args.npix / theta)
    else:
        ok &= (ell >= args.lmin) & (ell <= args.nside)
    return ok, frac


def mesh_and_box(args):
    """(mesh, box) 3-tuples: cubic, or flat with a longer line-of-sight side `--box-z`."""
    n, box = args.mesh, args.box
    if args.box_z is None:
        return (n, n, n), (box, box, box)
    nz_cells = round(args.box_z / box * n)
    return (n, n, nz_cells), (box, box, nz_cells * box / n)


def build(args, cosmo, nz):
    mesh, box3 = mesh_and_box(args)
    common = dict(
        box_shape=mesh,
        box_size=box3,
        replicas=args.replicas,
        max_redshift=args.z_source,
        density_plane_width=args.plane_width,
        min_distance=args.min_distance,
        n_steps=args.steps,
        a_init=args.a_init,
        lpt_order=2,
        randomize_replicas=args.randomize,
    )
    if args.geometry == "flat":
        model = make_full_field_model(
            geometry="flat",
            field_size=args.field,
            field_npix=args.npix,
            interpolation=args.interpolation,
            deconvolve=args.deconvolve,
            observer=(0.5, 0.5, 0.5 / mesh[2]),  # half a cell off the lattice planes
            **common,
        )
    else:
        model = make_full_field_model(
            geometry="spherical", nside=args.nside, observer=args.observer, **common
        )
    eps = args.amplitude

    def kappa(c, seed_key):
        k_noise, k_rep = jax.random.split(seed_key)
        noise = eps * white_noise(k_noise, mesh)
        return model(c, nz, noise, replica_key=k_rep)[0][0] / eps

    return model, jax.jit(kappa)


def spherical_ell_edges(args):
    """ℓ bin edges of the spherical spectra: from 2 in steps of `--ell-width` to 3 nside."""
    return np.arange(2, 3 * args.nside + 1, args.ell_width)


def bin_spectrum(c_ell, ell_edges):
    """(ℓ, C_ℓ) averaged with weights 2ℓ + 1 over the bins [edge_i, edge_i+1)."""
    ells = np.arange(c_ell.size)
    idx = np.digitize(ells, ell_edges) - 1
    good = (idx >= 0) & (idx < ell_edges.size - 1)
    nb = ell_edges.size - 1
    w = (2 * ells + 1.0) * good
    norm = np.bincount(idx[good], w[good], nb)
    return (
        np.bincount(idx[good], (w * ells)[good], nb) / norm,
        np.bincount(idx[good], (w * c_ell)[good], nb) / norm,
    )


def mask_transfer(args, model, cosmo, nz, edges):
    """Binned mean and standard error of (estimated / true C_ℓ) of `--mask-sims` Gaussian
    maps drawn from the same-shell theory and cut by the model's visibility mask: the
    bias of the f_sky-corrected pseudo-C_ℓ estimator from the mask alone."""
    import healpy as hp

    lmax = 3 * args.nside - 1
    ell_edges = spherical_ell_edges(args)
    ells = np.arange(2, lmax + 1, dtype=float)
    theory = np.zeros(lmax + 1)
    theory[2:] = np.asarray(
        shell_limber_cl(cosmo, jnp.asarray(ells), nz, edges, geometry="spherical")[0]
    )
    _, binned_theory = bin_spectrum(theory, ell_edges)
    rng = np.random.default_rng(12345)
    ell_of, m_of = hp.Alm.getlm(lmax)
    # Gaussian a_ℓm of variance C_ℓ: real for m = 0, real and imaginary C_ℓ/2 each for m > 0
    scale = np.sqrt(theory[ell_of] / np.where(m_of == 0, 1.0, 2.0))
    ratios = []
    for _ in range(args.mask_sims):
        alm = scale * rng.standard_normal(ell_of.size)
        alm = alm + 1j * np.where(m_of == 0, 0.0, scale * rng.standard_normal(ell_of.size))
        full = hp.alm2map(alm, args.nside, lmax=lmax)
        full[~np.asarray(model.mask)] = hp.UNSEEN
        ratios.append(bin_spectrum(spherical_power_spectrum(full), ell_edges)[1] / binned_theory)
    ratios = np.array(ratios)
    return ratios.mean(0), ratios.std(0, ddof=1) / np.sqrt(len(ratios))


def measure(args):
    cosmo = Planck18()
    nz = Delta(args.z_source)
    model, kappa = build(args, cosmo, nz)
    edges = np.asarray(model.spec.edges)
    if args.geometry == "flat":
        theta = np.deg2rad(args.field)
        ell_f = 2 * np.pi / theta
        ell_edges = ell_f * (np.arange(1, args.npix // 2 + 1) + 0.5)
    else:
        ell_edges = spherical_ell_edges(args)
    spectra = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        k = kappa(cosmo, jax.random.key(seed))
        if args.geometry == "flat":
            cl = flat_power_spectrum(k, args.field, ell_edges=ell_edges)
            ell = np.asarray(cl.k)
            spectra.append(np.asarray(cl.value))
        else:
            full = reconstruct_full_kappa(np.asarray(k), model.mask)
            c_ell = spherical_power_spectrum(full, deconvolve=args.deconvolve)
            if seed == 0:
                print(f"visible sky fraction {np.mean(model.mask):.4f}", flush=True)
            ell, binned = bin_spectrum(c_ell, ell_edges)
            spectra.append(binned)
        if seed == 0:
            print(f"first map (with compilation) {time.perf_counter() - t0:.1f} s", flush=True)
        if args.max_seconds and time.perf_counter() - t0 > args.max_seconds and seed >= 1:
            print(f"time limit: stopping after {seed + 1} seeds", flush=True)
            break
    elapsed = time.perf_counter() - t0
    spectra = np.array(spectra)
    args.seeds = spectra.shape[0]
    return model, edges, ell, spectra, elapsed, cosmo, nz


def summarise(args, model, edges, ell, spectra, cosmo, nz):
    seeds = spectra.shape[0]
    measured = spectra.mean(0)
    err = spectra.std(0, ddof=1) / np.sqrt(seeds) if seeds > 1 else 0 * measured
    ell_j = jnp.asarray(ell)
    discrete = np.asarray(shell_limber_cl(cosmo, ell_j, nz, edges, geometry=args.geometry)[0])
    shift = -0.5 if args.geometry == "flat" else 0.0  # limber_cl uses k = (ℓ + ½)/χ
    continuous = np.asarray(
        limber_cl(cosmo, ell_j + shift, nz, chi_range=(edges[0], edges[-1]), n_chi=512)[0]
    )
    ok, frac = valid_ell(cosmo, ell, nz, edges, args)
    extra = {}
    if args.geometry == "spherical":
        extra["deposit_window_sq"] = bin_spectrum(
            healpix_deposit_window(args.nside) ** 2, spherical_ell_edges(args)
        )[1].tolist()
        if args.mask_sims:
            mean, sem = mask_transfer(args, model, cosmo, nz, edges)
            extra["mask_transfer"], extra["mask_transfer_sem"] = mean.tolist(), sem.tolist()
    # Poisson shot noise of the particles, Σ_i W_i² / N_i (N_i: particles per steradian
    # of shell i), for reference: a displaced lattice is sub-Poisson.
    nbar = (args.mesh / args.box) ** 3
    w = np.asarray(shell_weights(cosmo, jnp.asarray(edges), nz)[0])
    lo, hi = edges[:-1], edges[1:]
    if args.geometry == "flat":
        per_sr = nbar * (hi - lo) * (0.5 * (hi + lo)) ** 2
    else:
        per_sr = nbar * (hi**3 - lo**3) / 3
    out = {
        "poisson_noise": float(np.sum(w**2 / per_sr)),
        "args": vars(args),
        "shell_edges": edges.tolist(),
        "ell": ell.tolist(),
        "measured": measured.tolist(),
        "sem": err.tolist(),
        "limber_discrete": discrete.tolist(),
        "limber_continuous": continuous.tolist(),
        "band_fraction": frac.tolist(),
        "valid": ok.tolist(),
        **extra,
    }
    for name, theory in (("discrete", discrete), ("continuous", continuous)):
        ratio = measured / theory
        sig = err / theory
        rec = {"ratio": ratio.tolist(), "sigma": sig.tolist()}
        if ok.any():
            rec["max_abs_dev"] = float(np.max(np.abs(ratio[ok] - 1)))
            rec["mean_dev"] = float(np.mean(ratio[ok]) - 1)
            rec["mean_dev_sigma"] = float(np.sqrt(np.sum(sig[ok] ** 2)) / ok.sum())
        out[name] = rec
    return out


def report(out):
    ratio, sig = np.asarray(out["discrete"]["ratio"]), np.asarray(out["discrete"]["sigma"])
    ratio_c = np.asarray(out["continuous"]["ratio"])
    mask_t = out.get("mask_transfer")
    for i, ell in enumerate(out["ell"]):
        mask_col = (
            f"mask bias {mask_t[i]:.3f} ± {out['mask_transfer_sem'][i]:.3f}  " if mask_t else ""
        )
        print(
            f"ell {ell:8.1f}  measured/discrete {ratio[i]:.4f} ± {sig[i]:.4f}  "
            f"/continuous {ratio_c[i]:.4f}  band {out['band_fraction'][i]:.3f}  {mask_col}"
            f"{'valid' if out['valid'][i] else ''}"
        )
    ok = np.asarray(out["valid"])
    print(f"Poisson shot noise (reference) {out['poisson_noise']:.3e}")
    if ok.any():
        ells = np.asarray(out["ell"])[ok]
        for name in ("discrete", "continuous"):
            r = out[name]
            print(
                f"valid ell in [{ells.min():.0f}, {ells.max():.0f}] vs {name} Limber: "
                f"max |ratio-1| {r['max_abs_dev']:.4f}, mean ratio-1 {r['mean_dev']:+.4f} "
                f"± {r['mean_dev_sigma']:.4f}"
            )


def describe(args) -> str:
    """One line naming the configuration of a run (plot titles and legends)."""
    mesh, box3 = mesh_and_box(args)
    if mesh[2] == mesh[0]:
        size = f"{mesh[0]}³ mesh, L={box3[0]:g} Mpc/h"
    else:
        size = f"{mesh[0]}²×{mesh[2]} mesh, {box3[0]:g}²×{box3[2]:g} (Mpc/h)³"
    if args.geometry == "flat":
        where = f"field {args.field:g}°"
    else:
        where = f"nside {args.nside}"
        if args.observer is not None:
            where += f", observer {tuple(args.observer)}"
    reps = "randomised copies" if args.randomize else "periodic copies"
    chi_far = float(comoving_distance(Planck18(), 1.0 / (1.0 + args.z_source)))
    if args.geometry == "flat" and box3[2] > chi_far:
        reps = "no copy along the line of sight"
    if args.geometry == "spherical" and args.replicas == 0:
        reps = "visible pixels see no copy"
    amp = f", amplitude {args.amplitude:g}" if args.amplitude != 1 else ""
    return f"{args.geometry}: {size}, {where}, $z_s$={args.z_source:g}, {reps}{amp}"


def compare(paths, out_path, defaults):
    """Ratio measured / discrete-shell Limber of several JSON results in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, path in enumerate(paths):
        out = json.loads(pathlib.Path(path).read_text())
        args = argparse.Namespace(**{**defaults, **out["args"]})
        ell = np.asarray(out["ell"])
        r, s = np.asarray(out["discrete"]["ratio"]), np.asarray(out["discrete"]["sigma"])
        ok = np.asarray(out["valid"])
        dx = 1 + 0.012 * (i - len(paths) / 2)
        ax.errorbar(ell[ok] * dx, r[ok], s[ok], fmt="o-", ms=3, label=describe(args))
    ax.axhline(1, color="k", lw=0.5)
    ax.axhspan(0.9, 1.1, color="0.92")
    ax.set_xscale("log")
    ax.set_xlabel(r"$\ell$ (valid bins only)")
    ax.set_ylabel("measured / Limber (same shells)")
    ax.legend(fontsize=6, loc="upper right")
    fig.savefig(out_path, dpi=110, bbox_inches="tight")
    print("wrote", out_path)


def plot(args, out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ell = np.asarray(out["ell"])
    measured, err = np.asarray(out["measured"]), np.asarray(out["sem"])
    discrete = np.asarray(out["limber_discrete"])
    continuous = np.asarray(out["limber_continuous"])
    ok = np.asarray(out["valid"])
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, height_ratios=(2, 1))
    ax.errorbar(ell, measured, err, fmt="o", ms=3, label=f"PM lightcone, {args.seeds} seeds")
    ax.loglog(ell, discrete, label="linear Limber, same shells")
    ax.loglog(ell, continuous, "--", label="linear Limber, continuous")
    ax.set_ylabel(r"$C_\ell^{\kappa\kappa}$")
    ax.legend(fontsize=8)
    bx.errorbar(ell, measured / discrete, err / discrete, fmt="o", ms=3, label="/ same shells")
    bx.plot(ell, measured / continuous, "x", ms=4, label="/ continuous")
    bx.axhline(1, color="k", lw=0.5)
    bx.axhspan(0.9, 1.1, color="0.9")
    if ok.any():
        bx.axvspan(ell[ok].min(), ell[ok].max(), color="C2", alpha=0.15, label="valid range")
    bx.legend(fontsize=8)
    bx.set_ylim(0.6, 1.4)
    bx.set_xlabel(r"$\ell$")
    bx.set_ylabel("measured / theory")
    ax.set_title(describe(args), fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print("wrote", path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--geometry", default="flat", choices=["flat", "spherical"])
    p.add_argument("--mesh", type=int, default=64)
    p.add_argument("--box", type=float, default=256.0)
    p.add_argument("--box-z", type=float, default=None, help="flat: line-of-sight side")
    p.add_argument("--observer", type=float, nargs=3, default=None, help="box units")
    p.add_argument("--replicas", type=int, default=None, help="visible copies (spherical)")
    p.add_argument("--z-source", type=float, default=0.5)
    p.add_argument("--field", type=float, default=10.0, help="flat: degrees")
    p.add_argument("--npix", type=int, default=64, help="flat: κ pixels per side")
    p.add_argument("--nside", type=int, default=64, help="spherical: HEALPix nside")
    p.add_argument("--ell-width", type=int, default=16, help="spherical: ℓ bin width")
    p.add_argument("--lmin", type=float, default=2.0, help="spherical: lowest valid ℓ")
    p.add_argument("--plane-width", type=float, default=128.0, help="shell width, Mpc/h")
    p.add_argument("--min-distance", type=float, default=400.0, help="inner shell edge, Mpc/h")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--a-init", type=float, default=None)
    p.add_argument("--amplitude", type=float, default=1.0, help="white noise × this; C_ℓ / it²")
    p.add_argument("--interpolation", default="fourier", choices=["bilinear", "fourier"])
    p.add_argument(
        "--deconvolve",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flat: deconvolve the planes' CIC window; spherical: the HEALPix deposit window",
    )
    p.add_argument(
        "--mask-sims", type=int, default=0, help="spherical: Gaussian maps for the mask bias"
    )
    p.add_argument("--randomize", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--kmax-frac", type=float, default=0.5, help="k_max / k_Nyquist")
    p.add_argument("--kmin-factor", type=float, default=1.0, help="k_min / k_f")
    p.add_argument("--coverage", type=float, default=0.9)
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop seeding after this")
    p.add_argument("--json", type=pathlib.Path, default=None)
    p.add_argument("--plot", type=pathlib.Path, default=None)
    p.add_argument("--no-plot", dest="do_plot", action="store_false")
    p.add_argument("--replot", type=pathlib.Path, default=None, help="plot a saved JSON")
    p.add_argument("--compare", type=pathlib.Path, nargs="+", default=None, help="JSONs")
    args = p.parse_args()
    if args.compare:
        path = args.plot or ROOT / "docs" / "figures" / "lensing_replicas.png"
        compare(args.compare, path, vars(p.parse_args([])))
        return
    if args.replot is not None:
        out = json.loads(args.replot.read_text())
        saved = argparse.Namespace(**{**vars(p.parse_args([])), **out["args"]})
        path = args.plot or ROOT / "docs" / "figures" / f"lensing_validation_{saved.geometry}.png"
        plot(saved, out, path)
        return
    model, edges, ell, spectra, elapsed, cosmo, nz = measure(args)
    print(f"{args.seeds} maps in {elapsed:.1f} s")
    out = summarise(args, model, edges, ell, spectra, cosmo, nz)
    out["seconds"] = elapsed
    report(out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # the run's options, without output paths (they name the machine it ran on)
        skip = ("json", "plot", "replot", "compare")
        out["args"] = {k: v for k, v in vars(args).items() if k not in skip}
        args.json.write_text(json.dumps(out, indent=1))
    if args.do_plot:
        path = args.plot or ROOT / "docs" / "figures" / f"lensing_validation_{args.geometry}.png"
        plot(args, out, path)


if __name__ == "__main__":
    main()
