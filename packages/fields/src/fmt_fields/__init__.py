"""fmt-fields: meshes, distributed FFTs and initial fields for differentiable cosmology.

Fourier grids and kernels of a periodic box, 3-D FFTs on one device or split over many
(differentiable to every order), white noise that is the same on any device grid,
Gaussian and lognormal fields from a power spectrum, flat-sky maps from C_ℓ, and power
spectrum estimators (auto, cross, multipoles, transfer function, r(k)).
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._src.fft import fft3d as fft3d
from ._src.fft import ifft3d as ifft3d
from ._src.flatsky import angular_power_spectrum as angular_power_spectrum
from ._src.flatsky import flat_sky_gaussian_map as flat_sky_gaussian_map
from ._src.flatsky import flat_sky_lognormal_map as flat_sky_lognormal_map
from ._src.geometry import cic_compensation as cic_compensation
from ._src.geometry import cic_window as cic_window
from ._src.geometry import gradient_kernel as gradient_kernel
from ._src.geometry import inverse_laplacian as inverse_laplacian
from ._src.geometry import wavenumber as wavenumber
from ._src.geometry import wavevectors as wavevectors
from ._src.linear import linear_field as linear_field
from ._src.linear import lognormal_field as lognormal_field
from ._src.linear import mesh_variance as mesh_variance
from ._src.noise import white_noise as white_noise
from ._src.spectra import BinnedSpectrum as BinnedSpectrum
from ._src.spectra import correlation_coefficient as correlation_coefficient
from ._src.spectra import cross_power_spectrum as cross_power_spectrum
from ._src.spectra import power_spectrum as power_spectrum
from ._src.spectra import transfer_function as transfer_function

try:
    __version__ = _version("fmt-fields")
except _PackageNotFoundError:  # imported straight from src/ (no install), e.g. on GPU hosts
    __version__ = "0.0.0+unknown"

__all__ = [
    "BinnedSpectrum",
    "__version__",
    "angular_power_spectrum",
    "cic_compensation",
    "cic_window",
    "correlation_coefficient",
    "cross_power_spectrum",
    "fft3d",
    "flat_sky_gaussian_map",
    "flat_sky_lognormal_map",
    "gradient_kernel",
    "ifft3d",
    "inverse_laplacian",
    "linear_field",
    "lognormal_field",
    "mesh_variance",
    "power_spectrum",
    "transfer_function",
    "wavenumber",
    "wavevectors",
    "white_noise",
]
