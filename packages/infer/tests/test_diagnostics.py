"""R-hat and ESS against ArviZ (an independent implementation of Vehtari et al. 2021),
summaries, and the corner plot."""

import warnings

import numpy as np
import pytest

from fmt_infer import ess_bulk, ess_tail, format_summary, plot_posterior, split_rhat, summary

# ArviZ computes normal scores in float64, we in float32 (jax.scipy ndtri): ESS and R-hat
# agree to ~1e-7 relative on symmetric margins, ~1e-4 on the skewed one (extreme ranks).
ARVIZ_RTOL = 1e-3
PHI = 0.9  # AR(1) coefficient: strongly autocorrelated chains


@pytest.fixture(scope="module")
def chains():
    rng = np.random.default_rng(0)
    x = np.zeros((4, 400, 3))
    for t in range(1, x.shape[1]):
        x[:, t] = PHI * x[:, t - 1] + rng.normal(size=(4, 3))
    x[1] += 0.4  # one chain offset: R-hat must notice
    x[:, :, 2] = np.exp(x[:, :, 2])  # a skewed margin: rank normalisation matters
    return x


@pytest.fixture(scope="module")
def arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz

    return arviz


@pytest.mark.parametrize(
    ("ours", "method"), [(ess_bulk, "bulk"), (ess_tail, "tail"), (split_rhat, "rank")]
)
def test_against_arviz(chains, arviz, ours, method):
    reference = [
        float(arviz.rhat(chains[..., i], method="rank"))
        if method == "rank"
        else float(arviz.ess(chains[..., i], method=method))
        for i in range(chains.shape[-1])
    ]
    np.testing.assert_allclose(ours(chains), reference, rtol=ARVIZ_RTOL)


def test_rhat_flags_offset_chain(chains):
    converged = chains.copy()
    converged[1] -= 0.4
    assert split_rhat(chains)[0] > 1.01
    assert split_rhat(converged)[0] < split_rhat(chains)[0]


def test_independent_draws_have_ess_near_n():
    x = np.random.default_rng(1).normal(size=(4, 1000, 2))
    np.testing.assert_allclose(ess_bulk(x), 4000, rtol=0.15)
    np.testing.assert_allclose(split_rhat(x), 1.0, atol=0.01)


def test_summary_and_format(chains):
    stats = {
        "diverging": np.zeros((4, 400), bool),
        "accept_prob": np.full((4, 400), 0.8),
        "step_size": np.full((4, 400), 0.1),
        "num_steps": np.full((4, 400), 7),
    }
    table = summary({"a": chains, "b": chains[..., 0]}, sample_stats=stats)
    assert table["a"]["mean"].shape == (3,)
    np.testing.assert_allclose(table["b"]["ess_bulk"], ess_bulk(chains[..., 0]))
    assert table["sampler"]["divergences"] == 0
    text = format_summary(table)
    assert "a[2]" in text and "r_hat" in text and "divergences: 0 / 1600" in text


@pytest.mark.parametrize("pair_kind", ["kde", "scatter"])
def test_plot_posterior_writes_png(tmp_path, chains, pair_kind):
    out = plot_posterior(
        {"a": chains[..., :2], "b": chains[..., 2]},
        tmp_path / "plots",
        truth={"a": [0.0, 0.0], "b": 1.0},
        pair_kind=pair_kind,
    )
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
