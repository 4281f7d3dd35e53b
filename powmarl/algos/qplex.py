"""QPLEX (Wang et al. 2021) and POW-QPLEX: duplex-dueling mixing (notes sec. 6.3, 3.8)."""

import functools

from powmarl.algos import weighting
from powmarl.algos.base import Algorithm
from powmarl.algos.pow import DEFAULTS as POW_DEFAULTS
from powmarl.algos.pow import pow_extras
from powmarl.networks.qplex import QPLEXMixer


def _qplex(layers: int, cfg, spec):
    """The QPLEX mixer; ``layers`` advantage-hypernet layers unless the config sets them."""
    if cfg.adv_hypernet_layers is not None:
        layers = cfg.adv_hypernet_layers
    return QPLEXMixer(
        num_kernel=cfg.num_kernel,
        adv_hypernet_layers=layers,
        adv_hypernet_embed=cfg.adv_hypernet_embed,
        hypernet_embed=cfg.hypernet_embed,
    )


def make_qplex() -> Algorithm:
    return Algorithm(
        name="qplex",
        description="QPLEX: duplex dueling, 4 attention kernels, 2-layer advantage hypernets",
        make_mixer=functools.partial(_qplex, 2),
        weighting=weighting.uniform,
        defaults={"adv_hypernet_layers": 2},
    )


def make_pow_qplex() -> Algorithm:
    return Algorithm(
        name="pow_qplex",
        description="POW-QPLEX: QPLEX (3-layer advantage hypernets) trained on recognised actions",
        make_mixer=functools.partial(_qplex, 3),
        weighting=weighting.potentially_optimal,
        extras=pow_extras(),
        defaults={**POW_DEFAULTS, "adv_hypernet_layers": 3},
    )
