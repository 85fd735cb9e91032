"""fmt-infer benchmark: sampler overhead per step against the model's gradient cost, and
orbax checkpoint write/restore time of a sharded field.

The model is a whitened 3-D field (`DistributedNormal` prior, Gaussian likelihood of a
noisy copy), sharded over every device along X. For each backend and sampler, one batch is
timed after a first (compiling) one; the cost of a step is divided by the gradient
evaluations it made (NUTS/HMC: leapfrog steps; MCLMC: 2 per step for the McLachlan
integrator) and compared with a jitted value-and-grad of the same potential. The rest is
the sampler's own work (tree building, momenta, mass matrix, bookkeeping, draw storage).

Usage:
    python benchmarks/infer.py                      # CPU, all devices present
    python benchmarks/infer.py --cpu-devices 8      # 8 fake CPU devices (sets XLA_FLAGS)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grad-mesh", type=int, default=32, help="field cells per side (sampling)")
    p.add_argument("--ckpt-mesh", type=int, default=64, help="field cells per side (checkpoint)")
    p.add_argument("--num-samples", type=int, default=50, help="steps in a timed batch")
    p.add_argument("--num-warmup", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5, help="repeats of the small timings")
    p.add_argument("--cpu-devices", type=int, default=None, help="fake CPU devices (CPU only)")
    p.add_argument(
        "--samplers",
        default="blackjax:NUTS,blackjax:HMC,blackjax:MCLMC,numpyro:NUTS,numpyro:HMC",
        help="comma-separated backend:sampler pairs",
    )
    return p.parse_args()


ARGS = _parse()
if ARGS.cpu_devices:
    # Must happen before jax is imported; only for this benchmark process.
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.cpu_devices}"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from numpyro.infer.util import initialize_model  # noqa: E402

from fmt_infer import DistributedNormal, batched_sampling  # noqa: E402
from fmt_infer._src.checkpoint import restore_tree, save_tree  # noqa: E402

NOISE = 0.5
GRADS_PER_STEP_MCLMC = 2  # isokinetic McLachlan: two force evaluations per step
GRAD_LOOP = 200  # gradient evaluations per timed loop
GRAD_LOOP_STEP = 1e-3  # tiny gradient step so that successive evaluations differ


def machine() -> str:
    devices = jax.devices()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (
        f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform}); host CPU {cpu}, "
        f"{os.cpu_count()} cores; python {sys.version.split()[0]}, jax {jax.__version__}, "
        f"numpyro {numpyro.__version__}"
    )


def _sharding() -> NamedSharding:
    # Auto axes: the gradient timing below calls NumPyro directly, outside batched_sampling
    # (which moves Explicit-axis data to Auto axes itself).
    auto = (jax.sharding.AxisType.Auto,)
    mesh = jax.make_mesh((jax.device_count(),), ("x",), axis_types=auto)
    return NamedSharding(mesh, P("x", None, None))


def model(data, mesh_shape, sharding):
    field = numpyro.sample(
        "field", DistributedNormal(0.0, 1.0, mesh_shape=mesh_shape, sharding=sharding)
    )
    numpyro.sample("obs", dist.Normal(field, NOISE).to_event(3), obs=data)


def _time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gradient_cost(data, mesh_shape, sharding) -> float:
    (info, potential, _, _) = initialize_model(
        jax.random.key(0), model, model_args=(data, mesh_shape, sharding), dynamic_args=True
    )
    z = {k: jax.device_put(v, sharding) for k, v in info.z.items()}
    value_and_grad = jax.value_and_grad(potential(data, mesh_shape, sharding))

    # Chained evaluations inside one jitted loop, as in a sampler: no dispatch per call
    # (on CPU a standalone call costs ~0.3 ms of dispatch, comparable to a 32³ gradient).
    @jax.jit
    def loop(z):
        def body(_, z):
            _, g = value_and_grad(z)
            return jax.tree.map(lambda a, b: a - GRAD_LOOP_STEP * b, z, g)

        return jax.lax.fori_loop(0, GRAD_LOOP, body, z)

    return _time(lambda: loop(z), ARGS.repeats) / GRAD_LOOP


def sampler_rows(data, mesh_shape, sharding, t_grad: float) -> list[str]:
    rows = []
    for pair in ARGS.samplers.split(","):
        backend, sampler = pair.split(":")
        run = batched_sampling(
            model,
            None,
            jax.random.key(1),
            num_warmup=ARGS.num_warmup,
            num_samples=ARGS.num_samples,
            batch_count=3,
            sampler=sampler,
            backend=backend,
            save=False,
            progress_bar=False,
            model_args=(data, mesh_shape, sharding),
        )
        t_step = statistics.median(run.batch_seconds[1:]) / ARGS.num_samples
        steps = run.sample_stats["num_steps"][:, ARGS.num_samples :]
        grads = float(jnp.mean(steps)) * (GRADS_PER_STEP_MCLMC if sampler == "MCLMC" else 1)
        per_grad = t_step / grads
        overhead = per_grad - t_grad
        rows.append(
            f"| {backend} | {sampler} | {grads:.1f} | {1e3 * t_step:.2f} | "
            f"{1e3 * per_grad:.3f} | {1e3 * overhead:+.3f} | {100 * overhead / per_grad:+.0f}% |"
        )
        print(rows[-1], flush=True)
    return rows


def checkpoint_rows(n: int) -> list[str]:
    sharding = _sharding()
    field = DistributedNormal(0.0, 1.0, mesh_shape=(n,) * 3, sharding=sharding).sample(
        jax.random.key(2)
    )
    # what a NUTS checkpoint holds for one chain: position, gradient, a few scalars
    tree = {"position": field, "grad": field * 2.0, "logdensity": jnp.zeros(())}
    nbytes = 2 * field.size * field.dtype.itemsize
    writes, reads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(ARGS.repeats):
            path = os.path.join(tmp, f"ckpt_{i}")
            t = time.perf_counter()
            record = save_tree(pathlib.Path(path), tree)
            writes.append(time.perf_counter() - t)
            t = time.perf_counter()
            back = restore_tree(pathlib.Path(path), record)
            jax.block_until_ready(back)
            reads.append(time.perf_counter() - t)
    assert back["position"].sharding == field.sharding
    w, r = statistics.median(writes), statistics.median(reads)
    return [
        f"| {n}³ field + gradient ({nbytes / 2**20:.1f} MiB), spec {field.sharding.spec} | "
        f"{1e3 * w:.0f} | {1e3 * r:.0f} | {nbytes / 2**20 / w:.0f} | {nbytes / 2**20 / r:.0f} |"
    ]


def main() -> None:
    print(f"machine: {machine()}")
    sharding = _sharding()
    mesh_shape = (ARGS.grad_mesh,) * 3
    truth = DistributedNormal(0.0, 1.0, mesh_shape=mesh_shape, sharding=sharding)
    data = truth.sample(jax.random.key(0)) + NOISE * truth.sample(jax.random.key(1))
    t_grad = gradient_cost(data, mesh_shape, sharding)
    print(
        f"\nmodel gradient (value_and_grad in a jitted loop), {ARGS.grad_mesh}³ field: "
        f"{1e3 * t_grad:.3f} ms"
    )
    print(
        "\n| backend | sampler | gradients / step | ms / step | ms / gradient | "
        "overhead ms / gradient | overhead share |\n|---|---|---|---|---|---|---|"
    )
    sampler_rows(data, mesh_shape, sharding, t_grad)
    print(
        "\n| checkpoint | write ms | restore ms | write MiB/s | restore MiB/s |\n"
        "|---|---|---|---|---|"
    )
    for row in checkpoint_rows(ARGS.ckpt_mesh):
        print(row)


if __name__ == "__main__":
    main()
