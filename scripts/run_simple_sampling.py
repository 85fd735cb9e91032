"""Field-level inference in its simplest form: a Gaussian field and its amplitude.

The teaching example of fmt. A Gaussian density field δ(x) lives on a small periodic mesh;
we observe it with white noise, d = δ + n, and ask for the posterior of *every cell* of δ
together with one global parameter, the amplitude A of its power spectrum
(P_A(k) = A² P(k), the way σ8 scales the matter power). Everything is differentiable, so
NUTS explores the ~4000-dimensional posterior (16³ cells + A) directly.

The three ideas to take away:

1. **Whitening.** We never sample δ itself. We sample unit white noise w
   (`fmt_infer.DistributedNormal`, the same prior whatever the mesh is split over) and build
   δ = A · `fmt_fields.linear_field`(w, P, L): the Fourier modes of w are multiplied by
   sqrt(P(k)/V_cell). In these coordinates the prior is isotropic and A and the field
   decouple well enough for a gradient-based sampler.
2. **The posterior mean is smoothed (Wiener filter).** Where the noise dominates (small
   scales), the data say little and the mean of the posterior goes back to the prior mean,
   zero: the posterior-mean field has *less* power than the truth. Each posterior *sample*
   puts the missing power back as random fluctuations, so the P(k) of the samples matches
   the truth at every k.
3. **Resumable batches.** `fmt_infer.batched_sampling` writes the sampler state after warmup
   and after every batch; running the same command again with a larger `--batch-count`
   continues where it stopped.

Outputs in --output-dir: `fields.png` (slices of truth, observation, posterior mean and
posterior standard deviation), `amplitude.png` (posterior of A, truth marked),
`power_spectra.png` (P(k) of posterior samples vs truth), `diagnostics.png` (traces,
R-hat of the field cells), `summary.txt` / `summary.json`, and the chains in `chains/`.

Usage: python scripts/run_simple_sampling.py --output-dir output/simple_sampling
(about a minute on a 2-core CPU with the defaults).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import fmt_cosmo
import fmt_fields
import fmt_infer

POWER_CHOICES = ("eh98", "powerlaw")
# Prior on the amplitude: log-normal around 1 with a 50% width. The truth (default 0.8)
# is deliberately not the prior's median so that the plot shows the data pulling it.
AMPLITUDE_PRIOR = dist.LogNormal(0.0, 0.5)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (`--help` lists them)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", default="output/simple_sampling", type=pathlib.Path)
    p.add_argument("--mesh", type=int, default=16, help="cells per side (16-32 on a CPU)")
    p.add_argument("--box-size", type=float, default=200.0, help="box side in Mpc/h")
    p.add_argument("--power", choices=POWER_CHOICES, default="eh98", help="shape of P(k)")
    p.add_argument("--amplitude", type=float, default=0.8, help="true amplitude A")
    p.add_argument(
        "--noise",
        type=float,
        default=1.0,
        help="per-cell noise standard deviation, in units of the signal's rms",
    )
    p.add_argument("--num-warmup", type=int, default=300)
    p.add_argument("--num-samples", type=int, default=150, help="draws per chain per batch")
    p.add_argument("--batch-count", type=int, default=2)
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--sampler", choices=("NUTS", "HMC"), default="NUTS")
    p.add_argument("--backend", choices=("blackjax", "numpyro"), default="blackjax")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Reject settings that cannot work, naming the option and the value.

    Raises:
        ValueError: a non-positive size, amplitude or noise, or fewer than 2 draws.
    """
    positive = {
        "--mesh": args.mesh,
        "--box-size": args.box_size,
        "--amplitude": args.amplitude,
        "--noise": args.noise,
        "--num-chains": args.num_chains,
        "--batch-count": args.batch_count,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if args.mesh < 4:
        raise ValueError(f"--mesh must be >= 4, got {args.mesh!r}")
    if args.num_warmup < 0:
        raise ValueError(f"--num-warmup must be >= 0, got {args.num_warmup!r}")
    if args.num_samples < 2:
        raise ValueError(f"--num-samples must be >= 2, got {args.num_samples!r}")


def make_power(kind: str):
    """The fiducial P(k) [(Mpc/h)³] at A = 1, a function of k [h/Mpc].

    "eh98": Planck18 linear power at z = 0 (Eisenstein & Hu 1998 transfer function, from
    fmt-cosmo). "powerlaw": P(k) = 2·10⁴ (k / 0.05 h/Mpc)^-1.5, a scale-free toy.
    """
    if kind == "eh98":
        cosmo = fmt_cosmo.Planck18()
        return lambda k: fmt_cosmo.linear_power(cosmo, k, 1.0)
    if kind == "powerlaw":
        return lambda k: 2.0e4 * (k / 0.05) ** -1.5
    raise ValueError(f"power must be one of {POWER_CHOICES}, got {kind!r}")


def make_model(mesh_shape, box_size: float, power, noise_sigma: float):
    """The NumPyro model: amplitude and whitened field -> δ -> noisy observation.

    Args:
        mesh_shape: (X, Y, Z) cells.
        box_size: box side in Mpc/h.
        power: fiducial P(k) at A = 1 (callable).
        noise_sigma: per-cell standard deviation of the observational noise.

    Returns:
        `model(obs=None)`; with `obs=None` the observation is drawn (used to make mock data).
    """

    def model(obs=None):
        # A global parameter, with a prior.
        amplitude = numpyro.sample("amplitude", AMPLITUDE_PRIOR)
        # The whitened field: unit normal in every cell, one event for the whole mesh.
        w = numpyro.sample(
            "white_noise", fmt_infer.DistributedNormal(0.0, 1.0, mesh_shape=mesh_shape)
        )
        # Colour the noise with sqrt(P(k)) in Fourier space: a Gaussian field with power P.
        delta = amplitude * fmt_fields.linear_field(w, power, box_size)
        # Independent Gaussian noise in each cell: the likelihood of the observed mesh.
        return numpyro.sample("obs", dist.Normal(delta, noise_sigma).to_event(3), obs=obs)

    return model


def field_from_white_noise(w, amplitude, box_size: float, power):
    """δ = A · linear_field(w): what the model computes, for any draw of (w, A)."""
    return amplitude * fmt_fields.linear_field(w, power, box_size)


def main(argv=None) -> dict:
    """Run the example; returns the summary dictionary (also written to summary.json)."""
    args = parse_args(argv)
    check_args(args)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    mesh_shape = (args.mesh,) * 3
    box = args.box_size
    power = make_power(args.power)
    # The rms of δ at A = 1 on this mesh (sum of P(k)/V over the mesh's modes) sets the
    # noise scale, so --noise 1 means "signal and noise have the same variance per cell".
    signal_rms = float(jnp.sqrt(fmt_fields.mesh_variance(power, mesh_shape, box)))
    noise_sigma = args.noise * signal_rms

    # --- 1. a mock observation from a known truth
    key_truth, key_noise, key_run = jax.random.split(jax.random.key(args.seed), 3)
    w_true = fmt_fields.white_noise(key_truth, mesh_shape)
    delta_true = field_from_white_noise(w_true, args.amplitude, box, power)
    obs = delta_true + noise_sigma * jax.random.normal(key_noise, mesh_shape, delta_true.dtype)

    # --- 2. sample the posterior p(A, w | obs) with NUTS, in resumable batches
    model = make_model(mesh_shape, box, power, noise_sigma)
    run = fmt_infer.batched_sampling(
        model,
        out / "chains",
        key_run,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        batch_count=args.batch_count,
        num_chains=args.num_chains,
        sampler=args.sampler,
        backend=args.backend,
        model_kwargs={"obs": obs},
        progress_bar=not args.no_progress,
    )
    amplitude = np.asarray(run.samples["amplitude"])  # (chains, draws)
    white = run.samples["white_noise"]  # (chains, draws, X, Y, Z)

    # --- 3. from draws of (A, w) to draws of the field δ
    to_field = jax.jit(jax.vmap(lambda w, a: field_from_white_noise(w, a, box, power)))
    flat_w = white.reshape((-1, *mesh_shape))
    fields = np.asarray(to_field(flat_w, jnp.asarray(amplitude.reshape(-1))))
    post_mean = fields.mean(axis=0)
    post_std = fields.std(axis=0)

    # --- 4. diagnostics and a summary
    table = fmt_infer.summary({"amplitude": amplitude}, sample_stats=run.sample_stats, prob=0.95)
    rhat_cells = fmt_infer.split_rhat(np.asarray(white))
    amp_row = table["amplitude"]
    lower, upper = float(amp_row["lower"]), float(amp_row["upper"])
    # The Wiener-filter correlation: the posterior mean correlates with the truth better
    # than the raw observation does.
    corr_obs = float(np.corrcoef(np.ravel(obs), np.ravel(delta_true))[0, 1])
    corr_mean = float(np.corrcoef(post_mean.ravel(), np.ravel(delta_true))[0, 1])
    # Coverage: the fraction of cells whose truth lies within ±2 posterior std of the mean
    # (about 95% if the posterior is calibrated).
    coverage = float(np.mean(np.abs(np.asarray(delta_true) - post_mean) < 2.0 * post_std))
    summary = {
        "mesh": list(mesh_shape),
        "box_size_mpc_h": box,
        "power": args.power,
        "noise_sigma_per_cell": noise_sigma,
        "signal_rms_per_cell_at_A1": signal_rms,
        "amplitude_true": args.amplitude,
        "amplitude_mean": float(amp_row["mean"]),
        "amplitude_std": float(amp_row["std"]),
        "amplitude_95_interval": [lower, upper],
        "amplitude_true_in_95_interval": bool(lower <= args.amplitude <= upper),
        "amplitude_r_hat": float(amp_row["r_hat"]),
        "amplitude_ess_bulk": float(amp_row["ess_bulk"]),
        "field_r_hat_max": float(np.max(rhat_cells)),
        "corr(observation, truth)": corr_obs,
        "corr(posterior mean, truth)": corr_mean,
        "cells_within_2_sigma": coverage,
        "sampler": table["sampler"],
        "draws": int(amplitude.size),
        "batches_run_now": list(run.batches_run),
        "wall_time_s": time.perf_counter() - start,
    }

    # --- 5. plots
    spectra = power_spectra(fields, np.asarray(delta_true), np.asarray(obs), post_mean, box)
    write_plots(
        out,
        delta_true=np.asarray(delta_true),
        obs=np.asarray(obs),
        post_mean=post_mean,
        post_std=post_std,
        amplitude=amplitude,
        amplitude_true=args.amplitude,
        rhat_cells=np.asarray(rhat_cells),
        spectra=spectra,
        power=power,
        noise_power=noise_sigma**2 * box**3 / np.prod(mesh_shape),
    )
    summary["wall_time_s"] = time.perf_counter() - start
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    text = (
        fmt_infer.format_summary(table)
        + "\n\n"
        + "\n".join(f"{k}: {v}" for k, v in summary.items())
    )
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    print(f"plots and summary written to {out}/")
    return summary


def power_spectra(fields, delta_true, obs, post_mean, box: float, max_draws: int = 64) -> dict:
    """Binned P(k) of the truth, the observation, the posterior mean and posterior draws."""
    every = max(1, len(fields) // max_draws)
    spectrum = jax.jit(lambda f: fmt_fields.power_spectrum(f, box))
    result = {
        "truth": spectrum(jnp.asarray(delta_true)),
        "observation": spectrum(jnp.asarray(obs)),
        "posterior mean": spectrum(jnp.asarray(post_mean)),
    }
    draws = np.stack([np.asarray(spectrum(jnp.asarray(f)).value) for f in fields[::every]])
    return {
        "k": np.asarray(result["truth"].k),
        **{name: np.asarray(s.value) for name, s in result.items()},
        "draws": draws,
    }


def write_plots(out: pathlib.Path, **d) -> None:
    """The four figures of the example (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Fields: one slice through the middle of the box, on a common colour scale.
    z = d["delta_true"].shape[2] // 2
    vmax = float(np.max(np.abs(d["delta_true"][:, :, z])))
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    panels = [
        ("truth δ", d["delta_true"]),
        ("observation δ + noise", d["obs"]),
        ("posterior mean", d["post_mean"]),
        ("posterior std", d["post_std"]),
    ]
    for ax, (title, field) in zip(axes, panels, strict=True):
        if title == "posterior std":
            im = ax.imshow(field[:, :, z].T, origin="lower", cmap="viridis", vmin=0)
        else:
            im = ax.imshow(field[:, :, z].T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set(title=f"{title} (slice z = {z})", xlabel="x cell", ylabel="y cell")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out / "fields.png", dpi=110)
    plt.close(fig)

    # Amplitude: posterior histogram, prior density, truth.
    amp = d["amplitude"].ravel()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.hist(amp, bins=30, density=True, alpha=0.6, label="posterior draws")
    grid = np.linspace(max(amp.min() * 0.8, 1e-3), amp.max() * 1.2, 200)
    prior = np.exp(np.asarray(AMPLITUDE_PRIOR.log_prob(jnp.asarray(grid))))
    ax.plot(grid, prior, "k:", label="prior (log-normal)")
    ax.axvline(d["amplitude_true"], color="C3", lw=2, label=f"truth A = {d['amplitude_true']:g}")
    lo, hi = np.quantile(amp, [0.025, 0.975])
    ax.axvspan(lo, hi, color="C0", alpha=0.12, label="95% credible interval")
    ax.set(xlabel="amplitude A", ylabel="density", title="posterior of the amplitude A")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "amplitude.png", dpi=110)
    plt.close(fig)

    # Power spectra: each posterior draw has the truth's power; the posterior mean has less.
    s = d["spectra"]
    k = s["k"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4))
    lo, hi = np.percentile(s["draws"], [2.5, 97.5], axis=0)
    ax0.fill_between(k, lo, hi, color="C0", alpha=0.3, label="posterior draws (95%)")
    ax0.loglog(k, s["truth"], "k-", lw=2, label="truth")
    ax0.loglog(k, s["posterior mean"], "C1--", label="posterior mean (Wiener filter)")
    ax0.loglog(k, s["observation"], "C2:", label="observation")
    ax0.loglog(
        k,
        d["amplitude_true"] ** 2 * np.asarray(d["power"](jnp.asarray(k))),
        "k:",
        lw=1,
        label="model A² P(k)",
    )
    ax0.axhline(d["noise_power"], color="C7", lw=1, label="noise power")
    ax0.set(xlabel="k [h/Mpc]", ylabel="P(k) [(Mpc/h)$^3$]", title="P(k): posterior vs truth")
    ax0.legend(fontsize=8)
    ratio = s["draws"] / s["truth"]
    ax1.fill_between(
        k,
        *np.percentile(ratio, [2.5, 97.5], axis=0),
        color="C0",
        alpha=0.3,
        label="posterior draws (95%)",
    )
    ax1.semilogx(k, np.median(ratio, axis=0), "C0-", label="median draw")
    ax1.semilogx(k, s["posterior mean"] / s["truth"], "C1--", label="posterior mean")
    ax1.axhline(1.0, color="k", lw=1)
    ax1.set(xlabel="k [h/Mpc]", ylabel="P / P_truth", title="ratio to the truth's P(k)")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "power_spectra.png", dpi=110)
    plt.close(fig)

    # Diagnostics: amplitude trace per chain, R-hat of every field cell.
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
    for c, chain in enumerate(d["amplitude"]):
        ax0.plot(chain, lw=0.8, label=f"chain {c}")
    ax0.axhline(d["amplitude_true"], color="C3", lw=1.5, label="truth")
    ax0.set(xlabel="draw", ylabel="A", title="trace of the amplitude")
    ax0.legend(fontsize=8)
    ax1.hist(d["rhat_cells"].ravel(), bins=40)
    ax1.axvline(1.01, color="C3", lw=1, label="1.01")
    ax1.set(xlabel="split R-hat", ylabel="cells", title="split R-hat of the white-noise cells")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(out / "diagnostics.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
