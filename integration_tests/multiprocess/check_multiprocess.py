"""Two processes joined by `jax.distributed` compute what one process computes.

`nox -s multiprocess` (also the last step of `nox -s tests`) runs this file by its path;
its name does not start with `test_`, so `pytest integration_tests` (the 1, 2 and 8 device
runs) does not collect it again. The fixture starts, at the same time:

- the multi-process run: 2 processes of `worker.py` with 2 fake CPU devices each, joined
  on localhost by `jax.distributed.initialize` with gloo CPU collectives, one 2 x 2 mesh
  over the 4 devices; its sampling run is interrupted after the first batch and resumed
  by a second call, checkpoints written by both processes through orbax;
- the reference: 1 process with 4 fake CPU devices, the same mesh shape, sampling both
  batches in one call.

Both run the same sharded programs; only the collectives differ (gloo between processes
against in-process all-reduces), so results agree to float32 rounding of reordered sums
(measured: bit for bit except the density planes, 6e-8 of their maximum, and κ, 2e-7).
"""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch import ProcessGroup  # the launcher next to this file

# Seconds for both groups together; on 2 idle cores they take about a minute.
TIMEOUT = 600.0
# Fields computed by the same partitioned program: equal up to reordered float32 sums, in
# units of the field's largest value (as the sharded-vs-single-device tests of fmt-lensing).
FIELD_RTOL = 1e-5
# Sampler draws and statistics: the same chain step by step. A difference of rounding in
# the gradient would grow through the leapfrog steps, so allow a little more than a field.
SAMPLES_RTOL = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(multi-process results, single-process results) as dicts of numpy arrays."""
    root = tmp_path_factory.mktemp("multiprocess")
    multi = ProcessGroup(2, 2, root / "multi", worker_args=["--interrupt"], name="multi")
    single = ProcessGroup(1, 4, root / "single", name="single")
    multi.wait(TIMEOUT)
    seconds = single.wait(TIMEOUT)
    print(f"both groups finished after {seconds:.1f} s")
    out = []
    for group in (multi, single):
        with np.load(group.output_dir / "results.npz") as data:
            out.append({k: data[k] for k in data.files})
    return (*out, root)


def _close(name, multi, single, rtol):
    a, b = multi[name], single[name]
    assert a.shape == b.shape, (name, a.shape, b.shape)
    scale = float(np.max(np.abs(b)))
    assert scale > 0, name
    err = float(np.max(np.abs(a - b))) / scale
    print(f"{name}: max |multi - single| / max |single| = {err:.1e}")
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=name)


def test_two_processes_ran(runs):
    multi, single, _ = runs
    assert int(multi["num_processes"]) == 2 and int(single["num_processes"]) == 1


def test_forward_model_equals_single_process(runs):
    """Noise -> linear field -> 2LPT -> 2 PM steps -> lightcone planes -> κ, over 2 hosts."""
    multi, single, _ = runs
    # White noise is a function of (key, global index): identical bit for bit.
    np.testing.assert_array_equal(multi["noise"], single["noise"])
    assert str(multi["linear_field_spec"]) == "P('x', 'y', None)"
    for name in ("linear_field", "density_planes", "kappa"):
        _close(name, multi, single, FIELD_RTOL)


def test_resumed_multiprocess_sampling_equals_single_process(runs):
    """HMC on a sharded field, interrupted and resumed on 2 processes == one call on one."""
    multi, single, root = runs
    # The second call of the multi-process run computed batch 1 only: batch 0 and the
    # warmup came back from the checkpoints that both processes wrote.
    assert multi["batches_run_last_call"].tolist() == [1]
    assert single["batches_run_last_call"].tolist() == [0, 1]
    assert (root / "multi" / "run" / "batch_00001.json").exists()
    assert str(multi["samples_field_spec"]) == "P(None, None, 'x', 'y')"
    assert multi["samples_field"].shape == (1, 8, 8, 8, 4)
    for name in ("samples_amplitude", "samples_field", "stats_potential_energy"):
        _close(name, multi, single, SAMPLES_RTOL)
    np.testing.assert_array_equal(multi["stats_num_steps"], single["stats_num_steps"])
    np.testing.assert_array_equal(multi["stats_step_size"], single["stats_step_size"])
    # The chain moved (a frozen chain would match trivially).
    assert np.unique(single["samples_amplitude"]).size > 1
