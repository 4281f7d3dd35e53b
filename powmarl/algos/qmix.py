"""QMIX: monotonic mixing, uniform weights, target-mixer bootstrap."""

from powmarl.algos import weighting
from powmarl.algos.base import Algorithm
from powmarl.networks.mixers import QMixer


def make() -> Algorithm:
    return Algorithm(
        name="qmix",
        description="QMIX (Rashid et al. 2018), PyMARL2 nmix mixer",
        make_mixer=lambda cfg, spec: QMixer(cfg.mixing_embed_dim, cfg.hypernet_embed),
        weighting=weighting.uniform,
    )
