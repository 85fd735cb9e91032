"""Progress bars over batches and within a batch; progress_bar=False prints nothing."""

import jax
import numpyro
import numpyro.distributions as dist
import pytest

from fmt_infer import batched_sampling
from fmt_infer._src import sampling


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
    assert "warmup" in err and "20/20" in err  # warmup steps, driven from jit


def test_progress_bar_false_is_silent(capfd):
    _run(False)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.parametrize("backend", ["blackjax", "numpyro"])
def test_warmup_bar_advances_once_per_step(monkeypatch, backend):
    # One tick per warmup step, not per chain (the callback has no batched operand).
    calls = []
    monkeypatch.setattr(sampling._Progress, "advance", lambda self: calls.append(1))
    batched_sampling(
        model,
        None,
        jax.random.key(1),
        num_warmup=20,
        num_samples=5,
        batch_count=1,
        num_chains=2,
        backend=backend,
        save=False,
        progress_bar=True,
    )
    assert len(calls) == 20
