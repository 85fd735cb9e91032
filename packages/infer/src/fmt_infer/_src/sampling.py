"""Batched, resumable MCMC over NumPyro models with BlackJAX or NumPyro kernels.

One warmup, then batches of `num_samples` draws; each batch is one jitted `lax.scan`. With
`save=True` the state after warmup and after every batch goes to orbax checkpoints in a run
directory (see `checkpoint.py` for the layout and the commit protocol). Batch `b` draws its
keys from `fold_in(sample_key, b)` and starts from the state saved after batch `b - 1`, so
a run resumed after any interruption computes exactly what an uninterrupted run computes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding
from numpyro.infer import init_to_uniform, init_to_value
from numpyro.infer.util import initialize_model
from tqdm.auto import tqdm

from .checkpoint import RunDirectory, sync_processes
from .kernels import BACKENDS, SAMPLERS, NumPyroKernel, SamplerOptions, make_kernel

__all__ = ["SamplingResult", "batched_sampling", "load_sample_stats", "load_samples"]


@dataclasses.dataclass(frozen=True)
class SamplingResult:
    """What `batched_sampling` returns.

    Attributes:
        samples: site name -> array (num_chains, batch_count * num_samples, *site_shape):
            latent sites (constrained) and deterministic sites, all batches of the run.
        sample_stats: "diverging", "accept_prob", "num_steps", "step_size",
            "potential_energy" (+ "energy_change" for MCLMC) -> (num_chains, draws).
        state: the sampler state after the last batch (leading chain axis).
        parameters: adapted parameters (step size, inverse mass matrix, MCLMC's L).
        batches_run: indices of the batches computed by this call (the others were loaded).
        batch_seconds: wall time of each batch computed by this call, checkpoint excluded
            (the first includes compilation).
        path: the run directory, or None with `save=False`.
    """

    samples: dict[str, jax.Array]
    sample_stats: dict[str, jax.Array]
    state: Any
    parameters: dict[str, jax.Array]
    batches_run: tuple[int, ...]
    batch_seconds: tuple[float, ...]
    path: pathlib.Path | None


# --------------------------------------------------------------------------- validation


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_path(path: Any, *, save: bool) -> pathlib.Path | None:
    if path is None:
        if save:
            raise ValueError("path must be a directory path when save=True, got None")
        return None
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"path must be a directory (existing, or to be created), got the file {str(path)!r}"
        )
    return path


def _raw_key(key: Any) -> jax.Array:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    if key.shape != (2,) or key.dtype != jnp.uint32:
        raise TypeError(
            f"rng_key must be a scalar jax.random.key or a uint32[2] PRNGKey, got "
            f"{key.dtype}{list(key.shape)}"
        )
    return key


# --------------------------------------------------------------------------- fingerprint


def _callable_name(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        inner = _callable_name(fn.func)
        return f"{inner}(args={_digest(fn.args)}, kwargs={_digest(fn.keywords)})"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _source_digest(fn: Any) -> str:
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _host_value(x: Any) -> np.ndarray:
    """The whole value of an array on this host, also when it spans several processes.

    A global array of a multi-process run (`jax.distributed`) has shards this process
    cannot read; every process gathers the same full value (a collective: all processes
    call this in the same order, as they run the same program), so the fingerprint is the
    same on every process and equal to a single-process run's.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _digest(tree: Any) -> str:
    h = hashlib.sha256()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h.update(str(treedef).encode())
    for leaf in leaves:
        if isinstance(leaf, jax.Array | np.ndarray | np.generic):
            a = _host_value(leaf)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        elif callable(leaf):
            h.update(_callable_name(leaf).encode())
        else:
            h.update(repr(leaf).encode())
    return h.hexdigest()[:16]


def _fingerprint_diff(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(given))
    return [k for k in keys if k != "format" and stored.get(k) != given.get(k)]


# --------------------------------------------------------------------------- shardings


def _with_leading(sharding: Any, n: int) -> Any:
    """The sharding of a stack of `n` leading unsharded axes in front of `sharding`'s array."""
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(*([None] * n), *sharding.spec))
    return sharding


def _auto_axes(sharding: Any) -> Any:
    """The same layout on a mesh whose axes are all Auto.

    BlackJAX and NumPyro flatten positions into one vector (`ravel_pytree`) for mass
    matrices and momenta; with Explicit axes that concatenation is rejected, so the sampler
    runs with the compiler choosing intermediate layouts and positions pinned back.
    """
    if not isinstance(sharding, NamedSharding):
        return sharding
    mesh = sharding.mesh
    if all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types):
        return sharding
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    return NamedSharding(Mesh(mesh.devices, mesh.axis_names, axis_types=auto), sharding.spec)


def _auto_array(x: Any) -> Any:
    if isinstance(x, jax.Array) and isinstance(x.sharding, NamedSharding):
        auto = _auto_axes(x.sharding)
        return x if auto is x.sharding else jax.device_put(x, auto)
    return x


def _latent_shardings(sharding: Any, z: dict[str, Any], trace: dict[str, Any]) -> dict[str, Any]:
    """Target sharding of each latent site (without the chain axis), on Auto axes."""
    return {k: _auto_axes(s) for k, s in _given_shardings(sharding, z, trace).items()}


def _given_shardings(sharding: Any, z: dict[str, Any], trace: dict[str, Any]) -> dict[str, Any]:
    if isinstance(sharding, Mapping):
        unknown = sorted(set(sharding) - set(z))
        if unknown:
            raise ValueError(
                f"sharding names sites {unknown} that are not latent sites of the model; "
                f"latent sites: {sorted(z)}"
            )
        for name, s in sharding.items():
            if not isinstance(s, Sharding):
                raise TypeError(f"sharding[{name!r}] must be a jax Sharding, got {s!r}")
        return dict(sharding)
    if sharding is not None and not isinstance(sharding, Sharding):
        raise TypeError(
            f"sharding must be None, a jax Sharding or a dict site -> Sharding, got {sharding!r}"
        )
    out = {}
    for name, value in z.items():
        if sharding is not None:
            spec_len = len(getattr(sharding, "spec", ()))
            if jnp.ndim(value) >= max(spec_len, 1):
                try:
                    sharding.shard_shape(jnp.shape(value))
                except ValueError:
                    continue
                out[name] = sharding
        else:
            # A distribution that knows where its samples live (DistributedNormal) says so;
            # otherwise keep the sharding of the value the model produced.
            site = trace.get(name, {})
            s = getattr(site.get("fn"), "sharding", None)
            if s is None:
                s = getattr(site.get("value"), "sharding", None)
            if isinstance(s, NamedSharding):
                out[name] = s
    return out


def _sharding_description(shardings: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, s in sorted(shardings.items()):
        if isinstance(s, NamedSharding):
            out[name] = f"{dict(s.mesh.shape)} {s.spec}"
        else:
            out[name] = repr(s)
    return out


def _reshard(x: jax.Array, sharding: Any) -> jax.Array:
    if isinstance(sharding, NamedSharding) and any(
        t == jax.sharding.AxisType.Explicit for t in sharding.mesh.axis_types
    ):
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


def _constrain_positions(tree: Any, shardings: dict[str, Any], sites: frozenset[str]) -> Any:
    """Pin every {site: array} dict in a state pytree (positions, gradients, momenta)."""
    if not shardings:
        return tree

    def visit(node):
        if isinstance(node, dict) and frozenset(node) == sites:
            return {
                k: _reshard(v, shardings[k]) if k in shardings and v is not None else v
                for k, v in node.items()
            }
        if isinstance(node, dict):
            return {k: visit(v) for k, v in node.items()}
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return type(node)(*[visit(v) for v in node])
        if isinstance(node, list | tuple):
            return type(node)(visit(v) for v in node)
        return node

    return visit(tree)


# --------------------------------------------------------------------------- model args


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _partition_args(model_args: tuple, model_kwargs: dict) -> tuple[list, Callable]:
    """Array leaves become jit arguments; everything else is closed over (static)."""
    leaves, treedef = jax.tree_util.tree_flatten((tuple(model_args), dict(model_kwargs)))
    dynamic = [x for x in leaves if _is_array(x)]
    mask = [_is_array(x) for x in leaves]

    def merge(dyn: list) -> tuple[tuple, dict]:
        it = iter(dyn)
        merged = [next(it) if m else x for x, m in zip(leaves, mask, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, merged)

    return dynamic, merge


# --------------------------------------------------------------------------- progress


class _Progress:
    """tqdm bars driven from inside jitted loops through `jax.debug.callback`."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def start(self, total: int, desc: str, *, leave: bool = False) -> None:
        if self.enabled:
            self.bar = tqdm(total=total, desc=desc, leave=leave, dynamic_ncols=True)

    def update(self, i: Any) -> None:
        # Set the absolute position: a callback may run once per device.
        if self.bar is not None:
            n = int(i) + 1
            if n > self.bar.n:
                self.bar.update(n - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.refresh()  # show the final count even when updates were throttled
            self.bar.close()
            self.bar = None

    def advance(self) -> None:
        if self.bar is not None and self.bar.n < self.bar.total:
            self.bar.update(1)

    def step_callback(self) -> Callable[[], None] | None:
        """A function to call once per step inside a traced loop (None when disabled).

        It has no operands, so under `vmap` over chains it runs once per step, not once
        per chain; warmup loops that do not expose their step index use it.
        """
        if not self.enabled:
            return None
        return lambda: jax.debug.callback(self.advance)

    def tick(self, i: jax.Array, total: int) -> None:
        """Call inside a traced loop; updates about 50 times per loop."""
        if not self.enabled:
            return
        every = max(1, total // 50)
        jax.lax.cond(
            (i % every == every - 1) | (i == total - 1),
            lambda: jax.debug.callback(self.update, i),
            lambda: None,
        )


# --------------------------------------------------------------------------- driver


def batched_sampling(
    model: Callable,
    path: str | pathlib.Path | None,
    rng_key: Any,
    *,
    num_warmup: int,
    num_samples: int,
    batch_count: int,
    sampler: str = "NUTS",
    backend: str = "blackjax",
    num_chains: int = 1,
    thinning: int = 1,
    save: bool = True,
    init_params: dict[str, Any] | None = None,
    init_strategy: Callable | None = None,
    sharding: Sharding | Mapping[str, Sharding] | None = None,
    progress_bar: bool = True,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    num_integration_steps: int = 16,
    desired_energy_var: float = 5e-4,
) -> SamplingResult:
    """Sample a NumPyro model in resumable batches, keeping the sharding of every array.

    Runs warmup once (window adaptation of step size and diagonal mass matrix for NUTS and
    HMC, NumPyro's own adaptation for its kernels, MCLMC's tuning of L and step size), then
    `batch_count` batches of `num_samples` draws per chain. With `save=True`, the state after
    warmup and after each batch (sampler state, adapted parameters, RNG key, the batch's
    draws and statistics) is checkpointed with orbax, committed atomically; calling again
    with the same `path` and a larger `batch_count` skips warmup and continues from the last
    complete batch, giving the same draws bit for bit as an uninterrupted run. Restored
    arrays get back the `NamedSharding` they were saved with (both backends).

    Args:
        model: a NumPyro model; its latent sites are sampled.
        path: the run directory (created if absent); may be None when `save=False`.
        rng_key: a `jax.random.key` or uint32[2] `PRNGKey`; the run is a function of it.
        num_warmup: warmup / tuning steps (>= 0; MCLMC needs >= 10).
        num_samples: draws per chain in each batch (>= 1).
        batch_count: total number of batches the run should have when this call returns.
        sampler: "NUTS", "HMC" or "MCLMC" (MCLMC only with backend "blackjax").
        backend: "blackjax" or "numpyro".
        num_chains: independent chains, vectorised on the same devices.
        thinning: transitions per stored draw: each batch runs `num_samples * thinning`
            transitions and keeps every `thinning`-th state (deterministic sites are
            computed for the kept states only). For samplers with one gradient per
            transition (MCLMC), whose successive states are strongly correlated. The
            statistics of a stored draw cover its `thinning` transitions: "diverging" if
            any diverged, "num_steps" summed, "accept_prob" averaged, the others those of
            the kept transition.
        save: write checkpoints under `path` (False: nothing touches the disk).
        init_params: constrained initial values {site: array} for every chain; default
            `init_strategy`.
        init_strategy: a NumPyro init strategy (default `init_to_uniform`), one draw per chain.
        sharding: where latent sites live: a `Sharding` applied to every latent site it can
            shard, a dict {site: Sharding}, or None to keep the sharding a site's value has
            in the model (e.g. a `DistributedNormal(..., sharding=...)`). Chain and draw axes
            are never sharded.
        progress_bar: tqdm bars over batches and within each batch.
        model_args: positional arguments of `model` (array leaves are traced, not baked in).
        model_kwargs: keyword arguments of `model`.
        target_accept_prob: NUTS/HMC step-size adaptation target.
        max_tree_depth: NUTS maximum tree depth (2**depth leapfrog steps at most).
        num_integration_steps: leapfrog steps per HMC transition.
        desired_energy_var: MCLMC's target energy-error variance per dimension, which sets
            its step size (smaller: less bias of this unadjusted sampler, more steps).

    Returns:
        A `SamplingResult` with all batches of the run (loaded from `path` when saved).

    Raises:
        ValueError: an unknown `sampler` or `backend`, MCLMC with NumPyro, a count out of
            range, `path` is a file, or `path` holds a run of another model or settings.
        TypeError: `rng_key` or `sharding` of the wrong type.

    Example:
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]))
        >>> run = batched_sampling(model, "runs/demo", jax.random.key(0), num_warmup=200,
        ...                        num_samples=100, batch_count=4, progress_bar=False)
        >>> run.samples["x"].shape
        (1, 400, 2)
    """
    _check_choice("sampler", sampler, SAMPLERS)
    _check_choice("backend", backend, BACKENDS)
    if sampler == "MCLMC" and backend != "blackjax":
        raise ValueError(
            f"sampler='MCLMC' needs backend='blackjax' (NumPyro has no MCLMC); got "
            f"backend={backend!r}. With backend='numpyro' choose sampler from ('NUTS', 'HMC')"
        )
    num_samples = _check_int("num_samples", num_samples, 1)
    num_warmup = _check_int("num_warmup", num_warmup, 10 if sampler == "MCLMC" else 0)
    batch_count = _check_int("batch_count", batch_count, 1)
    num_chains = _check_int("num_chains", num_chains, 1)
    thinning = _check_int("thinning", thinning, 1)
    max_tree_depth = _check_int("max_tree_depth", max_tree_depth, 1)
    num_integration_steps = _check_int("num_integration_steps", num_integration_steps, 1)
    if not float(desired_energy_var) > 0.0:
        raise ValueError(f"desired_energy_var must be > 0, got {desired_energy_var!r}")
    if not 0.0 < float(target_accept_prob) < 1.0:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
    path = _check_path(path, save=save)
    key = _raw_key(rng_key)
    # Data on meshes with Explicit axes move to the same layout on Auto axes (see _auto_axes)
    model_args, model_kwargs = jax.tree.map(
        _auto_array, (tuple(model_args), dict(model_kwargs or {}))
    )

    # --- the model: potential, postprocessing, initial points, target shardings
    init_key, warmup_key, sample_key = jax.random.split(key, 3)
    if init_params is not None:
        strategy = init_to_value(values=init_params)
    else:
        strategy = init_strategy if init_strategy is not None else init_to_uniform
    inits = [
        initialize_model(
            k,
            model,
            init_strategy=strategy,
            dynamic_args=True,
            model_args=model_args,
            model_kwargs=model_kwargs,
        )
        for k in jax.random.split(init_key, num_chains)
    ]
    _, potential_fn, postprocess_fn, model_trace = inits[0]
    z_one = inits[0][0].z
    sites = frozenset(z_one)
    latent = _latent_shardings(sharding, z_one, model_trace)
    chain_shardings = {k: _with_leading(s, 1) for k, s in latent.items()}
    draw_shardings = {k: _with_leading(s, 2) for k, s in latent.items()}
    z0 = {}
    for name in z_one:
        stacked = jnp.stack([info[0].z[name] for info in inits])
        z0[name] = jax.device_put(stacked, chain_shardings[name]) if name in latent else stacked

    options = SamplerOptions(
        sampler=sampler,
        num_warmup=num_warmup,
        target_accept_prob=float(target_accept_prob),
        max_tree_depth=max_tree_depth,
        num_integration_steps=num_integration_steps,
        desired_energy_var=float(desired_energy_var),
    )
    fingerprint = {
        "model": _callable_name(model),
        "model_source": _source_digest(model),
        "model_args": _digest((model_args, model_kwargs)),
        "init": _digest(init_params) if init_params is not None else _callable_name(strategy),
        "rng_key": [int(v) for v in np.asarray(key)],
        "backend": backend,
        "num_samples": num_samples,
        "num_chains": num_chains,
        "latent_sites": {k: f"{z_one[k].dtype}{list(z_one[k].shape)}" for k in sorted(z_one)},
        "sharding": _sharding_description(latent),
        **dataclasses.asdict(options),
    }
    if thinning != 1:  # absent when 1, so that runs saved before the option still match
        fingerprint["thinning"] = thinning

    run = RunDirectory(path) if save else None
    committed = {"warmup": False, "batches": 0}
    if run is not None:
        # Multi-process runs: every process must see the directory in the same state.
        sync_processes("start")
        if run.exists():
            stored = run.run_info()
            differ = _fingerprint_diff(stored, fingerprint)
            if differ:
                details = "; ".join(
                    f"{k}: stored {stored.get(k)!r}, given {fingerprint.get(k)!r}" for k in differ
                )
                raise ValueError(
                    f"path {str(path)!r} holds a different run ({details}). Use another path, "
                    f"or delete this one to start over."
                )
        else:
            run.create(fingerprint)
        run.remove_uncommitted()
        committed = run.manifest()

    # --- jitted warmup and batch functions
    dynamic, merge = _partition_args(model_args, model_kwargs)
    kernel = make_kernel(backend, model, potential_fn, strategy, options)
    warmup_keys = jax.random.split(warmup_key, num_chains)
    kernel.setup(warmup_keys, z0, model_args, model_kwargs)

    def constrain_state(state):
        return _constrain_positions(state, chain_shardings, sites)

    # The two backends' warmup functions take different arguments.
    warmup_fn: Callable[..., Any]
    warmup_inputs: tuple[Any, ...]
    if backend == "blackjax":

        def warmup_fn(keys, z, dyn):
            state, params = kernel.warmup(keys, z, *merge(dyn), tick=progress.step_callback())
            return _strongly_typed((constrain_state(state), params), z0)

        warmup_inputs = (warmup_keys, z0)
    else:

        def warmup_fn(init_state, dyn):
            state, params = kernel.warmup(init_state, *merge(dyn), tick=progress.step_callback())
            return _strongly_typed((constrain_state(state), params), z0)

        warmup_inputs = (cast(NumPyroKernel, kernel).initial_state(),)

    progress = _Progress(progress_bar)

    def batch_fn(state, params, batch_key, dyn):
        args, kwargs = merge(dyn)
        postprocess = postprocess_fn(*args, **kwargs)

        def transition(state, step_key):
            keys = jax.random.split(step_key, num_chains)
            state, stats = kernel.step(keys, state, params, args, kwargs)
            return constrain_state(state), stats

        def body(state, i):
            step_key = jax.random.fold_in(batch_key, i)
            if thinning == 1:  # the keys of runs saved before `thinning` existed
                state, stats = transition(state, step_key)
            else:
                inner_keys = jax.vmap(functools.partial(jax.random.fold_in, step_key))(
                    jnp.arange(thinning)
                )
                state, stats = jax.lax.scan(transition, state, inner_keys)
                stats = _thinned_stats(stats)
            draws = jax.vmap(postprocess)(kernel.position(state))
            progress.tick(i, num_samples)
            return state, (draws, stats)

        state, (draws, stats) = jax.lax.scan(body, state, jnp.arange(num_samples))
        # scan stacks draws first; store (chain, draw, ...) like NumPyro's group_by_chain.
        draws = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), draws)
        stats = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), stats)
        draws = {
            k: _reshard(v, draw_shardings[k]) if k in draw_shardings else v
            for k, v in draws.items()
        }
        return state, draws, stats

    warmup_jit = jax.jit(warmup_fn)
    batch_jit = jax.jit(batch_fn)

    # --- warmup, or its checkpoint
    if committed["warmup"]:
        abstract_state, abstract_params = jax.eval_shape(warmup_jit, *warmup_inputs, dynamic)
        state_def = jax.tree.structure(abstract_state)
        params = run.restore("warmup", "params", treedef=jax.tree.structure(abstract_params))
        # Keys are tiny and must not pin the batch computation to one device: uncommitted.
        sample_key = jnp.asarray(np.asarray(run.restore("warmup", "key")["sample_key"]))
        last = "warmup" if committed["batches"] == 0 else run.batch_name(committed["batches"] - 1)
        state = run.restore(last, "state", treedef=state_def)
    else:
        progress.start(max(num_warmup, 1), "warmup")
        state, params = warmup_jit(*warmup_inputs, dynamic)
        jax.block_until_ready(state)
        progress.update(max(num_warmup, 1) - 1)  # MCLMC's tuning has no per-step hook
        progress.close()
        if run is not None:
            keys = {"sample_key": sample_key}
            run.save("warmup", {"state": state, "params": params, "key": keys})
            run.commit(warmup=True, batches=0)

    # --- batches
    first = committed["batches"]
    kept_draws, kept_stats, seconds = [], [], []
    outer = tqdm(
        total=batch_count,
        initial=min(first, batch_count),
        desc="batches",
        disable=not progress_bar,
        dynamic_ncols=True,
    )
    for b in range(first, batch_count):
        progress.start(num_samples, f"batch {b}")
        start = time.perf_counter()
        state, draws, stats = batch_jit(state, params, jax.random.fold_in(sample_key, b), dynamic)
        jax.block_until_ready((state, draws, stats))
        seconds.append(time.perf_counter() - start)
        progress.close()
        if run is not None:
            run.save(run.batch_name(b), {"state": state, "samples": draws, "stats": stats})
            run.commit(warmup=True, batches=b + 1)
        else:
            kept_draws.append(draws)
            kept_stats.append(stats)
        outer.update(1)
    outer.close()

    if run is not None:
        samples = load_samples(path, batches=range(batch_count))
        sample_stats = load_sample_stats(path, batches=range(batch_count))
    else:
        samples = _concat(kept_draws)
        sample_stats = _concat(kept_stats)
    return SamplingResult(
        samples=samples,
        sample_stats=sample_stats,
        state=state,
        parameters=params,
        batches_run=tuple(range(first, batch_count)),
        batch_seconds=tuple(seconds),
        path=path,
    )


# --------------------------------------------------------------------------- loading


def _strongly_typed(tree: Any, latent: Any) -> Any:
    """Weakly typed floats of the warmup's output (step sizes, MCLMC's L) as strong ones of
    the narrowest float dtype of the latent.

    A checkpoint cannot keep JAX's weak type: a weak step size restored as a strong one
    changed the signature of the compiled batch function, so every resume recompiled (and
    missed the persistent compilation cache). Strong types from the start make a fresh and a
    resumed run identical. The narrowest float dtype keeps what weak typing did in
    arithmetic with the latent: float32 leaves stay float32, float64 ones float64.
    """
    floats = [
        jnp.dtype(x.dtype)
        for x in jax.tree.leaves(latent)
        if jnp.issubdtype(jnp.dtype(x.dtype), jnp.floating)
    ]
    if not floats:
        return tree
    narrow = min(floats, key=lambda d: d.itemsize)

    def fix(x):
        weak = getattr(jax.typeof(x), "weak_type", False)
        if weak and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x, dtype=narrow)
        return x

    return jax.tree.map(fix, tree)


def _thinned_stats(stats: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Statistics of `thinning` transitions (leading axis) summarised for one stored draw."""
    out = {k: v[-1] for k, v in stats.items()}
    out["diverging"] = jnp.any(stats["diverging"], axis=0)
    out["num_steps"] = jnp.sum(stats["num_steps"], axis=0)
    out["accept_prob"] = jnp.mean(stats["accept_prob"], axis=0)
    return out


def _concat(batches: list[dict[str, jax.Array]]) -> dict[str, jax.Array]:
    if not batches:
        return {}
    return {k: jnp.concatenate([b[k] for b in batches], axis=1) for k in batches[0]}


def _load(
    path: Any, key: str, names: Any, thinning: int, batches: Any, group_by_chain: bool
) -> dict[str, jax.Array]:
    path = pathlib.Path(path)
    run = RunDirectory(path)
    if not run.exists():
        raise ValueError(f"path {str(path)!r} is not a run directory of batched_sampling")
    thinning = _check_int("thinning", thinning, 1)
    done = run.manifest()["batches"]
    if done == 0:
        raise ValueError(f"path {str(path)!r} has no complete batch yet")
    batches = list(range(done)) if batches is None else [int(b) for b in batches]
    missing = [b for b in batches if not 0 <= b < done]
    if missing:
        raise ValueError(f"batches {missing} are not complete; complete: 0..{done - 1}")
    available = run.records(run.batch_name(0))[key]["dict_keys"]
    if names is None:
        names = list(available)
    else:
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"params {unknown} not found; available: {available}")
    parts = [run.restore(run.batch_name(b), key, select=names) for b in batches]
    out = {}
    for name in names:
        x = jnp.concatenate([p[name] for p in parts], axis=1)[:, ::thinning]
        out[name] = x if group_by_chain else x.reshape((-1, *x.shape[2:]))
    return out


def load_samples(
    path: str | pathlib.Path,
    *,
    params: str | list[str] | None = None,
    thinning: int = 1,
    batches: Any = None,
    group_by_chain: bool = True,
) -> dict[str, jax.Array]:
    """Draws of a run directory written by `batched_sampling`, batches concatenated.

    Args:
        path: the run directory.
        params: site names to load (latent or deterministic); default: every site.
        thinning: keep every `thinning`-th draw of each chain (after concatenation).
        batches: batch indices to load (default: every complete batch, in order).
        group_by_chain: shape (chains, draws, ...) if True, else (chains * draws, ...).

    Returns:
        site name -> array, each with the sharding it had when saved (on the default device
        when those devices are absent).

    Raises:
        ValueError: `path` is not a run directory, has no complete batch, an unknown site
            or batch is asked for, or `thinning < 1`.
    """
    return _load(path, "samples", params, thinning, batches, group_by_chain)


def load_sample_stats(
    path: str | pathlib.Path,
    *,
    thinning: int = 1,
    batches: Any = None,
    group_by_chain: bool = True,
) -> dict[str, jax.Array]:
    """Per-draw sampler statistics (divergences, acceptance, steps, step size, energy).

    Args and errors as for `load_samples` (without `params`).
    """
    return _load(path, "stats", None, thinning, batches, group_by_chain)
