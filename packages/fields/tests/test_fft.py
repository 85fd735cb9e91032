"""fft3d / ifft3d values, layout and sharding on every device grid; argument errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import fmt_fields as ff

# float64 FFTs of O(1) data on ≤ 32³ meshes: round-off is ~1e-15 relative per value; 1e-12
# leaves room for the different order of 1-D passes and still catches any wrong mode.
FFT_RTOL = 1e-12
SHAPE = (8, 16, 32)  # every axis different, divisible by every grid up to 8 devices


def _spec(a):
    spec = tuple(a.sharding.spec)
    return spec + (None,) * (a.ndim - len(spec))


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.multidevice
def test_fft_matches_numpy_on_grid(grid, mesh, sharding):
    shape = SHAPE
    x = jax.device_put(np.random.default_rng(3).normal(size=shape), sharding)
    assert _spec(x) == ("x", "y", None)
    with jax.set_mesh(mesh):
        x_k = jax.jit(ff.fft3d)(x)
        back = jax.jit(ff.ifft3d)(x_k)
    reference = np.fft.fftn(np.asarray(x))
    if grid == (1, 1):
        assert x_k.shape == (*shape[:2], shape[2] // 2 + 1)
        reference = reference[..., : shape[2] // 2 + 1]
    else:
        assert x_k.shape == shape
        assert _spec(x_k) == (None, "x", "y")
        assert len(x_k.sharding.device_set) == grid[0] * grid[1]
        assert _spec(back) == ("x", "y", None)
    assert _rel(x_k, reference) < FFT_RTOL
    assert _rel(back, x) < FFT_RTOL
    assert back.shape == shape


def test_single_device_is_rfftn_and_odd_z():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(6, 10, 7)))
    x_k = ff.fft3d(x)
    assert _rel(x_k, np.fft.rfftn(np.asarray(x))) < FFT_RTOL
    assert _rel(ff.ifft3d(x_k, mesh_shape=(6, 10, 7)), x) < FFT_RTOL
    assert ff.ifft3d(ff.fft3d(x[..., :6])).shape == (6, 10, 6)


@pytest.mark.multidevice
def test_vmap_keeps_values(grid, mesh, sharding):
    x = jax.device_put(np.random.default_rng(5).normal(size=(8, 8, 8)), sharding)
    with jax.set_mesh(mesh):
        xs = jnp.stack([x, jnp.cos(x)])
    with jax.set_mesh(mesh):
        xs_k = jax.jit(jax.vmap(ff.fft3d))(xs)
    reference = np.fft.fftn(np.asarray(xs), axes=(1, 2, 3))[..., : xs_k.shape[-1]]
    assert _rel(xs_k, reference) < FFT_RTOL


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="x must be a 3-D mesh"):
        ff.fft3d(jnp.zeros((4, 4)))
    with pytest.raises(TypeError, match="x must be real"):
        ff.fft3d(jnp.zeros((4, 4, 4), complex))
    with pytest.raises(ValueError, match="mesh_shape"):
        ff.ifft3d(jnp.zeros((4, 4, 3), complex), mesh_shape=(4, 4, 7))
    with pytest.raises(ValueError, match="field_k must be a 3-D mesh"):
        ff.ifft3d(jnp.zeros((4, 4), complex))


@pytest.mark.multidevice
def test_indivisible_mesh_raises_before_compile(grid, mesh, sharding):
    p0, p1 = grid
    if p0 * p1 == 1:
        # One device divides every mesh: check the Z-split error instead (also pre-trace).
        bad = NamedSharding(mesh, P(None, None, "x"))
        x = jax.device_put(jnp.zeros((4, 4, 4)), bad)
        assert ff.fft3d(x).shape == (4, 4, 3)  # a 1-device "split" is no split
        return
    # A shape the real-space split accepts but the Fourier-side split does not:
    # Y % p0 != 0 on an X-only grid, Z % p1 != 0 otherwise.
    shape = (p0, p0 + 1, 4) if p1 == 1 else (p0, p0 * p1, p1 + 1)
    x = jax.device_put(jnp.zeros(shape), sharding)
    with pytest.raises(ValueError, match=r"x: mesh shape .* not divisible by the device grid"):
        ff.fft3d(x)
    z_split = NamedSharding(mesh, P(None, None, ("x", "y")))
    x = jax.device_put(jnp.zeros((4, 4, 8 * p0 * p1)), z_split)
    with pytest.raises(ValueError, match=r"last .* axis must not be sharded"):
        ff.fft3d(x)
