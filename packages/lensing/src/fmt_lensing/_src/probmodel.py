"""The full-field probabilistic model (needs the `[infer]` extra: numpyro + fmt-infer).

`full_field_probmodel(config)` returns a NumPyro model:

1. cosmological parameters from their priors in `config.priors` (name → numpyro
   distribution; parameters not listed keep the fiducial value of `config.fiducial`);
2. the whitened initial field `initial_conditions ~ DistributedNormal(0, 1)` on
   `config.box_shape` (fmt-infer);
3. κ = `make_full_field_model(...)` of the config, per source bin;
4. the observed maps `kappa_obs ~ Normal(κ, σ_pix)` with the per-pixel shape noise
   σ_e / sqrt(n_gal A_pix) (`shape_noise_sigma`).

numpyro and fmt-infer are imported when the model is built, never at module import, so
`import fmt_lensing` works without them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from .forward import make_full_field_model
from .statistics import shape_noise_sigma

__all__ = ["Configuration", "full_field_probmodel"]


@dataclasses.dataclass(frozen=True)
class Configuration:
    """Everything the full-field model needs (frozen; hashable settings).

    Attributes:
        box_shape: as for `make_full_field_model`, and so are `box_size`,
            `max_redshift`, `geometry`, `field_size`, `field_npix`, `density_plane_width`,
            `density_plane_npix`, `nside`, `observer`, `n_steps`, `a_init`, `lpt_order`,
            `solver`, `adjoint`, `shell_assignment`, `growth_a_min` and `growth_num`.
        nz: one n(z) or a tuple of them (tomographic bins).
        sigma_e: intrinsic ellipticity dispersion per component.
        n_gal: galaxies per arcmin² per bin.
        fiducial: fiducial `fmt_cosmo.Cosmology` (default Planck18).
        priors: tuple of (parameter name, numpyro distribution) pairs.
    """

    box_shape: tuple[int, int, int]
    box_size: tuple[float, float, float]
    max_redshift: float
    nz: Any
    geometry: str = "flat"
    field_size: float | None = None
    field_npix: int | None = None
    density_plane_width: float | None = None
    density_plane_npix: int | None = None
    nside: int | None = None
    observer: tuple[float, float, float] | None = None
    n_steps: int = 10
    a_init: float | None = None
    lpt_order: int = 2
    solver: Any = "fastpm"
    adjoint: Any = "checkpointed"
    shell_assignment: str = "nearest"
    growth_a_min: float | None = None
    growth_num: int | None = None
    sigma_e: float = 0.26
    n_gal: float = 10.0
    fiducial: Any = None
    priors: tuple = ()

    def __post_init__(self):
        if self.sigma_e < 0:
            raise ValueError(f"sigma_e must be >= 0, got {self.sigma_e!r}")
        if self.n_gal <= 0:
            raise ValueError(f"n_gal must be > 0, got {self.n_gal!r}")
        for item in self.priors:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(f"priors must be (name, distribution) pairs, got {item!r}")

    def pixel_noise(self) -> float:
        """Per-pixel shape-noise standard deviation of this configuration."""
        if self.geometry == "flat":
            return shape_noise_sigma(
                self.sigma_e, self.n_gal, field_size=self.field_size, field_npix=self.field_npix
            )
        return shape_noise_sigma(self.sigma_e, self.n_gal, nside=self.nside)

    def forward_model(self):
        """`make_full_field_model(...)` of this configuration."""
        return make_full_field_model(
            box_shape=self.box_shape,
            box_size=self.box_size,
            max_redshift=self.max_redshift,
            geometry=self.geometry,
            field_size=self.field_size,
            field_npix=self.field_npix,
            density_plane_width=self.density_plane_width,
            density_plane_npix=self.density_plane_npix,
            nside=self.nside,
            observer=self.observer,
            n_steps=self.n_steps,
            a_init=self.a_init,
            lpt_order=self.lpt_order,
            solver=self.solver,
            adjoint=self.adjoint,
            shell_assignment=self.shell_assignment,
            growth_a_min=self.growth_a_min,
            growth_num=self.growth_num,
            fiducial=self.fiducial,
        )


def _import_infer():
    try:
        import numpyro
        import numpyro.distributions as dist

        from fmt_infer import DistributedNormal
    except ImportError as err:
        raise ImportError(
            "full_field_probmodel needs the optional dependencies numpyro and fmt-infer: "
            "pip install 'fmt-lensing[infer]'"
        ) from err
    return numpyro, dist, DistributedNormal


def full_field_probmodel(config: Configuration):
    """NumPyro model of the observed κ maps (module docstring).

    Args:
        config: a `Configuration`.

    Returns:
        `model(kappa_obs=None)`: samples the priors and the initial field and observes
        `kappa_obs` (sampled when None) at the site "kappa_obs".

    Raises:
        TypeError: `config` is not a `Configuration`.
        ImportError: numpyro or fmt-infer missing (install the `[infer]` extra).
    """
    if not isinstance(config, Configuration):
        raise TypeError(f"config must be a Configuration, got {type(config).__name__}")
    numpyro, dist, DistributedNormal = _import_infer()
    from fmt_cosmo import Planck18

    forward = config.forward_model()
    # NumPyro initialises by running the model (value and gradient) outside jit: one
    # compiled call is much faster than dispatching the lightcone op by op.
    kappa_of = jax.jit(lambda cosmo, noise: forward(cosmo, config.nz, noise)[0])
    fiducial = Planck18() if config.fiducial is None else config.fiducial
    sigma = config.pixel_noise()

    def model(kappa_obs=None):
        params = {name: numpyro.sample(name, prior) for name, prior in config.priors}
        cosmo = fiducial.replace(**params) if params else fiducial
        noise = numpyro.sample(
            "initial_conditions", DistributedNormal(0.0, 1.0, mesh_shape=config.box_shape)
        )
        kappa = kappa_of(cosmo, noise)
        numpyro.deterministic("kappa", kappa)
        return numpyro.sample(
            "kappa_obs", dist.Normal(kappa, sigma).to_event(kappa.ndim), obs=kappa_obs
        )

    return model
