import jax
import pytest

# Numbers are compared against float64 references in this package's tests.
jax.config.update("jax_enable_x64", True)

# colossus caches tables under ~/.colossus unless told not to; tests never write there.
# `settings.PERSISTENCE` is read as the default of `Cosmology(persistence=...)` when
# colossus.cosmology is first imported, so it must be set here, before any test module
# imports it; tests also pass `persistence=""` to `setCosmology` explicitly.
# (colossus.halo.concentration keeps its own 'rw' store; its tables are still computed
# from the cosmology but can only be written under settings.BASE_DIR, sent to a temporary
# folder removed at exit.)
try:
    import atexit
    import shutil
    import tempfile

    from colossus import settings as _colossus_settings

    _colossus_settings.PERSISTENCE = ""
    _colossus_settings.BASE_DIR = tempfile.mkdtemp(prefix="colossus-")
    atexit.register(shutil.rmtree, _colossus_settings.BASE_DIR, ignore_errors=True)
except ImportError:  # colossus is a test dependency; the tests that need it import it
    pass


def _colossus_cosmology(cosmo, **kwargs):
    """The same cosmology in colossus, made current, with no files written (persistence '')."""
    from colossus.cosmology import cosmology as ccosmo

    params = dict(
        flat=True,
        H0=100.0 * cosmo.h,
        Om0=float(cosmo.Omega_m),
        Ob0=cosmo.Omega_b,
        sigma8=cosmo.sigma8,
        ns=cosmo.n_s,
        Tcmb0=cosmo.T_cmb,
        Neff=cosmo.N_eff,
        relspecies=cosmo.include_radiation,
        persistence="",
    )
    params.update(kwargs)
    ref = ccosmo.Cosmology(name="fmt-test", **params)
    ccosmo.setCurrent(ref)
    return ref


@pytest.fixture(scope="session")
def colossus_cosmology():
    """`colossus_cosmology(cosmo, **colossus_kwargs)` -> the current colossus cosmology."""
    return _colossus_cosmology
