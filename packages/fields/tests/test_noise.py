"""white_noise: bitwise the same on every device grid, unit Gaussian, argument errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from scipy import stats

import fmt_fields as ff

SHAPE = (16, 16, 8)
KEY = jax.random.key(2024)
# Mean and variance of N = 32³ iid unit normals have standard errors 1/sqrt(N) = 0.0055 and
# sqrt(2/N) = 0.0078; 5 standard errors: a correct generator fails with probability < 1e-6.
# The Kolmogorov-Smirnov test also checks the shape of the distribution.
N_SIGMA = 5.0
KS_PVALUE_MIN = 1e-3  # a correct generator fails this with probability 1e-3 (fixed key)


@pytest.fixture(scope="module")
def reference():
    """The field on the default device, sharding=None; every grid must reproduce it."""
    return {dt: np.asarray(ff.white_noise(KEY, SHAPE, dtype=dt)) for dt in ("float32", "float64")}


@pytest.mark.multidevice
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bitwise_identical_on_every_grid(grid, sharding, reference, dtype):
    noise = ff.white_noise(KEY, SHAPE, sharding=sharding, dtype=dtype)
    assert noise.dtype == jnp.dtype(dtype)
    assert noise.sharding.is_equivalent_to(sharding, 3)
    assert len(noise.sharding.device_set) == grid[0] * grid[1]
    # Each device holds only its block, and the blocks are the reference's blocks.
    for shard in noise.addressable_shards:
        assert shard.data.shape == (SHAPE[0] // grid[0], SHAPE[1] // grid[1], SHAPE[2])
        np.testing.assert_array_equal(np.asarray(shard.data), reference[dtype][shard.index])
    np.testing.assert_array_equal(np.asarray(noise), reference[dtype])


def test_same_bits_on_a_split_of_all_devices(reference):
    """The widest grid this process can build, with both axes named for X (a tuple entry)."""
    n = jax.device_count()
    devices = np.array(jax.devices())
    p0 = next(p for p in (8, 4, 2, 1) if n % p == 0 and SHAPE[0] % p == 0 and SHAPE[1] % p == 0)
    mesh = jax.make_mesh((p0, 1), ("a", "b"), devices=list(devices[:p0]))
    noise = ff.white_noise(KEY, SHAPE, sharding=NamedSharding(mesh, P(("a", "b"), None)))
    np.testing.assert_array_equal(np.asarray(noise), reference["float64"])


def test_statistics(reference):
    x = ff.white_noise(jax.random.key(7), (32, 32, 32))
    n = x.size
    assert abs(float(x.mean())) < N_SIGMA / np.sqrt(n)
    assert abs(float(x.var()) - 1.0) < N_SIGMA * np.sqrt(2.0 / n)
    assert stats.kstest(np.asarray(x).ravel(), "norm").pvalue > KS_PVALUE_MIN
    # Different keys, different fields; neighbouring rows are not copies of each other.
    other = ff.white_noise(jax.random.key(8), (32, 32, 32))
    assert not np.any(np.asarray(x) == np.asarray(other))
    assert abs(np.corrcoef(np.asarray(x[:, 0]).ravel(), np.asarray(x[:, 1]).ravel())[0, 1]) < 0.1


def test_raw_uint32_keys_work():
    x = ff.white_noise(jax.random.PRNGKey(1), (4, 4, 4))
    assert x.shape == (4, 4, 4) and bool(jnp.isfinite(x).all())


def test_errors_name_the_argument(sharding, grid):
    with pytest.raises(ValueError, match="mesh_shape"):
        ff.white_noise(KEY, (4, 4))
    with pytest.raises(ValueError, match="mesh_shape"):
        ff.white_noise(KEY, (4, 0, 4))
    with pytest.raises(TypeError, match="dtype"):
        ff.white_noise(KEY, (4, 4, 4), dtype=jnp.int32)
    with pytest.raises(TypeError, match="sharding"):
        ff.white_noise(KEY, (4, 4, 4), sharding="x")
    if grid[0] > 1:
        with pytest.raises(ValueError, match=r"sharding: mesh shape .* not divisible"):
            ff.white_noise(KEY, (grid[0] + 1, 8, 8), sharding=sharding)
