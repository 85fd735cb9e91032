"""scripts/run_lensing_model.py (what `nox -s demo` runs): end to end with the --quick model
and a very short chain, resumed by re-running the command; its plots, summary and errors.

Whether the truth lies in the 95% interval is not asserted here: 10 draws without warmup
(no step-size adaptation: its compile is ~20 s on 2 cores) say nothing about it.
`nox -s demo` reports it for the full --quick run (README)."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "run_lensing_model.py"
FIGURES = ("kappa_maps.png", "power_spectrum.png", "corner.png", "traces.png")
SHORT = ["--quick", "--num-warmup", "0", "--num-samples", "5", "--max-tree-depth", "3"]


def _load_script():
    spec = importlib.util.spec_from_file_location("run_lensing_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


def test_quick_run_resumes_and_writes_everything(script, tmp_path, capsys):
    out = ["--output-dir", str(tmp_path)]
    first = script.main([*SHORT, *out, "--batch-count", "1", "--n-samples-plot", "4"])
    assert "--num-warmup 0: no adaptation" in capsys.readouterr().err
    assert first["draws_per_chain"] == 5
    observation = dict(np.load(tmp_path / "observation.npz"))
    # re-running continues: one more batch, the same observation
    second = script.main([*SHORT, *out, "--batch-count", "2", "--n-samples-plot", "4"])
    assert second["draws_per_chain"] == 10
    again = dict(np.load(tmp_path / "observation.npz"))
    for k, v in observation.items():
        np.testing.assert_array_equal(v, again[k])
    # shape noise was added: observed ≠ true, and κ is not zero
    assert np.std(observation["kappa_true"]) > 0
    assert not np.allclose(observation["kappa_obs"], observation["kappa_true"])
    for name in (*FIGURES, "diagnostics.txt", "summary.txt", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    written = json.loads((tmp_path / "summary.json").read_text())
    for name in ("Omega_c", "sigma8"):
        r = written["parameters"][name]
        lo, hi = r["interval_95"]
        # (without warmup the chain may not move: then lo == mean == hi up to rounding)
        assert lo - 1e-9 <= r["mean"] <= hi + 1e-9
        assert r["truth_inside_95"] == (lo <= r["truth"] <= hi)
    text = (tmp_path / "summary.txt").read_text()
    assert "95% credible interval" in text and "sigma8" in text
    # a different run in the same directory is refused, naming the setting
    with pytest.raises(SystemExit, match="n_gal"):
        script.main([*SHORT, *out, "--n-gal", "30"])
    # plot only: re-plots from the saved run without sampling
    replot = script.main(["--output-dir", str(tmp_path), "--plot-only", "--n-samples-plot", "4"])
    assert replot["draws_per_chain"] == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--box-shape", "8", "8"], "--box-shape takes 1 or 3 values"),
        (["--observer-position", "0.5", "0.5", "1.5"], "--observer-position"),
        (["--nside", "12"], "--nside must be a power of two"),
        (["--num-samples", "0"], "--num-samples"),
        (["--sampler", "MCLMC", "--backend", "numpyro"], "MCLMC needs --backend blackjax"),
    ],
)
def test_bad_options_are_named(script, args, message, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--quick", *args])
    assert message in capsys.readouterr().err


def test_plot_only_without_a_run(script, tmp_path):
    with pytest.raises(SystemExit, match="--plot-only needs a run"):
        script.main(["--output-dir", str(tmp_path / "nothing"), "--plot-only"])
