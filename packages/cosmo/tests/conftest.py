import jax

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
