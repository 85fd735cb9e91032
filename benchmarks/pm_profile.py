"""Where the time of one PM force evaluation goes: paint, FFTs, read, and their vjps.

Realistic particles: 1LPT displacements of a Planck18 field (4 Mpc/h cells) at a = 0.1
and a = 1 (coherent flows, unlike random displacements). Prints one JSON line per timing
and writes `pm_profile.json` to --output.

Usage: python benchmarks/pm_profile.py --mesh 256 [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
from _timing import timeit

from fmt_cosmo import Planck18
from fmt_dynamics import cic_paint, cic_read, force_mesh, lpt, pm_forces
from fmt_fields import linear_field, white_noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mesh", type=int, default=64)
    p.add_argument("--output", type=pathlib.Path, default=None)
    args = p.parse_args()
    n = args.mesh
    cosmo = Planck18()
    noise = white_noise(jax.random.key(0), (n, n, n), dtype=jnp.float32)
    delta = jax.jit(lambda w: linear_field(w, cosmo, 4.0 * n))(noise)
    rows = []
    for a in (0.1, 1.0):
        disp, _ = jax.jit(lambda d, a=a: lpt(cosmo, d, a, order=1))(delta)
        disp = disp.astype(jnp.float32)
        rho = jax.jit(cic_paint)(disp)
        forces = jax.jit(force_mesh)(rho - 1.0)
        v = jnp.ones_like(disp)
        cases = {
            "paint": (jax.jit(cic_paint), (disp,)),
            "read3": (jax.jit(cic_read), (forces, disp)),
            "read1": (jax.jit(cic_read), (rho, disp)),
            "force_mesh_ffts": (jax.jit(force_mesh), (rho - 1.0,)),
            "pm_forces": (jax.jit(pm_forces), (disp,)),
            "pm_forces_vjp": (
                jax.jit(lambda d, v: jax.vjp(pm_forces, d)[1](v)[0]),
                (disp, v),
            ),
            "paint_vjp": (jax.jit(lambda d, c: jax.vjp(cic_paint, d)[1](c)[0]), (disp, rho)),
            "read3_vjp": (
                jax.jit(lambda m, d, c: jax.vjp(cic_read, m, d)[1](c)),
                (forces, disp, v),
            ),
        }
        for name, (f, xs) in cases.items():
            row = {"mesh": n, "a": a, "case": name, "ms": 1e3 * timeit(f, *xs)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    info = {"device": jax.devices()[0].device_kind, "jax": jax.__version__}
    print(json.dumps(info))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "pm_profile.json").write_text(json.dumps({"machine": info, "rows": rows}))


if __name__ == "__main__":
    main()
