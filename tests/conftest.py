"""Suite-wide test setup: JAX's key-reuse checker (DESIGN sec. 7), a compilation cache,
and how the suite is spread over pytest-xdist workers.

The checker is not switched on for the whole suite because ``tests/test_stag_hunt.py``
replays keys on purpose to test determinism.

Instead, test modules whose library code is expected to be key-clean (core, networks,
learner, runners, CLI) opt in with ``pytestmark = pytest.mark.usefixtures("key_reuse_check")``.
Set ``POWMARL_KEY_REUSE=1`` to turn the checker on for everything.

A per-session JAX compilation cache speeds up tests that compile the same programs; the
xdist workers and the subprocesses tests start inherit it from the controlling process.

Most tests compile a small program and run it briefly, so compiling is what they cost: the
suite compiles with most XLA optimisations off (``JAX_DISABLE_MOST_OPTIMIZATIONS=1``, also
inherited by subprocesses), which halves a small training's CPU time. Tests whose cost is
running (the matrix-game learning checks) or that compare against numbers recorded with the
optimised program (the golden runs) carry ``@pytest.mark.optimized`` and compile as users do.
Set ``JAX_DISABLE_MOST_OPTIMIZATIONS=0`` to run everything optimised. Compilations made
with them off also skip XLA:CPU's fusion emitters (``tests/support/fast_compile.py``, also
in subprocesses; ``POWMARL_FAST_COMPILE=0`` turns this off), and every run's init goes op
by op (``POWMARL_COMPILE_INIT=0``, bitwise the same state), so that its small kernels are
compiled once per worker.

``POWMARL_TEST_TIMES=FILE`` appends one JSON line per test (id, CPU seconds of the process
that ran it, wall seconds, setup included; seconds jax spent tracing, lowering and compiling,
and persistent-cache hits and misses; the xdist worker and whether the test compiled
optimised): CPU time is what to compare on a busy machine.

Workers (``-n auto`` in pyproject.toml): the whole suite (``make test``, ``pytest -q``, or
``-m slow``) runs on ``min(cores, 4)`` worker processes; a run that names test files or
ids runs in this one process (quicker to start for a single file). ``-n N`` on the command
line, or ``PYTEST_XDIST_AUTO_NUM_WORKERS=N``, chooses for yourself; ``-n 0`` turns it off.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

# A compilation cache shared by this test session and the subprocesses it starts: many
# tests compile the same small programs (set before jax is imported; removed at exit).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="powmarl-test-jax-cache-")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# every run's init op by op: its kernels are compiled once per process and shared by all
# the trainings a worker starts (bitwise the same state; powmarl.runners.members.init_program)
os.environ.setdefault("POWMARL_COMPILE_INIT", "0")

import json
import time

import jax
import pytest

if os.environ.get("POWMARL_KEY_REUSE") == "1":
    jax.config.update("jax_debug_key_reuse", True)

# faster compiles with optimisations off, here and in every Python subprocess (through
# tests/support/sitecustomize.py), so that in- and out-of-process runs compile alike
_SUPPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support")
sys.path.insert(0, _SUPPORT)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_SUPPORT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)
import fast_compile

fast_compile.install()

#: more workers than this gain little (the longest tests run ~1 min each) and cost memory
MAX_WORKERS = 4


@pytest.fixture
def key_reuse_check():
    """Run the test with JAX's key-reuse checker on: any reused PRNG key raises KeyReuseError."""
    with jax.debug_key_reuse(True):
        yield


#: the optimisation mode the suite runs in (JAX_DISABLE_MOST_OPTIMIZATIONS), and the one
#: the previous test of this worker compiled in
_SUITE_DISABLES = jax.config.read("jax_disable_most_optimizations")
_last_mode: list[bool] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """``@pytest.mark.optimized``: compile this test's programs with XLA's optimisations on.

    Set in a setup hook rather than a fixture, so that the test's module-scoped fixtures
    (a training several tests share), which pytest sets up before any function fixture,
    compile in the test's mode too. jax's in-memory caches are not keyed by the mode (a
    program or an op-by-op kernel compiled by an earlier test would be reused as it was
    compiled: a module fixture built right after an optimised test rounded differently
    from the same run in a subprocess), so they are cleared whenever a worker switches
    between modes; the persistent cache is keyed by the compile options and stays."""
    optimized = item.get_closest_marker("optimized") is not None
    if _last_mode and _last_mode[-1] != optimized:
        jax.clear_caches()
    _last_mode[:] = [optimized]
    jax.config.update("jax_disable_most_optimizations", _SUITE_DISABLES and not optimized)


#: seconds jax spent per compile stage in this process, and persistent-cache hits/misses
#: (``POWMARL_TEST_TIMES``): what makes a test slow is mostly which programs it compiles
_COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
    "/jax/compilation_cache/cache_hits": "cache_hits",
    "/jax/compilation_cache/cache_misses": "cache_misses",
}
_compile_totals = dict.fromkeys(_COMPILE_EVENTS.values(), 0.0)


def _count_compile_event(event, duration=1.0, **_):
    name = _COMPILE_EVENTS.get(event)
    if name is not None:
        _compile_totals[name] += duration


if os.environ.get("POWMARL_TEST_TIMES"):
    jax.monitoring.register_event_duration_secs_listener(_count_compile_event)
    jax.monitoring.register_event_listener(_count_compile_event)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With ``POWMARL_TEST_TIMES`` set, log each test's CPU and wall seconds and its compile
    seconds per stage (module docstring)."""
    path = os.environ.get("POWMARL_TEST_TIMES")
    cpu, wall = time.process_time(), time.perf_counter()
    before = dict(_compile_totals)
    yield
    if path:
        row = {"id": item.nodeid, "cpu": round(time.process_time() - cpu, 2),
               "wall": round(time.perf_counter() - wall, 2),
               "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
               "optimized": bool(_last_mode and _last_mode[-1])}  # fmt: skip
        row.update({k: round(v - before[k], 2) for k, v in _compile_totals.items()})
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core (at most MAX_WORKERS) for the whole suite, none
    (this process) when the command line names what to run."""
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if chosen:
        return int(chosen)
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return 0
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadgroup``, keep the tests of a module that share a module-scoped
    fixture (one training serving several tests) on one worker, so it is built once, and
    the ``optimized`` tests on one worker; every other test is handed to whichever worker
    is free. Runs before xdist reads the marks. The long tests (``optimized``) come first."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if item.get_closest_marker("optimized") is not None:
            # one worker for every optimised test: they share the optimised op-by-op init
            # kernels (measured: 230 s of test wall time spread over two workers, 149 s on one)
            item.add_marker(pytest.mark.xdist_group("optimized"))
        elif _shares_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # the optimised tests are the long, run-bound ones: hand them out first, so that no
    # worker starts a minutes-long training while the others have run out of work
    items.sort(key=lambda item: item.get_closest_marker("optimized") is None)


def pytest_configure(config):
    """Refuse to start where ``--dist loadgroup`` cannot group: pytest 9.2 with pytest-xdist
    up to 3.8 drops the group suffix xdist writes into each node id
    (pytest-dev/pytest-xdist#1386), and the suite then runs, silently, ~40% longer (measured
    2026-12-03: test_learner's op-by-op kernels compiled on both workers, and jax's caches
    cleared at every switch between optimised and unoptimised tests)."""
    if hasattr(config, "workerinput") or config.getoption("dist", "no") != "loadgroup":
        return
    from importlib.metadata import version

    def major_minor(package):
        return tuple(int(part) for part in version(package).split(".")[:2])

    if major_minor("pytest") >= (9, 2) and major_minor("pytest-xdist") <= (3, 8):
        raise pytest.UsageError(
            f"pytest {version('pytest')} with pytest-xdist {version('pytest-xdist')} does "
            "not group tests under --dist loadgroup (pytest-dev/pytest-xdist#1386): install "
            "the locked pytest (requirements-lock.txt) or run with -n 0"
        )


def _shares_module_fixture(item) -> bool:
    """Whether the test requests a wider-than-function fixture of its own module (autouse
    ones, such as test_learner's config switch, are cheap and do not count)."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info is not None else ():
        fixture = defs[-1]
        if (
            fixture.scope in ("module", "package")
            and not getattr(fixture, "_autouse", False)
            and fixture.func.__module__ == item.module.__name__
        ):
            return True
    return False
