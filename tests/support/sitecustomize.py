"""Loaded at start-up by the Python subprocesses the tests start (tests/conftest.py puts
this folder on their PYTHONPATH): compile as the pytest process does (fast_compile.py)."""

try:
    import fast_compile

    fast_compile.install()
except ImportError:  # a subprocess without jax (or this folder) has nothing to compile
    pass
