"""The README's ten-line example runs as written and its numbers make sense."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
# On the largest scales the final power is linear: P ∝ σ8², so d ln P / d ln σ8 = 2 up to
# mild nonlinear coupling at k_min = 2π/128 h/Mpc (measured 2.0-2.1); accept [1.8, 2.4].
DLNP_DLNSIGMA8_RANGE = (1.8, 2.4)


def _example_code() -> str:
    text = README.read_text()
    section = text.split("## Ten lines", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README has no python block under '## Ten lines'"
    return blocks[0]


def test_readme_example_runs():
    code = _example_code()
    assert len([line for line in code.splitlines() if line.strip()]) <= 14
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    pk = np.asarray(namespace["pk"])
    grad = namespace["grad"]
    assert pk.ndim == 1 and np.all(np.isfinite(pk)) and np.all(pk[pk != 0] > 0)
    cosmo = namespace["fmt_cosmo"].Planck18()
    dlnp_dlns8 = float(grad.sigma8) * cosmo.sigma8 / float(pk[0])
    assert DLNP_DLNSIGMA8_RANGE[0] < dlnp_dlns8 < DLNP_DLNSIGMA8_RANGE[1], dlnp_dlns8
