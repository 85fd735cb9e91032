"""A sampling process killed with SIGKILL in the middle of a batch, then resumed, ends with
exactly the draws of an uninterrupted run: nothing lost, nothing duplicated."""

import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

from fmt_infer import load_samples

SCRIPT = pathlib.Path(__file__).with_name("_crash_script.py")
STALL_TIMEOUT_S = 240  # compile + warmup + two batches on a slow shared CPU


def _load_script():
    spec = importlib.util.spec_from_file_location("_crash_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sigkill_mid_batch_then_resume(tmp_path):
    script = _load_script()
    path = tmp_path / "run"
    marker = tmp_path / "stalled"
    env = dict(os.environ, FMT_INFER_TEST_STALL=str(marker))
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(path)], env=env)
    try:
        deadline = time.monotonic() + STALL_TIMEOUT_S
        while not marker.exists():
            assert proc.poll() is None, f"sampling process exited early ({proc.returncode})"
            assert time.monotonic() < deadline, "sampling process never reached the stall"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # Killed inside batch 2: batches 0 and 1 are committed, batch 2 is not.
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest == {"warmup": True, "batches": script.STALL_BATCH}

    env.pop("FMT_INFER_TEST_STALL")
    subprocess.run([sys.executable, str(SCRIPT), str(path)], env=env, check=True, timeout=600)
    resumed = load_samples(path)

    reference = script.run(tmp_path / "reference")  # uninterrupted, in this process
    batches = script.SETTINGS["batch_count"]
    for name in ("x", "r"):
        a = np.asarray(resumed[name])
        assert a.shape[1] == batches * script.SETTINGS["num_samples"]
        np.testing.assert_array_equal(a, np.asarray(reference.samples[name]))
    assert json.loads((path / "manifest.json").read_text())["batches"] == batches
    leftovers = [p.name for p in path.iterdir() if "tmp" in p.name]
    assert leftovers == []
