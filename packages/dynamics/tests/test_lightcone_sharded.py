"""Sharded lightcones equal the single-device ones (flat, spherical, flat with linear shells).

Nox runs this module at 1, 2 and 8 fake CPU devices (XLA_FLAGS set by nox, never here).
The device grids are chosen at collection from `jax.device_count()` ((1, 1) on one
device), so every run exercises what it can build and none skips.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fmt_cosmo import Planck18
from fmt_dynamics import LightconeSpec, lightcone, lpt
from fmt_fields import linear_field, white_noise

pytestmark = pytest.mark.multidevice

N, BOX = 16, 128.0
# Issue: sharded planes equal single-device planes to 1e-5 (different summation orders of
# the deposits and of the distributed FFT; counts are O(10)).
SHARDED_RTOL = 1e-5
A = np.concatenate([[0.3], np.linspace(0.93, 1.0, 5)])


def _grids():
    n = jax.device_count()
    if n == 1:
        return [(1, 1)]
    if n == 2:
        return [(2, 1)]
    if n >= 8:
        return [(2, 4)]
    return [(n, 1)]


GRIDS = _grids()
FLAT = dict(observer=(0.5, 0.5, 0.5 / N), max_distance=2 * BOX, n_shells=3, npix=N, replicas=2)
SPECS = {
    "flat": LightconeSpec("flat", BOX, (N,) * 3, **FLAT),
    "spherical": LightconeSpec(
        "spherical", BOX, (N,) * 3, max_distance=1.4 * BOX, n_shells=3, nside=4, replicas=1
    ),
    # particles shared between neighbouring shells (its shell look-ups once had no
    # sharding rule: they failed on explicitly sharded particles)
    "flat-linear": LightconeSpec("flat", BOX, (N,) * 3, **FLAT, shell_assignment="linear"),
}


def power(k):
    return 2.0e4 * (k / 0.02) / (1.0 + (k / 0.02) ** 2.5)


@pytest.fixture(scope="module")
def cosmo():
    return Planck18()


def _run(cosmo, sharding):
    """The maps of both geometries, in one jitted program (one compile per layout)."""
    noise = white_noise(jax.random.key(4), (N, N, N), sharding=sharding)

    def maps(c, x):
        state = lpt(c, linear_field(x, power, BOX), A[0])
        return {g: lightcone(c, state, jnp.asarray(A), spec)[0].maps for g, spec in SPECS.items()}

    f = jax.jit(maps)
    if sharding is None:
        return jax.tree.map(np.asarray, f(cosmo, noise))
    # explicit mesh axes: the deposits (scatters) are traced under the mesh context
    with jax.set_mesh(sharding.mesh):
        return jax.tree.map(np.asarray, f(cosmo, noise))


@pytest.fixture(scope="module")
def reference(cosmo):
    return _run(cosmo, None)


@pytest.mark.parametrize("grid", GRIDS, ids=[f"{a}x{b}" for a, b in GRIDS])
def test_sharded_planes_equal_single_device(cosmo, reference, grid):
    p0, p1 = grid
    mesh = jax.make_mesh((p0, p1), ("x", "y"), devices=jax.devices()[: p0 * p1])
    sharded = _run(cosmo, NamedSharding(mesh, P("x", "y")))
    for geometry in SPECS:
        maps, ref = sharded[geometry], reference[geometry]
        err = float(np.max(np.abs(maps - ref)) / np.max(np.abs(ref)))
        print(f"{geometry} {p0}x{p1}: max relative difference {err:.1e}")
        assert ref.sum() > 0
        np.testing.assert_allclose(maps, ref, rtol=SHARDED_RTOL, atol=SHARDED_RTOL * ref.max())
