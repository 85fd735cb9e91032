"""Full-field forward model: shapes, full-sky mean, visibility, gradients vs finite
differences for every adjoint, bad input, and the optional probabilistic model."""

import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fmt_cosmo import Planck18
from fmt_fields import white_noise
from fmt_lensing import (
    Configuration,
    Delta,
    Smail,
    full_field_probmodel,
    make_full_field_model,
    reconstruct_full_kappa,
    spherical_power_spectrum,
)

N, BOX = 16, 128.0
FLAT = dict(
    box_shape=N,
    box_size=BOX,
    max_redshift=0.2,
    geometry="flat",
    field_size=5.0,
    field_npix=16,
    density_plane_width=BOX / 2,
    observer=(0.5, 0.5, 0.5 / N),
    n_steps=2,
)
SPHERE = dict(
    box_shape=N,
    box_size=BOX,
    max_redshift=0.1,
    geometry="spherical",
    nside=8,
    density_plane_width=BOX / 2,
    n_steps=3,
)
NZ = (Delta(0.2), Smail(2.0, 1.5, 0.1, zmax=0.2))
# Map means over the full sphere are sums of 768 O(1e-3) numbers in float64.
MEAN_ATOL = 1e-15
# Central differences with step 1e-6 (no particle crosses a shell edge at that step; the
# maps jump there): truncation ~1e-12, round-off ~1e-16/1e-6 relative.
FD_EPS = 1e-6
FD_RTOL = 1e-5
# Adjoints against the checkpointed gradient: reversible rebuilds the states by running
# the solver backwards, backsolve runs the adjoint with the solver's own (symplectic,
# reversible) steps: both agree to float64 round-off (measured < 1e-14).
ADJOINT_RTOL = {"reversible": 1e-8, "backsolve": 1e-8}


@pytest.fixture(scope="module")
def cosmo():
    return Planck18()


@pytest.fixture(scope="module")
def noise():
    return white_noise(jax.random.key(3), (N, N, N))


@pytest.fixture(scope="module")
def flat_model():
    return make_full_field_model(**FLAT)


def test_flat_shapes(cosmo, noise, flat_model):
    kappa, planes, field = jax.jit(lambda c, w: flat_model(c, NZ, w))(cosmo, noise)
    assert kappa.shape == (2, 16, 16)
    assert planes.maps.shape[1:] == (N, N) and field.shape == (N, N, N)
    assert np.all(np.isfinite(kappa)) and float(jnp.std(kappa[0])) > 1e-5
    # sources at the far edge see more lensing than the Smail bin inside the range
    assert float(jnp.std(kappa[0])) > float(jnp.std(kappa[1]))


def test_spherical_full_sky_mean_zero_and_visibility(cosmo, noise):
    model = make_full_field_model(**SPHERE)
    assert model.mask.all()  # replicas chosen to hold every shell: the full sky
    kappa, _, _ = jax.jit(lambda c, w: model(c, NZ, w))(cosmo, noise)
    assert kappa.shape == (2, 12 * 64)
    means = np.abs(np.asarray(kappa).mean(-1))
    print("full-sky mean |<kappa>|:", means, "std:", np.asarray(kappa).std(-1))
    assert np.all(means < MEAN_ATOL) and float(jnp.std(kappa[0])) > 1e-5
    cl = spherical_power_spectrum(np.asarray(kappa[0]))
    # (anafast's monopole of a zero-mean map is not 0 at nside 8: its quadrature aliases
    # the maps' pixel-scale power; the exact pixel mean above is the check)
    assert cl.shape == (3 * 8,) and np.all(cl[1:] > 0)
    # one replica per side only: the pixels whose ray leaves that volume are dropped
    partial = make_full_field_model(**SPHERE, replicas=1)
    assert 0 < partial.mask.mean() < 1
    k_vis, _, _ = jax.jit(lambda c, w: partial(c, NZ, w))(cosmo, noise)
    assert k_vis.shape == (2, int(partial.mask.sum()))
    full = reconstruct_full_kappa(k_vis, partial.mask)
    assert np.all(full[:, ~partial.mask] == hp.UNSEEN)
    np.testing.assert_array_equal(full[:, partial.mask], np.asarray(k_vis))


def _loss(model, target):
    def loss(omega_c, w):
        cosmo = Planck18().replace(Omega_c=omega_c)
        kappa = model(cosmo, NZ, w)[0]
        return jnp.sum((kappa - target) ** 2) * 1e6

    return loss


@pytest.fixture(scope="module")
def gradients(cosmo, noise, flat_model):
    target = jax.jit(lambda c, w: flat_model(c, NZ, w)[0])(
        cosmo, white_noise(jax.random.key(9), (N, N, N))
    )
    out = {}
    for adjoint in ("checkpointed", "reversible", "backsolve"):
        # one PM step keeps the three gradient compiles within the test budget
        model = make_full_field_model(**{**FLAT, "n_steps": 1}, adjoint=adjoint)
        loss = _loss(model, target)
        out[adjoint] = jax.jit(jax.grad(loss, argnums=(0, 1)))(cosmo.Omega_c, noise)
    return out, jax.jit(_loss(make_full_field_model(**{**FLAT, "n_steps": 1}), target)), target


def test_gradients_match_finite_differences(cosmo, noise, gradients):
    grads, loss, _ = gradients
    g_oc, g_w = grads["checkpointed"]
    oc = cosmo.Omega_c
    fd_oc = (loss(oc + FD_EPS, noise) - loss(oc - FD_EPS, noise)) / (2 * FD_EPS)
    v = jax.random.normal(jax.random.key(5), noise.shape)
    fd_w = (loss(oc, noise + FD_EPS * v) - loss(oc, noise - FD_EPS * v)) / (2 * FD_EPS)
    print(f"dL/dOmega_c {float(g_oc):.8e} fd {float(fd_oc):.8e}")
    print(f"dL/dw.v     {float(jnp.vdot(g_w, v)):.8e} fd {float(fd_w):.8e}")
    np.testing.assert_allclose(float(g_oc), float(fd_oc), rtol=FD_RTOL)
    np.testing.assert_allclose(float(jnp.vdot(g_w, v)), float(fd_w), rtol=FD_RTOL)


@pytest.mark.parametrize("adjoint", list(ADJOINT_RTOL))
def test_every_adjoint_differentiates_end_to_end(gradients, adjoint):
    grads, _, _ = gradients
    ref_oc, ref_w = grads["checkpointed"]
    g_oc, g_w = grads[adjoint]
    err_w = float(jnp.linalg.norm(g_w - ref_w) / jnp.linalg.norm(ref_w))
    print(f"{adjoint}: dOmega_c rel {abs(float(g_oc / ref_oc) - 1):.2e}, dw rel {err_w:.2e}")
    np.testing.assert_allclose(float(g_oc), float(ref_oc), rtol=ADJOINT_RTOL[adjoint])
    assert err_w < ADJOINT_RTOL[adjoint]


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        (dict(geometry="spherical", nside=12, field_size=None, field_npix=None), "nside"),
        (dict(observer=(0.5, 0.5, 1.5)), "observer"),
        (dict(field_size=30.0), "field_size"),
        (dict(geometry="cone"), "geometry"),
    ],
)
def test_bad_model_input(changes, name):
    with pytest.raises(ValueError, match=name):
        make_full_field_model(**{**FLAT, **changes})


# A growth table from a = 1e-4 with 64 nodes against fmt-cosmo's default (1e-6, 512): D1
# and f agree to 2e-5 (measured 4e-6 and 2e-5), so κ does to about that (1LPT; D2 of the
# coarse table is 5e-4 off, entering 2LPT's small correction).
COARSE_TABLE_RTOL = 1e-4


def test_coarse_growth_table_and_linear_shells(cosmo, noise, flat_model):
    ref = jax.jit(lambda c, w: flat_model(c, NZ, w)[0])(cosmo, noise)
    options = dict(FLAT, lpt_order=1, growth_a_min=1e-4, growth_num=64)
    fine = make_full_field_model(**{**options, "growth_a_min": None, "growth_num": None})
    coarse = make_full_field_model(**options)
    k_fine = jax.jit(lambda c, w: fine(c, NZ, w)[0])(cosmo, noise)
    k_coarse = jax.jit(lambda c, w: coarse(c, NZ, w)[0])(cosmo, noise)
    err = float(jnp.max(jnp.abs(k_coarse - k_fine)) / jnp.max(jnp.abs(k_fine)))
    print(f"coarse growth table: max |Δκ| / max |κ| = {err:.2e}")
    assert 0 < err < COARSE_TABLE_RTOL
    assert not np.allclose(np.asarray(ref), np.asarray(k_fine))  # 2LPT vs 1LPT: not a no-op
    with pytest.raises(ValueError, match="num"):
        make_full_field_model(**{**options, "growth_num": 4})
    linear = make_full_field_model(**FLAT, shell_assignment="linear")
    assert linear.spec.shell_assignment == "linear"
    assert flat_model.spec.shell_assignment == "nearest"
    k_lin = jax.jit(lambda c, w: linear(c, NZ, w)[0])(cosmo, noise)
    # the same mass, shared differently between shells: κ close to, not equal to, nearest
    rel = float(jnp.linalg.norm(k_lin - ref) / jnp.linalg.norm(ref))
    print(f"linear vs nearest shells: relative κ difference {rel:.2e}")
    assert 0 < rel < 0.5


def test_probabilistic_model_traces(cosmo):
    import numpyro
    import numpyro.distributions as dist

    config = Configuration(
        box_shape=(N, N, N),
        box_size=(BOX,) * 3,
        max_redshift=0.2,
        nz=NZ,
        field_size=5.0,
        field_npix=16,
        density_plane_width=BOX / 2,
        observer=(0.5, 0.5, 0.5 / N),
        n_steps=2,
        priors=(("Omega_c", dist.Uniform(0.2, 0.3)),),
    )
    model = full_field_probmodel(config)

    def draw(key):
        tr = numpyro.handlers.trace(numpyro.handlers.seed(model, key)).get_trace()
        return tr["initial_conditions"]["value"], tr["kappa_obs"]["value"], tr["kappa"]["value"]

    ic, obs, kappa = jax.jit(draw)(jax.random.key(0))
    assert ic.shape == (N, N, N) and obs.shape == (2, 16, 16)
    # the observation is the model map plus shape noise of the configured level
    np.testing.assert_allclose(float(jnp.std(obs - kappa)), config.pixel_noise(), rtol=0.15)
    sigma = 0.26 / np.sqrt(10.0 * (60 * 5.0 / 16) ** 2)
    np.testing.assert_allclose(config.pixel_noise(), sigma, rtol=1e-14)
    with pytest.raises(ValueError, match="n_gal"):
        Configuration(box_shape=(N,) * 3, box_size=(BOX,) * 3, max_redshift=0.2, nz=NZ, n_gal=0)


def test_without_numpyro_import_works_and_probmodel_says_what_to_install(monkeypatch):
    import importlib
    import pkgutil
    import sys

    import fmt_lensing

    for name in [m for m in sys.modules if m.startswith("fmt_lensing")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "numpyro", None)  # import numpyro -> ImportError
    monkeypatch.setitem(sys.modules, "fmt_infer", None)
    pkg = importlib.import_module("fmt_lensing")
    for mod in pkgutil.walk_packages(fmt_lensing.__path__, "fmt_lensing."):
        importlib.import_module(mod.name)
    config = pkg.Configuration(
        box_shape=(N, N, N),
        box_size=(BOX,) * 3,
        max_redshift=0.2,
        nz=NZ,
        field_size=5.0,
        field_npix=16,
    )
    with pytest.raises(ImportError, match=r"fmt-lensing\[infer\]"):
        pkg.full_field_probmodel(config)
