"""Corner plot of posterior draws (matplotlib, from the optional `plot` extra)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["plot_posterior"]

PAIR_KINDS = ("kde", "scatter")
_MAX_COLUMNS = 12  # a corner plot of more panels is unreadable; select params instead
_KDE_GRID = 60
_KDE_LEVELS = (0.393, 0.865)  # mass inside the 1 and 2 sigma contours of a 2-D Gaussian


def _columns(
    samples: Mapping[str, Any], params: Sequence[str] | None
) -> tuple[list[str], np.ndarray, list[str]]:
    names = list(samples) if params is None else list(params)
    unknown = [n for n in names if n not in samples]
    if unknown:
        raise ValueError(f"params {unknown} not in samples; available: {list(samples)}")
    labels, cols, sites = [], [], []
    for name in names:
        a = np.asarray(samples[name], dtype=float)
        if a.ndim < 2:
            raise ValueError(f"samples[{name!r}] must have shape (chains, draws, ...)")
        flat = a.reshape(a.shape[0] * a.shape[1], -1)
        for i in range(flat.shape[1]):
            labels.append(name if flat.shape[1] == 1 else f"{name}[{i}]")
            cols.append(flat[:, i])
            sites.append(name)
    if len(cols) > _MAX_COLUMNS:
        raise ValueError(
            f"params give {len(cols)} columns, more than {_MAX_COLUMNS}; pass params= with "
            f"fewer or smaller sites (available: {list(samples)})"
        )
    return labels, np.stack(cols, axis=1), sites


def _kde2d(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian KDE on a grid, Scott's bandwidth, full covariance."""
    data = np.stack([x, y])
    n = data.shape[1]
    cov = np.cov(data) * n ** (-2.0 / 6.0) + 1e-12 * np.eye(2)
    inv = np.linalg.inv(cov)
    gx = np.linspace(x.min(), x.max(), _KDE_GRID)
    gy = np.linspace(y.min(), y.max(), _KDE_GRID)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.stack([xx.ravel(), yy.ravel()])
    stride = max(1, n // 2000)  # a subsample is plenty for contours
    d = grid[:, :, None] - data[:, None, ::stride]
    q = np.einsum("ipk,ij,jpk->pk", d, inv, d)
    density = np.exp(-0.5 * q).sum(axis=1).reshape(xx.shape)
    return xx, yy, density


def _levels(density: np.ndarray) -> list[float]:
    flat = np.sort(density.ravel())[::-1]
    cumulative = np.cumsum(flat) / flat.sum()
    levels = sorted({float(flat[np.searchsorted(cumulative, m)]) for m in _KDE_LEVELS})
    return levels if len(levels) > 1 else [levels[0] * 0.5, levels[0]]


def plot_posterior(
    samples: Mapping[str, Any],
    output_dir: str | pathlib.Path,
    *,
    params: Sequence[str] | None = None,
    truth: Mapping[str, Any] | None = None,
    pair_kind: str = "kde",
    filename: str = "corner.png",
    dpi: int = 120,
) -> pathlib.Path:
    """Write a corner plot (1-D histograms on the diagonal, pairs below) as a PNG.

    Args:
        samples: site -> draws (chains, draws, *event); vector sites give one column per
            element (at most 12 columns in all).
        output_dir: folder for the PNG (created if absent).
        params: sites to plot (default: all).
        truth: optional site -> true value, drawn as lines.
        pair_kind: "kde" (1 and 2 sigma contours of a Gaussian KDE) or "scatter".
        filename: name of the PNG inside `output_dir`.
        dpi: resolution.

    Returns:
        The path of the PNG written.

    Raises:
        ValueError: unknown `pair_kind` or site, or too many columns.
        ImportError: matplotlib is missing (install `fmt-infer[plot]`).
    """
    if pair_kind not in PAIR_KINDS:
        raise ValueError(f"pair_kind must be one of {PAIR_KINDS}, got {pair_kind!r}")
    labels, data, sites = _columns(samples, params)
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plot_posterior needs matplotlib: pip install 'fmt-infer[plot]'") from err

    truths: list[float | None] = [None] * len(labels)
    if truth is not None:
        offsets: dict[str, int] = {}
        for j, site in enumerate(sites):
            if site in truth:
                value = np.ravel(np.asarray(truth[site], dtype=float))
                i = offsets.get(site, 0)
                truths[j] = float(value[i] if value.size > 1 else value[0])
                offsets[site] = i + 1

    k = len(labels)
    fig, axes = plt.subplots(k, k, figsize=(2.2 * k + 0.5, 2.2 * k + 0.5), squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(data[:, i], bins=40, histtype="step", color="C0", density=True)
                ax.set_yticks([])
                if truths[i] is not None:
                    ax.axvline(truths[i], color="C3")
            elif pair_kind == "scatter":
                ax.scatter(data[:, j], data[:, i], s=2, alpha=0.3, color="C0", rasterized=True)
            else:
                xx, yy, density = _kde2d(data[:, j], data[:, i])
                ax.contour(xx, yy, density, levels=_levels(density), colors="C0")
            if i != j and truths[i] is not None and truths[j] is not None:
                ax.axvline(truths[j], color="C3", lw=0.8)
                ax.axhline(truths[i], color="C3", lw=0.8)
                ax.plot(truths[j], truths[i], "s", color="C3", ms=4)
            if i == k - 1:
                ax.set_xlabel(labels[j])
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
            elif j > 0:
                ax.set_yticklabels([])
    fig.tight_layout()
    out_dir = pathlib.Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / filename
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
