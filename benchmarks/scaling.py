"""Multi-device scaling of the N-body forward and gradient (FastPM, reversible adjoint).

The work of `benchmarks/dynamics.py` (white noise → linear field → 1LPT at a = 0.1 →
FastPM to a = 1, loss = sum of the final density squared, gradient w.r.t. the noise and
Ω_c; float32, particles = mesh, 4 Mpc/h cells) on device grids of 1 and more devices:

- strong scaling: the same mesh (`--mesh`) on 1 device and on `--devices` devices;
- weak scaling: `--mesh`³ per device, the mesh stretched along x;
- `--big N`: an N³ run on all devices (forward and gradient; an out-of-memory error is
  recorded with the compiled per-device peak).

Per case: median forward and gradient times, the compiled per-device peak (temp +
arguments + outputs of `memory_analysis()`, which XLA reports per device for sharded
programs) and the devices' allocator peaks. Efficiencies: strong t1 / (n t_n), weak
t1 / t_n. Writes `scaling.json` and `scaling.md` to `--output`.

Usage (2 GPUs): python benchmarks/scaling.py --mesh 512 --devices 2 --big 1024
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import timeit
from dynamics import BOX_PER_CELL, power
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fmt_cosmo import Planck18
from fmt_dynamics import FastPM, Reversible, density_from_displacement, lpt, nbody
from fmt_fields import linear_field, white_noise


def model(shape, steps):
    box = tuple(BOX_PER_CELL * n for n in shape)
    a = np.linspace(0.1, 1.0, steps + 1)

    def loss(noise, omega_c):
        cosmo = Planck18(Omega_c=omega_c)
        dx, p = lpt(cosmo, linear_field(noise, power, box), 0.1, order=1)
        out = nbody(cosmo, (dx, p), a, solver=FastPM(), adjoint=Reversible()).state
        return jnp.sum(density_from_displacement(out.displacement) ** 2)

    return loss


def run_case(shape, n_dev, steps, repeats):
    devices = jax.devices()[:n_dev]
    mesh = jax.make_mesh((n_dev, 1), ("x", "y"), devices=devices)
    sharding = NamedSharding(mesh, P("x", "y"))
    noise = white_noise(jax.random.key(0), shape, sharding=sharding, dtype=jnp.float32)
    omega_c = jnp.asarray(Planck18().Omega_c, jnp.float32)
    loss = model(shape, steps)
    row = {"mesh": list(shape), "devices": n_dev, "steps": steps}
    for name, fn in (("forward", jax.jit(loss)), ("gradient", jax.jit(jax.grad(loss, (0, 1))))):
        try:
            t0 = time.perf_counter()
            compiled = fn.lower(noise, omega_c).compile()
            row[f"{name}_compile_s"] = time.perf_counter() - t0
            mem = compiled.memory_analysis()
            if mem is not None:
                row[f"{name}_peak_bytes_per_device"] = int(
                    mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
                )
            row[f"{name}_s"] = timeit(compiled, noise, omega_c, repeats=repeats)
        except Exception as err:  # out of memory: record it, go on
            row[f"{name}_error"] = f"{type(err).__name__}: {str(err)[:160]}"
        stats = [d.memory_stats() or {} for d in devices]
        peaks = [s.get("peak_bytes_in_use") for s in stats]
        if all(p is not None for p in peaks):
            row[f"{name}_device_peak_bytes"] = peaks
    print(json.dumps(row), flush=True)
    return row


def gib(b):
    return "" if b is None else f"{b / 2**30:.2f}"


def write(rows, info, output):
    output.mkdir(parents=True, exist_ok=True)
    (output / "scaling.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    lines = [
        f"Machine: {info['device']} × {info['devices']}, jax {info['jax']}, float32, FastPM + "
        "reversible adjoint, particles = mesh, 4 Mpc/h cells. Peak: compiled per-device "
        "peak (temp + arguments + outputs).",
        "",
        "| mesh | devices | steps | forward s | gradient s | grad peak GiB / device |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        fwd = r.get("forward_s")
        grd = r.get("gradient_s")
        lines.append(
            f"| {'×'.join(map(str, r['mesh']))} | {r['devices']} | {r['steps']} | "
            f"{'' if fwd is None else f'{fwd:.3g}'} | "
            f"{'OOM' if 'gradient_error' in r else f'{grd:.3g}'} | "
            f"{gib(r.get('gradient_peak_bytes_per_device'))} |"
        )
    eff = info.get("efficiency", {})
    if eff:
        lines += ["", "Efficiencies (strong: t1 / (n t_n); weak: t1 / t_n):", ""]
        lines += [f"- {k}: {v:.2f}" for k, v in eff.items()]
    (output / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mesh", type=int, default=64)
    p.add_argument("--devices", type=int, default=jax.device_count())
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--big", type=int, default=None, help="an N³ run on all devices")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = p.parse_args()
    if args.devices > jax.device_count():
        raise ValueError(f"--devices {args.devices} > {jax.device_count()} devices present")
    dev = jax.devices()[0]
    info = {
        "device": getattr(dev, "device_kind", dev.platform),
        "devices": args.devices,
        "jax": jax.__version__,
    }
    print("machine:", json.dumps(info), flush=True)
    n, k = args.mesh, args.devices
    one = run_case((n, n, n), 1, args.steps, args.repeats)
    strong = run_case((n, n, n), k, args.steps, args.repeats)
    weak = run_case((k * n, n, n), k, args.steps, args.repeats)
    rows = [one, strong, weak]
    eff = {}
    for name, row, ideal in (("strong", strong, k), ("weak", weak, 1)):
        for what in ("forward", "gradient"):
            if f"{what}_s" in one and f"{what}_s" in row:
                eff[f"{name} {what} ({n}³, 1 → {k} devices)"] = one[f"{what}_s"] / (
                    ideal * row[f"{what}_s"]
                )
    info["efficiency"] = eff
    if args.big:
        rows.append(run_case((args.big,) * 3, k, args.steps, 1))
    write(rows, info, args.output)


if __name__ == "__main__":
    main()
