"""Sharded paint, read, forces, LPT and gradients equal the single-device results.

Nox runs this module at 1, 2 and 8 fake CPU devices (XLA_FLAGS set by nox, never here).
The device grids are chosen at collection from `jax.device_count()` (grids that use every
device; (1, 1) on one device), so every run exercises what it can build and none skips.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import fmt_cosmo
from fmt_dynamics import cic_paint, cic_read, lpt, pm_forces
from fmt_dynamics._src._pallas_cic import pallas_available

pytestmark = pytest.mark.multidevice

N = 16
# float32 arithmetic, different summation orders (halo additions, distributed FFT).
SHARDED_RTOL = 1e-5
MASS_RTOL = 1e-6


def _grids():
    n = jax.device_count()
    if n == 1:
        return [(1, 1)]
    if n == 2:
        return [(2, 1), (1, 2)]
    if n >= 8:
        return [(2, 4), (8, 1), (1, 8)]
    return [(n, 1)]


GRIDS = _grids()
# The Pallas kernels run inside `shard_map` on GPUs only (Pallas' CPU interpreter does not
# support varying manual axes); their halo arithmetic is tested on one device in
# test_painting.py::test_pallas_halo_blocks_equal_reference.
METHODS = ("reference", "fused") + (("pallas",) if pallas_available() else ())


@pytest.fixture(scope="module", params=GRIDS, ids=[f"{a}x{b}" for a, b in GRIDS])
def sharding(request):
    p0, p1 = request.param
    mesh = jax.make_mesh((p0, p1), ("x", "y"), devices=jax.devices()[: p0 * p1])
    return NamedSharding(mesh, P("x", "y"))


@pytest.fixture(scope="module")
def cosmo():
    return fmt_cosmo.Planck18()


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    # Blocks are 2 cells wide on an 8-device axis: default halo 2, displacements < 1 cell.
    disp = np.clip(rng.normal(scale=0.4, size=(N, N, N, 3)), -0.95, 0.95)
    return {
        "disp": jnp.asarray(disp, jnp.float32),
        "weights": jnp.asarray(rng.uniform(0.5, 1.5, size=(N, N, N)), jnp.float32),
        "mesh": jnp.asarray(rng.normal(size=(N, N, N)), jnp.float32),
        "cot": jnp.asarray(rng.normal(size=(N, N, N, 3)), jnp.float32),
        "delta": jnp.asarray(0.5 * rng.normal(size=(N, N, N)), jnp.float32),
    }


def _everything(cosmo, table):
    """One jitted function per grid (one compile): every PM-core output and a gradient."""

    def run(disp, weights, mesh, cot, delta):
        def loss(d):
            return jnp.sum(pm_forces(d, compensate=True) * cot) + jnp.sum(cic_paint(d) * mesh)

        def loss_cic(d, w, method):
            read = cic_read(jnp.stack([mesh, delta, mesh * delta], -1), d, method=method)
            return jnp.sum(read * cot) + jnp.sum(cic_paint(d, weights=w, method=method) * mesh)

        lpt_disp, lpt_mom = lpt(cosmo, delta, 0.5, order=2, table=table)
        grads = {}
        for m in METHODS:
            g_disp, g_w = jax.grad(loss_cic, argnums=(0, 1))(disp, weights, m)
            grads |= {f"grad_cic_{m}_disp": g_disp, f"grad_cic_{m}_weights": g_w}
            if m != "reference":  # forward mode of the kernels with hand-written vjps
                tangents = (cot, weights - 1.0)
                paint = functools.partial(cic_paint, method=m)
                grads[f"jvp_paint_{m}"] = jax.jvp(
                    lambda d, w, paint=paint: paint(d, weights=w), (disp, weights), tangents
                )[1]
                read = functools.partial(cic_read, method=m)
                grads[f"jvp_read_{m}"] = jax.jvp(read, (cot, disp), (cot, cot))[1]
        return grads | {
            "paint": cic_paint(disp, weights=weights),
            "paint_compensated": cic_paint(disp, compensate=True),
            "read": cic_read(mesh, disp),
            "forces": pm_forces(disp),
            "lpt_disp": lpt_disp,
            "lpt_mom": lpt_mom,
            "grad": jax.grad(loss)(disp),
        }

    return jax.jit(run)


@pytest.fixture(scope="module")
def table(cosmo):
    return jax.jit(fmt_cosmo.growth_table)(cosmo)


@pytest.fixture(scope="module")
def reference(cosmo, table, inputs):
    return _everything(cosmo, table)(**inputs)


def test_sharded_equals_single_device(sharding, cosmo, table, inputs, reference):
    put = {k: jax.device_put(v, sharding) for k, v in inputs.items()}
    out = _everything(cosmo, table)(**put)
    for name, ref in reference.items():
        got = out[name]
        assert got.shape == ref.shape and got.dtype == ref.dtype == jnp.float32, name
        assert got.sharding.spec[:2] == sharding.spec[:2], (name, got.sharding)
        err = float(jnp.max(jnp.abs(got - ref)) / jnp.max(jnp.abs(ref)))
        assert err <= SHARDED_RTOL, (name, err)


def _split(sharding):
    return any(sharding.mesh.shape[a] > 1 for a in ("x", "y"))


def test_no_silent_mass_loss(sharding):
    """Particles as far as the halo allows keep every bit of mass; one step further is an
    error, never a silent loss (JaxPM 0.1.6 lost up to 2% here)."""
    p0, p1 = sharding.mesh.shape["x"], sharding.mesh.shape["y"]
    halo = min(N // max(p0, p1), 4) if _split(sharding) else 4
    rng = np.random.default_rng(1)
    # The farthest legal moves: floor(site + d) in [site - halo, site + halo - 2].
    disp = rng.choice([-float(halo), halo - 1.01], size=(N, N, N, 3))
    paint = jax.jit(lambda d: cic_paint(d, halo=halo))
    rho = paint(jax.device_put(jnp.asarray(disp, jnp.float32), sharding))
    np.testing.assert_allclose(float(jnp.sum(rho, dtype=jnp.float64)), N**3, rtol=MASS_RTOL)
    single = cic_paint(jnp.asarray(disp, jnp.float32))
    np.testing.assert_allclose(np.asarray(rho), np.asarray(single), atol=1e-5)

    beyond = disp.copy()
    beyond[0, 0, 7, :2] = -halo - 0.5  # first site of a block: leaves the padded block
    beyond = jax.device_put(jnp.asarray(beyond, jnp.float32), sharding)
    if _split(sharding):
        with pytest.raises(Exception, match="further from its lattice site than the halo"):
            jax.block_until_ready(paint(beyond))
        read = jax.jit(lambda d: cic_read(jnp.ones((N, N, N), jnp.float32), d, halo=halo))
        with pytest.raises(Exception, match="further from its lattice site than the halo"):
            jax.block_until_ready(read(beyond))
    else:  # one device: no halo, the periodic wrap keeps everything
        rho = paint(beyond)
        np.testing.assert_allclose(float(jnp.sum(rho, dtype=jnp.float64)), N**3, rtol=MASS_RTOL)
