import os

import jax

# Numbers are compared against float64 references in this package's tests.
jax.config.update("jax_enable_x64", True)
# colossus writes a cache to the home folder unless told not to; tests never do.
os.environ.setdefault("COLOSSUS_CACHE", "0")
