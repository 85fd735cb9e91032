"""Field-level weak-lensing inference on a synthetic observation, from end to end.

1. A known truth (Planck18; the white-noise initial field drawn from `--seed`) goes through
   the full-field forward model of fmt-lensing (linear field → LPT → PM lightcone → Born κ)
   and shape noise is added: the synthetic observation (saved, re-used on re-runs).
2. `fmt_lensing.full_field_probmodel` (priors on Ω_c and σ8, the whitened initial field)
   is sampled with `fmt_infer.batched_sampling`: checkpoints after warmup and after every
   batch in `<output-dir>/chains`, so running the same command again continues where it
   stopped (and a larger `--batch-count` extends the run).
3. Outputs in `--output-dir`: κ maps (truth, observed, posterior mean and standard
   deviation), C_ℓ of the maps against Limber theory (`fmt_lensing.limber_cl`), the corner
   plot of Ω_c and σ8 with the truth marked (`fmt_infer.plot_posterior`), trace plots,
   diagnostics (`fmt_infer.summary`: R-hat, bulk and tail ESS, divergences) and a short
   summary saying whether the truth lies inside the 95% credible intervals.

`--quick` picks settings that finish in a few minutes on a 2-core CPU: a box of
200 × 200 × 2600 (Mpc/h)³ on an 8 × 8 × 104 mesh (25 Mpc/h cells) as deep as the lightcone
to z = 1, so that no periodic copy of the box is needed; first-order LPT and one PM step;
a flat 4.5° field of 16² pixels, sources at z = 1, 60 galaxies per arcmin² (shape noise per
pixel about the rms of κ: the data constrain σ8, Ω_c hardly); 12 shells of 200 Mpc/h with
particles shared linearly between neighbouring shells (so that κ is continuous in the
initial field); NUTS with at most 31 leapfrog steps per draw, 200 warmup steps, then 2
batches of 100 draws. Options given explicitly override the quick (or default) values.

Why these choices (measured on this model; docs/tutorials/inference.md has the numbers):
(1) reverse-mode differentiation of fmt-cosmo's growth ODE dominated the gradient (LPT and
the PM step each solved it, 2000 RK4 steps): one coarser table shared by both made the
gradient ~3 times cheaper. (2) With each particle painted into the one shell that holds it,
and with randomly transformed copies of a small box, κ jumps whenever a particle crosses a
shell edge or a face of a copy: NUTS saw energy errors that no step size removes and stalled
(step size 1e-3, R-hat 1.9, the truth hundreds of σ away). (3) The initial field starts
from a prior draw, not NumPyro's uniform(-2, 2). (4) MCLMC (`--sampler MCLMC`) mixes ~10
times faster per gradient here, but it is unadjusted: at high σ8 the likelihood is stiffer,
its energy error blew up and threw the chain to the σ8 = 0.4 edge of the prior, where 10-40%
of its draws piled up; NUTS (adjusted) has no such bias.

Usage:
    python scripts/run_lensing_model.py --quick --output-dir output
    python scripts/run_lensing_model.py --box-shape 64 --box-size 400 --max-redshift 1 \
        --num-warmup 500 --num-samples 200 --batch-count 5 --output-dir runs/lensing64
    python scripts/run_lensing_model.py --output-dir output --plot-only
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import fmt_infer
import fmt_lensing
from fmt_cosmo import Planck18

SETTINGS_FILE = "run_settings.json"
OBSERVATION_FILE = "observation.npz"
CHAINS_DIR = "chains"
# Flat priors wide enough to hold every cosmology the demo could prefer.
PRIOR_RANGES = {"Omega_c": (0.1, 0.5), "sigma8": (0.4, 1.2)}
PARAMS = tuple(PRIOR_RANGES)
CREDIBLE_MASS = 0.95
# Realisations at the truth drawn for the C_ℓ plot (one compiled forward model, ~5 ms each).
ENSEMBLE_SIZE = 16

# Values used when neither --quick nor the option gives one (an accelerator-sized run).
DEFAULTS: dict[str, Any] = {
    "box_shape": (64, 64, 64),
    "box_size": (400.0, 400.0, 400.0),
    "geometry": "flat",
    "observer_position": None,  # (0.5, 0.5, half a cell) flat, box centre spherical
    "max_redshift": 1.0,
    "field_size": 5.0,
    "field_npix": 64,
    "nside": 32,
    "n_steps": 5,
    "lpt_order": 2,
    "plane_width": None,  # half the transverse box side
    "shell_assignment": "linear",
    "growth_a_min": None,  # fmt-cosmo's default growth table
    "growth_num": None,
    "sigma_e": 0.26,
    "n_gal": 30.0,
    "num_warmup": 500,
    "num_samples": 200,
    "batch_count": 5,
    "num_chains": 1,
    "sampler": "NUTS",
    "backend": "blackjax",
    "thinning": None,  # 5 for MCLMC, 1 for NUTS and HMC
    "desired_energy_var": 5e-4,  # MCLMC (BlackJAX's default)
    "max_tree_depth": 8,
    "seed": 0,
    "n_samples_plot": 100,
}
QUICK: dict[str, Any] = {
    "box_shape": (8, 8, 104),
    "box_size": (200.0, 200.0, 2600.0),
    # 130 Mpc/h into the box: the lightcone to z = 1 (2306 Mpc/h) ends 160 Mpc/h before
    # the far face, so that no periodic image of the box is painted
    "observer_position": (0.5, 0.5, 0.05),
    "max_redshift": 1.0,
    "field_size": 4.5,
    "field_npix": 16,
    "nside": 8,
    "n_steps": 1,
    "lpt_order": 1,
    "plane_width": 200.0,
    "growth_a_min": 1e-4,  # D1 and f within 2e-5 of the default table, 6x cheaper
    "growth_num": 64,
    "n_gal": 60.0,
    # A typical truth: with seed 1 the true κ has an rms of 2.0e-3, near the median of 24
    # realisations at the truth (1.9e-3, scatter 0.5e-3: a 4.5° map at this resolution
    # holds few modes). Seed 0 draws a low one (1.4e-3): NUTS then puts σ8 at 0.62 ± 0.12,
    # the truth 0.81 at +1.5 σ.
    "seed": 1,
    "num_warmup": 200,
    "num_samples": 100,
    "batch_count": 2,
    "max_tree_depth": 5,
    "n_samples_plot": 50,
}
# Settings that may change between invocations on the same output directory; all the
# others define the run, and a re-run must repeat them.
PER_INVOCATION = ("batch_count", "n_samples_plot")
RUN_KEYS = tuple(k for k in DEFAULTS if k not in PER_INVOCATION)


# --------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Defaults: --quick values with --quick, else an accelerator-sized run "
        f"({', '.join(f'{k}={v}' for k, v in DEFAULTS.items())}).",
    )
    add = p.add_argument
    add("--quick", action="store_true", help="settings that finish on a 2-core CPU")
    add("--output-dir", type=pathlib.Path, default=pathlib.Path("output"))
    add("--plot-only", action="store_true", help="re-plot from the samples already saved")
    add("--box-shape", type=int, nargs="+", metavar="N", help="mesh cells (1 or 3 ints)")
    add("--box-size", type=float, nargs="+", metavar="L", help="box side(s) in Mpc/h")
    add("--geometry", choices=("flat", "spherical"))
    add(
        "--observer-position",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="observer in box units, each in [0, 1]",
    )
    add("--max-redshift", type=float, help="source redshift (the far edge of the lightcone)")
    add("--field-size", type=float, help="flat: side of the field in degrees")
    add("--field-npix", type=int, help="flat: pixels per side of the κ map")
    add("--nside", type=int, help="spherical: HEALPix nside (a power of two)")
    add("--n-steps", type=int, help="PM steps between the LPT start and a = 1")
    add("--lpt-order", type=int, choices=(1, 2))
    add("--plane-width", type=float, help="width of the lightcone shells in Mpc/h")
    add(
        "--shell-assignment",
        choices=("nearest", "linear"),
        help="a particle goes to its shell, or is shared with the neighbouring one",
    )
    add("--sigma-e", type=float, help="intrinsic ellipticity dispersion per component")
    add("--n-gal", type=float, help="source galaxies per arcmin²")
    add("--num-warmup", type=int, help="warmup (adaptation) steps")
    add("--num-samples", type=int, help="draws per chain in each batch")
    add("--batch-count", type=int, help="batches in total (re-run with more to extend)")
    add("--num-chains", type=int, help="chains, vectorised on the same devices")
    add("--sampler", choices=("NUTS", "HMC", "MCLMC"))
    add("--backend", choices=("blackjax", "numpyro"))
    add("--thinning", type=int, help="transitions per stored draw (default: 5 MCLMC, else 1)")
    add(
        "--desired-energy-var",
        type=float,
        help="MCLMC: target energy-error variance per dimension (smaller: less bias)",
    )
    add("--max-tree-depth", type=int, help="NUTS: at most 2**depth leapfrog steps per draw")
    add("--seed", type=int, help="seed of the truth's initial field, noise and sampler")
    add("--n-samples-plot", type=int, help="posterior draws used for the maps and C_ℓ")
    return p


def _positive(p, name: str, value: Any, *, integer: bool = False, minimum: float = 0) -> None:
    ok = value > minimum if not integer else value >= max(minimum, 1)
    if not ok:
        bound = f">= {max(minimum, 1)}" if integer else f"> {minimum}"
        p.error(f"--{name.replace('_', '-')} must be {bound}, got {value!r}")


def _triple(p, name: str, values: Any) -> tuple:
    if len(values) not in (1, 3):
        p.error(f"--{name.replace('_', '-')} takes 1 or 3 values, got {len(values)}: {values}")
    return tuple(values) * 3 if len(values) == 1 else tuple(values)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line; unset options take --quick or default values.

    Raises:
        SystemExit: (argparse) an option has a bad value, with a message naming it.
    """
    p = _parser()
    args = p.parse_args(argv)
    base = {**DEFAULTS, **(QUICK if args.quick else {})}
    for key, value in base.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.box_shape = _triple(p, "box_shape", args.box_shape)
    args.box_size = _triple(p, "box_size", args.box_size)
    for n in args.box_shape:
        _positive(p, "box_shape", n, integer=True)
    for b in args.box_size:
        _positive(p, "box_size", b)
    if args.observer_position is not None:
        obs = tuple(float(o) for o in args.observer_position)
        if not all(0.0 <= o <= 1.0 for o in obs):
            p.error(f"--observer-position must be in box units, in [0, 1], got {obs}")
        args.observer_position = obs
    else:
        half_cell = 0.5 / args.box_shape[2]  # off the lattice planes of the particles
        flat = args.geometry == "flat"
        args.observer_position = (0.5, 0.5, half_cell) if flat else (0.5, 0.5, 0.5)
    for name in ("max_redshift", "field_size", "n_gal", "desired_energy_var"):
        _positive(p, name, getattr(args, name))
    if args.sigma_e < 0:
        p.error(f"--sigma-e must be >= 0, got {args.sigma_e!r}")
    for name in ("field_npix", "nside", "n_steps", "num_samples", "batch_count", "num_chains"):
        _positive(p, name, getattr(args, name), integer=True)
    if args.thinning is None:
        args.thinning = 5 if args.sampler == "MCLMC" else 1
    for name in ("max_tree_depth", "n_samples_plot", "thinning"):
        _positive(p, name, getattr(args, name), integer=True)
    if args.plane_width is not None:
        _positive(p, "plane_width", args.plane_width)
    if args.num_warmup < 0:
        p.error(f"--num-warmup must be >= 0, got {args.num_warmup!r}")
    if args.nside & (args.nside - 1):
        p.error(f"--nside must be a power of two, got {args.nside!r}")
    if args.sampler == "MCLMC" and args.backend != "blackjax":
        p.error("--sampler MCLMC needs --backend blackjax (NumPyro has no MCLMC)")
    return args


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that define a run (JSON-ready; lists for tuples)."""
    out = {}
    for key in RUN_KEYS:
        value = getattr(args, key)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _check_or_write_settings(out: pathlib.Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        differ = {k: (stored.get(k), v) for k, v in settings.items() if stored.get(k) != v}
        if differ:
            details = "; ".join(f"{k}: saved {a!r}, given {b!r}" for k, (a, b) in differ.items())
            raise SystemExit(
                f"error: {out} holds a run with other settings ({details}). Repeat the "
                "original options (only --batch-count and --n-samples-plot may change), use "
                "another --output-dir, or delete this one."
            )
    else:
        path.write_text(json.dumps(settings, indent=2) + "\n")


# --------------------------------------------------------------------------- the model


def configuration(settings: dict[str, Any]) -> fmt_lensing.Configuration:
    """The `fmt_lensing.Configuration` of a run: sources at `max_redshift`, flat priors."""
    import numpyro.distributions as dist

    flat = settings["geometry"] == "flat"
    box_shape = tuple(settings["box_shape"])
    box_size = tuple(settings["box_size"])
    priors = tuple((name, dist.Uniform(*PRIOR_RANGES[name])) for name in PARAMS)
    return fmt_lensing.Configuration(
        box_shape=box_shape,
        box_size=box_size,
        max_redshift=settings["max_redshift"],
        nz=(fmt_lensing.Delta(settings["max_redshift"]),),
        geometry=settings["geometry"],
        field_size=settings["field_size"] if flat else None,
        field_npix=settings["field_npix"] if flat else None,
        nside=None if flat else settings["nside"],
        density_plane_width=settings["plane_width"] or box_size[0] / 2,
        observer=tuple(settings["observer_position"]),
        n_steps=settings["n_steps"],
        lpt_order=settings["lpt_order"],
        shell_assignment=settings["shell_assignment"],
        growth_a_min=settings["growth_a_min"],
        growth_num=settings["growth_num"],
        sigma_e=settings["sigma_e"],
        n_gal=settings["n_gal"],
        priors=priors,
    )


def _init_site(site=None):
    """NumPyro init strategy: the initial field from a prior draw (white noise, in the
    prior's typical set; NumPyro's default, uniform in (-2, 2) in every cell, is far from
    it), the cosmological parameters at their prior median."""
    from numpyro.infer import init_to_median, init_to_sample

    if site is None:
        return functools.partial(_init_site)
    if site["name"] == "initial_conditions":
        return init_to_sample(site)
    return init_to_median(site)


def init_strategy():
    """The init strategy of the runs (`_init_site`), as NumPyro expects it (a partial)."""
    return functools.partial(_init_site)


def truth_values() -> dict[str, float]:
    """Ω_c and σ8 of the truth (Planck18)."""
    planck = Planck18()
    return {"Omega_c": float(planck.Omega_c), "sigma8": float(planck.sigma8)}


def truth_simulator(model):
    """Jitted `draw(key)`: κ, observed κ (κ + shape noise) and the initial field of one
    realisation of the model at the truth's parameters."""
    import numpyro.handlers as handlers

    truth = {k: jnp.float32(v) for k, v in truth_values().items()}

    def draw(key):
        conditioned = handlers.condition(model, truth)
        tr = handlers.trace(handlers.seed(conditioned, key)).get_trace()
        return {
            "kappa_true": tr["kappa"]["value"],
            "kappa_obs": tr["kappa_obs"]["value"],
            "initial_conditions": tr["initial_conditions"]["value"],
        }

    return jax.jit(draw)


def make_observation(draw, seed: int) -> dict[str, np.ndarray]:
    """Truth κ, observed κ (κ + shape noise) and the truth's initial field, from `seed`
    (`draw`: the `truth_simulator` of the model)."""
    return {k: np.asarray(v) for k, v in draw(jax.random.key(seed)).items()}


def truth_ensemble(draw, seed: int, count: int) -> np.ndarray:
    """κ maps of `count` other realisations at the truth (first source bin): what the
    model predicts for the map's statistics at this resolution (`draw` as above)."""
    keys = [jax.random.fold_in(jax.random.key(seed), i + 1) for i in range(count)]
    return np.stack([np.asarray(draw(k)["kappa_true"][0]) for k in keys])


# --------------------------------------------------------------------------- analysis


def credible_report(draws: dict[str, np.ndarray], truth: dict[str, float]) -> dict[str, Any]:
    """Posterior mean, std (and the prior's), central 95% interval, whether the truth lies
    inside it and how many posterior standard deviations away it is."""
    report = {}
    lo_q, hi_q = (1 - CREDIBLE_MASS) / 2, (1 + CREDIBLE_MASS) / 2
    for name in PARAMS:
        x = np.asarray(draws[name], dtype=float).ravel()
        lo, hi = np.quantile(x, [lo_q, hi_q])
        lo_p, hi_p = PRIOR_RANGES[name]
        report[name] = {
            "truth": truth[name],
            "mean": float(x.mean()),
            "std": float(x.std(ddof=1)),
            "prior_std": (hi_p - lo_p) / np.sqrt(12.0),  # uniform prior
            "interval_95": [float(lo), float(hi)],
            "truth_inside_95": bool(lo <= truth[name] <= hi),
            "truth_offset_in_std": float((truth[name] - x.mean()) / x.std(ddof=1)),
        }
    return report


def _spectrum(kappa_bin: np.ndarray, settings: dict[str, Any], forward) -> tuple:
    """(ℓ, C_ℓ) of one κ map of one bin (flat binned; spherical anafast over ℓ ≥ 2)."""
    if settings["geometry"] == "flat":
        cl = fmt_lensing.flat_power_spectrum(jnp.asarray(kappa_bin), settings["field_size"])
        return np.asarray(cl.k), np.asarray(cl.value)
    import healpy as hp

    full = np.full(forward.mask.size, hp.UNSEEN)
    full[forward.pixels] = kappa_bin
    cl = fmt_lensing.spherical_power_spectrum(full, mask=forward.mask)
    ell = np.arange(cl.size)
    return ell[2:], cl[2:]


def _pixel_area_sr(settings: dict[str, Any]) -> float:
    if settings["geometry"] == "flat":
        return float(np.deg2rad(settings["field_size"]) / settings["field_npix"]) ** 2
    return 4 * np.pi / (12 * settings["nside"] ** 2)


# --------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_maps(out, settings, forward, maps: dict[str, np.ndarray]) -> pathlib.Path:
    """κ maps of the first source bin: truth, observed, posterior mean and std."""
    plt = _plt()
    titles = {
        "kappa_true": "true κ (noise free)",
        "kappa_obs": "observed κ (truth + shape noise)",
        "posterior_mean": "posterior mean of κ",
        "posterior_std": "posterior std of κ",
    }
    path = out / "kappa_maps.png"
    if settings["geometry"] == "flat":
        fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
        half = settings["field_size"] / 2
        extent = (-half, half, -half, half)
        vmax = float(np.max(np.abs(maps["kappa_true"])))
        for ax, (key, title) in zip(axes, titles.items(), strict=True):
            std = key == "posterior_std"
            kw = {"cmap": "viridis"} if std else {"cmap": "RdBu_r", "vmin": -vmax, "vmax": vmax}
            im = ax.imshow(maps[key].T, origin="lower", extent=extent, **kw)
            ax.set(title=title, xlabel="θx [deg]", ylabel="θy [deg]")
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    import healpy as hp

    fig = plt.figure(figsize=(14, 8))
    vmax = float(np.max(np.abs(maps["kappa_true"])))
    for i, (key, title) in enumerate(titles.items()):
        full = np.full(forward.mask.size, hp.UNSEEN)
        full[forward.pixels] = maps[key]
        std = key == "posterior_std"
        hp.mollview(
            full,
            fig=fig.number,
            sub=(2, 2, i + 1),
            title=title,
            cmap="viridis" if std else "RdBu_r",
            min=None if std else -vmax,
            max=None if std else vmax,
        )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_spectra(out, settings, spectra: dict[str, Any]) -> pathlib.Path:
    """C_ℓ of the observed, true and posterior maps against Limber theory (+ noise)."""
    plt = _plt()
    ell = spectra["ell"]
    fig, ax = plt.subplots(figsize=(9.6, 4.8))
    ax.loglog(ell, spectra["limber"], "k-", label="Limber, linear P(k), truth")
    ax.loglog(ell, spectra["limber"] + spectra["noise"], "k--", label="Limber + shape noise")
    ens = spectra["ensemble"]
    mean, sd = ens.mean(axis=0), ens.std(axis=0, ddof=1)
    cell = min(b / n for b, n in zip(settings["box_size"], settings["box_shape"], strict=True))
    ax.loglog(
        ell,
        mean,
        "-",
        color="0.35",
        lw=1.2,
        label=f"this model ({cell:.3g} Mpc/h cells) at the truth: mean of {len(ens)} maps",
    )
    ax.fill_between(
        ell,
        np.maximum(mean - sd, mean * 1e-2),
        mean + sd,
        color="0.6",
        alpha=0.25,
        label="... ±1σ of one map",
    )
    ax.axhline(spectra["noise"], color="0.6", lw=0.8, ls=":", label="shape noise N_ℓ")
    ax.loglog(ell, spectra["observed"], "o", color="C3", ms=4, label="observed map")
    ax.loglog(ell, spectra["true"], "s", color="C0", ms=3, mfc="none", label="true map")
    lo, hi = np.percentile(spectra["posterior"], [2.5, 97.5], axis=0)
    ax.fill_between(ell, lo, hi, color="C2", alpha=0.3, label="posterior maps, 95%")
    ax.set(
        xlabel="ℓ",
        ylabel="C_ℓ",
        title=f"C_ℓ of the observed κ vs Limber theory (z_s = {settings['max_redshift']})",
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = out / "power_spectrum.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_traces(out, draws: dict[str, np.ndarray], truth: dict[str, float]) -> pathlib.Path:
    """Trace of each parameter per chain, the truth as a horizontal line."""
    plt = _plt()
    fig, axes = plt.subplots(len(PARAMS), 1, figsize=(8, 2.4 * len(PARAMS)), sharex=True)
    for ax, name in zip(axes, PARAMS, strict=True):
        x = np.asarray(draws[name])
        for c in range(x.shape[0]):
            ax.plot(x[c], lw=0.7, label=f"chain {c}")
        ax.axhline(truth[name], color="C3", label="truth")
        ax.set(ylabel=name)
    axes[0].set_title("MCMC traces (after warmup)")
    axes[0].legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("draw")
    fig.tight_layout()
    path = out / "traces.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- driver


def _sampling_sharding(settings: dict[str, Any]):
    """Shard the initial field over all devices (2-D grid over x, y) when there are > 1."""
    n = jax.device_count()
    if n == 1:
        return None, None
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    p0 = next(d for d in range(int(np.sqrt(n)), 0, -1) if n % d == 0)
    grid = (p0, n // p0)
    shape = settings["box_shape"]
    if shape[0] % grid[0] or shape[1] % grid[1]:
        raise SystemExit(f"error: --box-shape {shape} is not divisible by the device grid {grid}")
    mesh = jax.make_mesh(grid, ("x", "y"))
    return mesh, {"initial_conditions": NamedSharding(mesh, P("x", "y"))}


def completed_batches(chains: pathlib.Path) -> int:
    """Batches committed in a run directory of `fmt_infer.batched_sampling` (0 if none):
    its manifest is the commit point."""
    manifest = chains / "manifest.json"
    if not manifest.exists():
        return 0
    return int(json.loads(manifest.read_text()).get("batches", 0))


def sample(out, settings, model, observation, batch_count: int) -> None:
    """Run (or continue) the batched, checkpointed sampling in `out/chains`."""
    mesh, sharding = _sampling_sharding(settings)
    kwargs = dict(
        num_warmup=settings["num_warmup"],
        num_samples=settings["num_samples"],
        batch_count=batch_count,
        sampler=settings["sampler"],
        backend=settings["backend"],
        num_chains=settings["num_chains"],
        thinning=settings["thinning"],
        desired_energy_var=settings["desired_energy_var"],
        max_tree_depth=settings["max_tree_depth"],
        init_strategy=init_strategy(),
        model_kwargs={"kappa_obs": jnp.asarray(observation["kappa_obs"])},
        sharding=sharding,
        progress_bar=True,
    )
    key = jax.random.key(settings["seed"] + 1)
    if mesh is None:
        fmt_infer.batched_sampling(model, out / CHAINS_DIR, key, **kwargs)
    else:
        with jax.set_mesh(mesh):
            fmt_infer.batched_sampling(model, out / CHAINS_DIR, key, **kwargs)


def analyse(out, settings, config, draw, forward, observation, n_plot: int) -> dict[str, Any]:
    """Load the draws, write diagnostics, plots and the summary; return the summary."""
    chains = out / CHAINS_DIR
    draws = {k: np.asarray(v) for k, v in fmt_infer.load_samples(chains, params=PARAMS).items()}
    stats = fmt_infer.load_sample_stats(chains)
    table = fmt_infer.summary(draws, sample_stats=stats, prob=CREDIBLE_MASS)
    (out / "diagnostics.txt").write_text(
        f"posterior of {', '.join(PARAMS)} (interval: central {CREDIBLE_MASS:.0%})\n"
        + fmt_infer.format_summary(table)
        + "\n"
    )
    truth = truth_values()
    report = credible_report(draws, truth)

    kappa = np.asarray(
        fmt_infer.load_samples(chains, params="kappa", group_by_chain=False)["kappa"]
    )
    idx = np.unique(np.linspace(0, kappa.shape[0] - 1, min(n_plot, kappa.shape[0])).astype(int))
    kappa = kappa[idx, 0]  # first source bin
    maps = {
        "kappa_true": observation["kappa_true"][0],
        "kappa_obs": observation["kappa_obs"][0],
        "posterior_mean": kappa.mean(axis=0),
        "posterior_std": kappa.std(axis=0),
    }
    ell, cl_obs = _spectrum(maps["kappa_obs"], settings, forward)
    _, cl_true = _spectrum(maps["kappa_true"], settings, forward)
    posterior = np.array(
        [_spectrum(k, settings, forward)[1] for k in tqdm(kappa, desc="posterior C_ℓ")]
    )
    ensemble = np.array(
        [
            _spectrum(k, settings, forward)[1]
            for k in truth_ensemble(draw, settings["seed"], ENSEMBLE_SIZE)
        ]
    )
    nz = fmt_lensing.Delta(settings["max_redshift"])
    edges = forward.spec.edges
    limber = fmt_lensing.limber_cl(
        Planck18(), jnp.asarray(ell), nz, chi_range=(edges[0], edges[-1])
    )
    pixel_noise = config.pixel_noise()
    spectra = {
        "ell": ell,
        "observed": cl_obs,
        "true": cl_true,
        "posterior": posterior,
        "ensemble": ensemble,
        "limber": np.asarray(limber[0]),
        "noise": pixel_noise**2 * _pixel_area_sr(settings),
    }
    figures = [
        plot_maps(out, settings, forward, maps),
        plot_spectra(out, settings, spectra),
        fmt_infer.plot_posterior(draws, out, params=list(PARAMS), truth=truth),
        plot_traces(out, draws, truth),
    ]
    sampler = table["sampler"]
    summary = {
        "parameters": report,
        "truth_inside_95": {k: v["truth_inside_95"] for k, v in report.items()},
        "r_hat": {k: float(np.asarray(table[k]["r_hat"])) for k in PARAMS},
        "ess_bulk": {k: float(np.asarray(table[k]["ess_bulk"])) for k in PARAMS},
        "sampler": sampler,
        "draws_per_chain": int(draws[PARAMS[0]].shape[1]),
        "pixel_noise": pixel_noise,
        "kappa_true_rms": float(np.std(maps["kappa_true"])),
        "figures": [p.name for p in figures],
        "settings": settings,
    }
    return summary


def _constraint(ratio: float) -> str:
    if ratio < 0.5:
        return "constrained by the data"
    if ratio < 0.9:
        return "partly constrained by the data"
    return "prior-dominated: the data hardly constrain it"


def summary_text(summary: dict[str, Any]) -> str:
    """The few lines a person reads first."""
    st = summary["settings"]
    lines = [
        f"Field-level inference of {' and '.join(PARAMS)} from one synthetic κ map "
        f"(truth: Planck18, seed {st['seed']}; flat priors "
        + ", ".join(f"{k} ~ U{v}" for k, v in PRIOR_RANGES.items())
        + ")"
    ]
    for name, r in summary["parameters"].items():
        lo, hi = r["interval_95"]
        verdict = "inside" if r["truth_inside_95"] else "OUTSIDE"
        ratio = r["std"] / r["prior_std"]
        lines.append(
            f"{name}: truth {r['truth']:.4f} is {verdict} the 95% credible interval "
            f"[{lo:.4f}, {hi:.4f}]"
        )
        lines.append(
            f"    posterior {r['mean']:.4f} ± {r['std']:.4f}, truth at "
            f"{r['truth_offset_in_std']:+.2f} σ; posterior/prior std "
            f"{r['std']:.4f}/{r['prior_std']:.4f} = {ratio:.2f} ({_constraint(ratio)}); "
            f"R-hat {summary['r_hat'][name]:.3f}, bulk ESS {summary['ess_bulk'][name]:.0f}"
        )
    s = summary["sampler"]
    per_draw = "MCLMC steps" if st["sampler"] == "MCLMC" else "leapfrog steps"
    accept = "" if st["sampler"] == "MCLMC" else f", mean acceptance {s['accept_prob']:.2f}"
    lines.append(
        f"sampler: {st['sampler']} ({st['backend']}), {st['num_chains']} chain(s), "
        f"{st['num_warmup']} warmup steps, {s['draws']} draws kept (1 in {st['thinning']}), "
        f"{s['divergences']} divergences{accept}, {s['num_steps']:.1f} {per_draw} per draw"
    )
    lines.append(
        f"shape noise per pixel {summary['pixel_noise']:.2e} vs rms of the true κ "
        f"{summary['kappa_true_rms']:.2e}"
    )
    sec = summary.get("seconds")
    if sec:
        lines.append(
            f"this invocation: {sec['total']:.0f} s ({sec['model_and_sampling']:.0f} s model, "
            f"observation and sampling; {sec['total'] - sec['model_and_sampling']:.0f} s "
            "analysis and plots)"
        )
    lines.append(f"figures: {', '.join(summary['figures'])}; diagnostics: diagnostics.txt")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the workflow of the module docstring; returns the summary."""
    args = parse_args(argv)
    out: pathlib.Path = args.output_dir
    settings = run_settings(args)
    if args.plot_only:
        path = out / SETTINGS_FILE
        if not (path.exists() and (out / CHAINS_DIR).exists()):
            raise SystemExit(f"error: --plot-only needs a run in {out}, found none")
        settings = json.loads(path.read_text())  # the saved run, whatever the options say
    else:
        out.mkdir(parents=True, exist_ok=True)
        _check_or_write_settings(out, settings)

    t0 = time.perf_counter()
    config = configuration(settings)
    model = fmt_lensing.full_field_probmodel(config)
    forward = config.forward_model()
    draw = truth_simulator(model)  # one compile for the observation and the C_ℓ ensemble
    obs_path = out / OBSERVATION_FILE
    if obs_path.exists():
        observation = dict(np.load(obs_path))
    else:
        print("making the synthetic observation", flush=True)
        observation = make_observation(draw, settings["seed"])
        np.savez(obs_path, **observation)
    done = completed_batches(out / CHAINS_DIR)
    if not args.plot_only and done >= args.batch_count:
        print(
            f"sampling already complete in {out / CHAINS_DIR}: {done} batches of "
            f"{settings['num_samples']} draws (--batch-count {done + 1} or more extends it)",
            flush=True,
        )
    elif not args.plot_only:
        if done:
            print(f"resuming: {done} of {args.batch_count} batches done", flush=True)
        if settings["num_warmup"] == 0:
            print(
                "warning: --num-warmup 0: no adaptation (step size 1, unit mass matrix); "
                "the chain may not move",
                file=sys.stderr,
                flush=True,
            )
        sample(out, settings, model, observation, args.batch_count)
    t_sample = time.perf_counter() - t0
    summary = analyse(out, settings, config, draw, forward, observation, args.n_samples_plot)
    summary["seconds"] = {"model_and_sampling": t_sample, "total": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.txt").write_text(summary_text(summary) + "\n")
    print(summary_text(summary))
    print(f"plots, diagnostics and summary in {out}/")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
