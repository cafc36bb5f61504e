"""The hand rules a learned rule can run over (``marl_net.base_rules``): with zero actions, the env
over each base is that hand rule as its trainer runs it (``marl_net.rules.registry.run_rule``), on
the same tasks, weights and minibatches; bad bases are refused naming the choices."""

from __future__ import annotations

import pytest
import torch

from marl_net.base_rules import BASES, env_options, without_base
from marl_net.config import EnvConfig
from marl_net.observations import DEFAULT_FEATURES
from marl_net.rules.registry import run_rule
from tests.test_base_update import _zero_action_lifetime

SEEDS = [3, 4, 5]
NET = dict(task="teacher_student", layers=(5, 7, 3), max_cycles=8, batch_size=8)


@pytest.mark.parametrize("rule,lr,env,exact", [
    ("sgd", 0.3, {}, True),
    ("adam", 0.03, {}, False),
    ("dfa", 0.3, {"feedback": "dfa"}, True),
    ("dfa_adam", 0.03, {"feedback": "dfa"}, False),
    ("np", 0.03, {}, False),
])
def test_zero_actions_over_a_base_are_its_hand_rule(rule, lr, env, exact):
    base = env_options(rule, lr)
    config = EnvConfig(**NET, **env, observations=DEFAULT_FEATURES + (base["base_update"],), **base)
    core, losses = _zero_action_lifetime(config, SEEDS)
    run = run_rule(rule, EnvConfig(**NET, **env), SEEDS, lr=lr)
    if exact:
        assert torch.equal(torch.stack(losses, 1), run.curves[:, 1:])
        assert all(torch.equal(p, q) for p, q in zip(core.params, run.params))
    else:  # the same steps in another order of float operations
        torch.testing.assert_close(torch.stack(losses, 1), run.curves[:, 1:], rtol=1e-4, atol=1e-7)
        for p, q in zip(core.params, run.params):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert run.curves[:, -1].mean() < 0.95 * run.curves[:, 0].mean()  # the rule did learn


def test_adam_direction_feature_is_the_first_step_sign_and_restarts_at_a_reset():
    """At a reset ``adam[gradient]`` is Adam's first step direction, ``g / (|g| + eps)``; after a
    step it is not; a partial reset restarts one copy's moments from zero, the other's go on."""
    from marl_net.core import NetworkWeightsCore

    config = EnvConfig(**NET, observations=("weight", "gradient", "adam[gradient]"))
    core = NetworkWeightsCore(config, copies=2, layout="padded")
    core.seed([0, 1])

    def first_step_sign(obs, copy):
        g, direction, mask = obs[copy, ..., 1], obs[copy, ..., 2], obs[copy, ..., -1].bool()
        return torch.allclose(direction[mask], (g / (g.abs() + 1e-8))[mask])

    obs = core.reset()
    assert first_step_sign(obs, 0) and first_step_sign(obs, 1)
    obs = core.step(torch.full((2, core.ownership.num_agents, core.ownership.max_fan), 0.5)).obs
    assert not first_step_sign(obs, 0) and not first_step_sign(obs, 1)
    kept = [s[1].clone() for s in core.accumulators["adam[gradient]"]]
    obs = core.reset(torch.tensor([True, False]))
    assert first_step_sign(obs, 0) and not first_step_sign(obs, 1)
    assert all(torch.equal(s[1], k) for s, k in zip(core.accumulators["adam[gradient]"], kept))


@pytest.mark.parametrize("rule,lr,match", [
    ("rmsprop", 0.1, "can run over"),
    ("sgd", 0.0, "positive number"),
    ("adam", float("nan"), "positive number"),
])
def test_bad_bases_are_refused(rule, lr, match):
    with pytest.raises(ValueError, match=match):
        env_options(rule, lr)


@pytest.mark.parametrize("name,match", [("adam1.5[gradient]", "strictly between 0 and 1"),
                                        ("adamx[gradient]", "not a number"), ("adam0.7[]", "per-synapse signal"),
                                        ("adam0.9[gradient]", r"write 'adam\[gradient\]'")])
def test_bad_adam_feature_names_are_refused(name, match):
    with pytest.raises(ValueError, match=match):
        EnvConfig(observations=("weight", name))
    assert set(BASES) >= {"sgd", "adam", "dfa", "np", "reinforce"}


def test_adam_beta1_in_the_name_sets_the_first_moment_decay():
    """``adam0.7[gradient]`` is Adam's direction at beta1 0.7: after two steps of the same
    gradients it differs from ``adam[gradient]`` (beta1 0.9); the dfa_adam base, at beta1
    ``DFA_ADAM_BETA1``, is checked step by step against the hand rule above."""
    from marl_net.core import NetworkWeightsCore
    from marl_net.rules.adam import DFA_ADAM_BETA1

    config = EnvConfig(**NET, observations=("weight", "adam[gradient]", "adam0.7[gradient]"))
    core = NetworkWeightsCore(config, copies=1, layout="padded")
    core.seed([0])
    obs = core.reset()
    mask = obs[0, ..., -1].bool()
    torch.testing.assert_close(obs[0, ..., 1][mask], obs[0, ..., 2][mask])  # the first step: both g / (|g| + eps)
    for _ in range(2):
        obs = core.step(torch.full((1, core.ownership.num_agents, core.ownership.max_fan), 0.5)).obs
    assert not torch.allclose(obs[0, ..., 1][mask], obs[0, ..., 2][mask])
    assert BASES["dfa_adam"].feature == f"adam{DFA_ADAM_BETA1:g}[feedback_eligibility]" == \
        "adam0.7[feedback_eligibility]"


def test_a_learned_rule_runs_over_its_base_at_the_settings_tuned_step_with_its_correction_scaled_alike():
    """``heldout.over_tuned_base``: the base rate becomes the hand rule's step size tuned on the
    setting's train split (here given, then tuned), and the action scale moves by the same factor."""
    from marl_net import heldout

    trained = EnvConfig(**NET, observations=DEFAULT_FEATURES + ("adam[gradient]",), action_scale=0.2,
                        **env_options("adam", 0.03))
    config, base = heldout.over_tuned_base(trained, {"adam": 0.01}, [1, 2], points=2)
    assert (config.base_rate, config.action_scale) == (pytest.approx(-0.01), pytest.approx(0.2 / 3))
    assert base == {"rule": "adam", "lr": 0.01, "factor": 1.0, "base_rate": config.base_rate,
                    "action_scale": config.action_scale}
    lrs: dict = {}
    config, base = heldout.over_tuned_base(trained, lrs, [1, 2], points=2)
    assert set(lrs) == {"adam"} and base["lr"] == lrs["adam"] == heldout.tuned_lr(
        "adam", without_base(trained), [1, 2], 2).best
    plain = EnvConfig(**NET)  # no base: unchanged
    assert heldout.over_tuned_base(plain, {}, [1], 1) == (plain, None)
    relative, _ = heldout.over_tuned_base(trained.replace(correction="relative"), {"adam": 0.01}, [1, 2], points=2)
    assert (relative.base_rate, relative.action_scale) == (pytest.approx(-0.01), 0.2)  # a factor of the step: kept
    assert without_base(relative).correction == "additive"


def test_a_levels_base_factor_scales_its_base_in_meta_training_and_on_held_out_settings(monkeypatch):
    """A level whose base runs at a fraction of its tuned step (``Level.base_factor``; here
    ``feedback`` given 1/3): the meta-training env's base rate is -lr/3 with lr the base's step
    tuned on the meta-training setting's train split."""
    import dataclasses

    from marl_net import heldout
    from marl_net.budgets import BUDGETS
    from marl_net.levels import LEVELS
    from marl_net.meta_training import base_rates, level_launch, train_config

    monkeypatch.setitem(LEVELS, "feedback", dataclasses.replace(LEVELS["feedback"], base_factor=1 / 3))
    budget = BUDGETS["quick"]
    base = base_rates(["feedback"], budget, seed=0)["feedback"]
    hand = without_base(train_config("feedback"))
    rule = LEVELS["feedback"].base
    lr = heldout.tuned_lr(rule, hand, heldout.tuning_seeds(0, budget.tune_seeds), budget.tune_points).best
    assert base == {"rule": rule, "lr": lr, "factor": pytest.approx(1 / 3), "base_rate": pytest.approx(-lr / 3),
                    "action_scale": train_config("feedback").action_scale}
    assert level_launch("feedback", budget, 0, base=base)["env"]["base_rate"] == pytest.approx(-lr / 3)
    assert base_rates(["feedback"], budget, 0, {"env": {"base_rate": -0.5}}) == {"feedback": None}  # fixed by --set
    config, record = heldout.over_tuned_base(EnvConfig.from_kwargs(**level_launch("feedback", budget, 0, base=base)["env"]),
                                             {rule: 0.3}, [1], 1, factor=1 / 3)
    assert config.base_rate == pytest.approx(-0.1) and record["factor"] == pytest.approx(1 / 3)
    # a relative correction is a factor of the base's step: its scale does not move with the rate
    assert config.correction == "relative" and config.action_scale == train_config("feedback").action_scale
    additive = EnvConfig.from_kwargs(**{**level_launch("feedback", budget, 0, base=base)["env"], "correction": "additive"})
    config, _ = heldout.over_tuned_base(additive, {rule: 0.3}, [1], 1, factor=1 / 3)
    assert config.action_scale == pytest.approx(additive.action_scale * 0.1 / (lr / 3))


def test_the_gradient_level_corrects_adam_relatively_and_without_a_base_additively():
    """``gradient``'s correction form (``Level.correction``) comes with its base: meta-training
    runs it relative over Adam; ``--set env.base_update=null`` drops the base and the form with it
    (an explicit ``correction`` override stays, and is refused without a base)."""
    from marl_net.meta_training import TRAIN_ENV, train_config

    trained = train_config("gradient")
    assert (trained.correction, trained.action_scale, trained.base_update) == ("relative", 1.0, "adam[gradient]")
    assert (train_config("feedback").correction, train_config("feedback").action_scale) == ("relative", 3.0)
    assert train_config("perturbation").correction == "additive"
    plain = train_config("gradient", {"env": {"base_update": None}})
    assert (plain.correction, plain.action_scale, plain.base_update) == ("additive", TRAIN_ENV["action_scale"], None)
    assert train_config("gradient", {"gradient": {"env": {"base_update": None, "action_scale": 0.5}}}).action_scale == 0.5
    with pytest.raises(ValueError, match="set base_update"):
        train_config("gradient", {"env": {"base_update": None, "correction": "relative"}})


def test_a_fractional_base_is_tuned_against_the_full_step_on_the_train_split():
    """A learned rule meta-trained over its base at a fraction of the base's tuned step
    (``base_factor``) has that fraction and the full step tried on the train split; the held-out
    run uses the one that tunes lower, and its record says which."""
    from marl_net import heldout
    from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy
    from marl_net.rules.tuning import scale_factors, tune_action_scale

    trained = EnvConfig(task="teacher_student", layers=(4, 6, 2), max_cycles=10, batch_size=8, feedback="dfa",
                        observations=DEFAULT_FEATURES + ("feedback_eligibility",), action_scale=0.05,
                        **env_options("dfa", 0.1))
    torch.manual_seed(0)
    policy = SynapsePolicy(PolicyConfig(num_features=len(trained.observations) + 1)).eval()
    options = heldout.learned_options(trained, {"dfa": 1.0}, [1, 2], 2, factor=1 / 3)
    assert [base["factor"] for _, base in options] == [pytest.approx(1 / 3), 1.0]
    assert heldout.learned_options(trained, {"dfa": 1.0}, [1, 2], 2, factor=1.0)[0][1]["factor"] == 1.0
    assert len(heldout.learned_options(trained, {"dfa": 1.0}, [1, 2], 2, factor=1.0)) == 1
    runs = heldout.evaluate_setting(trained.replace(split="heldout"), {"learned": (policy, trained.replace(
        split="heldout"))}, ["dfa"], [5, 6], [1, 2], 2, classification=False, base_factors={"learned": 1 / 3})
    with torch.no_grad():
        scores = [min(tune_action_scale(policy, c.replace(split="heldout"), [1, 2], scale_factors(2)).scores)
                  for c, _ in heldout.learned_options(trained.replace(split="heldout"), {"dfa": runs["dfa"].step},
                                                      [1, 2], 2, factor=1 / 3)]
    chosen = runs["learned"].base["factor"]
    assert chosen == (1.0 if scores[1] < scores[0] else pytest.approx(1 / 3))
    assert runs["learned"].base["base_rate"] == pytest.approx(-runs["dfa"].step * chosen)
