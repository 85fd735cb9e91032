"""Progress bars over batches and within a batch; progress_bar=False prints nothing."""

import jax
import numpyro
import numpyro.distributions as dist

from fmt_infer import batched_sampling


def model():
    numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))


def _run(progress_bar):
    return batched_sampling(
        model,
        None,
        jax.random.key(0),
        num_warmup=20,
        num_samples=40,
        batch_count=2,
        save=False,
        progress_bar=progress_bar,
    )


def test_progress_bars_shown(capfd):
    _run(True)
    err = capfd.readouterr().err
    assert "batches" in err and "2/2" in err  # the bar over batches
    assert "batch 1" in err and "40/40" in err  # the bar within a batch, driven from jit
    assert "warmup" in err


def test_progress_bar_false_is_silent(capfd):
    _run(False)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
