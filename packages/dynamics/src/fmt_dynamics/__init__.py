"""fmt-dynamics: differentiable particle-mesh N-body in JAX.

Particles on a regular lattice (displacements in mesh cells, arrays sharded like the
mesh), CIC painting and reading with halo exchange, PM forces, 1LPT/2LPT initial
conditions from fmt-cosmo's growth, and utilities (density, power spectrum of particles).
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._src.adjoints import AbstractAdjoint as AbstractAdjoint
from ._src.adjoints import Backsolve as Backsolve
from ._src.adjoints import Checkpointed as Checkpointed
from ._src.adjoints import Reversible as Reversible
from ._src.forces import force_mesh as force_mesh
from ._src.forces import pm_forces as pm_forces
from ._src.lightcone import Lightcone as Lightcone
from ._src.lightcone import LightconeSpec as LightconeSpec
from ._src.lightcone import lightcone as lightcone
from ._src.lightcone import lightcone_init as lightcone_init
from ._src.lightcone import lightcone_observer as lightcone_observer
from ._src.lpt import lpt as lpt
from ._src.lpt import lpt_displacements as lpt_displacements
from ._src.nbody import NBodyResult as NBodyResult
from ._src.nbody import nbody as nbody
from ._src.painting import CIC_METHODS as CIC_METHODS
from ._src.painting import DEFAULT_HALO as DEFAULT_HALO
from ._src.painting import cic_paint as cic_paint
from ._src.painting import cic_read as cic_read
from ._src.painting import default_cic_method as default_cic_method
from ._src.particles import density_from_displacement as density_from_displacement
from ._src.particles import lattice_sites as lattice_sites
from ._src.particles import positions as positions
from ._src.particles import power_spectrum_of_particles as power_spectrum_of_particles
from ._src.solvers import AbstractSolver as AbstractSolver
from ._src.solvers import DiffraxODE as DiffraxODE
from ._src.solvers import FastPM as FastPM
from ._src.solvers import KDKState as KDKState
from ._src.solvers import LeapfrogKDK as LeapfrogKDK
from ._src.solvers import ParticleState as ParticleState
from ._src.solvers import PMForce as PMForce

try:
    __version__ = _version("fmt-dynamics")
except _PackageNotFoundError:  # imported straight from src/ (no install), e.g. on GPU hosts
    __version__ = "0.0.0+unknown"

__all__ = [
    "CIC_METHODS",
    "DEFAULT_HALO",
    "AbstractAdjoint",
    "AbstractSolver",
    "Backsolve",
    "Checkpointed",
    "DiffraxODE",
    "FastPM",
    "KDKState",
    "LeapfrogKDK",
    "Lightcone",
    "LightconeSpec",
    "NBodyResult",
    "PMForce",
    "ParticleState",
    "Reversible",
    "__version__",
    "cic_paint",
    "cic_read",
    "default_cic_method",
    "density_from_displacement",
    "force_mesh",
    "lattice_sites",
    "lightcone",
    "lightcone_init",
    "lightcone_observer",
    "lpt",
    "lpt_displacements",
    "nbody",
    "pm_forces",
    "positions",
    "power_spectrum_of_particles",
]
