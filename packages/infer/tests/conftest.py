"""Shared settings of fmt-infer's tests.

Sampling runs are the slow part (compiles): module-scoped fixtures run each configuration
once and several tests check different properties of the same runs. Tests run in float32,
the samplers' default; the device count comes from XLA_FLAGS, set by nox (never here).
"""
