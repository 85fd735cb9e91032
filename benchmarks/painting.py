"""CIC deposit variants on the current device, against fmt-dynamics' own kernels.

Times, for random displacements of rms 0.3 and 3 cells (particles = mesh), the library's
`cic_paint` with each local method it offers here ("reference" XLA scatter, "fused" XLA
per-corner kernels, and on GPUs "pallas": Pallas/Triton kernels with vector atomics and
merged z-neighbours), and the exploratory variants that led to them: corner-major and
particle-major flat scatter-adds, eight per-corner scatters, sorting by cell first, a
sorted segment sum, and a plain Pallas kernel with one scalar atomic per corner (GPU only;
blocks of 256/1024/4096 particles); plus a 3-channel CIC read and a real FFT for scale.
Each variant's max deviation from the reference is printed. Writes `painting.json` to
--output.

Usage: python benchmarks/painting.py [--meshes 128 256] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import traceback

import jax
import jax.numpy as jnp
from _timing import timeit

from fmt_dynamics import CIC_METHODS, cic_paint
from fmt_dynamics._src._pallas_cic import pallas_available


def positions(n, disp):
    i = jnp.arange(n, dtype=disp.dtype)
    sites = jnp.stack(jnp.meshgrid(i, i, i, indexing="ij"), axis=-1)
    return jnp.mod(sites + disp, n)


def corners(pos, n):
    f = jnp.floor(pos)
    i = f.astype(jnp.int32)
    t = pos - f
    idx, wts = [], []
    for c in range(8):
        o = ((c >> 2) & 1, (c >> 1) & 1, c & 1)
        flat = 0
        w = 1
        for ax in range(3):
            ci = i[..., ax] + o[ax]
            ci = jnp.where(ci >= n, ci - n, ci)
            flat = flat * n + ci
            w = w * (t[..., ax] if o[ax] else 1 - t[..., ax])
        idx.append(flat)
        wts.append(w)
    return jnp.stack(idx), jnp.stack(wts)


def dep_corner_major(disp, n):
    idx, w = corners(positions(n, disp), n)
    return jnp.zeros(n**3, w.dtype).at[idx.ravel()].add(w.ravel()).reshape(n, n, n)


def dep_particle_major(disp, n):
    idx, w = corners(positions(n, disp), n)
    idx = jnp.moveaxis(idx, 0, -1)
    w = jnp.moveaxis(w, 0, -1)
    return jnp.zeros(n**3, w.dtype).at[idx.ravel()].add(w.ravel()).reshape(n, n, n)


def dep_per_corner(disp, n):
    idx, w = corners(positions(n, disp), n)
    out = jnp.zeros(n**3, w.dtype)
    for c in range(8):
        out = out.at[idx[c].ravel()].add(w[c].ravel())
    return out.reshape(n, n, n)


def dep_sorted(disp, n):
    pos = positions(n, disp)
    idx, w = corners(pos, n)
    order = jnp.argsort(idx[0].ravel())
    idx = idx.reshape(8, -1)[:, order]
    w = w.reshape(8, -1)[:, order]
    return jnp.zeros(n**3, w.dtype).at[idx.ravel()].add(w.ravel()).reshape(n, n, n)


def dep_segment_sorted(disp, n):
    """Sort all 8N (cell, weight) pairs, then a sorted segment sum."""
    idx, w = corners(positions(n, disp), n)
    idx, w = jax.lax.sort((idx.ravel(), w.ravel()), num_keys=1)
    return jax.ops.segment_sum(w, idx, n**3, indices_are_sorted=True).reshape(n, n, n)


def make_pallas(block=1024):
    from jax.experimental import pallas as pl

    try:
        from jax.experimental.pallas.triton import atomic_add
    except ImportError:
        atomic_add = pl.atomic_add

    def deposit(disp, n):
        pos = positions(n, disp).reshape(-1, 3)
        x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
        npart = x.shape[0]

        def kernel(x_ref, y_ref, z_ref, o_in, o_ref):
            xs = (x_ref[...], y_ref[...], z_ref[...])
            fl = [jnp.floor(v) for v in xs]
            ii = [f.astype(jnp.int32) for f in fl]
            tt = [v - f for v, f in zip(xs, fl, strict=True)]
            for c in range(8):
                o = ((c >> 2) & 1, (c >> 1) & 1, c & 1)
                flat = 0
                w = 1.0
                for ax in range(3):
                    ci = ii[ax] + o[ax]
                    ci = jnp.where(ci >= n, ci - n, ci)
                    flat = flat * n + ci
                    w = w * (tt[ax] if o[ax] else 1.0 - tt[ax])
                atomic_add(o_ref, (flat,), w)

        spec = pl.BlockSpec((block,), lambda i: (i,))
        out = pl.pallas_call(
            kernel,
            out_shape=jax.ShapeDtypeStruct((n**3,), x.dtype),
            grid=(npart // block,),
            in_specs=[spec, spec, spec, pl.BlockSpec(memory_space=pl.ANY)],
            out_specs=pl.BlockSpec(memory_space=pl.ANY),
            input_output_aliases={3: 0},
        )(x, y, z, jnp.zeros(n**3, x.dtype))
        return out.reshape(n, n, n)

    return deposit


def read_gather(mesh, disp, n):
    idx, w = corners(positions(n, disp), n)
    vals = mesh.reshape(n**3, -1)[idx]  # (8, n,n,n, C)
    return jnp.sum(vals * w[..., None], axis=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshes", type=int, nargs="*", default=None)
    parser.add_argument(
        "--output", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results"
    )
    args = parser.parse_args()
    gpu = jax.default_backend() == "gpu"
    sizes = args.meshes or ([128, 256] if gpu else [32, 64])
    print("devices", jax.devices(), "jax", jax.__version__, flush=True)
    variants = {
        "corner_major": dep_corner_major,
        "particle_major": dep_particle_major,
        "per_corner": dep_per_corner,
        "sorted_first_corner": dep_sorted,
        "segment_sorted": dep_segment_sorted,
    }
    for method in CIC_METHODS:
        if method != "pallas" or pallas_available():
            variants[f"fmt_{method}"] = lambda d, n, m=method: cic_paint(d, method=m)
    for blk in (256, 1024, 4096) if gpu else ():  # Triton atomics: GPUs only
        variants[f"pallas_{blk}"] = make_pallas(blk)
    results = []
    for n in sizes:
        for scale in (0.3, 3.0):
            key = jax.random.key(n)
            disp = scale * jax.random.normal(key, (n, n, n, 3), jnp.float32)
            ref = jax.jit(lambda d, n=n: dep_corner_major(d, n))(disp)
            for name, f in variants.items():
                try:
                    g = jax.jit(lambda d, f=f, n=n: f(d, n))
                    out = g(disp)
                    err = float(jnp.max(jnp.abs(out - ref)))
                    t = timeit(g, disp)
                    results.append(dict(n=n, scale=scale, variant=name, ms=t * 1e3, maxerr=err))
                except Exception as e:
                    traceback.print_exc(limit=2)
                    results.append(dict(n=n, scale=scale, variant=name, error=str(e)[:300]))
                print(results[-1], flush=True)
            mesh3 = jax.random.normal(key, (n, n, n, 3), jnp.float32)
            g = jax.jit(lambda m, d, n=n: read_gather(m, d, n))
            ms = timeit(g, mesh3, disp) * 1e3
            results.append(dict(n=n, scale=scale, variant="read3_gather", ms=ms))
            print(results[-1], flush=True)
            fft = jax.jit(jnp.fft.rfftn)
            results.append(dict(n=n, variant="rfftn", ms=timeit(fft, mesh3[..., 0]) * 1e3))
            print(results[-1], flush=True)
    info = {"device": jax.devices()[0].device_kind, "jax": jax.__version__}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "painting.json").write_text(json.dumps({"machine": info, "rows": results}))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
