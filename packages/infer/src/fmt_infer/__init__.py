"""fmt-infer: resumable, sharding-safe batched MCMC for field-level inference.

NumPyro distributions over whole (sharded) 3-D fields, batched sampling with BlackJAX or
NumPyro kernels whose state is checkpointed with orbax after warmup and after every batch
(resumed runs equal uninterrupted ones bit for bit, and keep their shardings), loading of
saved draws, convergence diagnostics and corner plots.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._src.diagnostics import ess_bulk as ess_bulk
from ._src.diagnostics import ess_tail as ess_tail
from ._src.diagnostics import format_summary as format_summary
from ._src.diagnostics import split_rhat as split_rhat
from ._src.diagnostics import summary as summary
from ._src.distributions import DistributedLogNormal as DistributedLogNormal
from ._src.distributions import DistributedNormal as DistributedNormal
from ._src.plotting import plot_posterior as plot_posterior
from ._src.sampling import SamplingResult as SamplingResult
from ._src.sampling import batched_sampling as batched_sampling
from ._src.sampling import load_sample_stats as load_sample_stats
from ._src.sampling import load_samples as load_samples

try:
    __version__ = _version("fmt-infer")
except _PackageNotFoundError:  # imported straight from src/ (no install), e.g. on GPU hosts
    __version__ = "0.0.0+unknown"

__all__ = [
    "DistributedLogNormal",
    "DistributedNormal",
    "SamplingResult",
    "__version__",
    "batched_sampling",
    "ess_bulk",
    "ess_tail",
    "format_summary",
    "load_sample_stats",
    "load_samples",
    "plot_posterior",
    "split_rhat",
    "summary",
]
