import jax

# Numbers are compared against float64 references (fgbuster) in this package's tests.
jax.config.update("jax_enable_x64", True)
