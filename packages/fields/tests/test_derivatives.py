"""Every derivative of functions built on fft3d/ifft3d equals that of a jnp.fft reference.

For each device grid, one jitted function evaluates grad, jvp, jacfwd, jacrev, hessian,
Hessian-vector products (forward-over-reverse and reverse-over-reverse) and vmap of
  F(x) = ifft3d(fft3d(x) · K(k))                     (a Gaussian smoothing, real -> real),
  G(x) = (Re fft3d(x), Im fft3d(x))                  (the transform itself),
  L(x) = Σ F(x)³ + Σ sin(x) F(x)                    (a scalar with a non-trivial Hessian),
on a sharded input. The reference builds the same functions from jnp.fft.fftn/ifftn
(full spectrum, the sharded layout) or rfftn/irfftn (one device) on an unsharded copy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmt_fields as ff

GRIDS = "representative"  # see conftest.py

# float64: the derivative computations are chains of FFTs and elementwise ops on O(1)
# numbers, so both sides agree to ~1e-15; the bound is 1e-10 relative.
DERIVATIVE_RTOL = 1e-10
SHAPE = (8, 8, 8)  # divisible by every grid up to 8 devices, jacobians of 512 x 512
BOX = 50.0
SMOOTHING = 6.0  # Mpc/h


def _make(fft, ifft, kernel):
    def F(x):
        return ifft(fft(x) * kernel)

    def G(x):
        x_k = fft(x)
        return jnp.stack([x_k.real, x_k.imag])

    def L(x):
        f = F(x)
        return jnp.sum(f**3) + jnp.sum(jnp.sin(x) * f)

    def derivatives(x, v, xs):
        return {
            "grad": jax.grad(L)(x),
            "jvp": jax.jvp(L, (x,), (v,))[1],
            "jacfwd_F": jax.jacfwd(F)(x),
            "jacrev_F": jax.jacrev(F)(x),
            "jacfwd_G": jax.jacfwd(G)(x),
            "jacrev_G": jax.jacrev(G)(x),
            "hessian": jax.hessian(L)(x),
            "hvp_fwd_over_rev": jax.jvp(jax.grad(L), (x,), (v,))[1],
            "hvp_rev_over_rev": jax.grad(lambda y: jnp.sum(jax.grad(L)(y) * v))(x),
            "vmap_F": jax.vmap(F)(xs),
            "vmap_grad": jax.vmap(jax.grad(L))(xs),
        }

    return jax.jit(derivatives)


def _reference_kernel(full: bool) -> np.ndarray:
    n = np.fft.fftfreq(SHAPE[0], 1 / SHAPE[0])
    nz = n if full else np.fft.rfftfreq(SHAPE[2], 1 / SHAPE[2])
    k2 = (2 * np.pi / BOX) ** 2 * (n[:, None, None] ** 2 + n[None, :, None] ** 2 + nz**2)
    return np.exp(-0.5 * k2 * SMOOTHING**2)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(11)
    x, v, x2 = (rng.normal(size=SHAPE) for _ in range(3))
    return x, v, np.stack([x, x2])


@pytest.fixture(scope="module")
def references(inputs):
    x, v, xs = (jnp.asarray(a) for a in inputs)
    full = _make(jnp.fft.fftn, lambda k: jnp.fft.ifftn(k).real, _reference_kernel(True))
    half = _make(jnp.fft.rfftn, lambda k: jnp.fft.irfftn(k, s=SHAPE), _reference_kernel(False))
    return {"full": full(x, v, xs), "half": half(x, v, xs)}


@pytest.mark.multidevice
def test_all_derivatives_match_reference(grid, mesh, sharding, inputs, references):
    x, v = (jax.device_put(a, sharding) for a in inputs[:2])
    with jax.set_mesh(mesh):
        xs = jnp.stack([x, jax.device_put(inputs[2][1], sharding)])
        kernel = jnp.exp(-0.5 * (ff.wavenumber(SHAPE, BOX, sharding=sharding) * SMOOTHING) ** 2)
        got = _make(ff.fft3d, ff.ifft3d, kernel)(x, v, xs)
    expected = references["half" if grid == (1, 1) else "full"]
    errors = {}
    for name, want in expected.items():
        have = np.asarray(got[name])
        assert have.shape == want.shape, name
        errors[name] = float(np.max(np.abs(have - want)) / np.max(np.abs(want)))
    print(f"grid {grid}: max relative error per derivative {errors}")
    assert max(errors.values()) < DERIVATIVE_RTOL, errors
    if grid != (1, 1):
        spec = tuple(got["grad"].sharding.spec)
        assert spec[:2] == ("x", "y"), spec
