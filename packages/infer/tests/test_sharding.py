"""A latent field sharded over every device keeps its NamedSharding through warmup,
checkpoints and resume, with both backends. Meaningful at 1 device too (a 1-device mesh
must come back as that mesh, not as a plain single-device array); nox reruns it at 2 and 8
fake CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fmt_infer import DistributedLogNormal, DistributedNormal, batched_sampling

pytestmark = pytest.mark.multidevice

MESH_SHAPE = (8, 8, 4)  # fmt-fields needs X and Y divisible by the device count
NOISE = 0.5
LOG_PROB_RTOL = 1e-5  # float32 sums of 128 terms


def _sharding():
    mesh = jax.make_mesh((jax.device_count(),), ("x",))  # Explicit axes, as fmt-fields uses
    return NamedSharding(mesh, P("x", None, None))


def model(data, sharding):
    field = numpyro.sample(
        "field", DistributedNormal(0.0, 1.0, mesh_shape=MESH_SHAPE, sharding=sharding)
    )
    numpyro.sample("obs", dist.Normal(field, NOISE).to_event(3), obs=data)
    numpyro.deterministic("field_mean", jnp.mean(field))


def test_distributed_normal_is_device_invariant_and_sharded():
    sharding = _sharding()
    d = DistributedNormal(0.5, 2.0, mesh_shape=MESH_SHAPE, sharding=sharding)
    x = d.sample(jax.random.key(3))
    assert isinstance(x.sharding, NamedSharding) and x.sharding.spec == P("x", None, None)
    single = DistributedNormal(0.5, 2.0, mesh_shape=MESH_SHAPE).sample(jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(x), np.asarray(single))
    expected = dist.Normal(0.5, 2.0).log_prob(single).sum()
    np.testing.assert_allclose(jax.jit(d.log_prob)(x), expected, rtol=LOG_PROB_RTOL)
    ln = DistributedLogNormal(0.5, 2.0, mesh_shape=MESH_SHAPE, sharding=sharding)
    y = ln.sample(jax.random.key(3))
    np.testing.assert_allclose(np.asarray(y), np.exp(np.asarray(single)), rtol=LOG_PROB_RTOL)
    expected = dist.LogNormal(0.5, 2.0).log_prob(jnp.exp(single)).sum()
    np.testing.assert_allclose(jax.jit(ln.log_prob)(y), expected, rtol=LOG_PROB_RTOL)


@pytest.fixture(scope="module", params=["blackjax", "numpyro"])
def runs(request, tmp_path_factory):
    backend = request.param
    sharding = _sharding()
    truth = DistributedNormal(0.0, 1.0, mesh_shape=MESH_SHAPE, sharding=sharding)
    data = truth.sample(jax.random.key(0)) + NOISE * DistributedNormal(
        0.0, 1.0, mesh_shape=MESH_SHAPE, sharding=sharding
    ).sample(jax.random.key(1))
    root = tmp_path_factory.mktemp(f"sharded-{backend}")
    kw = dict(
        num_warmup=40,
        num_samples=15,
        backend=backend,
        progress_bar=False,
        model_args=(data, sharding),
    )
    full = batched_sampling(model, root / "full", jax.random.key(5), batch_count=3, **kw)
    batched_sampling(model, root / "split", jax.random.key(5), batch_count=2, **kw)
    resumed = batched_sampling(model, root / "split", jax.random.key(5), batch_count=3, **kw)
    return backend, full, resumed


def _spec(x):
    """The partition spec of `x` padded with None to its rank (trailing Nones are implied)."""
    spec = tuple(x.sharding.spec)
    return spec + (None,) * (x.ndim - len(spec))


def _field_leaves(state):
    """(path, leaf) of the state's field-shaped leaves: positions, gradients, momenta."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return [(jax.tree_util.keystr(p), x) for p, x in leaves if x.shape == (1, *MESH_SHAPE)]


def test_state_keeps_named_sharding_after_resume(runs):
    backend, full, resumed = runs
    fields = _field_leaves(resumed.state)
    assert len(fields) >= 2, [k for k, _ in fields]  # position and gradient at least
    for key, leaf in fields:
        assert isinstance(leaf.sharding, NamedSharding), (backend, key, leaf.sharding)
        assert leaf.sharding.mesh.size == jax.device_count()
        expected = NamedSharding(leaf.sharding.mesh, P(None, "x", None, None))
        # equivalent, not equal: on a 1-device mesh jit drops the size-1 axis from the spec
        assert leaf.sharding.is_equivalent_to(expected, leaf.ndim), (key, leaf.sharding)
        if jax.device_count() > 1:
            assert _spec(leaf) == (None, "x", None, None), (key, leaf.sharding.spec)
            shard = leaf.addressable_shards[0].data.shape
            assert shard == (1, MESH_SHAPE[0] // jax.device_count(), *MESH_SHAPE[1:])
    for (key, a), (_, b) in zip(_field_leaves(full.state), fields, strict=True):
        assert a.sharding == b.sharding, key
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_samples_keep_named_sharding_after_resume(runs):
    _, full, resumed = runs
    x = resumed.samples["field"]
    assert x.shape == (1, 45, *MESH_SHAPE)
    assert isinstance(x.sharding, NamedSharding)
    expected = NamedSharding(x.sharding.mesh, P(None, None, "x", None, None))
    assert x.sharding.is_equivalent_to(expected, x.ndim), x.sharding
    if jax.device_count() > 1:
        assert _spec(x) == (None, None, "x", None, None)
    assert x.sharding.mesh.size == jax.device_count()
    for name in ("field", "field_mean"):
        np.testing.assert_array_equal(
            np.asarray(full.samples[name]), np.asarray(resumed.samples[name])
        )
