import os

# GPUs sum scatter-adds (CIC deposits) with atomics in a varying order: two identical runs
# differ in the last bits and NUTS chains then diverge, so the bit-identical resume test
# needs XLA's deterministic GPU ops (docs/infer.md). Set before JAX starts a backend; no
# effect on CPUs.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_gpu_deterministic_ops=true"]
).strip()

import jax

# Cross-package numbers are compared in float64; sharded checks pass float32 explicitly.
jax.config.update("jax_enable_x64", True)
