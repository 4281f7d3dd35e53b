"""Parameter counts (the capacity ablation's yardstick) and width matching."""

import powmarl
from powmarl.capacity import match_count, parameter_counts


def _mlp(widths, fan_in):
    """Weights and biases of Linear layers fan_in -> widths[0] -> ... -> widths[-1]."""
    total = 0
    for width in widths:
        total, fan_in = total + fan_in * width + width, width
    return total


def test_recogniser_count_is_the_hand_formula():
    """Q_r: two lambda MLPs d_x -> 128 -> 128 -> (n*64 | 64) with d_x = d_s + n|A|, and
    V: d_s -> 128 -> 128 -> 1 (notes sec. 3.2); VDN's mixer has no parameters."""
    env = powmarl.envs.make("matrix_pow")
    n, u, d_s = env.spec.num_agents, env.spec.num_actions, env.spec.state_dim
    d_x = d_s + n * u
    expected = _mlp((128, 128, n * 64), d_x) + _mlp((128, 128, 64), d_x)
    expected += _mlp((128, 128, 1), d_s)
    counts = parameter_counts("pow_qmix", env)
    assert counts["recogniser"] == expected
    assert set(counts) == {"agent", "mixer", "central", "recogniser"}
    vdn = parameter_counts("pow_vdn", env)
    assert vdn["mixer"] == 0 and vdn["agent"] == counts["agent"]
    assert parameter_counts("pow_qmix", env, lambda_hypernet_embed=64)["recogniser"] < expected


def test_match_count_lands_nearest_the_target():
    """QMIX's mixer widened 2:1 to POW-QMIX's total: no integer width is closer."""
    env = powmarl.envs.make("matrix_pow")
    target = sum(parameter_counts("pow_qmix", env).values())
    widths, total = match_count("qmix", env, target, {"hypernet_embed": 64, "mixing_embed_dim": 32})
    assert widths["mixing_embed_dim"] == round(widths["hypernet_embed"] / 2)
    assert total == sum(parameter_counts("qmix", env, **widths).values())
    for step in (-1, 1):
        h = widths["hypernet_embed"] + step
        other = parameter_counts("qmix", env, hypernet_embed=h, mixing_embed_dim=round(h / 2))
        assert abs(sum(other.values()) - target) >= abs(total - target)
    assert abs(total - target) / target < 0.01
