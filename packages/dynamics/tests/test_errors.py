"""Bad input raises a clear ValueError/TypeError naming the argument, before compiling.

Sharded layouts are described with abstract meshes and traced with `jax.eval_shape`, so
these run (and can fail) on any number of devices.
"""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AbstractMesh, AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from fmt_dynamics import cic_paint, cic_read, force_mesh, pm_forces


def _sharded(shape, grid, spec=("x", "y")):
    mesh = AbstractMesh(grid, ("x", "y"), axis_types=(AxisType.Explicit,) * 2)
    return jax.ShapeDtypeStruct(shape, jnp.float32, sharding=NamedSharding(mesh, P(*spec)))


def test_mesh_not_divisible_by_device_grid():
    disp = _sharded((16, 16, 16, 3), (8, 1))
    with pytest.raises(ValueError, match=r"mesh \(12\) must be divisible by the 8 devices"):
        jax.eval_shape(lambda d: cic_paint(d, (12, 16, 16)), disp)
    # the FFT also splits Y over the first device axis
    disp = _sharded((16, 4, 16, 3), (8, 1))
    jax.eval_shape(cic_paint, disp)  # painting alone is fine
    with pytest.raises(ValueError, match=r"mesh_shape .* distributed FFT"):
        jax.eval_shape(pm_forces, disp)


@pytest.mark.parametrize(
    ("grid", "halo", "match"),
    [
        ((8, 1), 3, r"halo=3 is larger than the local block along axis 0 \(16 cells / 8"),
        ((2, 4), (2, 5), r"halo=\(2, 5\) is larger than the local block along axis 1"),
        ((2, 4), 0, "halo must be >= 1"),
        ((2, 4), (1, 2, 3), "halo must be an int or a pair"),
    ],
)
def test_halo_too_large_for_block(grid, halo, match):
    disp = _sharded((16, 16, 16, 3), grid)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda d: cic_paint(d, halo=halo), disp)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda d: cic_read(jnp.zeros((16, 16, 16)), d, halo=halo), disp)


def test_sharded_over_wrong_axis():
    disp = _sharded((16, 16, 16, 3), (2, 4), spec=("x", None, "y"))
    with pytest.raises(ValueError, match="displacement may be sharded over its first two axes"):
        jax.eval_shape(cic_paint, disp)


def test_wrong_shapes():
    d = jnp.zeros((8, 8, 8, 3))
    with pytest.raises(ValueError, match="displacement must have shape"):
        cic_paint(jnp.zeros((8, 8, 8, 2)))
    with pytest.raises(ValueError, match="displacement must have shape"):
        cic_read(jnp.zeros((8, 8, 8)), jnp.zeros((8, 8, 3)))
    with pytest.raises(TypeError, match="displacement must be a float"):
        cic_paint(jnp.zeros((8, 8, 8, 3), int))
    with pytest.raises(ValueError, match="weights must have the lattice shape"):
        cic_paint(d, weights=jnp.ones((8, 8, 4)))
    with pytest.raises(ValueError, match="mesh_shape must be 3 positive ints"):
        cic_paint(d, (8, 8))
    with pytest.raises(TypeError, match="mesh_shape"):
        cic_paint(d, 8)
    with pytest.raises(ValueError, match="mesh must have at least 3 axes"):
        cic_read(jnp.zeros((8, 8)), d)
    with pytest.raises(ValueError, match="compensate=True needs a scalar"):
        cic_read(jnp.zeros((8, 8, 8, 3)), d, compensate=True)
    with pytest.raises(ValueError, match="delta must be a 3-D mesh"):
        force_mesh(jnp.zeros((8, 8)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"gradient": "fd2"}, "gradient must be one of"), ({"r_split": -1.0}, "r_split")],
)
def test_bad_force_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pm_forces(jnp.zeros((8, 8, 8, 3)), **kwargs)
