"""fmt-compsep benchmark: spectral-likelihood fits beside fgbuster's recorded timings.

Problem (as in packages/compsep/tests/reference): nside 16, 9 frequencies, Q/U,
CMB + dust + synchrotron, white noise shared by all pixels. Times (median of `--repeats`
warm runs after a compiling call, float64):
  * value + gradient of logL: global (3 parameters) and β_d on nside-2 patches (50);
  * the Newton fit to convergence: global, 50 parameters, and global at nside 64;
  * the same including the reduction of the maps to per-group moments;
  * `--gpu` (or on a GPU): 100 noise realisations of the 50-parameter fit, vmapped.
fgbuster's numbers come from `packages/compsep/tests/reference/fgbuster_timings.json`
(written by make_fgbuster_reference.py on this kind of machine).

Usage:
    python benchmarks/compsep.py             # CPU table
    python benchmarks/compsep.py --gpu       # adds the 100-realisation section
Needs only jax, numpy, scipy, healpy with packages/*/src on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FGB_TIMINGS = ROOT / "packages" / "compsep" / "tests" / "reference" / "fgbuster_timings.json"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median_time(fn, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--gpu", action="store_true", help="time 100 vmapped 50-parameter fits")
    p.add_argument("--realisations", type=int, default=100)
    p.add_argument("--output", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    import fmt_compsep as fc
    import jax.numpy as jnp
    import numpy as np
    from fmt_compsep._src import simulate as sim

    dev = jax.devices()[0]
    machine = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "device": dev.device_kind,
        "platform": dev.platform,
        "jax": jax.__version__,
        "python": platform.python_version(),
    }
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, device {dev.device_kind}")
    print(f"python {machine['python']}, jax {jax.__version__}")

    mm = fc.MixingMatrix([fc.CMB(), fc.Dust(sim.DUST_NU0), fc.Synchrotron(sim.SYNC_NU0)])
    freqs = jnp.asarray(sim.FREQUENCIES)

    def observation(nside, beta_pixels, seed=1):
        std = sim.noise_std_from_depth(sim.DEPTH_P, nside)
        a = np.asarray(mm.evaluate(freqs, jnp.asarray(beta_pixels)))
        signal = sim.observe(a.reshape(-1, *a.shape[-2:]), sim.sky_amplitudes(nside, seed=0))
        return signal, std, signal + sim.noise_maps(nside, std, seed=seed)

    rows = []
    fit = jax.jit(fc.fit)
    vg = jax.jit(lambda like, x: like.value_and_grad(x))

    # global, nside 16
    _, std16, data16 = observation(16, sim.TRUE_BETA[None])
    glob = fc.SpectralLikelihood(mm, freqs, data16, std16)
    x_g = jnp.asarray(sim.TRUE_BETA) + 0.01
    rows.append(
        ("value+grad, global (3 params)", _median_time(lambda: vg(glob, x_g), args.repeats))
    )
    rows.append(("fit, global (3 params)", _median_time(lambda: fit(glob), args.repeats)))
    build_fit = jax.jit(lambda d: fc.fit(fc.SpectralLikelihood(mm, freqs, d, std16)))
    rows.append(("moments + fit, global", _median_time(lambda: build_fit(data16), args.repeats)))

    # beta_d on nside-2 patches: 50 parameters
    ids = fc.patch_ids_from_nside(2, 16)
    beta_d = sim.beta_d_patches(2, seed=2)
    truth = np.stack([beta_d[ids], np.full(ids.size, 20.0), np.full(ids.size, -3.0)], -1)
    signal_p, _, data_p = observation(16, truth)
    layout = fc.PatchLayout(3, ids.size, [ids, None, None])
    patch = fc.SpectralLikelihood(mm, freqs, data_p, std16, layout=layout)
    x_p = patch.x0() + 0.01
    rows.append(
        (
            "value+grad, nside-2 beta_d (50 params)",
            _median_time(lambda: vg(patch, x_p), args.repeats),
        )
    )
    rows.append(("fit, nside-2 beta_d (50 params)", _median_time(lambda: fit(patch), args.repeats)))
    res = fit(patch)
    build_fit_p = jax.jit(
        lambda d: fc.fit(fc.SpectralLikelihood(mm, freqs, d, std16, layout=layout))
    )
    rows.append(
        ("moments + fit, 50 params", _median_time(lambda: build_fit_p(data_p), args.repeats))
    )
    fit_info = {"patch_steps": int(res.n_steps), "patch_converged": bool(res.converged)}

    # global at nside 64
    _, std64, data64 = observation(64, sim.TRUE_BETA[None])
    glob64 = fc.SpectralLikelihood(mm, freqs, data64, std64)
    rows.append(("fit, global, nside 64", _median_time(lambda: fit(glob64), args.repeats)))
    build_fit64 = jax.jit(lambda d: fc.fit(fc.SpectralLikelihood(mm, freqs, d, std64)))
    rows.append(
        ("moments + fit, global, nside 64", _median_time(lambda: build_fit64(data64), args.repeats))
    )

    if args.gpu or dev.platform == "gpu":
        n = args.realisations
        signal_j = jnp.asarray(signal_p)
        std_j = jnp.asarray(std16)

        @jax.jit
        def many(key):
            def one(k):
                noise = std_j[:, None, None] * jax.random.normal(k, signal_j.shape)
                like = fc.SpectralLikelihood(mm, freqs, signal_j + noise, std_j, layout=layout)
                return fc.fit(like)

            return jax.vmap(one)(jax.random.split(key, n))

        key = jax.random.key(0)
        t = _median_time(lambda: many(key), max(3, args.repeats // 4))
        out = many(key)
        fit_info["realisations_converged"] = int(jnp.sum(out.converged))
        rows.append((f"{n} realisations x 50-param fit (vmap, incl. noise + moments)", t))

    fgb = json.loads(FGB_TIMINGS.read_text()) if FGB_TIMINGS.exists() else {}
    fgb_rows = {
        "fit, global (3 params)": ("global_fit_TNC_s", "TNC"),
        "fit, nside-2 beta_d (50 params)": ("patch_fit_TNC_s", "TNC"),
        "value+grad, global (3 params)": ("global_value_and_grad_s", ""),
        "value+grad, nside-2 beta_d (50 params)": ("patch_value_and_grad_s", ""),
    }

    def fgb_time(name):
        if name not in fgb_rows or fgb_rows[name][0] not in fgb:
            return None
        v = fgb[fgb_rows[name][0]]
        return statistics.median(v) if isinstance(v, list) else v

    print()
    header = f"{'operation':<62} {'fmt [ms]':>10} {'fgbuster [ms]':>14} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    table = []
    for name, seconds in rows:
        ref = fgb_time(name)
        ratio = f"{ref / seconds:,.0f}x" if ref else ""
        ref_s = f"{ref * 1e3:.1f}" if ref else ""
        print(f"{name:<62} {seconds * 1e3:>10.3f} {ref_s:>14} {ratio:>9}")
        table.append({"operation": name, "fmt_s": seconds, "fgbuster_s": ref})
    if fgb:
        print(f"\nfgbuster timings recorded on: {fgb.get('machine')} (numpy {fgb.get('numpy')})")
        print(
            "fgbuster default (BFGS) fits:",
            fgb.get("global_fit_default_s"),
            fgb.get("patch_fit_default_s"),
        )
    print("fit info:", fit_info)

    args.output.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "rows": table, "fit_info": fit_info, "fgbuster": fgb}
    (args.output / "compsep.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, device {machine['device']}, "
        f"jax {machine['jax']}, float64. nside 16, 9 frequencies, Q/U, CMB + dust + "
        "synchrotron; medians of warm runs. fgbuster: TNC fits and one value+gradient, from "
        "its reference run.",
        "",
        "| operation | fmt-compsep (ms) | fgbuster (ms) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for r in table:
        ref = r["fgbuster_s"]
        speed = "" if ref is None else f"{ref / r['fmt_s']:,.0f}x"
        lines.append(
            f"| {r['operation']} | {r['fmt_s'] * 1e3:.3f} | "
            f"{'' if ref is None else f'{ref * 1e3:.1f}'} | "
            f"{speed} |"
        )
    (args.output / "compsep.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output / 'compsep.md'} and compsep.json")


if __name__ == "__main__":
    main()
