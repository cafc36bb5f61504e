"""Hand RL rules acting inside network_weights_v0 (REINFORCE with a running baseline, REINFORCE
with backprop, Weight Maximization), their step-size tuning on train tasks, and the lifetime metrics."""

import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.policies.rl_hand_rules import env_kwargs, evaluate, make_policy, run, tune, tune_step_sizes
from marl_net.rl_metrics import LifetimeRecorder
from marl_net.tasks.harlow import FIXATION
from marl_net.tasks.rl import preset


def _config(rule, name="bandit2", **extra):
    return EnvConfig(**env_kwargs(rule, **preset(name, **{"batch_size": 3, "max_cycles": 5, **extra})))


def test_reinforce_changes_the_output_weights_by_lr_times_the_advantage_weighted_eligibility():
    config = _config("reinforce", "harlow", observations=("reinforce_update", "output_eligibility"))
    core = NetworkWeightsCore(config, copies=2)
    core.seed([0, 1])
    obs = core.reset()
    policy = make_policy("reinforce", config, lr=[0.5, 2.0])
    before = [p.clone() for p in core.params]
    expected = core.ownership.from_agents(obs[..., 0])[-1] * torch.tensor([0.5, 2.0]).view(2, 1, 1)
    core.step(policy.act(obs))
    torch.testing.assert_close(core.params[-1] - before[-1], expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(core.params[0], before[0])  # hidden synapses keep their weights
    assert expected.abs().sum() > 0


def test_reinforce_with_backprop_takes_the_same_output_step_and_also_moves_hidden_weights():
    changes = {}
    for rule in ("reinforce", "reinforce_backprop"):
        config = _config(rule, "maze")
        core = NetworkWeightsCore(config, copies=2)
        core.seed([4, 5])
        obs = core.reset()
        before = [p.clone() for p in core.params]
        core.step(make_policy(rule, config, lr=0.25).act(obs))
        changes[rule] = [p - b for p, b in zip(core.params, before)]
    torch.testing.assert_close(changes["reinforce_backprop"][-1], changes["reinforce"][-1], rtol=1e-4, atol=1e-7)
    assert changes["reinforce_backprop"][0].abs().sum() > 0 and not changes["reinforce"][0].any()


def test_rl_rules_refuse_supervised_tasks_and_missing_features():
    with pytest.raises(ValueError, match="RL task"):
        make_policy("reinforce", EnvConfig(observations=("weight",)))
    with pytest.raises(ValueError, match="reinforce_update"):
        make_policy("reinforce", EnvConfig(**preset("bandit2")))
    with pytest.raises(ValueError, match="unknown"):
        make_policy("thompson", _config("reinforce"))
    with pytest.raises(ValueError, match="not an RL task"):
        LifetimeRecorder(NetworkWeightsCore(EnvConfig(), copies=1))


def test_tuning_runs_on_train_tasks_and_a_tuned_reinforce_beats_a_negligible_step_size():
    config = EnvConfig(**env_kwargs("reinforce", **preset("bandit2", batch_size=16, max_cycles=29)))
    result = tune("reinforce", config, grid=[1e-4, 0.3], seeds=range(4))
    assert result.best == 0.3 and result.scores[1] > result.scores[0] + 0.03
    held = evaluate("reinforce", config, lr=result.best, seeds=range(100, 104))
    assert set(held) == {"mean_reward", "regret"}


def test_bandit_regret_and_mean_reward_match_the_recorded_pulls():
    config = _config("reinforce")
    core = NetworkWeightsCore(config, copies=2)
    core.seed([0, 1])
    obs = core.reset()
    recorder, policy = LifetimeRecorder(core), make_policy("reinforce", config, lr=0.5)
    pulls, rewards = [], []
    recorder.record()
    for step in range(6):
        pulls.append(core.rl_state["prev_action"].clone())
        rewards.append(core.rl_state["prev_reward"].clone())
        if step < 5:
            obs = core.step(policy.act(obs)).obs
            recorder.record()
    p = core.rl_state["arm_probs"]
    regret = sum(p.max(1, keepdim=True).values - p.gather(1, a) for a in pulls).mean(1)
    m = recorder.metrics()
    torch.testing.assert_close(m["regret"], regret)
    torch.testing.assert_close(m["mean_reward"], torch.stack(rewards).mean(0).mean(1))


def test_harlow_correct_after_first_counts_the_later_presentations():
    config = _config("reinforce", "harlow", max_cycles=9)
    recorder = run("reinforce", config, lr=0.5, seeds=[0, 1])
    # recompute from a replay: same seeds, same rule, the presentation rewards after the first
    core = NetworkWeightsCore(config, copies=2)
    core.seed([0, 1])
    obs = core.reset()
    policy = make_policy("reinforce", config, lr=0.5)
    outcomes = []
    for step in range(10):
        if step:
            obs = core.step(policy.act(obs)).obs
        s = core.rl_state
        if bool((s["phase"] == FIXATION).all()) and int(s["presentations"][0, 0]) >= 2:
            outcomes.append((s["prev_reward"] > 0).float())
    assert len(outcomes) == 4  # five presentations in ten steps, the first not judged
    torch.testing.assert_close(recorder.metrics()["correct_after_first"], torch.stack(outcomes).mean(0).mean(1))


def test_harlow_slots_splits_the_later_presentations_by_where_the_rewarded_object_is():
    config = _config("reinforce", "harlow", max_cycles=29)  # 15 presentations, 3 inner copies
    seeds = [0, 1, 2, 3]
    recorder = run("reinforce", config, lr=0.5, seeds=seeds)
    core = NetworkWeightsCore(config, copies=len(seeds))
    core.seed(seeds)
    obs = core.reset()
    policy = make_policy("reinforce", config, lr=0.5)
    first, hits, neither = None, {True: [], False: []}, []
    for step in range(30):
        if step:
            obs = core.step(policy.act(obs)).obs
        s = core.rl_state
        if not bool((s["phase"] == FIXATION).all()) or int(s["presentations"][0, 0]) == 0:
            continue
        # the rewarded object's slot in the presentation that just ended, hand-indexed per copy
        slot = torch.stack([s["slots"][e, :, int(s["rewarded"][e])] for e in range(len(seeds))])
        if first is None:
            first = slot
            continue
        for e in range(len(seeds)):
            for b in range(slot.shape[1]):
                hits[bool(slot[e, b] == first[e, b])].append(float(s["prev_reward"][e, b] > 0))
                neither.append(float(s["prev_reward"][e, b] == 0))  # neither object: 0, not +1 or -1
    split = recorder.harlow_slots()
    assert split["same_slot_n"] == len(hits[True]) > 0 and split["moved_n"] == len(hits[False]) > 0
    assert split["same_slot"] == pytest.approx(sum(hits[True]) / len(hits[True]))
    assert split["moved"] == pytest.approx(sum(hits[False]) / len(hits[False]))
    assert split["neither"] == pytest.approx(sum(neither) / len(neither)) and 0 < sum(neither) < len(neither)
    pooled = (sum(hits[True]) + sum(hits[False])) / (len(hits[True]) + len(hits[False]))
    assert recorder.summary()["correct_after_first"] == pytest.approx(pooled)  # equal counts per copy


def test_maze_steps_to_first_reward_is_the_first_rewarded_inner_step():
    config = _config("reinforce", "maze", max_cycles=30)
    recorder = run("reinforce", config, lr=0.1, seeds=[2])
    core = NetworkWeightsCore(config, copies=1)
    core.seed([2])
    obs = core.reset()
    policy = make_policy("reinforce", config, lr=0.1)
    first = torch.full((3,), 32.0)
    for step in range(1, 32):
        if step > 1:
            obs = core.step(policy.act(obs)).obs
        hit = (core.rl_state["prev_reward"][0] > 0) & (first == 32.0)
        first[hit] = float(step)
    assert float(recorder.metrics()["steps_to_first_reward"][0]) == pytest.approx(float(first.mean()))


def test_thompson_and_uniform_baselines_on_hand_checked_bandits():
    from marl_net.rl_baselines import thompson_regret, uniform_policy

    # arms (0, 1): a pull of arm 0 costs 1; Thompson stops pulling it after a few failures
    regret = thompson_regret(torch.tensor([[0.0, 1.0], [0.5, 0.5]]), pulls=200, inner=32, seed=0)
    assert 0.5 < float(regret[0]) < 6.0 and float(regret[1]) == 0.0
    # the uniform policy's expected regret is the mean gap to the best arm, every pull
    config = EnvConfig(**preset("bandit2", batch_size=2000, max_cycles=9, observations=("weight",)))
    m = uniform_policy(config, seeds=[0])
    core = NetworkWeightsCore(config.replace(split="heldout"), copies=1)
    core.seed([0])
    core.reset()
    p = core.rl_state["arm_probs"][0]
    assert m["regret"] == pytest.approx(10 * float(p.max() - p.mean()), abs=0.15)
    assert m["mean_reward"] == pytest.approx(float(p.mean()), abs=0.02)


def test_cartpole_episode_length_is_the_mean_length_of_the_completed_inner_episodes():
    config = EnvConfig(**preset("cartpole", batch_size=2, max_cycles=79, observations=("weight",)))
    core = NetworkWeightsCore(config, copies=1)
    core.seed([0])
    core.reset()
    recorder = LifetimeRecorder(core)
    recorder.record()
    lengths, current = [[], []], [1, 1]  # the reset took the first step
    zero = torch.zeros(1, core.ownership.num_agents, core.ownership.max_fan)
    for _ in range(79):
        core.step(zero)
        recorder.record()
        for b in range(2):
            current[b] += 1
            if int(core.rl_state["episode_steps"][0, b]) == 0:  # the pole fell on this step: restarted
                lengths[b].append(current[b])
                current[b] = 0
    assert all(lengths)  # a network that never learns drops the pole within 80 steps
    expected = sum(sum(l) / len(l) for l in lengths) / 2
    assert float(recorder.metrics()["episode_length"][0]) == pytest.approx(expected)
    assert float(recorder.metrics()["mean_reward"][0]) == pytest.approx(-sum(map(len, lengths)) / 160)


def test_tuned_weight_max_learns_within_a_bandit_lifetime():
    """Weight Max's step sizes tuned on train bandits (the job's grid, one after the other), then
    held-out lifetimes: its regret is below the uniform policy's on the same bandits."""
    from marl_net.rl_baselines import GRID, uniform_policy

    config = EnvConfig(**env_kwargs("weight_max", **preset("bandit2")))
    steps, sweeps = tune_step_sizes("weight_max", config, GRID, seeds=range(8))
    assert [s.param for s in sweeps] == ["lr", "hidden_lr", "critic_lr"] and set(steps.values()) <= set(GRID)
    assert [steps[s.param] for s in sweeps] == [s.best for s in sweeps]
    # each sweep includes the values already picked (the defaults, 0.1, are on the grid)
    assert max(sweeps[2].scores) >= max(sweeps[1].scores) >= max(sweeps[0].scores)
    seeds = range(100, 132)
    held = evaluate("weight_max", config, seeds=seeds, **steps)
    uniform = uniform_policy(EnvConfig(**preset("bandit2", observations=("weight",))), seeds)
    assert held["regret"] < 0.9 * uniform["regret"], (held, uniform)  # 9.14 vs 18.3 (torch 2.13, CPU)


def test_weight_max_per_copy_step_sizes_act_as_separate_runs():
    """A grid of step sizes as one batch (how tune runs it) gives each copy the lifetime it has alone."""
    config = _config("weight_max", "harlow", max_cycles=9)
    batched = run("weight_max", config, lr=[0.03, 0.3], hidden_lr=[0.3, 0.01], critic_lr=[0.01, 1.0],
                  seeds=[5, 6]).metrics()["mean_reward"]
    alone = [run("weight_max", config, lr=lr, hidden_lr=h, critic_lr=c, seeds=[s]).metrics()["mean_reward"][0]
             for lr, h, c, s in ((0.03, 0.3, 0.01, 5), (0.3, 0.01, 1.0, 6))]
    torch.testing.assert_close(batched, torch.stack(alone))


def test_weight_max_bad_settings_name_the_fix():
    good = _config("weight_max")
    with pytest.raises(ValueError, match="ownership='incoming'"):
        make_policy("weight_max", _config("weight_max", ownership="outgoing"), seeds=[0], lr=0.1)
    with pytest.raises(ValueError, match="hidden_activation='bernoulli'"):
        make_policy("weight_max", _config("weight_max", hidden_activation="tanh"), seeds=[0], lr=0.1)
    with pytest.raises(ValueError, match="at least one hidden layer"):
        make_policy("weight_max", _config("weight_max", layers=(4, 2)), seeds=[0], lr=0.1)
    with pytest.raises(ValueError, match="pass seeds"):
        make_policy("weight_max", good, lr=0.1)
    with pytest.raises(ValueError, match="one value per seed"):
        make_policy("weight_max", good, seeds=[0, 1], lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"takes the step sizes \['lr'\]"):
        make_policy("reinforce", _config("reinforce"), lr=0.1, hidden_lr=0.1)
    with pytest.raises(ValueError, match="pass lr="):
        tune("weight_max", good, grid=[0.1], seeds=[0], param="hidden_lr")
    with pytest.raises(ValueError, match=r"tuned over \['lr', 'hidden_lr', 'critic_lr'\]"):
        tune("weight_max", good, grid=[0.1], seeds=[0], param="sigma", lr=0.1)
