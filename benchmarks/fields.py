"""Forward + inverse 3-D FFT timings: fmt_fields vs jnp.fft vs plain jaxdecomp.

Each device count runs in a fresh subprocess, because the number of (fake CPU) devices is
fixed when JAX starts: the child sets XLA_FLAGS=--xla_force_host_platform_device_count=N
before importing jax (CPU only; on a GPU host the real devices are used and --devices is
capped at what is there).

    python benchmarks/fields.py                       # CPU: 1 and 8 fake devices, 32³ 64³
    python benchmarks/fields.py --sizes 128 --devices 1 8 --repeat 5
    python benchmarks/fields.py --sizes 256 512      # on a GPU machine

Rows: fmt_fields (fft3d + ifft3d; one device: rfftn/irfftn; several: the pure-JAX pencil
transform), jnp.fft (fftn + ifftn of the same global array, left to XLA's partitioner when
sharded), jaxdecomp (pfft3d + pifft3d, its JAX backend, on an Auto-axis mesh; "-" when it
fails). Times are medians of --repeat calls after one compile-and-warm-up call, float32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys


def _grid(n: int) -> tuple[int, int]:
    """A near-square device grid p0 x p1 with p0 <= p1."""
    p0 = int(n**0.5)
    while n % p0:
        p0 -= 1
    return p0, n // p0


def child(n_devices: int, sizes: list[int], repeat: int) -> list[dict]:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import fmt_fields as ff

    n_devices = min(n_devices, jax.device_count())
    grid = _grid(n_devices)
    devices = jax.devices()[:n_devices]

    def timed(fn, x):
        out = jax.block_until_ready(fn(x))
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = jax.block_until_ready(fn(x))
            times.append(time.perf_counter() - t0)
        del out
        return float(np.median(times))

    rows = []
    for n in sizes:
        shape = (n, n, n)
        row = {"devices": n_devices, "grid": f"{grid[0]}x{grid[1]}", "size": n}
        mesh = jax.make_mesh(grid, ("x", "y"), devices=devices)
        sharding = NamedSharding(mesh, P("x", "y"))
        x = ff.white_noise(jax.random.key(0), shape, sharding=sharding, dtype=jnp.float32)
        with jax.set_mesh(mesh):
            row["fmt_fields"] = timed(jax.jit(lambda x: ff.ifft3d(ff.fft3d(x))), x)
        auto = jax.make_mesh(grid, ("x", "y"), (AxisType.Auto,) * 2, devices=devices)
        xa = jax.device_put(np.asarray(x), NamedSharding(auto, P("x", "y")))
        row["jnp.fft"] = timed(jax.jit(lambda x: jnp.fft.ifftn(jnp.fft.fftn(x)).real), xa)
        try:
            import jaxdecomp

            fn = jax.jit(lambda x: jaxdecomp.fft.pifft3d(jaxdecomp.fft.pfft3d(x)).real)
            row["jaxdecomp"] = timed(fn, xa)
        except Exception as err:  # report in the table, do not crash it
            row["jaxdecomp"] = None
            row["jaxdecomp_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="mesh sizes N (N³); default 32 64 on CPU, 256 512 on GPU",
    )
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        print(json.dumps(child(args.child, args.sizes, args.repeat)))
        return

    gpu = _has_gpu()
    sizes = args.sizes or ([256, 512] if gpu else [32, 64])
    rows = []
    for n in args.devices:
        env = dict(os.environ)
        if not gpu:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
            env.setdefault("JAX_PLATFORMS", "cpu")
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(n),
            "--repeat",
            str(args.repeat),
            "--sizes",
            *map(str, sizes),
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"benchmark child with {n} devices failed")
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    _print_table(rows, gpu)


def _has_gpu() -> bool:
    probe = "import jax; print(jax.default_backend())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return out.stdout.strip() in ("gpu", "cuda", "rocm")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _print_table(rows: list[dict], gpu: bool) -> None:
    import jax

    machine = f"{_cpu_model()} ({platform.machine()}), {os.cpu_count()} CPU cores"
    if gpu:
        machine += f", {jax.devices()[0].device_kind}"
    print(f"# machine: {machine}; jax {jax.__version__}; float32")
    note = "real GPUs" if gpu else "fake CPU devices share the host's cores"
    print(f"# forward + inverse FFT, median ms ({note})")
    header = f"| {'devices':>7} | {'grid':>4} | {'mesh':>5} | {'fmt_fields':>10} | "
    header += f"{'jnp.fft':>8} | {'jaxdecomp':>9} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        jd = "-" if r["jaxdecomp"] is None else f"{1e3 * r['jaxdecomp']:9.2f}"
        print(
            f"| {r['devices']:>7} | {r['grid']:>4} | {str(r['size']) + '³':>5} | "
            f"{1e3 * r['fmt_fields']:10.2f} | {1e3 * r['jnp.fft']:8.2f} | {jd:>9} |"
        )
    for r in rows:
        if r.get("jaxdecomp_error"):
            where = f"{r['devices']} devices, {r['size']}³"
            print(f"# jaxdecomp failed at {where}: {r['jaxdecomp_error']}")


if __name__ == "__main__":
    main()
