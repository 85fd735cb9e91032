"""Reference numbers from fgbuster for fmt-compsep's equivalence tests and benchmark.

fgbuster (https://github.com/fgbuster/fgbuster, GPL-3, not on PyPI) is run from a source
checkout given on the command line, in an environment with numpy, scipy, sympy, healpy,
numdifftools and astropy (no JAX needed). Its `observation_helpers` module (pysm3,
cmbdb, pandas: instrument tables only) is replaced by a one-function stand-in, since the
instrument here is a namespace with `frequency` and `depth_p`.

Inputs are drawn by `fmt_compsep/_src/simulate.py` (numpy only, loaded by path), so the
tests rebuild exactly the same maps. Two problems, nside 16, 9 frequencies, Q/U,
CMB + dust + synchrotron:

* global: β_d, T_d, β_s (3 parameters);
* patches: β_d on nside-2 patches, T_d and β_s global (50 parameters).

For each: logL and its gradient at test points (fgbuster's analytic `logL_dB`), SEDs,
the fgbuster fits (`basic_comp_sep` / `multi_res_comp_sep`) with their timings, the
true optimum (fgbuster's fit polished by Newton steps on fgbuster's own gradient with a
numdifftools Jacobian), Σ and the CMB map there. Only numbers are written:
`fgbuster_reference.npz` and `fgbuster_timings.json` next to this script.

Usage:
    python make_fgbuster_reference.py --fgbuster-src PATH/TO/fgbuster/checkout
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import platform
import statistics
import sys
import time
import types

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SIMULATE = HERE.parents[1] / "src" / "fmt_compsep" / "_src" / "simulate.py"
NSIDE = 16
NSIDE_PATCH = 2


def load_simulate():
    spec = importlib.util.spec_from_file_location("fmt_compsep_simulate", SIMULATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_fgbuster(src: pathlib.Path):
    """Import fgbuster's algebra, components, mixing matrix and recipes without __init__."""
    pkg = types.ModuleType("fgbuster")
    pkg.__path__ = [str(src / "fgbuster")]
    sys.modules["fgbuster"] = pkg
    helpers = types.ModuleType("fgbuster.observation_helpers")
    helpers.standardize_instrument = lambda instrument: instrument
    sys.modules["fgbuster.observation_helpers"] = helpers
    import fgbuster.algebra as alg
    import fgbuster.component_model as cm
    import fgbuster.mixingmatrix as mm
    import fgbuster.separation_recipes as rec

    return alg, cm, mm, rec


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def polish(fun, jac, x, numdifftools, steps=6):
    """Newton steps on fgbuster's gradient with a numdifftools Jacobian (the Hessian)."""
    for _ in range(steps):
        g = jac(x)
        h = numdifftools.Jacobian(jac, step=1e-6 * np.maximum(1.0, np.abs(x)))(x)
        h = 0.5 * (h + h.T)
        dx = -np.linalg.solve(h, g)
        x = x + dx
    g = jac(x)
    h = numdifftools.Jacobian(jac, step=1e-6 * np.maximum(1.0, np.abs(x)))(x)
    decrement = 0.5 * g @ np.linalg.solve(0.5 * (h + h.T), g)
    return x, decrement


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fgbuster-src", type=pathlib.Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import healpy as hp
    import numdifftools
    import scipy

    sim = load_simulate()
    alg, cm, mmod, rec = load_fgbuster(args.fgbuster_src)
    freqs, depth = sim.FREQUENCIES, sim.DEPTH_P
    instrument = types.SimpleNamespace(frequency=freqs, depth_p=depth)
    components = [cm.CMB(), cm.Dust(sim.DUST_NU0), cm.Synchrotron(sim.SYNC_NU0)]
    mixing = mmod.MixingMatrix(*components)
    assert mixing.params == ["Dust.beta_d", "Dust.temp", "Synchrotron.beta_pl"], mixing.params
    amps = sim.sky_amplitudes(NSIDE, seed=0)
    noise = sim.noise_maps(NSIDE, sim.noise_std_from_depth(depth, NSIDE), seed=1)
    out: dict[str, np.ndarray] = {}
    timings: dict[str, object] = {
        "machine": f"{cpu_name()}, {__import__('os').cpu_count()} cores",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "problem": f"nside {NSIDE}, 9 frequencies, Q/U, CMB + dust + synchrotron",
    }

    # ---- SEDs ---------------------------------------------------------------------------
    nu = np.array([20.0, 30.0, 90.0, 150.0, 353.0, 500.0])
    out["sed_nu"] = nu
    out["sed_dust_kcmb"] = cm.Dust(150.0).eval(nu, 1.6, 19.0)
    out["sed_dust_krj"] = cm.Dust(150.0, units="K_RJ").eval(nu, 1.6, 19.0)
    out["sed_sync_running"] = cm.Synchrotron(30.0, running=None, nu_pivot=80.0).eval(nu, -3.1, 0.05)
    out["sed_cmb_krj"] = cm.CMB(units="K_RJ").eval(nu)
    out["sed_tsz_ukcmb"] = cm.ThermalSZ().eval(nu)
    # fgbuster's FreeFree cannot be built (sympy parse error in its expression): no reference.
    band_nu = np.linspace(80.0, 100.0, 11)
    band_w = np.exp(-0.5 * ((band_nu - 90.0) / 5.0) ** 2)
    band_w /= np.trapezoid(band_w, band_nu * 1e9)
    band2_nu = np.linspace(130.0, 170.0, 21)
    band2_w = np.ones_like(band2_nu) / np.trapezoid(np.ones_like(band2_nu), band2_nu * 1e9)
    bands = [(band_nu, band_w), (band2_nu, band2_w)]
    out["band_nu_0"], out["band_w_0"], out["band_nu_1"], out["band_w_1"] = (
        band_nu,
        band_w,
        band2_nu,
        band2_w,
    )
    out["sed_dust_bandpass"] = cm.Dust(150.0).eval(bands, 1.6, 19.0)

    # ---- global problem -----------------------------------------------------------------
    a_true = mixing.eval(freqs, *sim.TRUE_BETA)
    data = sim.observe(a_true[None], amps) + noise
    pw = rec._get_prewhiten_factors(instrument, data.shape, NSIDE)  # (2, n_freq)
    a_ev, a_db_ev, comp_of_db, _x0, _ = rec._A_evaluator(
        components, instrument, prewhiten_factors=pw
    )
    comp_of_db = [alg._turn_into_slice_if_integer(c) for c in comp_of_db]
    d_pw = pw * data.T  # (npix, 2, n_freq)
    fun, jac, _ = alg._build_bound_inv_logL_and_logL_dB(a_ev, d_pw, None, a_db_ev, comp_of_db)
    x_test = np.array([sim.TRUE_BETA, [1.50, 18.0, -2.9], [1.60, 22.0, -3.1]])
    out["global_x_test"] = x_test
    out["global_logL"] = np.array([alg.logL(a_ev(x), d_pw, None) for x in x_test])
    out["global_grad"] = np.array(
        [alg.logL_dB(a_ev(x), d_pw, None, a_db_ev(x), comp_of_db) for x in x_test]
    )

    def run_global(method):
        kw = {} if method is None else {"method": method}
        return rec.basic_comp_sep(components, instrument, data, **kw)

    for method in (None, "TNC"):
        res, times = timed(lambda m=method: run_global(m), args.repeats)
        name = "default" if method is None else method
        out[f"global_fit_x_{name}"] = res.x
        out[f"global_fit_logL_{name}"] = np.array(-fun(res.x))
        timings[f"global_fit_{name}_s"] = times
        timings[f"global_fit_{name}_nfev"] = int(res.nfev)
    x_opt, dec = polish(fun, jac, out["global_fit_x_TNC"].copy(), numdifftools)
    out["global_x_opt"], out["global_decrement"] = x_opt, np.array(dec)
    out["global_logL_opt"] = np.array(-fun(x_opt))
    s, (_u_e_v, _) = alg.Wd(a_ev(x_opt), d_pw, None, return_svd=True)
    out["global_cmb_opt"] = s[..., 0].T  # (2, npix), µK_CMB
    fisher = alg.fisher_logL_dB_dB(a_ev(x_opt), s, a_db_ev(x_opt), comp_of_db)
    out["global_sigma_opt"] = np.linalg.inv(fisher)

    rng = np.random.default_rng(5)
    xs = sim.TRUE_BETA + 1e-3 * rng.standard_normal((200, 3))
    t0 = time.perf_counter()
    for x in xs:
        fun(x)
        jac(x)
    timings["global_value_and_grad_s"] = (time.perf_counter() - t0) / len(xs)

    # ---- patch problem: beta_d on nside-2 patches ----------------------------------------
    ids = np.rint(hp.ud_grade(np.arange(hp.nside2npix(NSIDE_PATCH), dtype=float), NSIDE)).astype(
        int
    )
    beta_d_true = sim.beta_d_patches(NSIDE_PATCH, seed=2)
    a_pix = mixing.eval(freqs, beta_d_true[ids], sim.TRUE_BETA[1], sim.TRUE_BETA[2])  # (npix, F, C)
    data_p = sim.observe(a_pix, amps) + noise
    patch_ids = [ids, np.zeros_like(ids), np.zeros_like(ids)]
    n_clusters = [ii.max() + 1 for ii in patch_ids]

    def unpack(x):
        maps, i = [], 0
        for n, ii in zip(n_clusters, patch_ids, strict=True):
            maps.append(x[i : i + n][ii].reshape(-1, 1))
            i += n
        return maps

    pwf = rec._get_prewhiten_factors(instrument, data_p.shape, NSIDE)
    inv_n = np.zeros(pwf.shape + pwf.shape[-1:])
    np.einsum("...ii->...i", inv_n)[:] = pwf**2
    a_ev_p = mixing.evaluator(freqs, unpack)
    a_db_ev_p = mixing.diff_evaluator(freqs, unpack)
    comp_of_db_p = [
        rec.alg._turn_into_slice_if_integer(c)
        for c in zip(mixing.comp_of_dB, patch_ids, strict=False)
    ]
    fun_p, jac_p, _ = alg._build_bound_inv_logL_and_logL_dB(
        a_ev_p, data_p.T, inv_n, a_db_ev_p, comp_of_db_p
    )
    n_x = sum(n_clusters)
    x_base = np.concatenate([beta_d_true, sim.TRUE_BETA[1:]])
    x_test_p = np.array(
        [x_base, x_base + 0.01 * np.sin(np.arange(n_x)), np.r_[np.full(48, 1.54), 20.0, -3.0]]
    )
    out["patch_ids"] = ids
    out["patch_beta_d_true"] = beta_d_true
    out["patch_x_test"] = x_test_p
    out["patch_logL"] = np.array([-fun_p(x) for x in x_test_p])
    out["patch_grad"] = np.array([-jac_p(x) for x in x_test_p])

    def run_patch(method):
        kw = {} if method is None else {"method": method}
        return rec.multi_res_comp_sep(components, instrument, data_p, [NSIDE_PATCH, 0, 0], **kw)

    for method in (None, "TNC", "L-BFGS-B"):
        res, times = timed(lambda m=method: run_patch(m), max(1, args.repeats - 1))
        name = "default" if method is None else method
        x_fit = np.concatenate([np.atleast_1d(v) for v in res.x])
        out[f"patch_fit_x_{name}"] = x_fit
        out[f"patch_fit_logL_{name}"] = np.array(-fun_p(x_fit))
        timings[f"patch_fit_{name}_s"] = times
        timings[f"patch_fit_{name}_nfev"] = int(res.nfev)
    x_opt_p, dec_p = polish(fun_p, jac_p, out["patch_fit_x_TNC"].copy(), numdifftools)
    out["patch_x_opt"], out["patch_decrement"] = x_opt_p, np.array(dec_p)
    out["patch_logL_opt"] = np.array(-fun_p(x_opt_p))
    s_p = alg.Wd(a_ev_p(x_opt_p), data_p.T, inv_n)  # (npix, 2, C)
    out["patch_cmb_opt"] = s_p[..., 0].T
    # Σ: fgbuster's semi-analytic Fisher per patch (3 x 3 over the patch's pixels), assembled
    # over the 50 parameters: β_d of patch i couples to T_d and β_s through patch i only.
    fisher_p = np.zeros((n_x, n_x))
    glob = [n_x - 2, n_x - 1]
    for i in range(n_clusters[0]):
        sel = ids == i
        beta_i = (x_opt_p[i], x_opt_p[-2], x_opt_p[-1])
        a_i = mixing.eval(freqs, *beta_i)
        a_db_i = mixing.diff(freqs, *beta_i)
        s_i = alg.Wd(a_i, data_p.T[sel], inv_n)
        g_i = alg.fisher_logL_dB_dB(a_i, s_i, a_db_i, list(mixing.comp_of_dB), inv_n)
        idx = [i, *glob]
        fisher_p[np.ix_(idx, idx)] += g_i
    out["patch_sigma_opt"] = np.linalg.inv(fisher_p)
    xs = x_base + 1e-3 * rng.standard_normal((50, n_x))
    t0 = time.perf_counter()
    for x in xs:
        fun_p(x)
        jac_p(x)
    timings["patch_value_and_grad_s"] = (time.perf_counter() - t0) / len(xs)
    timings["patch_fit_logL_gap_to_opt"] = {
        k: float(out["patch_logL_opt"] - out[f"patch_fit_logL_{k}"])
        for k in ("default", "TNC", "L-BFGS-B")
    }
    timings["global_fit_logL_gap_to_opt"] = {
        k: float(out["global_logL_opt"] - out[f"global_fit_logL_{k}"]) for k in ("default", "TNC")
    }

    np.savez_compressed(HERE / "fgbuster_reference.npz", **out)
    (HERE / "fgbuster_timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    print(json.dumps(timings, indent=1))
    for k in ("global_decrement", "patch_decrement"):
        print(k, out[k])
    print("statistics median global TNC", statistics.median(timings["global_fit_TNC_s"]))


if __name__ == "__main__":
    main()
