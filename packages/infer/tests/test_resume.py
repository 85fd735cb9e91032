"""Checkpointing: resumed runs equal uninterrupted ones bit for bit, runs are not mixed,
and saved draws load back with thinning, selection and deterministic sites."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from fmt_infer import batched_sampling, load_sample_stats, load_samples

SETTINGS = {"num_warmup": 60, "num_samples": 25, "num_chains": 2, "progress_bar": False}


def model(scale):
    x = numpyro.sample("x", dist.Normal(0.0, scale).expand([3]).to_event(1))
    y = numpyro.sample("y", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("total", jnp.sum(x) + y)


SCALE = jnp.array(2.0)


@pytest.fixture(scope="module", params=["blackjax", "numpyro"])
def runs(request, tmp_path_factory):
    """The same run done in one call (4 batches) and as 2 batches, then resumed to 4."""
    backend = request.param
    root = tmp_path_factory.mktemp(f"resume-{backend}")
    kw = dict(SETTINGS, backend=backend, model_args=(SCALE,))
    full = batched_sampling(model, root / "full", jax.random.key(7), batch_count=4, **kw)
    half = batched_sampling(model, root / "split", jax.random.key(7), batch_count=2, **kw)
    resumed = batched_sampling(model, root / "split", jax.random.key(7), batch_count=4, **kw)
    return backend, root, full, half, resumed


def test_resume_is_bitwise_identical(runs):
    _, _, full, half, resumed = runs
    assert full.batches_run == (0, 1, 2, 3)
    assert half.batches_run == (0, 1)
    assert resumed.batches_run == (2, 3)
    assert set(full.samples) == {"x", "y", "total"}
    for name in full.samples:
        a, b = np.asarray(full.samples[name]), np.asarray(resumed.samples[name])
        assert a.shape == b.shape == (2, 100, *a.shape[2:])
        np.testing.assert_array_equal(a, b)
    for name in full.sample_stats:
        np.testing.assert_array_equal(
            np.asarray(full.sample_stats[name]), np.asarray(resumed.sample_stats[name])
        )
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and the first two batches were not recomputed differently
    np.testing.assert_array_equal(
        np.asarray(half.samples["x"]), np.asarray(full.samples["x"])[:, :50]
    )


def test_unsaved_run_equals_saved_run(runs):
    backend, _, full, _, _ = runs
    kw = dict(SETTINGS, backend=backend, model_args=(SCALE,))
    mem = batched_sampling(model, None, jax.random.key(7), batch_count=4, save=False, **kw)
    np.testing.assert_array_equal(np.asarray(mem.samples["x"]), np.asarray(full.samples["x"]))


def test_rerun_with_fewer_batches_loads_without_sampling(runs):
    backend, root, full, _, _ = runs
    kw = dict(SETTINGS, backend=backend, model_args=(SCALE,))
    again = batched_sampling(model, root / "full", jax.random.key(7), batch_count=3, **kw)
    assert again.batches_run == ()
    np.testing.assert_array_equal(
        np.asarray(again.samples["y"]), np.asarray(full.samples["y"])[:, :75]
    )


def test_load_samples_options(runs):
    _, root, full, _, _ = runs
    path = root / "full"
    every = load_samples(path)
    assert set(every) == {"x", "y", "total"}  # deterministic site included
    np.testing.assert_array_equal(np.asarray(every["x"]), np.asarray(full.samples["x"]))
    thin = load_samples(path, params=["total"], thinning=3)
    assert set(thin) == {"total"}
    np.testing.assert_array_equal(np.asarray(thin["total"]), np.asarray(every["total"])[:, ::3])
    flat = load_samples(path, params="x", batches=[1, 3], group_by_chain=False)
    expected = np.concatenate(
        [np.asarray(every["x"])[:, 25:50], np.asarray(every["x"])[:, 75:100]], axis=1
    ).reshape(-1, 3)
    np.testing.assert_array_equal(np.asarray(flat["x"]), expected)
    stats = load_sample_stats(path)
    assert stats["diverging"].shape == (2, 100)
    with pytest.raises(ValueError, match="available"):
        load_samples(path, params=["nope"])
    with pytest.raises(ValueError, match="thinning"):
        load_samples(path, thinning=0)


def test_manifest_is_the_commit_point(runs):
    _, root, _, _, _ = runs
    manifest = json.loads((root / "full" / "manifest.json").read_text())
    assert manifest == {"batches": 4, "warmup": True}


def test_other_run_in_same_path_is_refused(runs):
    backend, root, _, _, _ = runs
    kw = dict(SETTINGS, backend=backend, model_args=(SCALE,))
    with pytest.raises(ValueError, match=r"different run.*rng_key"):
        batched_sampling(model, root / "full", jax.random.key(8), batch_count=4, **kw)
    with pytest.raises(ValueError, match=r"different run.*model_args"):
        kw["model_args"] = (jnp.array(3.0),)
        batched_sampling(model, root / "full", jax.random.key(7), batch_count=4, **kw)
    other = "numpyro" if backend == "blackjax" else "blackjax"
    kw = dict(SETTINGS, backend=other, model_args=(SCALE,))
    with pytest.raises(ValueError, match=r"different run.*backend"):
        batched_sampling(model, root / "full", jax.random.key(7), batch_count=4, **kw)


def test_thinning_stores_every_kth_state_and_resumes(tmp_path):
    # MCLMC: one gradient per transition, so the summed "num_steps" counts the transitions.
    kw = dict(SETTINGS, sampler="MCLMC", model_args=(SCALE,), num_samples=10, thinning=3)
    full = batched_sampling(model, tmp_path / "full", jax.random.key(3), batch_count=2, **kw)
    batched_sampling(model, tmp_path / "split", jax.random.key(3), batch_count=1, **kw)
    resumed = batched_sampling(model, tmp_path / "split", jax.random.key(3), batch_count=2, **kw)
    assert np.asarray(full.samples["x"]).shape == (2, 20, 3)
    np.testing.assert_array_equal(np.asarray(full.sample_stats["num_steps"]), 3)
    for name in full.samples:
        np.testing.assert_array_equal(
            np.asarray(full.samples[name]), np.asarray(resumed.samples[name])
        )
    unthinned = batched_sampling(
        model, None, jax.random.key(3), batch_count=1, save=False, **dict(kw, thinning=1)
    )
    assert not np.array_equal(
        np.asarray(unthinned.samples["x"])[:, 1], np.asarray(full.samples["x"])[:, 1]
    )
    with pytest.raises(ValueError, match=r"different run.*thinning"):
        batched_sampling(
            model, tmp_path / "full", jax.random.key(3), batch_count=2, **dict(kw, thinning=1)
        )


def test_resumed_state_has_the_types_of_a_fresh_one(runs):
    # A checkpoint cannot keep JAX's weak types: a fresh run's weakly typed step size
    # restored as a strongly typed one changed the signature of the compiled batch function
    # (a recompile on every resume, no hit in the persistent compilation cache) and, with
    # x64 on, promoted float32 leaves to float64. The warmup's output is strongly typed.
    _, _, full, _, resumed = runs
    fresh = jax.tree.leaves((full.state, full.parameters))
    restored = jax.tree.leaves((resumed.state, resumed.parameters))
    assert [jax.typeof(x) for x in fresh] == [jax.typeof(x) for x in restored]
    assert not any(jax.typeof(x).weak_type for x in fresh)
