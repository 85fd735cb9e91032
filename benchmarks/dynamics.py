"""fmt-dynamics benchmark: forward and gradient time and peak memory per solver × adjoint.

For each mesh (particles = mesh) and number of steps, times the forward model
(LPT at a = 0.1 → N steps to a = 1) and the gradient of a density loss with respect to the
white noise and Ω_c, for every supported solver × adjoint, and the same work with jaxpm
0.1.6 + diffrax (Tsit5, one step per interval, diffrax's RecursiveCheckpointAdjoint) as a
reference, printed as ratios (ours / jaxpm). Peak memory is the compiled
`memory_analysis()` (temp + arguments + outputs) and, on GPUs, the device's
`peak_bytes_in_use` (process-wide and monotone: run one combination per process with
`--only` for a per-combination device peak). Writes `dynamics.md` and `dynamics.json` to
`--output`, including the "GPU need" table: memory per solver/adjoint extrapolated (∝ N³)
to 1024³ and 2048³ and the number of H200s (141 GB, 90% usable, ideal sharding) that would
hold it.

Usage:
    python benchmarks/dynamics.py                 # CPU: 32³, 64³; GPU: 128³-512³
    python benchmarks/dynamics.py --meshes 32 --steps 10 40 --output bench-out
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from fmt_cosmo import Planck18, to_jax_cosmo
from fmt_dynamics import (
    CIC_METHODS,
    Backsolve,
    Checkpointed,
    DiffraxODE,
    FastPM,
    LeapfrogKDK,
    Reversible,
    density_from_displacement,
    lattice_sites,
    lpt,
    nbody,
)
from fmt_fields import linear_field, white_noise

H200_BYTES = 141e9
USABLE = 0.9
BOX_PER_CELL = 4.0  # Mpc/h per cell


def power(k):
    return 2.0e4 * (k / 0.02) / (1.0 + (k / 0.02) ** 2.5)


COMBOS = [
    ("fastpm", "checkpointed", FastPM(), Checkpointed()),
    ("fastpm", "reversible", FastPM(), Reversible()),
    ("fastpm", "backsolve", FastPM(), Backsolve()),
    ("leapfrog", "checkpointed", LeapfrogKDK(), Checkpointed()),
    ("leapfrog", "reversible", LeapfrogKDK(), Reversible()),
    ("leapfrog", "backsolve", LeapfrogKDK(), Backsolve()),
    ("diffrax", "checkpointed", DiffraxODE(), Checkpointed()),
    ("diffrax", "backsolve", DiffraxODE(), Backsolve()),
]


def machine() -> dict:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device": getattr(dev, "device_kind", str(dev)),
        "devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "host": platform.machine(),
    }


def fmt_model(solver, adjoint, n, a):
    box = BOX_PER_CELL * n

    def forward(noise, omega_c):
        cosmo = Planck18(Omega_c=omega_c)
        dx, p = lpt(cosmo, linear_field(noise, power, box), 0.1, order=1)
        return nbody(cosmo, (dx, p), a, solver=solver, adjoint=adjoint).state.displacement

    return forward


def jaxpm_model(n, a):
    import diffrax
    from jaxpm.painting import cic_paint
    from jaxpm.pm import make_diffrax_ode

    box = BOX_PER_CELL * n
    q = lattice_sites((n, n, n))

    def forward(noise, omega_c):
        cosmo = Planck18(Omega_c=omega_c, include_radiation=False)
        dx, p = lpt(cosmo, linear_field(noise, power, box), 0.1, order=1)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(make_diffrax_ode((n, n, n))),
            diffrax.Tsit5(),
            t0=float(a[0]),
            t1=float(a[-1]),
            dt0=None,
            y0=jnp.stack([q + dx, p]),
            args=to_jax_cosmo(cosmo),  # a fresh jax-cosmo object per trace: no cache leak
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=diffrax.StepTo(ts=a),
            max_steps=len(a) - 1,  # diffrax's default (4096) sizes its checkpoints for 4096
        )
        pos = sol.ys[-1][0]
        return cic_paint(jnp.zeros((n, n, n), pos.dtype), pos)

    return forward


def measure(forward, density_of, noise, omega_c, repeats):
    """Compile and time forward and gradient; return seconds and bytes."""

    def loss(noise, omega_c):
        return jnp.sum(density_of(forward(noise, omega_c)) ** 2)

    fwd = jax.jit(forward)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    out = {}
    for name, f in (("forward", fwd), ("gradient", grad)):
        try:
            out.update(_measure_one(name, f, noise, omega_c, repeats))
        except Exception as err:  # e.g. out of memory: record it, keep the other
            out[f"{name}_error"] = f"{type(err).__name__}: {str(err)[:200]}"
    return out


def _measure_one(name, f, noise, omega_c, repeats):
    out = {}
    t0 = time.perf_counter()
    compiled = f.lower(noise, omega_c).compile()
    out[f"{name}_compile_s"] = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    if mem is not None:
        out[f"{name}_temp_bytes"] = int(mem.temp_size_in_bytes)
        out[f"{name}_peak_bytes"] = int(
            mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        )
    jax.block_until_ready(compiled(noise, omega_c))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(noise, omega_c))
        times.append(time.perf_counter() - t0)
    out[f"{name}_s"] = statistics.median(times)
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out[f"{name}_device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return out


def gib(b):
    return "" if b is None else f"{b / 2**30:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parent / "results",
        help="output directory (default benchmarks/results)",
    )
    parser.add_argument("--meshes", type=int, nargs="*", default=None, help="mesh sizes N")
    parser.add_argument("--steps", type=int, nargs="*", default=[10, 40])
    parser.add_argument(
        "--gpu-sizes",
        action="store_true",
        help="128³, 256³ (10/40), 512³ (10); the default on GPU machines",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--no-jaxpm", action="store_true", help="skip the jaxpm reference")
    parser.add_argument("--only", nargs="*", default=None, help="e.g. fastpm-reversible")
    parser.add_argument(
        "--cic-method", default=None, choices=list(CIC_METHODS), help="default: per backend"
    )
    parser.add_argument(
        "--merge",
        type=pathlib.Path,
        nargs="+",
        default=None,
        help="write the tables of several runs' dynamics.json (one machine) to --output",
    )
    args = parser.parse_args()

    if args.merge:
        info, dtype, rows = merge(args.merge)
        write_results(rows, info, dtype, args.output)
        return
    if args.cic_method:
        from fmt_dynamics._src import painting

        painting._DEFAULT_METHOD = args.cic_method
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    info = machine()
    print("machine:", json.dumps(info))
    print("dtype:", args.dtype)
    if args.meshes:
        plan = [(n, s) for n in args.meshes for s in args.steps]
    elif args.gpu_sizes or info["platform"] == "gpu":
        plan = [(128, 10), (128, 40), (256, 10), (256, 40), (512, 10)]
    else:
        plan = [(n, s) for n in (32, 64) for s in args.steps]

    rows = []
    for n, steps in plan:
        a = np.linspace(0.1, 1.0, steps + 1)
        noise = white_noise(jax.random.key(0), (n, n, n), dtype=jnp.dtype(args.dtype))
        omega_c = jnp.asarray(Planck18().Omega_c, dtype=args.dtype)
        ref = None
        if not args.no_jaxpm:
            try:
                ref = measure(
                    jaxpm_model(n, a), lambda rho: rho - 1.0, noise, omega_c, args.repeats
                )
            except Exception as err:  # record, keep benchmarking our own code
                ref = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
            rows.append({"mesh": n, "steps": steps, "solver": "jaxpm", "adjoint": "diffrax", **ref})
            print(rows[-1], flush=True)
        for sname, aname, solver, adjoint in COMBOS:
            if args.only and f"{sname}-{aname}" not in args.only:
                continue
            try:
                res = measure(
                    fmt_model(solver, adjoint, n, a),
                    density_from_displacement,
                    noise,
                    omega_c,
                    args.repeats,
                )
            except Exception as err:
                res = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
            row = {"mesh": n, "steps": steps, "solver": sname, "adjoint": aname, **res}
            add_ratios(row, ref)
            rows.append(row)
            print(row, flush=True)

    write_results(rows, info, args.dtype, args.output)


def add_ratios(row, ref):
    """Ours / jaxpm for forward time, gradient time and gradient peak memory."""
    for key, col in (
        ("forward_s", "forward_vs_jaxpm"),
        ("gradient_s", "gradient_vs_jaxpm"),
        ("gradient_peak_bytes", "memory_vs_jaxpm"),
    ):
        if ref and key in ref and key in row:
            row[col] = row[key] / ref[key]


def read_run(path):
    """A run's dynamics.json, or its printed log (what is left of a run cut short by a
    time limit): the `machine:` line and one printed dict per row."""
    text = pathlib.Path(path).read_text()
    if str(path).endswith(".json"):
        return json.loads(text)
    machine_info, dtype, rows = None, "float32", []  # float32: the default, not printed before
    for line in text.splitlines():
        if line.startswith("machine: "):
            machine_info = json.loads(line.removeprefix("machine: "))
        elif line.startswith("dtype: "):
            dtype = line.removeprefix("dtype: ").strip()
        elif line.startswith("{'mesh': "):
            rows.append(ast.literal_eval(line))
    if machine_info is None:
        raise ValueError(f"--merge: {path} has no 'machine:' line")
    return {"machine": machine_info, "dtype": dtype, "rows": rows}


def merge(paths):
    """Rows of several runs (dynamics.json or logs, one machine), later runs replacing
    earlier rows of the same mesh, steps, solver and adjoint; ratios against the jaxpm row
    of the same mesh and steps where a run did not measure jaxpm itself."""
    runs = [read_run(p) for p in paths]
    if len({json.dumps(r["machine"], sort_keys=True) for r in runs}) != 1:
        raise ValueError("--merge: the runs come from different machines or versions")
    if len({r["dtype"] for r in runs}) != 1:
        raise ValueError("--merge: the runs use different dtypes")
    table = {}
    for run in runs:
        for row in run["rows"]:
            table[(row["mesh"], row["steps"], row["solver"], row["adjoint"])] = row
    rows = sorted(table.values(), key=lambda r: (r["mesh"], r["steps"], r["solver"] != "jaxpm"))
    for row in rows:
        ref = table.get((row["mesh"], row["steps"], "jaxpm", "diffrax"))
        if row["solver"] != "jaxpm":
            add_ratios(row, ref)
    return runs[0]["machine"], runs[0]["dtype"], rows


def write_results(rows, info, dtype, output):
    """Write dynamics.json and dynamics.md (tables and the GPU need) to `output`."""
    # GPU need: bytes per particle from the largest mesh measured for each combination
    need = []
    for key in sorted({(r["solver"], r["adjoint"], r["steps"]) for r in rows}):
        cand = [r for r in rows if (r["solver"], r["adjoint"], r["steps"]) == key]
        cand = [r for r in cand if "gradient_peak_bytes" in r]
        if not cand:
            continue
        big = max(cand, key=lambda r: r["mesh"])
        per_particle = big["gradient_peak_bytes"] / big["mesh"] ** 3
        entry = {
            "solver": key[0],
            "adjoint": key[1],
            "steps": key[2],
            "from_mesh": big["mesh"],
            "bytes_per_particle": per_particle,
        }
        for m in (1024, 2048):
            total = per_particle * m**3
            entry[f"gib_{m}"] = total / 2**30
            entry[f"h200_{m}"] = math.ceil(total / (USABLE * H200_BYTES))
        need.append(entry)

    output.mkdir(parents=True, exist_ok=True)
    (output / "dynamics.json").write_text(
        json.dumps({"machine": info, "dtype": dtype, "rows": rows, "gpu_need": need}, indent=1)
    )
    lines = [
        f"Machine: {info['device']} ({info['platform']}, {info['devices']} device(s), "
        f"{info['cpu_count']} CPUs), jax {info['jax']}, {dtype}. Box {BOX_PER_CELL} Mpc/h "
        "per cell, particles = mesh, a = 0.1 → 1. Times are medians of warm runs; memory is "
        "the compiled peak (temp + arguments + outputs) of the gradient.",
        "",
        "| mesh | steps | solver | adjoint | forward s | gradient s | grad peak GiB "
        "| fwd / jaxpm | grad / jaxpm | mem / jaxpm |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def num(r, k, f="{:.3g}"):
        if k in r:
            return f.format(r[k])
        failed = "error" in r or f"{k.split('_')[0]}_error" in r
        return "OOM" if "RESOURCE_EXHAUSTED" in str(r) and failed else ("error" if failed else "")

    for r in rows:
        lines.append(
            f"| {r['mesh']}³ | {r['steps']} | {r['solver']} | {r['adjoint']} | "
            f"{num(r, 'forward_s')} | {num(r, 'gradient_s')} | "
            f"{gib(r.get('gradient_peak_bytes'))} | {num(r, 'forward_vs_jaxpm', '{:.2f}')} | "
            f"{num(r, 'gradient_vs_jaxpm', '{:.2f}')} | {num(r, 'memory_vs_jaxpm', '{:.2f}')} |"
        )
    lines += [
        "",
        "GPU need (gradient peak memory ∝ N³ from the largest mesh measured; H200 = 141 GB, "
        f"{int(USABLE * 100)}% usable, ideal sharding, halos ignored):",
        "",
        "| solver | adjoint | steps | from | bytes/particle | 1024³ GiB | H200s | 2048³ GiB "
        "| H200s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in need:
        lines.append(
            f"| {e['solver']} | {e['adjoint']} | {e['steps']} | {e['from_mesh']}³ | "
            f"{e['bytes_per_particle']:.0f} | {e['gib_1024']:.0f} | {e['h200_1024']} | "
            f"{e['gib_2048']:.0f} | {e['h200_2048']} |"
        )
    (output / "dynamics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
