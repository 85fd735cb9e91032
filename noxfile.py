"""Every command of the project: tests, lint, docs, builds, the demo, GPU runs and benchmarks.

`nox -s tests` is what CI runs (`.ci/run`); `nox -s demo` is the main job. Sessions that
create a virtual environment install everything they need from PyPI by themselves (with
uv), so they work on a fresh machine. `gpu` and `bench` run in the current interpreter
(`venv_backend="none"`) for accelerator machines that have no network.

Packages are discovered from `packages/*/pyproject.toml`; their order and the fmt-*
dependencies between them are read from each package's `[project.dependencies]`.
"""

from __future__ import annotations

import os
import pathlib
import sys

import nox

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "scripts"))
import workspace  # scripts/workspace.py: package discovery, shared with CI

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = pathlib.Path(__file__).resolve().parent
DEVICE_COUNTS = [1, 2, 8]


PACKAGES = workspace.read_packages(ROOT)


def _jax_env(devices: int | None = None) -> dict[str, str]:
    env = {
        "JAX_PLATFORMS": "cpu",
        # Compiles are the slow part on small CPUs; share them across sessions and runs.
        "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".cache" / "jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        "MPLBACKEND": "Agg",
    }
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _install_workspace(session: nox.Session, names: list[str], *, extras: str = "") -> None:
    """Editable installs of workspace packages, so edits are seen without reinstalling."""
    args = []
    for n in names:
        args += ["-e", f"{PACKAGES[n]['path']}{extras}"]
    session.install(*args)


def _check_imports(session: nox.Session, names: list[str]) -> None:
    """Import every module of each package with only its runtime dependencies installed."""
    code = (
        "import importlib, pkgutil, sys\n"
        "for name in sys.argv[1:]:\n"
        "    pkg = importlib.import_module(name)\n"
        "    for mod in pkgutil.walk_packages(pkg.__path__, name + '.'):\n"
        "        importlib.import_module(mod.name)\n"
        "    print('imported', name, pkg.__version__)\n"
    )
    session.run("python", "-c", code, *[PACKAGES[n]["import"] for n in names])


# Compiling dominates the tests and XLA compiles on one thread: one pytest worker per core
# (up to 4), each taking whole files so module-scoped compiled fixtures are built once.
WORKERS = max(1, min(4, os.cpu_count() or 1))
PYTEST_PLUGINS = ("pytest-xdist>=3.5",)


def _pytest(session: nox.Session, *args: str, env: dict[str, str]) -> None:
    parallel = ["-n", str(WORKERS), "--dist", "loadfile"] if WORKERS > 1 else []
    session.run("python", "-m", "pytest", *parallel, *args, *session.posargs, env=env)


def _integration_tests_present() -> bool:
    return any((ROOT / "integration_tests").glob("test_*.py"))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """CI's command: lint, every package's unit tests, multidevice at 2 and 8, integration.

    At one device the `multidevice` tests are left to the 2- and 8-device runs that follow:
    on a mesh of one device a sharded == single-device comparison compares a program with
    itself (~3 min of compiles on 2 cores). `nox -s unit-<package>` and `nox -s gpu` run
    them at one device too.
    """
    lint(session)
    names = list(PACKAGES)
    _install_workspace(session, names, extras="[test]")
    session.install(*PYTEST_PLUGINS)
    for name in names:
        session.log(f"unit tests of {PACKAGES[name]['dist']} (multidevice: at 2 and 8 below)")
        _pytest(session, "-m", "not multidevice", _test_dir(name), env=_jax_env(1))
    if _integration_tests_present():
        session.log("integration tests at 1 device (multidevice: at 2 and 8 below)")
        _pytest(session, "-m", "not multidevice", "integration_tests", env=_jax_env(1))
    for devices in (2, 8):
        _multidevice_runs(session, devices)
    _multiprocess_run(session)


def _test_dir(name: str) -> str:
    return f"{PACKAGES[name]['path']}/tests"


def _multidevice_dirs() -> list[str]:
    """Test folders holding `multidevice` tests (pytest exits 5 on a folder with none)."""
    dirs = [_test_dir(n) for n in PACKAGES]
    if _integration_tests_present():
        dirs.append("integration_tests")
    return [d for d in dirs if any("multidevice" in f.read_text() for f in (ROOT / d).glob("*.py"))]


def _multidevice_runs(session: nox.Session, devices: int) -> None:
    # One pytest per folder: each package's conftest sets its own precision (x64 or not).
    for folder in _multidevice_dirs():
        session.log(f"multidevice tests of {folder} at {devices} fake CPU devices")
        _pytest(session, "-m", "multidevice", folder, env=_jax_env(devices))


def _make_unit_session(name: str):
    def unit(session: nox.Session) -> None:
        closure = workspace.closure(PACKAGES, name)
        # Runtime dependencies only first: an import that the package does not declare fails
        # here even when a test extra would happen to provide it.
        _install_workspace(session, closure)
        _check_imports(session, closure)
        _install_workspace(session, [name], extras="[test]")
        session.install(*PYTEST_PLUGINS)
        _pytest(session, _test_dir(name), env=_jax_env(1))

    unit.__doc__ = (
        f"{PACKAGES[name]['dist']} alone, with only its declared dependencies "
        f"({', '.join('fmt-' + d for d in PACKAGES[name]['deps']) or 'no fmt packages'})."
    )
    return unit


for _name in PACKAGES:
    # One interpreter per session; CI's matrix picks it with `--force-python 3.1x`.
    nox.session(name=f"unit-{_name}")(_make_unit_session(_name))


@nox.session
@nox.parametrize("devices", DEVICE_COUNTS)
def multidevice(session: nox.Session, devices: int) -> None:
    """The `multidevice` tests of every package and the integration suite at N fake devices."""
    _install_workspace(session, list(PACKAGES), extras="[test]")
    session.install(*PYTEST_PLUGINS)
    _multidevice_runs(session, devices)


MULTIPROCESS_CHECK = "integration_tests/multiprocess/check_multiprocess.py"


def _multiprocess_run(session: nox.Session) -> None:
    # Named by path: the file is not a test_*.py, so the device-count runs skip it.
    session.log("2 processes x 2 fake CPU devices (jax.distributed) against 1 process x 4")
    session.run("python", "-m", "pytest", MULTIPROCESS_CHECK, *session.posargs, env=_jax_env())


@nox.session
def multiprocess(session: nox.Session) -> None:
    """Forward model and resumed sampling on 2 local processes joined by jax.distributed."""
    _install_workspace(session, list(PACKAGES), extras="[test]")
    _multiprocess_run(session)


NOTEBOOK_PLUGINS = ("nbmake>=1.5", "ipykernel>=6", "matplotlib>=3.8")
# Not part of `tests`: a cold run of the lensing notebook compiles a NUTS sampler twice
# (5-8 minutes on 2 cores), which would push `tests` past its 20-minute budget; CI runs it
# as its own job (.github/workflows/ci.yml). The timeout is per notebook and leaves room
# for a cold compilation cache.
NOTEBOOK_TIMEOUT_S = 600


def _notebooks_run(session: nox.Session) -> None:
    """Execute every notebook in notebooks/ top to bottom (nbmake); outputs are not saved."""
    _install_workspace(session, ["lensing"], extras="[infer]")
    session.install(*NOTEBOOK_PLUGINS)
    session.log("notebooks/ executed with nbmake")
    session.run(
        "python", "-m", "pytest", "--nbmake", f"--nbmake-timeout={NOTEBOOK_TIMEOUT_S}",
        "notebooks/", *session.posargs, env=_jax_env(),
    )  # fmt: skip


@nox.session
def notebooks(session: nox.Session) -> None:
    """The notebooks of notebooks/, run as a user would (workspace + lensing[infer])."""
    _install_workspace(session, list(PACKAGES), extras="[test]")
    _notebooks_run(session)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the package sources (not strict yet)."""
    _install_workspace(session, list(PACKAGES))
    session.install("mypy>=1.10")
    srcs = [f"{p['path']}/src" for p in PACKAGES.values()]
    session.run("mypy", "--ignore-missing-imports", "--no-strict-optional", *srcs)


@nox.session
def build(session: nox.Session) -> None:
    """sdist + wheel of each package; each wheel installed alone in a fresh venv and imported."""
    session.install("uv>=0.4", "packaging>=24")
    dist = ROOT / "dist"
    if dist.exists():
        for f in dist.iterdir():
            f.unlink()
    for pkg in PACKAGES.values():
        # uv builds the sdist first and the wheel from it, so the sdist is tested too.
        session.run("uv", "build", pkg["path"], "--out-dir", str(dist))
    session.run("python", str(ROOT / "scripts" / "check_dists.py"), str(dist), *PACKAGES)
    tmp = pathlib.Path(session.create_tmp())
    for name, pkg in PACKAGES.items():
        wheel = next(dist.glob(f"{pkg['import']}-*.whl"))
        venv = tmp / f"venv-{name}"
        session.run("uv", "venv", "--quiet", "--python", sys.executable, str(venv))
        py = str(venv / "bin" / "python")
        # fmt-* dependencies come from the wheels just built, everything else from PyPI.
        session.run(
            "uv", "pip", "install", "--quiet", "--python", py, "--find-links", str(dist), str(wheel)
        )
        session.run(
            py, "-c", f"import {pkg['import']} as m; print(m.__name__, m.__version__, m.__file__)"
        )


@nox.session
def docs(session: nox.Session) -> None:
    """mkdocs-material + mkdocstrings site, strict (warnings are errors)."""
    _install_workspace(session, list(PACKAGES))
    session.install("mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.25")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def tutorials(session: nox.Session) -> None:
    """The code of docs/tutorials/*.md runs as written (minutes of compiling: not in tests)."""
    _install_workspace(session, list(PACKAGES), extras="[test]")
    session.install("matplotlib>=3.8")
    check = "integration_tests/docs_tutorials_check.py"
    session.run("python", "-m", "pytest", check, *session.posargs, env=_jax_env())


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main job: field-level lensing inference on CPU (--quick), results in output/.

    `scripts/run_lensing_model.py --quick`: a synthetic κ map from a known truth, Ω_c and σ8
    and the whole initial field sampled (NUTS, resumable), κ maps, C_ℓ against Limber, the
    corner plot with the truth, traces, diagnostics and summary.txt in output/. Running it
    again continues the run, or re-plots it when it is complete. Extra arguments go to the
    script (`nox -s demo -- --batch-count 4` extends the chain).
    """
    needed = set(workspace.closure(PACKAGES, "lensing")) | set(workspace.closure(PACKAGES, "infer"))
    _install_workspace(session, [n for n in PACKAGES if n in needed])  # compsep is not needed
    session.install("matplotlib>=3.8")
    session.run(
        "python", "scripts/run_lensing_model.py", "--quick", "--output-dir", "output",
        *session.posargs, env=_jax_env(),
    )  # fmt: skip


def _current_interpreter_env() -> dict[str, str]:
    # GPU hosts have no network: packages are imported straight from their sources.
    srcs = [str(ROOT / p["path"] / "src") for p in PACKAGES.values()]
    path = os.pathsep.join([*srcs, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".cache" / "jax")}


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """Multidevice and integration suites on the machine's real accelerators (no venv)."""
    env = _current_interpreter_env()
    for folder in _multidevice_dirs():
        session.run("python", "-m", "pytest", "-m", "multidevice or gpu", folder, env=env)
    if _integration_tests_present():
        session.run("python", "-m", "pytest", "integration_tests", *session.posargs, env=env)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks in the current interpreter; tables go to benchmarks/results/."""
    env = _current_interpreter_env()
    for script in sorted((ROOT / "benchmarks").glob("[!_]*.py")):  # _*.py: shared helpers
        session.run("python", str(script), *session.posargs, env=env)
