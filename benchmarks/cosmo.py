"""fmt-cosmo benchmark: growth table build/evaluation, and Ludlow16 c200c against colossus.

Times (median of `--repeats` runs after a first, compiling call):
  * `growth_table` build, and `growth_factor` evaluation at `--num-a` scale factors;
  * `concentration_ludlow16` latency for one halo, and the time for `--num-halos` halos in
    one broadcast call and under `jax.vmap`, both conventions;
  * colossus 1.4 `concentration(M, '200c', z, model='ludlow16')` called in a loop on the
    same halos (cache disabled, interpolation tables built before timing), and the
    per-halo throughput ratio fmt / colossus.

Usage:
    python benchmarks/cosmo.py                   # default: 10^4 halos
    python benchmarks/cosmo.py --num-halos 100000 --colossus-halos 2000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-halos", type=int, default=10_000, help="halos per batched call")
    p.add_argument(
        "--colossus-halos", type=int, default=None, help="halos timed in colossus' loop (all)"
    )
    p.add_argument("--num-a", type=int, default=10_000, help="scale factors for growth_factor")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


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
    args = _parse()
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from colossus.cosmology import cosmology as ccosmo
    from colossus.halo import concentration as cconc

    import fmt_cosmo as fc

    print(f"machine: {_cpu_name()}, {os.cpu_count()} cores, {platform.system()}")
    print(f"python {platform.python_version()}, jax {jax.__version__}, devices {jax.devices()}")

    cosmo = fc.Planck18()
    rng = np.random.default_rng(args.seed)
    mass = 10.0 ** rng.uniform(8.0, 15.0, args.num_halos)
    z = rng.uniform(0.0, 4.0, args.num_halos)
    a = jnp.linspace(1e-3, 1.0, args.num_a)

    rows = []
    build = jax.jit(fc.growth_table)
    t_build = _median_time(lambda: build(cosmo), args.repeats)
    table = build(cosmo)
    evaluate = jax.jit(fc.growth_factor)
    t_eval = _median_time(lambda: evaluate(cosmo, a, table), args.repeats)
    rows.append(("growth_table build (512 nodes)", t_build, ""))
    rows.append(
        (f"growth_factor, {args.num_a} a values", t_eval, f"{t_eval / a.size * 1e9:.1f} ns/a")
    )

    conc = jax.jit(fc.concentration_ludlow16, static_argnames="convention")
    results = {}
    for convention in ("exact", "colossus"):
        t_one = _median_time(
            lambda c=convention: conc(cosmo, 1e12, 0.5, convention=c), args.repeats
        )
        t_many = _median_time(lambda c=convention: conc(cosmo, mass, z, convention=c), args.repeats)
        # The cosmology is an argument (not closed over, which would let XLA constant-fold
        # the sigma and growth tables at compile time).
        mapped = jax.jit(
            jax.vmap(
                lambda cc, m, zz, c=convention: fc.concentration_ludlow16(cc, m, zz, convention=c),
                in_axes=(None, 0, 0),
            )
        )
        t_vmap = _median_time(lambda f=mapped: f(cosmo, mass, z), args.repeats)
        results[convention] = t_many
        rows.append((f"ludlow16 [{convention}], 1 halo (latency)", t_one, ""))
        per = t_many / args.num_halos * 1e6
        rows.append(
            (f"ludlow16 [{convention}], {args.num_halos} halos", t_many, f"{per:.2f} us/halo")
        )
        per = t_vmap / args.num_halos * 1e6
        rows.append(
            (f"ludlow16 [{convention}], {args.num_halos} halos, vmap", t_vmap, f"{per:.2f} us/halo")
        )

    ccosmo.setCosmology("planck18", persistence="")
    n_col = args.colossus_halos or args.num_halos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cconc.concentration(1e12, "200c", 0.5, model="ludlow16")  # builds colossus' tables
        start = time.perf_counter()
        for m, zz in zip(mass[:n_col], z[:n_col], strict=True):
            cconc.concentration(m, "200c", zz, model="ludlow16")
        t_col = time.perf_counter() - start
    per_col = t_col / n_col
    rows.append((f"colossus ludlow16 loop, {n_col} halos", t_col, f"{per_col * 1e6:.1f} us/halo"))

    print()
    print(f"{'operation':<52} {'time [ms]':>12}  note")
    print("-" * 84)
    for name, seconds, note in rows:
        print(f"{name:<52} {seconds * 1e3:>12.3f}  {note}")
    print("-" * 84)
    for convention, t_many in results.items():
        ratio = per_col / (t_many / args.num_halos)
        print(f"throughput fmt [{convention}] / colossus, per halo: {ratio:,.0f}x")


if __name__ == "__main__":
    main()
