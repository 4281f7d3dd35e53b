"""The test suite's faster XLA:CPU compilation, installed in the pytest process and, through
``sitecustomize.py`` beside this file (on ``PYTHONPATH``), in every Python subprocess the
tests start: a run trained in a subprocess must compile exactly as the in-process run it is
compared with.

With most optimisations off (``JAX_DISABLE_MOST_OPTIMIZATIONS=1``, the suite's default),
every compilation also gets ``OPTIONS``. XLA:CPU's MLIR fusion emitters take ~3x longer to
compile a small learner update than the older elemental emitters (qmix on the tiny
predator-prey: 4.4 s vs 1.4 s). The programs the older emitters make round differently, and
their maths is less exact (the intersection port drifts 0.013 m from highway-env in 19
free-running steps: tests/test_intersection_validation.py), so compilations with
optimisations on (the ``optimized`` tests, which compare with recorded numbers and compile
as users do) never get these options. ``POWMARL_FAST_COMPILE=0`` turns this off.
"""

from __future__ import annotations

import os

OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def install() -> None:
    """Wrap jax's compile-options builder (a private function: the only place an XLA debug
    option can be set per compilation rather than per process, as XLA_FLAGS would)."""
    if os.environ.get("POWMARL_FAST_COMPILE", "1") != "1":
        return
    import jax
    from jax._src import compiler

    original = compiler.get_compile_options
    if getattr(original, "powmarl_fast_compile", False):
        return

    def wrapped(*args, **kwargs):
        options = original(*args, **kwargs)
        if jax.config.read("jax_disable_most_optimizations"):
            overrides = dict(options.env_option_overrides)
            overrides.update(OPTIONS)
            options.env_option_overrides = list(overrides.items())
        return options

    wrapped.powmarl_fast_compile = True
    compiler.get_compile_options = wrapped
