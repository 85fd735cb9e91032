"""Bad arguments are refused before any work, naming the argument and the valid choices."""

import jax
import numpyro
import numpyro.distributions as dist
import pytest

from fmt_infer import DistributedNormal, batched_sampling, plot_posterior, summary


def model():
    numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))


def _run(tmp_path, **kw):
    args = dict(num_warmup=10, num_samples=10, batch_count=1, progress_bar=False)
    args.update(kw)
    return batched_sampling(model, tmp_path / "run", jax.random.key(0), **args)


def test_mclmc_with_numpyro(tmp_path):
    with pytest.raises(ValueError, match=r"sampler='MCLMC'.*backend='blackjax'.*\('NUTS', 'HMC'\)"):
        _run(tmp_path, sampler="MCLMC", backend="numpyro")


def test_unknown_sampler(tmp_path):
    with pytest.raises(ValueError, match=r"sampler must be one of \('NUTS', 'HMC', 'MCLMC'\)"):
        _run(tmp_path, sampler="SMC")


def test_unknown_backend(tmp_path):
    with pytest.raises(ValueError, match=r"backend must be one of \('blackjax', 'numpyro'\)"):
        _run(tmp_path, backend="stan")


@pytest.mark.parametrize("value", [0, -5, 2.5])
def test_num_samples_not_positive(tmp_path, value):
    with pytest.raises(ValueError, match=r"num_samples must be an int >= 1"):
        _run(tmp_path, num_samples=value)


@pytest.mark.parametrize("name", ["batch_count", "num_chains"])
def test_counts(tmp_path, name):
    with pytest.raises(ValueError, match=name):
        _run(tmp_path, **{name: 0})


def test_path_is_a_file(tmp_path):
    file = tmp_path / "run"
    file.write_text("not a run")
    with pytest.raises(ValueError, match="path must be a directory"):
        _run(tmp_path)
    assert file.read_text() == "not a run"


def test_no_path_with_save():
    with pytest.raises(ValueError, match="path"):
        batched_sampling(model, None, jax.random.key(0), num_warmup=1, num_samples=1, batch_count=1)


def test_bad_key(tmp_path):
    with pytest.raises(TypeError, match="rng_key"):
        batched_sampling(model, tmp_path / "r", 3, num_warmup=1, num_samples=1, batch_count=1)


def test_other_inputs(tmp_path):
    with pytest.raises(ValueError, match="pair_kind must be one of"):
        plot_posterior({"x": [[0.0] * 8]}, tmp_path, pair_kind="hexbin")
    with pytest.raises(ValueError, match="available"):
        summary({"x": [[0.0] * 8]}, params=["y"])
    with pytest.raises(ValueError, match="mesh_shape"):
        DistributedNormal(0.0, 1.0)
    with pytest.raises(ValueError, match="mesh_shape"):
        DistributedNormal(0.0, 1.0, mesh_shape=(4, 4))
