"""Figures of docs/compsep.md: separated CMB and residuals, parameter posteriors.

Problem of the fgbuster comparison (nside 16, 9 frequencies, Q/U, CMB + dust +
synchrotron, β_d on nside-2 patches). The posterior of the spectral parameters is the
Laplace (Fisher) approximation N(x̂, Σ) at the best fit; it is checked against the
scatter of best fits over `--realisations` noise realisations (vmapped fits), and against
the posterior sampled with fmt-infer (NUTS on `SpectralLikelihood.log_likelihood`, flat
priors on β_d, T_d, β_s, 2 chains, run directory in a temporary folder).

Usage:
    python scripts/compsep_figures.py [--output docs/figures] [--realisations 200]
        [--posteriors-only] [--warmup 500] [--draws 1000]
"""

from __future__ import annotations

import argparse
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=pathlib.Path, default=ROOT / "docs" / "figures")
    p.add_argument("--realisations", type=int, default=200)
    p.add_argument("--posteriors-only", action="store_true", help="skip compsep_maps.png (faster)")
    p.add_argument("--warmup", type=int, default=500, help="NUTS warmup steps per chain")
    p.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain")
    args = p.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    import functools
    import tempfile

    import healpy as hp
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import fmt_compsep as fc
    import matplotlib.pyplot as plt
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    from fmt_compsep._src import simulate as sim

    import fmt_infer

    nside = 16
    mm = fc.MixingMatrix([fc.CMB(), fc.Dust(sim.DUST_NU0), fc.Synchrotron(sim.SYNC_NU0)])
    freqs = jnp.asarray(sim.FREQUENCIES)
    std = sim.noise_std_from_depth(sim.DEPTH_P, nside)
    amps = sim.sky_amplitudes(nside, seed=0)
    ids = fc.patch_ids_from_nside(2, nside)
    beta_d = sim.beta_d_patches(2, seed=2)
    truth = np.stack([beta_d[ids], np.full(ids.size, 20.0), np.full(ids.size, -3.0)], -1)
    a = np.asarray(mm.evaluate(freqs, jnp.asarray(truth)))
    signal = sim.observe(a, amps)
    data = signal + sim.noise_maps(nside, std, seed=1)

    args.output.mkdir(parents=True, exist_ok=True)
    if not args.posteriors_only:
        res = fc.multi_res_comp_sep(mm, freqs, data, std, [2, 0, 0])
        print("converged", res.converged, "steps", res.n_steps, "chi2/dof", res.chi2 / res.dof)
        cmb_in, cmb_out = amps[0], res.s[0]
        noise_cmb = np.sqrt(res.inv_AtNA[:, 0, 0, 0])
        fig = plt.figure(figsize=(12, 6.5))
        panels = [
            (cmb_in[0], "input CMB Q [µK]"),
            (cmb_out[0], "separated CMB Q [µK]"),
            (cmb_out[0] - cmb_in[0], "separated − input [µK]"),
            ((cmb_out[0] - cmb_in[0]) / noise_cmb, "(separated − input) / noise σ"),
            (res.layout.pixel_maps(res.x)[0], "best-fit β_d (nside-2 patches)"),
            (beta_d[ids] - res.layout.pixel_maps(res.x)[0], "β_d: input − best fit"),
        ]
        for i, (m, title) in enumerate(panels):
            hp.mollview(m, fig=fig.number, sub=(2, 3, i + 1), title=title, cmap="RdBu_r")
        fig.savefig(args.output / "compsep_maps.png", dpi=90, bbox_inches="tight")
        plt.close(fig)

    # Posteriors of the global parameters: Laplace N(x̂, Σ) vs the scatter of best fits.
    glob_data = sim.observe(np.asarray(mm.evaluate(freqs, jnp.asarray(sim.TRUE_BETA))), amps)
    signal_j = jnp.asarray(glob_data)
    std_j = jnp.asarray(std)

    @jax.jit
    @jax.vmap
    def realisation(key):
        noise = std_j[:, None, None] * jax.random.normal(key, signal_j.shape)
        like = fc.SpectralLikelihood(mm, freqs, signal_j + noise, std_j)
        r = fc.fit(like, jnp.asarray(sim.TRUE_BETA))
        return r.x, r.converged

    xs, conv = realisation(jax.random.split(jax.random.key(0), args.realisations))
    xs = np.asarray(xs)[np.asarray(conv)]
    d_one = glob_data + sim.noise_maps(nside, std, seed=1)
    one = fc.basic_comp_sep(mm, freqs, d_one, std)
    x_hat, sd = np.asarray(one.x), np.sqrt(np.diag(one.sigma))

    # The same posterior sampled with fmt-infer: NUTS on logL with flat priors.
    like = fc.SpectralLikelihood(mm, freqs, d_one, std)
    low, high = jnp.array([0.5, 5.0, -5.0]), jnp.array([3.0, 60.0, -1.0])

    def model():
        x = numpyro.sample("x", dist.Uniform(low, high).to_event(1))
        numpyro.factor("logL", like.log_likelihood(x))

    def init_near_fit(site=None, scale=3.0):
        """Chains start at x̂ + scale·σ·N(0, 1), dispersed for R-hat."""
        if site is None:
            return functools.partial(init_near_fit, scale=scale)
        if site["type"] != "sample" or site["is_observed"]:
            return None
        key = site["kwargs"]["rng_key"]
        return jnp.asarray(x_hat + scale * sd * np.asarray(jax.random.normal(key, (3,))))

    with tempfile.TemporaryDirectory() as tmp:
        run = fmt_infer.batched_sampling(
            model,
            pathlib.Path(tmp) / "compsep_nuts",
            jax.random.key(3),
            num_warmup=args.warmup,
            num_samples=args.draws,
            batch_count=1,
            num_chains=2,
            init_strategy=init_near_fit(),
            progress_bar=False,
        )
    draws = np.asarray(run.samples["x"])  # (chains, draws, 3)
    table = fmt_infer.summary({"x": draws}, sample_stats=run.sample_stats)
    print(fmt_infer.format_summary(table))
    row = table["x"]
    mean, std_s = np.asarray(row["mean"]), np.asarray(row["std"])
    shift, ratio = (mean - x_hat) / sd, std_s / sd
    for k, name in enumerate(mm.params):
        print(
            f"{name:>12}: x̂ = {x_hat[k]:.5g}, sqrt(Σ) = {sd[k]:.3g} | NUTS mean = {mean[k]:.5g}"
            f" ({shift[k]:+.3f} σ), std = {std_s[k]:.3g} (ratio {ratio[k]:.3f}),"
            f" R-hat = {row['r_hat'][k]:.4f}, ESS bulk/tail = {row['ess_bulk'][k]:.0f}"
            f"/{row['ess_tail'][k]:.0f}"
        )
    print("divergences", table["sampler"]["divergences"], "of", table["sampler"]["draws"])

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.6))
    grid = np.linspace(-4, 4, 200)
    gauss = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    for k in range(3):
        ax = axes[0, k]
        ax.hist(
            (xs[:, k] - sim.TRUE_BETA[k]) / sd[k],
            bins=20,
            density=True,
            alpha=0.5,
            label=f"best fits, {xs.shape[0]} realisations",
        )
        ax.plot(grid, gauss, "k", label="N(0, Σ) (Laplace)")
        ax.axvline((x_hat[k] - sim.TRUE_BETA[k]) / sd[k], color="C3", label="one realisation x̂")
        ax.set_xlabel(f"({mm.params[k]} − true) / σ,  σ = {sd[k]:.2e}")
        ax = axes[1, k]
        ax.hist(
            (draws[..., k].ravel() - x_hat[k]) / sd[k],
            bins=40,
            density=True,
            alpha=0.5,
            color="C2",
            label=f"NUTS (fmt-infer), {draws.shape[0]}×{draws.shape[1]} draws",
        )
        ax.plot(grid, gauss, "k", label="N(x̂, Σ) (Laplace)")
        ax.set_xlabel(f"({mm.params[k]} − x̂) / σ (posterior)")
        ax.set_title(
            f"mean − x̂ = {shift[k]:+.3f}σ, std ratio {ratio[k]:.3f}, "
            f"R̂ {row['r_hat'][k]:.3f}, ESS {row['ess_bulk'][k]:.0f}",
            fontsize=9,
        )
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7, loc="upper left")
    axes[0, 1].set_title("sampling distribution of x̂ (vmapped fits)", fontsize=9)
    fig.suptitle(
        "Global β_d, T_d, β_s: Laplace N(x̂, Σ) vs best-fit scatter (top) "
        "and vs the posterior sampled with fmt-infer NUTS (bottom)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.output / "compsep_posteriors.png", dpi=90)
    plt.close(fig)
    print("sigma (global)", sd, "std of best fits", xs.std(axis=0))
    print(
        "wrote",
        *([] if args.posteriors_only else [args.output / "compsep_maps.png"]),
        args.output / "compsep_posteriors.png",
    )


if __name__ == "__main__":
    main()
