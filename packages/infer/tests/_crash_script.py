"""Run by test_crash.py in a subprocess: sample, optionally stalling in the middle of a batch.

With FMT_INFER_TEST_STALL=<marker> set, the model's log density, once batch STALL_BATCH has
started, writes the marker file and sleeps: the parent then kills the process with SIGKILL
while it is provably inside that batch. The hook is a host callback whose behaviour, not
the compiled program, depends on the variable, so every process computes the same draws.
"""

import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from fmt_infer import batched_sampling

STALL_BATCH = 2  # 0-based: batches 0 and 1 are committed when the process is killed
STALL_AFTER_CALLS = 30  # gradient evaluations into the batch before stalling
SETTINGS = {"num_warmup": 40, "num_samples": 30, "batch_count": 4, "progress_bar": False}

_calls = {"n": 0}
_path = {"run": None}


def _hook():
    marker = os.environ.get("FMT_INFER_TEST_STALL")
    if not marker or _path["run"] is None:
        return
    manifest = pathlib.Path(_path["run"]) / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text())["batches"] < STALL_BATCH:
        return
    _calls["n"] += 1
    if _calls["n"] >= STALL_AFTER_CALLS:
        pathlib.Path(marker).write_text("mid-batch")
        time.sleep(600)


def model():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    jax.debug.callback(_hook)
    numpyro.deterministic("r", jnp.sqrt(jnp.sum(x**2)))


def run(path):
    _path["run"] = str(path)
    return batched_sampling(model, path, jax.random.key(11), **SETTINGS)


if __name__ == "__main__":
    run(pathlib.Path(sys.argv[1]))
