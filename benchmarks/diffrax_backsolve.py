"""How far diffrax's continuous adjoint (`Backsolve()` on the `DiffraxODE` path) is from
the discrete gradient, as the ODE steps shrink (float64, CPU or GPU).

`Checkpointed()` differentiates the discretised forward run exactly; `BacksolveAdjoint`
integrates the continuous adjoint ODE backwards and differs from it by truncation error.
The CIC force is only piecewise linear in the positions (its Jacobian jumps where a
particle crosses a cell face), so both converge to the continuous gradient at first order
only, whatever the solver order or tolerance. The problem is the gradient test's (8³,
64 Mpc/h, 3 intervals a = 0.1 → 1, 2LPT start, loss Σδ² + 10⁻³Σp²); printed: relative
difference of the white-noise and Ω_c gradients, and the time of both gradients.

Usage: python benchmarks/diffrax_backsolve.py [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fmt_cosmo import Planck18  # noqa: E402
from fmt_dynamics import (  # noqa: E402
    Backsolve,
    Checkpointed,
    DiffraxODE,
    density_from_displacement,
    lpt,
    nbody,
)
from fmt_fields import linear_field, white_noise  # noqa: E402

N, BOX = 8, 64.0
A = np.linspace(0.1, 1.0, 4)


def pid(rtol, solver=None):
    controller = diffrax.PIDController(rtol=rtol, atol=rtol)
    return DiffraxODE(stepsize_controller=controller, **({"solver": solver} if solver else {}))


CONFIGS = {
    "Tsit5, 1 step per interval": DiffraxODE(substeps=1),
    "Tsit5, 4 steps": DiffraxODE(substeps=4),
    "Tsit5, 16 steps": DiffraxODE(substeps=16),
    "Tsit5, 64 steps": DiffraxODE(substeps=64),
    "Tsit5, adaptive rtol 1e-8": pid(1e-8),
    "Tsit5, adaptive rtol 1e-10": pid(1e-10),
}


def loss_for(solver, adjoint):
    def loss(noise, omega_c):
        cosmo = Planck18(Omega_c=omega_c)
        power = lambda k: 2.0e4 * (k / 0.02) / (1.0 + (k / 0.02) ** 2.5)  # noqa: E731
        dx, p = lpt(cosmo, linear_field(noise, power, BOX), A[0], order=2)
        out = nbody(cosmo, (dx, p), A, solver=solver, adjoint=adjoint).state
        return jnp.sum(density_from_displacement(out.displacement) ** 2) + 1e-3 * jnp.sum(
            out.momentum**2
        )

    return loss


def rel(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args()
    noise = white_noise(jax.random.key(3), (N, N, N))
    omega_c = jnp.asarray(Planck18().Omega_c)
    machine = f"{platform.node() or 'host'}, {jax.devices()[0].device_kind}, jax {jax.__version__}"
    print(f"# diffrax BacksolveAdjoint vs the discrete gradient ({machine})")
    print("| ODE steps | noise gradient | Ω_c gradient | time (s) |\n|---|---|---|---|")
    rows = []
    for name, solver in CONFIGS.items():
        both = jax.jit(
            lambda n, o, s=solver: [
                jax.grad(loss_for(s, adj), argnums=(0, 1))(n, o)
                for adj in (Checkpointed(), Backsolve())
            ]
        )
        t0 = time.perf_counter()
        (g, o), (gb, ob) = jax.block_until_ready(both(noise, omega_c))
        row = {"config": name, "noise": rel(gb, g), "omega_c": rel(ob, o)}
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"| {name} | {row['noise']:.2e} | {row['omega_c']:.2e} | {row['seconds']:.1f} |")
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diffrax_backsolve.json").write_text(json.dumps({"machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
