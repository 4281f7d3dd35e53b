"""VDN: Q_tot is the sum of the agents' utilities."""

from powmarl.algos import weighting
from powmarl.algos.base import Algorithm
from powmarl.networks.mixers import VDNMixer


def make() -> Algorithm:
    return Algorithm(
        name="vdn",
        description="VDN (Sunehag et al. 2018): additive decomposition",
        make_mixer=lambda cfg, spec: VDNMixer(),
        weighting=weighting.uniform,
    )
