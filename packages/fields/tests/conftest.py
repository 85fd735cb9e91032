"""Shared set-up: float64, and device grids parametrised from the devices of this process.

Nox runs these files at 1, 2 and 8 fake CPU devices by setting XLA_FLAGS and JAX_PLATFORMS
in the environment; nothing here sets them. Tests that take a `grid` argument run once per
device grid (p0, p1) whose size divides the number of devices, so every run exercises the
grids it can build and none is skipped.
"""

import jax
import pytest

# Numbers are compared against float64 references in this package's tests.
jax.config.update("jax_enable_x64", True)

CANDIDATE_GRIDS = ((1, 1), (1, 2), (2, 1), (2, 4), (4, 2), (1, 8), (8, 1))


def device_grids() -> list[tuple[int, int]]:
    """Grids from CANDIDATE_GRIDS whose number of devices divides jax.device_count()."""
    n = jax.device_count()
    return [g for g in CANDIDATE_GRIDS if n % (g[0] * g[1]) == 0]


def representative_grids() -> list[tuple[int, int]]:
    """One device, the widest slab (p0 x 1) and the widest pencil grid this process has.

    For the expensive checks (every derivative, whole pipelines), which exercise the same
    code path on every grid of a kind; the FFT values and the white noise run on all grids.
    """
    grids = device_grids()
    slabs = [g for g in grids if g[1] == 1 and g[0] > 1]
    pencils = [g for g in grids if g[1] > 1]
    picked = [(1, 1)]
    for kind in (slabs, pencils):
        if kind:
            picked.append(max(kind, key=lambda g: (g[0] * g[1], g[0] > 1 and g[1] > 1)))
    return picked


def pytest_generate_tests(metafunc):
    if "grid" in metafunc.fixturenames:
        kind = getattr(metafunc.module, "GRIDS", "all")
        grids = representative_grids() if kind == "representative" else device_grids()
        metafunc.parametrize("grid", grids, ids=[f"{a}x{b}" for a, b in grids], scope="module")


@pytest.fixture(scope="module")
def mesh(grid):
    """A mesh with explicit axes ("x", "y") of shape `grid` on the first p0*p1 devices."""
    n = grid[0] * grid[1]
    return jax.make_mesh(grid, ("x", "y"), devices=jax.devices()[:n])


@pytest.fixture(scope="module")
def sharding(mesh):
    """Pencils: X over "x", Y over "y", Z whole."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x", "y"))
