"""Figures of docs/compsep.md: separated CMB and residuals, parameter posteriors.

Problem of the fgbuster comparison (nside 16, 9 frequencies, Q/U, CMB + dust +
synchrotron, β_d on nside-2 patches). The posterior of the spectral parameters is the
Laplace (Fisher) approximation N(x̂, Σ) at the best fit; it is checked against the
scatter of best fits over `--realisations` noise realisations (vmapped fits).

Usage:
    python scripts/compsep_figures.py [--output docs/figures] [--realisations 200]
"""

from __future__ import annotations

import argparse
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=pathlib.Path, default=ROOT / "docs" / "figures")
    p.add_argument("--realisations", type=int, default=200)
    args = p.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    import healpy as hp
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import fmt_compsep as fc
    import matplotlib.pyplot as plt
    import numpy as np
    from fmt_compsep._src import simulate as sim

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

    res = fc.multi_res_comp_sep(mm, freqs, data, std, [2, 0, 0])
    print("converged", res.converged, "steps", res.n_steps, "chi2/dof", res.chi2 / res.dof)
    cmb_in, cmb_out = amps[0], res.s[0]
    noise_cmb = np.sqrt(res.inv_AtNA[:, 0, 0, 0])
    args.output.mkdir(parents=True, exist_ok=True)
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
    one = fc.basic_comp_sep(mm, freqs, glob_data + sim.noise_maps(nside, std, seed=1), std)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for k, ax in enumerate(axes):
        sd = np.sqrt(one.sigma[k, k])
        grid = np.linspace(-4, 4, 200)
        ax.hist(
            (xs[:, k] - sim.TRUE_BETA[k]) / sd,
            bins=20,
            density=True,
            alpha=0.5,
            label=f"best fits, {xs.shape[0]} realisations",
        )
        ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k", label="N(0, Σ) (Laplace)")
        ax.axvline((one.x[k] - sim.TRUE_BETA[k]) / sd, color="C3", label="one realisation x̂")
        ax.set_xlabel(f"({mm.params[k]} − true) / σ,  σ = {sd:.2e}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output / "compsep_posteriors.png", dpi=90)
    plt.close(fig)
    print("sigma (global)", np.sqrt(np.diag(one.sigma)), "std of best fits", xs.std(axis=0))
    print("wrote", args.output / "compsep_maps.png", args.output / "compsep_posteriors.png")


if __name__ == "__main__":
    main()
