"""ResQ (Shen et al. 2022) as the POW authors ran it (``rest_q_learner_central``, v3).

Q_jt = Q_tot + w_r Q_res regresses the targets of an unrestricted Q* (width 128), with
Q_res = -|.| <= 0 and w_r = 0 on the greedy joint action. The reference learner has no
1/2 on either loss and trains with RMSprop (its switch to Adam never triggers).
"""

from powmarl.algos import weighting
from powmarl.algos.base import Algorithm
from powmarl.algos.extras import CentralQ, Residual
from powmarl.networks.mixers import QMixer

CENTRAL_WIDTH = 128


def make() -> Algorithm:
    return Algorithm(
        name="resq",
        description="ResQ: Q_tot plus a non-positive residual off the greedy joint action",
        make_mixer=lambda cfg, spec: QMixer(cfg.mixing_embed_dim, cfg.hypernet_embed),
        weighting=weighting.uniform,
        extras=(CentralQ(loss_scale=2.0, width=CENTRAL_WIDTH), Residual(width=CENTRAL_WIDTH)),
        q_tot_loss_scale=2.0,
        optimiser="rmsprop",
    )
