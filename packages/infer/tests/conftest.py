"""Shared settings of fmt-infer's tests.

Sampling runs are the slow part (compiles); module-scoped fixtures run each configuration
once and several tests check different properties of the same runs. Tests run in float32,
the default of the samplers; the device count comes from XLA_FLAGS, set by nox.
"""

import os

# Progress bars are tested where they matter; elsewhere they would clutter the test log.
os.environ.setdefault("TQDM_DISABLE", "1")
