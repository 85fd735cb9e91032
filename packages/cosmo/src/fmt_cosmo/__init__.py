"""fmt-cosmo: jit-safe cosmology in JAX.

An immutable `Cosmology` pytree, background expansion and distances, linear growth
(D1, f1, D2, f2 and FastPM factors), Eisenstein & Hu (1998) linear power, sigma(R) and
the Ludlow et al. (2016) concentration-mass relation, all pure functions.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._src.background import E as E
from ._src.background import H as H
from ._src.background import Omega_de_a as Omega_de_a
from ._src.background import Omega_m_a as Omega_m_a
from ._src.background import angular_diameter_distance as angular_diameter_distance
from ._src.background import comoving_distance as comoving_distance
from ._src.background import dlnE_dlna as dlnE_dlna
from ._src.background import luminosity_distance as luminosity_distance
from ._src.background import scale_factor_of_distance as scale_factor_of_distance
from ._src.background import transverse_comoving_distance as transverse_comoving_distance
from ._src.cosmology import Cosmology as Cosmology
from ._src.cosmology import Planck15 as Planck15
from ._src.cosmology import Planck18 as Planck18
from ._src.growth import GROWTH_METHODS as GROWTH_METHODS
from ._src.growth import GrowthTable as GrowthTable
from ._src.growth import default_growth_method as default_growth_method
from ._src.growth import fastpm_drift_factor as fastpm_drift_factor
from ._src.growth import fastpm_kick_factor as fastpm_kick_factor
from ._src.growth import growth_factor as growth_factor
from ._src.growth import growth_factor_second as growth_factor_second
from ._src.growth import growth_rate as growth_rate
from ._src.growth import growth_rate_second as growth_rate_second
from ._src.growth import growth_table as growth_table
from ._src.interop import from_jax_cosmo as from_jax_cosmo
from ._src.interop import to_jax_cosmo as to_jax_cosmo
from ._src.ludlow16 import concentration_ludlow16 as concentration_ludlow16
from ._src.ludlow16 import nfw_density as nfw_density
from ._src.ludlow16 import nfw_rho_s as nfw_rho_s
from ._src.ludlow16 import nfw_scale_radius as nfw_scale_radius
from ._src.power import lagrangian_radius as lagrangian_radius
from ._src.power import linear_power as linear_power
from ._src.power import peak_height as peak_height
from ._src.power import sigma_R as sigma_R
from ._src.power import transfer_eisenstein_hu as transfer_eisenstein_hu
from ._src.power import transfer_eisenstein_hu_nowiggle as transfer_eisenstein_hu_nowiggle

try:
    __version__ = _version("fmt-cosmo")
except _PackageNotFoundError:  # imported straight from src/ (no install), e.g. on GPU hosts
    __version__ = "0.0.0+unknown"

__all__ = [
    "GROWTH_METHODS",
    "Cosmology",
    "E",
    "GrowthTable",
    "H",
    "Omega_de_a",
    "Omega_m_a",
    "Planck15",
    "Planck18",
    "__version__",
    "angular_diameter_distance",
    "comoving_distance",
    "concentration_ludlow16",
    "default_growth_method",
    "dlnE_dlna",
    "fastpm_drift_factor",
    "fastpm_kick_factor",
    "from_jax_cosmo",
    "growth_factor",
    "growth_factor_second",
    "growth_rate",
    "growth_rate_second",
    "growth_table",
    "lagrangian_radius",
    "linear_power",
    "luminosity_distance",
    "nfw_density",
    "nfw_rho_s",
    "nfw_scale_radius",
    "peak_height",
    "scale_factor_of_distance",
    "sigma_R",
    "to_jax_cosmo",
    "transfer_eisenstein_hu",
    "transfer_eisenstein_hu_nowiggle",
    "transverse_comoving_distance",
]
