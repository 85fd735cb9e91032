"""The two sampling backends behind one interface: warmup, a vectorised step, positions.

Every function here works on all chains at once (a leading chain axis on every leaf) and is
traced by the driver inside its jitted warmup / batch functions. The model enters through
NumPyro's potential function (dynamic in the model arguments, so data are jit arguments,
not constants baked into the program).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import blackjax
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpyro.infer

__all__ = ["BACKENDS", "SAMPLERS", "make_kernel"]

SAMPLERS = ("NUTS", "HMC", "MCLMC")
BACKENDS = ("blackjax", "numpyro")
# MCLMC's three tuning stages, as fractions of `num_warmup` (they add up to 1 so that the
# warmup costs exactly `num_warmup` steps, like window adaptation).
_MCLMC_TUNE_FRACTIONS = (0.4, 0.4, 0.2)


@dataclasses.dataclass(frozen=True)
class SamplerOptions:
    """Sampler settings that are not arrays (part of the run fingerprint)."""

    sampler: str
    num_warmup: int
    target_accept_prob: float
    max_tree_depth: int
    num_integration_steps: int
    desired_energy_var: float


def _info(diverging, accept_prob, num_steps, step_size, potential_energy) -> dict[str, Any]:
    return {
        "diverging": jnp.asarray(diverging, bool),
        "accept_prob": jnp.asarray(accept_prob, jnp.result_type(float)),
        "num_steps": jnp.asarray(num_steps, jnp.int32),
        "step_size": jnp.asarray(step_size, jnp.result_type(float)),
        "potential_energy": jnp.asarray(potential_energy, jnp.result_type(float)),
    }


class BlackJAXKernel:
    """BlackJAX NUTS / HMC (window adaptation) and MCLMC (its L and step-size tuning)."""

    def __init__(self, potential_fn: Callable, options: SamplerOptions):
        self._potential_fn = potential_fn  # potential_fn(*args, **kwargs)(z) = -log density
        self.options = options

    def setup(self, keys, z0, model_args, model_kwargs) -> None:
        """Nothing to prepare: BlackJAX kernels are pure functions."""

    def _logdensity(self, model_args, model_kwargs) -> Callable:
        potential = self._potential_fn(*model_args, **model_kwargs)
        return lambda z: -potential(z)

    def warmup(self, keys, z0, model_args, model_kwargs, *, tick=None):
        """Adapt each chain independently; returns (states, adapted parameters).

        `tick()`, if given, is called once per warmup step of NUTS/HMC (progress bars);
        MCLMC's tuning offers no per-step hook.
        """
        opt = self.options
        logdensity = self._logdensity(model_args, model_kwargs)
        if opt.sampler == "MCLMC":
            kernel = blackjax.mcmc.mclmc.build_kernel()
            f1, f2, f3 = _MCLMC_TUNE_FRACTIONS

            def one(key, z):
                init_key, tune_key = jax.random.split(key)
                state = blackjax.mcmc.mclmc.init(z, logdensity, init_key)
                state, params, _ = blackjax.mclmc_find_L_and_step_size(
                    kernel,
                    opt.num_warmup,
                    state,
                    tune_key,
                    logdensity_fn=logdensity,
                    frac_tune1=f1,
                    frac_tune2=f2,
                    frac_tune3=f3,
                    desired_energy_var=opt.desired_energy_var,
                )
                return state, {
                    "L": params.L,
                    "step_size": params.step_size,
                    "inverse_mass_matrix": params.inverse_mass_matrix,
                }

            return jax.vmap(one)(keys, z0)

        if opt.sampler == "NUTS":
            algorithm, extra = blackjax.nuts, {"max_num_doublings": opt.max_tree_depth}
        else:
            algorithm, extra = blackjax.hmc, {"num_integration_steps": opt.num_integration_steps}

        keep_nothing = blackjax.adaptation.base.get_filter_adapt_info_fn()

        def info_fn(state, info, adaptation_state):
            # Nothing of the warmup trajectory is kept (it is never used), and the
            # progress bar advances.
            if tick is not None:
                tick()
            return keep_nothing(state, info, adaptation_state)

        def one(key, z):
            adaptation = blackjax.window_adaptation(
                algorithm,
                logdensity,
                target_acceptance_rate=opt.target_accept_prob,
                adaptation_info_fn=info_fn,
                **extra,
            )
            if opt.num_warmup == 0:
                dim = jax.flatten_util.ravel_pytree(z)[0].size
                state = algorithm.init(z, logdensity)
                return state, {"step_size": jnp.ones(()), "inverse_mass_matrix": jnp.ones(dim)}
            (state, params), _ = adaptation.run(key, z, num_steps=opt.num_warmup)
            return state, {
                "step_size": params["step_size"],
                "inverse_mass_matrix": params["inverse_mass_matrix"],
            }

        return jax.vmap(one)(keys, z0)

    def step(self, keys, state, params, model_args, model_kwargs):
        """One transition of every chain; returns (states, per-chain info dict)."""
        opt = self.options
        logdensity = self._logdensity(model_args, model_kwargs)
        if opt.sampler == "MCLMC":
            kernel = blackjax.mcmc.mclmc.build_kernel()

            def one(key, s, p):
                s, info = kernel(
                    key, s, logdensity, p["inverse_mass_matrix"], p["L"], p["step_size"]
                )
                # MCLMC is unadjusted: no accept/reject; report the energy error instead.
                out = _info(~info.nonans, 1.0, 1, p["step_size"], -s.logdensity)
                out["energy_change"] = info.energy_change
                return s, out

        elif opt.sampler == "NUTS":
            kernel = blackjax.nuts.build_kernel()

            def one(key, s, p):
                s, info = kernel(
                    key,
                    s,
                    logdensity,
                    p["step_size"],
                    p["inverse_mass_matrix"],
                    max_num_doublings=opt.max_tree_depth,
                )
                return s, _info(
                    info.is_divergent,
                    info.acceptance_rate,
                    info.num_integration_steps,
                    p["step_size"],
                    -s.logdensity,
                )

        else:
            kernel = blackjax.hmc.build_kernel()

            def one(key, s, p):
                s, info = kernel(
                    key,
                    s,
                    logdensity,
                    p["step_size"],
                    p["inverse_mass_matrix"],
                    opt.num_integration_steps,
                )
                return s, _info(
                    info.is_divergent,
                    info.acceptance_rate,
                    info.num_integration_steps,
                    p["step_size"],
                    -s.logdensity,
                )

        return jax.vmap(one)(keys, state, params)

    @staticmethod
    def position(state) -> dict[str, Any]:
        return state.position


class NumPyroKernel:
    """NumPyro NUTS / HMC kernels, stepped by hand (not through `numpyro.infer.MCMC`).

    NumPyro adapts inside its own `sample` during the first `num_warmup` steps; the whole
    kernel state (including its RNG key and adaptation state) is what gets checkpointed.
    """

    def __init__(self, model: Callable, init_strategy: Callable, options: SamplerOptions):
        self.options = options
        if options.sampler == "NUTS":
            self._kernel = numpyro.infer.NUTS(
                model,
                target_accept_prob=options.target_accept_prob,
                max_tree_depth=options.max_tree_depth,
                init_strategy=init_strategy,
            )
        else:
            self._kernel = numpyro.infer.HMC(
                model,
                target_accept_prob=options.target_accept_prob,
                num_steps=options.num_integration_steps,
                trajectory_length=None,  # fixed step count; the step size is still adapted
                init_strategy=init_strategy,
            )
        self._init_state = None

    def setup(self, keys, z0, model_args, model_kwargs) -> None:
        """Initialise the kernel (NumPyro builds its sample function here)."""
        self._init_state = self._kernel.init(
            keys, self.options.num_warmup, z0, model_args, dict(model_kwargs)
        )

    def initial_state(self):
        return self._init_state

    def warmup(self, init_state, model_args, model_kwargs, *, tick=None):
        def body(state, _):
            if tick is not None:
                tick()
            return self._kernel.sample(state, model_args, model_kwargs), None

        state, _ = jax.lax.scan(body, init_state, None, length=self.options.num_warmup)
        return state, {"step_size": state.adapt_state.step_size}

    def step(self, keys, state, params, model_args, model_kwargs):
        del keys, params  # NumPyro's state carries its own key and adaptation state
        state = self._kernel.sample(state, model_args, model_kwargs)
        info = _info(
            state.diverging,
            state.accept_prob,
            state.num_steps,
            state.adapt_state.step_size,
            state.potential_energy,
        )
        return state, info

    @staticmethod
    def position(state) -> dict[str, Any]:
        return state.z


def make_kernel(
    backend: str,
    model: Callable,
    potential_fn: Callable,
    init_strategy: Callable,
    options: SamplerOptions,
) -> BlackJAXKernel | NumPyroKernel:
    if backend == "blackjax":
        return BlackJAXKernel(potential_fn, options)
    return NumPyroKernel(model, init_strategy, options)
