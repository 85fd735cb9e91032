"""fmt-cosmo: jit-safe cosmology in JAX.

An immutable `Cosmology` pytree, background expansion and distances, linear growth
(D1, f1, D2, f2 and FastPM factors), Eisenstein & Hu (1998) linear power, sigma(R) and
the Ludlow et al. (2016) concentration-mass relation, all pure functions.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._src.cosmology import Cosmology as Cosmology
from ._src.cosmology import Planck15 as Planck15
from ._src.cosmology import Planck18 as Planck18

try:
    __version__ = _version("fmt-cosmo")
except _PackageNotFoundError:  # imported straight from src/ (no install), e.g. on GPU hosts
    __version__ = "0.0.0+unknown"

__all__ = [
    "Cosmology",
    "Planck15",
    "Planck18",
    "__version__",
]
