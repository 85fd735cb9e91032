"""Convergence diagnostics: rank-normalised split R-hat, bulk and tail ESS, run summaries.

Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis 16,
667. Plain NumPy on host arrays (these run after sampling, never inside jit). Every function
takes draws shaped (chains, draws, *event) and returns one value per event element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["ess_bulk", "ess_tail", "format_summary", "split_rhat", "summary"]

_TAIL_PROB = 0.05  # tail ESS uses the 5% and 95% quantiles (Vehtari et al. 2021, sec. 4.3)


def _as_draws(x: Any, name: str = "x") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"{name} must have shape (chains, draws, ...), got shape {a.shape}")
    if a.shape[1] < 4:
        raise ValueError(f"{name} needs at least 4 draws per chain, got {a.shape[1]}")
    return a


def _split(a: np.ndarray) -> np.ndarray:
    """Each chain cut in two halves (the middle draw dropped when odd): 2M chains."""
    half = a.shape[1] // 2
    return np.concatenate([a[:, :half], a[:, a.shape[1] - half :]], axis=0)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n along axis 0, ties sharing their average rank."""
    n = values.shape[0]
    order = np.argsort(values, axis=0, kind="stable")
    sorted_values = np.take_along_axis(values, order, axis=0)
    ranks_sorted = np.empty_like(sorted_values)
    for col in np.ndindex(values.shape[1:]):
        v = sorted_values[(slice(None), *col)]
        # boundaries of runs of equal values
        starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
        ends = np.r_[starts[1:], n]
        avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
        ranks_sorted[(slice(None), *col)] = np.repeat(avg, ends - starts)
    ranks = np.empty_like(ranks_sorted)
    np.put_along_axis(ranks, order, ranks_sorted, axis=0)
    return ranks


def _normal_ppf(p: np.ndarray) -> np.ndarray:
    return np.asarray(jax.scipy.special.ndtri(np.asarray(p, np.float32)), np.float64)


def _rank_normalise(a: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks: Φ⁻¹((r - 3/8) / (S + 1/4)) (Blom, eq. 14)."""
    chains, draws = a.shape[:2]
    flat = a.reshape(chains * draws, -1)
    ranks = _average_ranks(flat)
    z = _normal_ppf((ranks - 0.375) / (flat.shape[0] + 0.25))
    return z.reshape(a.shape)


def _rhat(a: np.ndarray) -> np.ndarray:
    """Classic potential scale reduction of already-split chains (eq. 3-4)."""
    n = a.shape[1]
    chain_means = a.mean(axis=1)
    within = a.var(axis=1, ddof=1).mean(axis=0)
    between = n * chain_means.var(axis=0, ddof=1)
    var_plus = (n - 1) / n * within + between / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(var_plus / within)


def _autocovariance(a: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each chain along axis 1, by FFT with zero padding."""
    n = a.shape[1]
    centred = a - a.mean(axis=1, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n]
    return acov / n


def _ess(a: np.ndarray) -> np.ndarray:
    """ESS of already-split chains with Geyer's initial monotone sequence (eq. 10-11)."""
    m, n = a.shape[:2]
    acov = _autocovariance(a)
    chain_var = acov[:, 0] * n / (n - 1.0)
    mean_var = chain_var.mean(axis=0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + a.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    out = np.empty(a.shape[2:])
    for col in np.ndindex(a.shape[2:]):
        r = rho[(slice(None), *col)]
        if not np.isfinite(r).all() or not var_plus[col] > 0:
            out[col] = np.nan
            continue
        out[col] = m * n / _geyer_tau(r, m * n)
    return out


def _geyer_tau(rho: np.ndarray, total: int) -> float:
    """Integrated autocorrelation time from Geyer's initial monotone sequence.

    Pair sums P_k = rho_2k + rho_2k+1 are kept up to the first negative one (initial
    positive sequence), then made non-increasing (initial monotone sequence); as in Stan,
    the positive even term of the first rejected pair is added once.
    """
    n = rho.size
    pairs = [rho[0] + rho[1]]
    rejected_even = 0.0
    k = 1
    while pairs[-1] > 0:
        if 2 * k + 1 >= n - 1:
            # Out of lags with every pair positive: like Stan, the last pair is not trusted
            # in full; only its even term is kept.
            if len(pairs) > 1:
                rejected_even = max(rho[2 * k - 2], 0.0)
                pairs.pop()
            break
        pair = rho[2 * k] + rho[2 * k + 1]
        if pair < 0:
            rejected_even = max(rho[2 * k], 0.0)
            break
        pairs.append(pair)
        k += 1
    monotone = np.minimum.accumulate(np.asarray(pairs))
    tau = -1.0 + 2.0 * monotone.sum() + rejected_even
    # Antithetic chains can give tau < 1; Stan bounds ESS by MN log10(MN).
    return max(tau, 1.0 / np.log10(total))


def split_rhat(x: Any) -> np.ndarray:
    """Rank-normalised split R-hat (Vehtari et al. 2021, sec. 4.2).

    The larger of the R-hats of the rank-normalised split chains and of their folded
    version (|x - median|), so both location and scale differences between chains count.

    Args:
        x: draws, shape (chains, draws, *event), at least 4 draws per chain.

    Returns:
        R-hat per event element, shape `event`; 1 at convergence, above ~1.01 suspicious.
    """
    a = _split(_as_draws(x))
    folded = np.abs(a - np.median(a, axis=(0, 1)))
    return np.maximum(_rhat(_rank_normalise(a)), _rhat(_rank_normalise(folded)))


def ess_bulk(x: Any) -> np.ndarray:
    """Bulk effective sample size: ESS of the rank-normalised split chains (sec. 4.3).

    Args:
        x: draws, shape (chains, draws, *event).

    Returns:
        ESS per event element, shape `event`; use it for Monte-Carlo errors of means.
    """
    return _ess(_rank_normalise(_split(_as_draws(x))))


def ess_tail(x: Any) -> np.ndarray:
    """Tail effective sample size: the smaller ESS of the 5% and 95% quantile indicators.

    Args:
        x: draws, shape (chains, draws, *event).

    Returns:
        ESS per event element, shape `event`; use it for intervals and extreme quantiles.
    """
    a = _split(_as_draws(x))
    lo, hi = np.quantile(a, [_TAIL_PROB, 1.0 - _TAIL_PROB], axis=(0, 1))
    return np.minimum(_ess((a <= lo).astype(float)), _ess((a <= hi).astype(float)))


def summary(
    samples: Mapping[str, Any],
    *,
    sample_stats: Mapping[str, Any] | None = None,
    params: Sequence[str] | None = None,
    prob: float = 0.9,
) -> dict[str, dict[str, Any]]:
    """Per-site posterior summary and sampler health.

    Args:
        samples: site -> draws (chains, draws, *event), e.g. from `load_samples`.
        sample_stats: optional sampler statistics (from `load_sample_stats`) adding a
            "sampler" entry: divergences, mean acceptance, mean step size, mean steps.
        params: sites to summarise (default: all).
        prob: mass of the central interval reported as "lower"/"upper".

    Returns:
        site -> {"mean", "std", "median", "lower", "upper", "mcse_mean", "ess_bulk",
        "ess_tail", "r_hat"}, each of shape `event`; plus "sampler" -> {...} when
        `sample_stats` is given.

    Raises:
        ValueError: an unknown site in `params`, `prob` outside (0, 1), or fewer than 4 draws.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    names = list(samples) if params is None else list(params)
    unknown = [n for n in names if n not in samples]
    if unknown:
        raise ValueError(f"params {unknown} not in samples; available: {list(samples)}")
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        a = _as_draws(samples[name], name)
        flat = a.reshape(-1, *a.shape[2:])
        bulk = ess_bulk(a)
        std = flat.std(axis=0, ddof=1)
        lower, upper = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        out[name] = {
            "mean": flat.mean(axis=0),
            "std": std,
            "median": np.median(flat, axis=0),
            "lower": lower,
            "upper": upper,
            "mcse_mean": std / np.sqrt(bulk),
            "ess_bulk": bulk,
            "ess_tail": ess_tail(a),
            "r_hat": split_rhat(a),
        }
    if sample_stats is not None:
        stats = {k: np.asarray(v) for k, v in sample_stats.items()}
        out["sampler"] = {
            "draws": int(stats["diverging"].size),
            "divergences": int(stats["diverging"].sum()),
            "accept_prob": float(stats["accept_prob"].mean()),
            "step_size": float(stats["step_size"].mean()),
            "num_steps": float(stats["num_steps"].mean()),
        }
    return out


def format_summary(table: Mapping[str, Mapping[str, Any]], *, max_elements: int = 8) -> str:
    """A fixed-width text table of `summary`'s result (first `max_elements` per site)."""
    columns = ("mean", "std", "median", "lower", "upper", "ess_bulk", "ess_tail", "r_hat")
    lines = [f"{'':>16}" + "".join(f"{c:>10}" for c in columns)]
    for name, row in table.items():
        if name == "sampler":
            continue
        values = {c: np.atleast_1d(np.asarray(row[c])).ravel() for c in columns}
        size = values["mean"].size
        for i in range(min(size, max_elements)):
            label = name if size == 1 else f"{name}[{i}]"
            lines.append(f"{label:>16}" + "".join(f"{values[c][i]:>10.3g}" for c in columns))
        if size > max_elements:
            lines.append(f"{'':>16}  ... {size - max_elements} more elements")
    if "sampler" in table:
        s = table["sampler"]
        lines.append(
            f"divergences: {s['divergences']} / {s['draws']}, mean accept prob "
            f"{s['accept_prob']:.3f}, mean step size {s['step_size']:.3g}, "
            f"mean steps {s['num_steps']:.1f}"
        )
    return "\n".join(lines)
