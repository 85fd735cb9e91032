"""One process of the multi-process check: the same program on every process (SPMD).

Started by `launch.py` (or by hand, or by SLURM's `srun` on a cluster), once per process:

    python worker.py --num-processes 2 --process-id 0 --coordinator localhost:PORT --output-dir D
    python worker.py --num-processes 2 --process-id 1 --coordinator localhost:PORT --output-dir D

or once, without `jax.distributed`, as the single-process reference:

    python worker.py --output-dir D

Each process sees its local CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count`,
set by the launcher); after `jax.distributed.initialize` the global device list holds the
devices of all processes, and the computations below run on one 2 x 2 mesh over all four
devices, with CPU collectives (gloo) between the processes. Process 0 gathers the results
(`process_allgather`) and writes them to `<output-dir>/results.npz`:

- `noise`, `linear_field`, `density_planes`, `kappa`: the full-field forward model of
  `fmt_lensing.make_full_field_model` on a 16^3 mesh (white noise -> EH98 linear field ->
  2LPT -> 2 FastPM steps painting a flat-sky lightcone -> Born κ maps of two source bins);
- `samples_*`, `resumed_*`: NUTS draws of a field-level model (a `DistributedNormal` field
  sharded over the mesh, plus its amplitude) from `fmt_infer.batched_sampling`, once in
  one call and once interrupted after the first batch and resumed, with checkpoints in
  `<output-dir>/runs` written by every process through orbax.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

MESH_GRID = (2, 2)  # the device mesh (x, y) over all devices of all processes
N, BOX = 16, 128.0  # forward model: cells per side, Mpc/h
FIELD_SHAPE = (8, 8, 4)  # sampled field
NOISE = 0.5  # observation noise of the sampled field
# A few HMC steps (it compiles in half the time of NUTS, and shards alike): 10 of window
# adaptation, then 2 batches of 4 draws of 8 leapfrog steps each.
SAMPLING = dict(
    sampler="HMC", num_warmup=10, num_samples=4, num_integration_steps=8, progress_bar=False
)


def _parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    parser.add_argument("--output-dir", type=pathlib.Path, required=True)
    parser.add_argument(
        "--interrupt",
        action="store_true",
        help="sample 1 batch, then call again for 2 (resume) instead of 2 in one call",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = _parse(argv)
    # Imported here: nothing may touch a JAX backend before `jax.distributed.initialize`.
    import jax

    # Collectives between CPU processes (gloo is JAX's default on CPU; explicit for clarity).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if args.num_processes > 1:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    import numpyro
    import numpyro.distributions as dist
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import fmt_cosmo
    import fmt_fields
    import fmt_infer
    import fmt_lensing

    rank = jax.process_index()
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[process {rank}, {time.perf_counter() - start:5.1f} s] {message}", flush=True)

    log(f"{jax.process_count()} processes, devices {jax.devices()}, local {jax.local_devices()}")
    mesh = jax.make_mesh(MESH_GRID, ("x", "y"))  # Explicit axes, over every device
    sharding = NamedSharding(mesh, P("x", "y"))
    results = {}

    def gather(x):
        return multihost_utils.process_allgather(x, tiled=True)

    # --- (a) the sharded forward model: noise -> linear field -> 2LPT -> PM lightcone -> κ
    forward = fmt_lensing.make_full_field_model(
        box_shape=N,
        box_size=BOX,
        geometry="flat",
        max_redshift=0.2,
        field_size=5.0,
        field_npix=16,
        observer=(0.5, 0.5, 0.5 / N),
        density_plane_width=BOX / 2,
        n_steps=2,
    )
    nz = (fmt_lensing.Delta(0.2), fmt_lensing.Smail(2.0, 1.5, 0.1, zmax=0.2))

    @jax.jit
    def simulate(cosmo, key):
        noise = fmt_fields.white_noise(key, (N,) * 3, sharding=sharding)
        return noise, *forward(cosmo, nz, noise)

    with jax.set_mesh(mesh):
        noise, kappa, planes, field = simulate(fmt_cosmo.Planck18(), jax.random.key(7))
    results["noise"] = gather(noise)
    results["linear_field"] = gather(field)
    results["density_planes"] = gather(planes.maps)
    results["kappa"] = gather(kappa)
    results["linear_field_spec"] = np.array(str(field.sharding.spec))
    log("forward model done")

    # --- (b) batched sampling of a sharded field
    field_sharding = NamedSharding(mesh, P("x", "y", None))

    def model(data):
        amplitude = numpyro.sample("amplitude", dist.LogNormal(0.0, 0.5))
        field = numpyro.sample(
            "field",
            fmt_infer.DistributedNormal(0.0, 1.0, mesh_shape=FIELD_SHAPE, sharding=field_sharding),
        )
        numpyro.sample("obs", dist.Normal(amplitude * field, NOISE).to_event(3), obs=data)

    truth = fmt_infer.DistributedNormal(0.0, 1.0, mesh_shape=FIELD_SHAPE, sharding=field_sharding)
    data = 1.5 * truth.sample(jax.random.key(0)) + NOISE * truth.sample(jax.random.key(1))
    path = args.output_dir / "run"
    kw = dict(model_args=(data,), **SAMPLING)
    calls = [1, 2] if args.interrupt else [2]  # batch_count of each call on the same path
    for batch_count in calls:
        run = fmt_infer.batched_sampling(
            model, path, jax.random.key(5), batch_count=batch_count, **kw
        )
        log(f"sampling: batches {run.batches_run} of {batch_count} run, the others loaded")
    for site, value in run.samples.items():
        results[f"samples_{site}"] = gather(value)
    for name, value in run.sample_stats.items():
        results[f"stats_{name}"] = gather(value)
    results["samples_field_spec"] = np.array(str(run.samples["field"].sharding.spec))
    results["batches_run_last_call"] = np.array(run.batches_run)
    results["num_processes"] = np.array(jax.process_count())
    if rank == 0:
        np.savez(args.output_dir / "results.npz", **results)
    if args.num_processes > 1:
        # Waits for every process: process 0 hosts the coordination service, and the others
        # abort if it goes away first.
        jax.distributed.shutdown()
    log("done")


if __name__ == "__main__":
    main()
