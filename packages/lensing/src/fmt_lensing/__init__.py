"""fmt-lensing: weak-lensing convergence maps from differentiable PM lightcones.

Source redshift distributions, Born convergence on the flat sky and the HEALPix sphere,
visibility masks and full-sky reconstruction, Limber theory C_ℓ on fmt-cosmo, map spectra,
shape noise, a Gaussian map likelihood, and the full-field forward model
(white noise → LPT → PM lightcone → κ). The probabilistic model (`full_field_probmodel`,
`Configuration`) needs the `[infer]` extra (numpyro, fmt-infer), imported lazily.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._src.born import born_convergence as born_convergence
from ._src.born import lensing_efficiency as lensing_efficiency
from ._src.born import lensing_weights as lensing_weights
from ._src.born import shell_weights as shell_weights
from ._src.forward import make_full_field_model as make_full_field_model
from ._src.limber import limber_cl as limber_cl
from ._src.limber import shell_limber_cl as shell_limber_cl
from ._src.nz import Delta as Delta
from ._src.nz import Smail as Smail
from ._src.nz import Tabulated as Tabulated
from ._src.nz import TopHat as TopHat
from ._src.probmodel import Configuration as Configuration
from ._src.probmodel import full_field_probmodel as full_field_probmodel
from ._src.statistics import add_shape_noise as add_shape_noise
from ._src.statistics import flat_power_spectrum as flat_power_spectrum
from ._src.statistics import gaussian_log_likelihood as gaussian_log_likelihood
from ._src.statistics import healpix_deposit_window as healpix_deposit_window
from ._src.statistics import pixel_area_arcmin2 as pixel_area_arcmin2
from ._src.statistics import shape_noise_sigma as shape_noise_sigma
from ._src.statistics import spherical_power_spectrum as spherical_power_spectrum
from ._src.visibility import reconstruct_full_kappa as reconstruct_full_kappa
from ._src.visibility import visibility_mask as visibility_mask
from ._src.visibility import visible_pixels as visible_pixels

try:
    __version__ = _version("fmt-lensing")
except _PackageNotFoundError:  # imported straight from src/ (no install), e.g. on GPU hosts
    __version__ = "0.0.0+unknown"

__all__ = [
    "Configuration",
    "Delta",
    "Smail",
    "Tabulated",
    "TopHat",
    "__version__",
    "add_shape_noise",
    "born_convergence",
    "flat_power_spectrum",
    "full_field_probmodel",
    "gaussian_log_likelihood",
    "healpix_deposit_window",
    "lensing_efficiency",
    "lensing_weights",
    "limber_cl",
    "make_full_field_model",
    "pixel_area_arcmin2",
    "reconstruct_full_kappa",
    "shape_noise_sigma",
    "shell_limber_cl",
    "shell_weights",
    "spherical_power_spectrum",
    "visibility_mask",
    "visible_pixels",
]
