"""POW on QMIX, VDN and QPLEX (notes sec. 3, 4.2, reference ``powqmix_learner.py``).

Q_tot is trained only on the joint actions the recogniser Q_r marks as potentially
optimal (weight 1 in A_r, alpha = 0 elsewhere, after a warm-up of ``no_weighted_steps``);
the unrestricted Q* (width 64) supplies the bootstrap; Q_r regresses the same targets
with its own Adam, K steps per learner call before the weights are read.
"""

from powmarl.algos import weighting
from powmarl.algos.base import Algorithm
from powmarl.algos.extras import CentralQ, RecogniserQ
from powmarl.networks.mixers import QMixer, VDNMixer

CENTRAL_WIDTH = 64
#: alpha = 0 outside A_r; Q*'s width comes with the extra (``CentralQ.config_defaults``).
DEFAULTS = {"alpha": 0.0}


def pow_extras() -> tuple[CentralQ, RecogniserQ]:
    """POW's extras: the unrestricted Q* (width 64 unless the config says) and Q_r."""
    return CentralQ(width=CENTRAL_WIDTH), RecogniserQ()


def _make(name: str, description: str, make_mixer, **defaults) -> Algorithm:
    return Algorithm(
        name=name,
        description=description,
        make_mixer=make_mixer,
        weighting=weighting.potentially_optimal,
        extras=pow_extras(),
        defaults={**DEFAULTS, **defaults},
    )


def make_pow_qmix() -> Algorithm:
    return _make(
        "pow_qmix",
        "POW-QMIX: QMIX trained on the recognised potentially optimal joint actions",
        lambda cfg, spec: QMixer(cfg.mixing_embed_dim, cfg.hypernet_embed),
    )


def make_pow_vdn() -> Algorithm:
    return _make(
        "pow_vdn",
        "POW-VDN: VDN trained on the recognised potentially optimal joint actions",
        lambda cfg, spec: VDNMixer(),
    )
