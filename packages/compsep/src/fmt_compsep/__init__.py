"""fmt-compsep: parametric CMB component separation in JAX.

Sky components as plain jnp SED functions, the mixing matrix and its derivatives, the
spectral likelihood with its gradient, Fisher matrix and component maps (exact
per-patch moment reduction when the noise is shared), spatially varying parameters on
patches, bounded Newton fits that can be vmapped over noise realisations, and recipes
mirroring fgbuster's (basic, weighted, multi-resolution / adaptive, ILC).
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._src.likelihood import SpectralLikelihood as SpectralLikelihood
from ._src.mixing import Bandpasses as Bandpasses
from ._src.mixing import MixingMatrix as MixingMatrix
from ._src.optimize import FitResult as FitResult
from ._src.optimize import fit as fit
from ._src.optimize import fit_multistart as fit_multistart
from ._src.optimize import minimize_newton as minimize_newton
from ._src.patches import PatchLayout as PatchLayout
from ._src.patches import kmeans_patches as kmeans_patches
from ._src.patches import nside_of as nside_of
from ._src.patches import patch_ids_from_nside as patch_ids_from_nside
from ._src.recipes import CompSepResult as CompSepResult
from ._src.recipes import ILCResult as ILCResult
from ._src.recipes import adaptive_comp_sep as adaptive_comp_sep
from ._src.recipes import basic_comp_sep as basic_comp_sep
from ._src.recipes import harmonic_ilc as harmonic_ilc
from ._src.recipes import ilc as ilc
from ._src.recipes import multi_res_comp_sep as multi_res_comp_sep
from ._src.recipes import weighted_comp_sep as weighted_comp_sep
from ._src.sed import CMB as CMB
from ._src.sed import H_OVER_K as H_OVER_K
from ._src.sed import T_CMB as T_CMB
from ._src.sed import Component as Component
from ._src.sed import Dust as Dust
from ._src.sed import FreeFree as FreeFree
from ._src.sed import ModifiedBlackBody as ModifiedBlackBody
from ._src.sed import PowerLaw as PowerLaw
from ._src.sed import Synchrotron as Synchrotron
from ._src.sed import ThermalSZ as ThermalSZ
from ._src.sed import k_rj_to_k_cmb as k_rj_to_k_cmb
from ._src.simulate import noise_std_from_depth as noise_std_from_depth

try:
    __version__ = _version("fmt-compsep")
except _PackageNotFoundError:  # imported straight from src/ (no install), e.g. on GPU hosts
    __version__ = "0.0.0+unknown"

__all__ = [
    "CMB",
    "H_OVER_K",
    "T_CMB",
    "Bandpasses",
    "CompSepResult",
    "Component",
    "Dust",
    "FitResult",
    "FreeFree",
    "ILCResult",
    "MixingMatrix",
    "ModifiedBlackBody",
    "PatchLayout",
    "PowerLaw",
    "SpectralLikelihood",
    "Synchrotron",
    "ThermalSZ",
    "__version__",
    "adaptive_comp_sep",
    "basic_comp_sep",
    "fit",
    "fit_multistart",
    "harmonic_ilc",
    "ilc",
    "k_rj_to_k_cmb",
    "kmeans_patches",
    "minimize_newton",
    "multi_res_comp_sep",
    "noise_std_from_depth",
    "nside_of",
    "patch_ids_from_nside",
    "weighted_comp_sep",
]
