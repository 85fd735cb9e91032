import jax

# Cross-package numbers are compared in float64; sharded checks pass float32 explicitly.
jax.config.update("jax_enable_x64", True)
