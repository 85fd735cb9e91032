"""Figures and numbers of the validation page (docs/validation.md) that no other script makes.

Four checks, each cheap on a CPU (about three minutes in all on 2 shared cores, mostly
XLA compilation; the adjoint gradients take half of it):

1. **P(k) and r(k) against jaxpm 0.1.6 + diffrax** on identical initial conditions (32³,
   256 Mpc/h, 1LPT at a = 0.1, 10 steps to a = 1; jaxpm integrates with Tsit5 at the same
   steps, radiation off as in jax-cosmo), for the FastPM, leapfrog and diffrax solvers.
2. **Ludlow et al. (2016) concentrations against colossus**: c200c(M) at z = 0, 1, 2, 4
   for Planck18, both conventions of `concentration_ludlow16`, against colossus with its
   default tables and with its tables off and tight σ integrals.
3. **Reversibility**: N steps forward then N back with `reverse`, relative RMSD of
   displacements and momenta, FastPM and leapfrog, float32 and float64.
4. **Gradient agreement of the adjoints**: gradient of Σδ² of the final density with
   respect to the white noise and Ω_c, `reversible` and `backsolve` against plain autodiff
   (`checkpointed`), float64 (8³, 3 steps) and float32 states (16³, 10 steps).

Usage: python scripts/validation_figures.py --output-dir docs/figures
Writes validation_jaxpm.png, validation_ludlow16.png, validation_exactness.png (checks 3
and 4) and validation.json (every number the page quotes for these checks), and prints the
numbers. `--plot-only` redraws the figures from an existing validation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import tempfile
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import fmt_cosmo  # noqa: E402
import fmt_dynamics  # noqa: E402
import fmt_fields  # noqa: E402

SOLVERS = ("fastpm", "leapfrog", "diffrax")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", default="docs/figures", type=pathlib.Path)
    p.add_argument(
        "--plot-only",
        action="store_true",
        help="redraw the figures from OUTPUT_DIR/validation.json without recomputing",
    )
    return p.parse_args(argv)


def smooth_power(k):
    """A smooth spectrum in (Mpc/h)³ peaking near k = 0.02 h/Mpc (the dynamics tests' own)."""
    return 2.0e4 * (k / 0.02) / (1.0 + (k / 0.02) ** 2.5)


def initial_state(n: int, box: float, cosmo, seed: int, a0: float = 0.1):
    """1LPT displacements and momenta at `a0` of a Gaussian field with `smooth_power`."""
    noise = fmt_fields.white_noise(jax.random.key(seed), (n, n, n))
    delta = fmt_fields.linear_field(noise, smooth_power, box)
    return fmt_dynamics.lpt(cosmo, delta, a0, order=1, gradient="fd4")


# --------------------------------------------------------------------------- 1. jaxpm


def compare_with_jaxpm(n: int = 32, box: float = 256.0, steps: int = 10) -> dict:
    """Final density of jaxpm 0.1.6 (diffrax Tsit5) and of each fmt solver, same ICs."""
    from jaxpm.painting import cic_paint
    from jaxpm.pm import make_diffrax_ode

    cosmo = fmt_cosmo.Planck18(include_radiation=False)  # jax-cosmo has no radiation
    dx, p = initial_state(n, box, cosmo, seed=1)
    a = np.linspace(0.1, 1.0, steps + 1)
    q = fmt_dynamics.lattice_sites((n, n, n))

    def run(cosmo, dx, p):
        # jax-cosmo caches tables on its cosmology: build it inside the traced function.
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(make_diffrax_ode((n, n, n))),
            diffrax.Tsit5(),
            t0=float(a[0]),
            t1=1.0,
            dt0=None,
            y0=jnp.stack([q + dx, p]),
            args=fmt_cosmo.to_jax_cosmo(cosmo),
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=diffrax.StepTo(ts=a),
        )
        reference = cic_paint(jnp.zeros((n, n, n)), sol.ys[-1][0]) - 1.0
        ours = {}
        for solver in SOLVERS:
            state = fmt_dynamics.nbody(cosmo, (dx, p), a, solver=solver).state
            ours[solver] = fmt_dynamics.density_from_displacement(state.displacement)
        return reference, ours

    reference, ours = jax.jit(run)(cosmo, dx, p)
    k_max = np.pi * n / box / 2  # half the Nyquist wavenumber: the range
    p_ref = fmt_fields.power_spectrum(reference, box)
    k = np.asarray(p_ref.k)
    keep = k < k_max
    result = {"setup": f"{n}^3, {box} Mpc/h, {steps} steps a=0.1->1, 1LPT ICs", "k": k.tolist()}
    for solver, rho in ours.items():
        ratio = np.asarray(fmt_fields.power_spectrum(rho, box).value) / np.asarray(p_ref.value)
        r = np.asarray(fmt_fields.correlation_coefficient(rho, reference, box).value)
        result[solver] = {
            "pk_ratio": ratio.tolist(),
            "r": r.tolist(),
            "max_abs_dP_over_P_below_half_nyquist": float(np.max(np.abs(ratio[keep] - 1.0))),
            "min_r_below_half_nyquist": float(np.min(r[keep])),
        }
    result["k_half_nyquist"] = k_max
    return result


# --------------------------------------------------------------------------- 2. Ludlow16


def compare_with_colossus() -> dict:
    """c200c(M, z) of both conventions against colossus 1.4 (defaults and tight settings)."""
    from colossus import settings

    # colossus writes its tables under ~/.colossus unless told not to.
    settings.PERSISTENCE = ""
    base = tempfile.mkdtemp(prefix="colossus-")
    settings.BASE_DIR = base
    try:
        from colossus.cosmology import cosmology as ccosmo
        from colossus.halo import concentration as cconc

        cosmo = fmt_cosmo.Planck18()
        mass = np.logspace(8.0, 15.0, 29)
        redshifts = np.array([0.0, 1.0, 2.0, 4.0])

        def colossus_c(**kwargs):
            params = dict(
                flat=True,
                H0=100.0 * cosmo.h,
                Om0=float(cosmo.Omega_m),
                Ob0=cosmo.Omega_b,
                sigma8=cosmo.sigma8,
                ns=cosmo.n_s,
                Tcmb0=cosmo.T_cmb,
                Neff=cosmo.N_eff,
                relspecies=cosmo.include_radiation,
                persistence="",
            )
            tight = kwargs.pop("tight", False)
            ref = ccosmo.Cosmology(name="fmt-validation", **params, **kwargs)
            if tight:
                ref.accuracy_sigma = 1e-6
            ccosmo.setCurrent(ref)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.array(
                    [cconc.concentration(mass, "200c", z, model="ludlow16") for z in redshifts]
                )

        default = colossus_c()
        tight = colossus_c(interpolation=False, tight=True)
        conc = jax.jit(fmt_cosmo.concentration_ludlow16, static_argnames=("convention",))
        ours = {
            conv: np.asarray(conc(cosmo, mass[None, :], redshifts[:, None], convention=conv))
            for conv in ("exact", "colossus")
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def max_rel(a, b):
        return float(np.nanmax(np.abs(a / b - 1.0)))

    return {
        "setup": "Planck18, log10 M in [8, 15] (29 masses), z in {0, 1, 2, 4}",
        "mass": mass.tolist(),
        "redshifts": redshifts.tolist(),
        "c_colossus_default": default.tolist(),
        "c_colossus_tight": tight.tolist(),
        "c_exact": ours["exact"].tolist(),
        "c_colossus_convention": ours["colossus"].tolist(),
        "max_rel_colossus_convention_vs_tight": max_rel(ours["colossus"], tight),
        "max_rel_colossus_convention_vs_default": max_rel(ours["colossus"], default),
        "max_rel_exact_vs_default": max_rel(ours["exact"], default),
        "max_rel_exact_vs_tight": max_rel(ours["exact"], tight),
    }


# --------------------------------------------------------------------------- 3. reversibility


def round_trip(solver, cosmo, state, a):
    """Relative RMSD of (displacement, momentum) after stepping through `a` and back."""
    table = fmt_cosmo.growth_table(cosmo)
    force = fmt_dynamics.PMForce()
    kw = dict(cosmo=cosmo, force=force, table=table)
    a = jnp.asarray(a)
    start = solver.init(cosmo, state, a[0], force=force, table=table)
    steps = jnp.arange(a.shape[0] - 1)
    s, _ = jax.lax.scan(lambda s, i: (solver.step(s, a[i], a[i + 1], **kw), None), start, steps)
    s, _ = jax.lax.scan(
        lambda s, i: (solver.reverse(s, a[i], a[i + 1], **kw), None), s, steps[::-1]
    )
    return [jnp.sqrt(jnp.mean((s[j] - start[j]) ** 2) / jnp.mean(start[j] ** 2)) for j in (0, 1)]


def reversibility(n: int = 16, box: float = 128.0, steps=(10, 63)) -> dict:
    """Round trips of FastPM and leapfrog, float64 and float32, 16³ with 8 Mpc/h cells."""
    cosmo = fmt_cosmo.Planck18()
    dx, p = initial_state(n, box, cosmo, seed=2)
    solvers = {"fastpm": fmt_dynamics.FastPM(), "leapfrog": fmt_dynamics.LeapfrogKDK()}

    def run(cosmo, dx, p):
        # Every round trip in one program: XLA's per-compile cost dominates on a CPU.
        return {
            f"{name} {count} steps {dtype}": round_trip(
                solver, cosmo, (dx.astype(dtype), p.astype(dtype)), np.linspace(0.1, 1.0, count + 1)
            )
            for count in steps
            for name, solver in solvers.items()
            for dtype in ("float64", "float32")
        }

    out = {"setup": f"{n}^3, {box} Mpc/h, 1LPT at a=0.1, N steps to a=1 and back"}
    for key, (rx, rp) in jax.jit(run)(cosmo, dx, p).items():
        out[key] = {"displacement": float(rx), "momentum": float(rp)}
    return out


# --------------------------------------------------------------------------- 4. adjoints


def adjoint_agreement() -> dict:
    """Gradients of Σδ² w.r.t. white noise and Ω_c, each adjoint vs plain autodiff."""
    out = {}
    cases = {
        "float64, 8^3, 3 steps": (8, 3, jnp.float64),
        "float32, 16^3, 10 steps": (16, 10, jnp.float32),
    }
    for label, (n, steps, dtype) in cases.items():
        box = 8.0 * n
        noise = fmt_fields.white_noise(jax.random.key(4), (n, n, n)).astype(dtype)
        a = np.linspace(0.1, 1.0, steps + 1)

        def loss(w, omega_c, adjoint, a=a, box=box):
            cosmo = fmt_cosmo.Planck18(Omega_c=omega_c)
            delta = fmt_fields.linear_field(w, smooth_power, box)
            dx, p = fmt_dynamics.lpt(cosmo, delta, a[0], order=2)
            # The state in the dtype of the case (lpt returns float64 with x64 on).
            dx, p = dx.astype(w.dtype), p.astype(w.dtype)
            final = fmt_dynamics.nbody(cosmo, (dx, p), a, solver="fastpm", adjoint=adjoint)
            rho = fmt_dynamics.density_from_displacement(final.state.displacement)
            return jnp.sum(rho**2)

        def grads(w, omega_c):
            # One program for the three adjoints (each still runs its own backward pass).
            return {
                adj: jax.grad(loss, argnums=(0, 1))(w, omega_c, adj)
                for adj in ("checkpointed", "reversible", "backsolve")
            }

        omega_c = jnp.asarray(fmt_cosmo.Planck18().Omega_c)
        result = jax.jit(grads)(noise, omega_c)
        ref_w, ref_oc = result["checkpointed"]
        assert ref_w.dtype == dtype, ref_w.dtype
        out[label] = {"state_dtype": jnp.dtype(dtype).name}
        for adjoint in ("reversible", "backsolve"):
            g_w, g_oc = result[adjoint]
            out[label][adjoint] = {
                "white_noise": float(jnp.linalg.norm(g_w - ref_w) / jnp.linalg.norm(ref_w)),
                "Omega_c": float(jnp.abs(g_oc - ref_oc) / jnp.abs(ref_oc)),
            }
    return out


# --------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_jaxpm(result: dict, path: pathlib.Path) -> None:
    """P(k) ratio and 1 - r(k) of each solver against jaxpm."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    plt = _pyplot()
    k = np.asarray(result["k"])
    labels = {"fastpm": "FastPM", "leapfrog": "leapfrog (KDK)", "diffrax": "diffrax (Tsit5)"}
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax0.axhspan(-0.02, 0.02, color="C7", alpha=0.15, label="test bound ±2%")
    for solver in SOLVERS:
        ax0.semilogx(k, np.asarray(result[solver]["pk_ratio"]) - 1.0, "o-", ms=3,
                     label=labels[solver])  # fmt: skip
        ax1.loglog(k, np.maximum(1.0 - np.asarray(result[solver]["r"]), 1e-17), "o-", ms=3,
                   label=labels[solver])  # fmt: skip
    ax1.axhline(1.0 - 0.99, color="C7", lw=1, ls="--", label="test bound r > 0.99")
    for ax in (ax0, ax1):
        ax.axvline(result["k_half_nyquist"], color="k", ls=":", lw=1, label="k_Nyq / 2")
        ax.set_xlabel("k [h/Mpc]")
        ax.set_xticks([0.03, 0.05, 0.1, 0.2, 0.4])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=8)
    ax0.set(ylabel="P(k) / P_jaxpm(k) − 1", ylim=(-0.025, 0.025),
            title="final power spectrum relative to jaxpm")  # fmt: skip
    ax1.set(ylabel="1 − r(k)  (floored at 1e-17)",
            title="1 − cross-correlation with jaxpm's density")  # fmt: skip
    fig.suptitle(
        "fmt-dynamics vs jaxpm 0.1.6 + diffrax (Tsit5), identical 1LPT ICs: "
        "32³, 256 Mpc/h, 10 steps a = 0.1 → 1, final density at a = 1",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ludlow(result: dict, path: pathlib.Path) -> None:
    """c(M) curves and relative differences of both conventions against colossus."""
    from matplotlib.ticker import ScalarFormatter

    plt = _pyplot()
    mass = np.asarray(result["mass"])
    c = {key: np.asarray(result[key]) for key in result if key.startswith("c_")}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, z in enumerate(result["redshifts"]):
        axes[0].loglog(mass, c["c_exact"][i], f"C{i}-", label=f"fmt (exact), z = {z:g}")
        axes[0].loglog(mass, c["c_colossus_default"][i], f"C{i}o", ms=3)
        for ax, ours in ((axes[1], "c_colossus_convention"), (axes[2], "c_exact")):
            for ref, style, what in (("tight", "-", "tight"), ("default", "--", "defaults")):
                rel = c[ours][i] / c[f"c_colossus_{ref}"][i] - 1.0
                ax.semilogx(mass, rel, f"C{i}{style}", label=f"vs {what}, z = {z:g}")
    axes[0].plot([], [], "ko", ms=3, label="colossus 1.4 (defaults)")
    axes[0].set(xlabel="M200c [Msun/h]", ylabel="c200c",
                title="Ludlow16 c200c(M), Planck18")  # fmt: skip
    for ax, bound, name in ((axes[1], 5e-4, '"colossus"'), (axes[2], 3e-3, '"exact"')):
        ax.axhspan(-bound, bound, color="C7", alpha=0.15, label=f"test bound ±{bound:.0e}")
        ax.set(xlabel="M200c [Msun/h]", ylabel="c_fmt / c_colossus − 1",
               title=f"convention={name} vs colossus")  # fmt: skip
    axes[1].axhline(2e-4, color="C7", ls="--", lw=1, label="test bound vs tight ±2e-4")
    axes[1].axhline(-2e-4, color="C7", ls="--", lw=1)
    axes[0].yaxis.set_major_formatter(ScalarFormatter())
    axes[0].yaxis.set_minor_formatter(ScalarFormatter())
    axes[1].set_ylim(-5.5e-4, 9e-4)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7, ncol=2, loc="upper center")
    axes[2].legend(fontsize=7, ncol=2, loc="lower left")
    fig.suptitle(
        "fmt_cosmo.concentration_ludlow16 vs colossus 1.4 (ludlow16, 200c). "
        "tight: colossus tables off, σ integrals at epsrel 1e-6; defaults: its tables",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_exactness(reversibility: dict, adjoints: dict, path: pathlib.Path) -> None:
    """Round-trip RMSD of `reverse` and adjoint gradient differences, with the test bounds."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    handles = []
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4))
    rows = [key for key in reversibility if key != "setup" and key.endswith("float64")]
    x = np.arange(len(rows))
    for j, (dtype, bound) in enumerate((("float64", 1e-12), ("float32", 1e-4))):
        for m, (field, hatch) in enumerate((("displacement", None), ("momentum", "//"))):
            values = [reversibility[r.replace("float64", dtype)][field] for r in rows]
            ax0.bar(x + 0.2 * (2 * j + m) - 0.3, values, 0.2, color=f"C{j}", hatch=hatch,
                    edgecolor="w", label=f"{dtype}, {field}")  # fmt: skip
        ax0.axhline(bound, color=f"C{j}", ls="--", lw=1, label=f"test bound {dtype} ({bound:g})")
    ax0.axhline(1.4e-3, color="k", ls=":", lw=1, label="pmwd float32, 63 steps (1.4e-3)")
    ax0.set_xticks(x, [r.replace(" float64", "").replace(" ", "\n", 1) for r in rows])
    ax0.set(yscale="log", ylim=(1e-16, 1e3), ylabel="relative RMSD after N steps and back",
            title="reversibility: 16³, 8 Mpc/h cells, N steps a = 0.1 → 1 and back")  # fmt: skip
    ax0.legend(fontsize=7, ncol=2, loc="upper left")

    labels, values, colors = [], [], []
    bounds = {}
    for j, (case, rows_) in enumerate(adjoints.items()):
        bounds[case] = 1e-8 if rows_["state_dtype"] == "float64" else 1e-3
        for adjoint in ("reversible", "backsolve"):
            for what in ("white_noise", "Omega_c"):
                labels.append(f"{adjoint}\n{'noise' if what == 'white_noise' else 'Ω_c'}")
                values.append(max(rows_[adjoint][what], 1e-17))
                colors.append(f"C{j}")
    x = np.arange(len(values))
    ax1.bar(x, values, 0.6, color=colors)
    for j, (case, bound) in enumerate(bounds.items()):
        ax1.hlines(bound, 4 * j - 0.4, 4 * j + 3.4, color=f"C{j}", ls="--", lw=1,
                   label=f"test bound {bound:g}")  # fmt: skip
        handles.append(Patch(color=f"C{j}", label=f"{case} (state dtype)"))
    ax1.set_xticks(x, labels, fontsize=8)
    ax1.set(yscale="log", ylim=(1e-17, 1e1),
            ylabel="‖g − g_checkpointed‖ / ‖g_checkpointed‖",
            title="FastPM gradients of Σδ² vs plain autodiff (checkpointed)")  # fmt: skip
    ax1.legend(handles=ax1.get_legend_handles_labels()[0] + handles, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_all(results: dict, out: pathlib.Path) -> None:
    """The three figures of the page from the numbers of `main` (or validation.json)."""
    plot_jaxpm(results["jaxpm"], out / "validation_jaxpm.png")
    plot_ludlow(results["ludlow16"], out / "validation_ludlow16.png")
    plot_exactness(results["reversibility"], results["adjoints"], out / "validation_exactness.png")


def main(argv=None) -> dict:
    """Run the four checks, write the figures and validation.json, print the numbers."""
    args = parse_args(argv)
    out = args.output_dir
    if args.plot_only:
        results = json.loads((out / "validation.json").read_text())
        plot_all(results, out)
        return results
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "section_time_s": {},
    }
    checks = {
        "jaxpm": compare_with_jaxpm,
        "ludlow16": compare_with_colossus,
        "reversibility": reversibility,
        "adjoints": adjoint_agreement,
    }
    for name, check in checks.items():
        t0 = time.perf_counter()
        results[name] = check()
        results["section_time_s"][name] = time.perf_counter() - t0
        print(f"{name}: {results['section_time_s'][name]:.0f} s", flush=True)
    results["wall_time_s"] = time.perf_counter() - start
    (out / "validation.json").write_text(json.dumps(results, indent=1))
    plot_all(results, out)
    for solver in SOLVERS:
        r = results["jaxpm"][solver]
        print(
            f"jaxpm vs {solver}: max |dP/P| {r['max_abs_dP_over_P_below_half_nyquist']:.2e}, "
            f"min r {r['min_r_below_half_nyquist']:.6f} (k < k_Nyq/2)"
        )
    for key, value in results["ludlow16"].items():
        if key.startswith("max_rel"):
            print(f"ludlow16 {key}: {value:.2e}")
    for key, value in results["reversibility"].items():
        if key != "setup":
            print(f"reversibility {key}: x {value['displacement']:.1e}, p {value['momentum']:.1e}")
    for label, rows in results["adjoints"].items():
        for adjoint, value in rows.items():
            if not isinstance(value, dict):
                continue
            print(
                f"adjoint {label} {adjoint} vs checkpointed: noise {value['white_noise']:.1e}, "
                f"Omega_c {value['Omega_c']:.1e}"
            )
    print(f"wall time {results['wall_time_s']:.0f} s; written to {out}/")
    return results


if __name__ == "__main__":
    main()
