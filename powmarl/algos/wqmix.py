"""CW-QMIX and OW-QMIX (Rashid et al. 2020) as the POW authors ran them (notes sec. 4.3, 6.4).

QMIX mixer, an unrestricted Q* (width 256) whose target supplies the bootstrap, and a
weighting rule; alpha = 0.1. The reference learner (``max_q_learner``) has no 1/2 on the
Q_tot loss but 1/2 on the Q* loss, reproduced by ``q_tot_loss_scale = 2``.
"""

from powmarl.algos import weighting
from powmarl.algos.base import Algorithm
from powmarl.algos.extras import CentralQ
from powmarl.networks.mixers import QMixer

CENTRAL_WIDTH = 256
DEFAULTS = {"alpha": 0.1}


def _qmixer(cfg, spec):
    return QMixer(cfg.mixing_embed_dim, cfg.hypernet_embed)


def _make(name: str, description: str, rule, reads_bootstrap: bool) -> Algorithm:
    return Algorithm(
        name=name,
        description=description,
        make_mixer=_qmixer,
        weighting=rule,
        extras=(CentralQ(width=CENTRAL_WIDTH),),
        defaults=dict(DEFAULTS),
        q_tot_loss_scale=2.0,
        weighting_reads_bootstrap=reads_bootstrap,
    )


def make_cw() -> Algorithm:
    return _make(
        "cw_qmix",
        "CW-QMIX: central weighting (w = 1 on a_hat or y > Q*(s, a_hat), else alpha)",
        weighting.central,
        reads_bootstrap=True,
    )


def make_ow() -> Algorithm:
    return _make(
        "ow_qmix",
        "OW-QMIX: optimistic weighting (w = 1 where Q_tot < y, else alpha)",
        weighting.optimistic,
        reads_bootstrap=False,
    )
