"""The RL family of the main job (``marl-net run --family rl``, ``marl_net.rl_job``): one quick run
through the command line (real Tune, real fast-path PPO, real hand rules), its results.json,
report and targets, and ``marl-net check`` on it."""

import contextlib
import io
import json
from dataclasses import replace

import pytest
import torch

from marl_net import cli, rl_baselines, rl_job
from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.meta_training import load_policy
from marl_net.policies import rl_hand_rules
from marl_net.tasks.rl import preset

TASK_METRIC = {"bandit2": "regret", "bandit10": "regret", "harlow": "correct_after_first",
               "maze": "steps_to_first_reward", "maze_large": "steps_to_first_reward"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl_quick")
    torch.set_num_threads(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["run", "--family", "rl", "--budget", "quick", "--out", str(out), "--seed", "3",
                         "--no-progress"])
    assert code == 0
    out.joinpath("stdout.txt").write_text(printed.getvalue())
    return out, json.loads((out / "results.json").read_text())


def test_quick_run_prints_the_runs_summary(quick_run):
    """The summary ``marl-net run`` prints for either family (``commands.run.print_summary``)."""
    out, results = quick_run
    printed = (out / "stdout.txt").read_text()
    assert (out / "table.md").read_text() in printed
    for preset in rl_job.DEFAULT_TRAINED:
        t = results["levels"][f"rl_{preset}"]["train"]
        assert f"meta-training rl_{preset}: 2 iterations, {t['agent_steps']:,} agent-steps, {t['seconds']:.1f} s" \
            in printed
    met = sum(t["met"] for t in results["targets"])
    assert f"targets: {met} of 4 met (0 not measurable here); `marl-net check {out}` lists them" in printed
    n = results["numerics"]
    assert f"whole run: {results['seconds']} s; numerics: {n['policy_path']}, torch {n['torch']}" in printed
    assert f"curves:      {out}/curves_rl.png" in printed and f"policies:    {out}/policies/rl_PRESET.pt" in printed


def test_quick_run_writes_every_held_out_preset_rule_and_metric(quick_run):
    out, results = quick_run
    assert results["family"] == "rl" and results["seed"] == 3
    assert set(results["levels"]) == {f"rl_{p}" for p in rl_job.DEFAULT_TRAINED}
    for level in results["levels"].values():
        assert level["observations"] == list(rl_job.OBSERVATIONS)
        assert level["train"]["iterations"] == rl_job.BUDGETS["quick"].iterations
    assert list(results["heldout"]) == ["bandit2", "bandit10", "harlow", "maze", "maze_large"]
    for task, by_rule in results["heldout"].items():
        expected = {rl_job.LEARNED, "reinforce", "reinforce_backprop", "weight_max", "uniform"}
        expected |= {"thompson"} if task.startswith("bandit") else set()
        assert set(by_rule) == expected
        lifetime = preset(task)["max_cycles"] + 1
        for rule in (rl_job.LEARNED, *rl_job.HAND_RULES):
            e = by_rule[rule]
            assert TASK_METRIC[task] in e and "mean_reward" in e
            assert len(e["curve_mean"]) == len(e["curve_std"]) == lifetime
            assert e["mean_reward"] == pytest.approx(sum(e["curve_mean"]) / lifetime, rel=1e-5, abs=1e-6)
        assert set(results["tuned_lr"][task]) == set(rl_job.HAND_RULES)
        wm = results["tuned_lr"][task]["weight_max"]  # its three step sizes, each from the one grid
        assert set(wm) == {"lr", "hidden_lr", "critic_lr"} and set(wm.values()) <= set(rl_baselines.GRID)
        steps = {f"{rule} {k}": v for rule, t in results["tuned_lr"][task].items()
                 for k, v in (t.items() if isinstance(t, dict) else [("lr", t)])}
        ends = (min(rl_baselines.GRID), max(rl_baselines.GRID))
        assert results["networks"][task]["tuned_at_grid_edge"] == [f"{k} {v:g}" for k, v in steps.items()
                                                                   if v in ends]
    assert results["skipped"] == {}  # Weight Max runs on every RL preset
    # the larger maze is measured with the rule meta-trained on maze and the hand rules' maze step sizes
    assert results["tuned_lr"]["maze_large"] == results["tuned_lr"]["maze"]
    assert results["settings"]["maze_large"]["task_kwargs"]["size"] == 11
    assert results["settings"]["maze_large"]["split"] == "heldout"
    for name in ("table.md", "curves_rl.png", "policies/rl_maze.pt"):
        assert (out / name).is_file()
    table = (out / "table.md").read_text()
    assert "| harlow | **learned_rl** |" in table
    wm = results["tuned_lr"]["bandit2"]["weight_max"]
    assert f"| bandit2 | weight_max | lr {wm['lr']:g}, hidden_lr {wm['hidden_lr']:g}, critic_lr {wm['critic_lr']:g} |" \
        in table
    assert any((out / "tb" / "heldout" / "harlow" / rl_job.LEARNED).iterdir())
    assert any((out / "tune").rglob("events.out.tfevents*"))  # meta-training's TensorBoard logs


def test_the_saved_learned_rule_reproduces_its_held_out_row(quick_run):
    out, results = quick_run
    policy, trained_env, level = load_policy(out / "policies" / "rl_harlow.pt")
    assert level == "rl_harlow" and trained_env.split == "train" and trained_env.task == "harlow"
    config = EnvConfig.from_kwargs(**results["settings"]["harlow"])
    seeds = rl_job.seeds_for(3, 0, results["budget"]["eval_episodes"])
    summary = rl_job.learned_run(policy, config, seeds).summary()
    assert summary["correct_after_first"] == pytest.approx(results["heldout"]["harlow"][rl_job.LEARNED]["correct_after_first"])


def test_check_reports_the_rl_targets_and_exits_1_on_a_miss(quick_run, tmp_path, capsys):
    out, results = quick_run
    names = [t["name"] for t in results["targets"]]
    assert len(names) == 4 and results["targets_skipped"] == []
    code = cli.main(["check", str(out)])
    printed = capsys.readouterr().out
    assert code == (0 if all(t["met"] for t in results["targets"]) else 1)
    assert all(name in printed for name in names)
    # the same run with every target met passes
    passing = json.loads(json.dumps(results))
    h = passing["heldout"]
    h["harlow"][rl_job.LEARNED]["correct_after_first"] = 0.95
    h["maze"][rl_job.LEARNED]["steps_to_first_reward"] = 12.0
    for b in ("bandit2", "bandit10"):
        h[b][rl_job.LEARNED]["regret"] = h[b]["reinforce_backprop"]["regret"]
    (tmp_path / "results.json").write_text(json.dumps(passing))
    assert cli.main(["check", str(tmp_path)]) == 0


def test_step_sizes_tuned_to_an_end_of_the_grid_are_flagged_in_the_table(quick_run):
    assert rl_baselines.at_grid_edge({"lr": 0.001, "hidden_lr": 0.3, "critic_lr": 100.0}) == ["lr 0.001",
                                                                                             "critic_lr 100"]
    assert rl_baselines.at_grid_edge({"lr": 0.3}) == []
    results = json.loads(json.dumps(quick_run[1]))  # a copy to edit
    results["networks"]["harlow"]["tuned_at_grid_edge"] = ["reinforce lr 100", "weight_max critic_lr 0.001"]
    results["networks"]["maze"]["tuned_at_grid_edge"] = []
    note = rl_job.table(results).splitlines()[-1]
    assert note.startswith("Tuned to an end of the step-size grid (0.001 to 100): ")
    assert "harlow: reinforce lr 100, weight_max critic_lr 0.001" in note and "maze:" not in note


def test_targets_on_hand_made_figures():
    heldout = {"harlow": {rl_job.LEARNED: {"correct_after_first": 0.89}},
               "maze": {rl_job.LEARNED: {"steps_to_first_reward": 30.0}},
               "bandit2": {rl_job.LEARNED: {"regret": 6.0}, "reinforce_backprop": {"regret": 5.0}}}
    checked, skipped = rl_job.targets({"heldout": heldout})
    by_name = {t["name"].split(":")[0]: t for t in checked}
    assert by_name["rl/harlow"]["met"] is False and by_name["rl/maze"]["met"] is True
    assert by_name["rl/bandit2"]["value"] == pytest.approx(1.2) and by_name["rl/bandit2"]["met"] is False
    assert [s["name"].split(":")[0] for s in skipped] == ["rl/bandit10"]  # no figures: skipped, not met


def test_learned_and_hand_rules_see_the_same_held_out_tasks_and_initial_weights():
    seeds = rl_job.seeds_for(0, 0, 3)
    learned = EnvConfig.from_kwargs(**{**rl_job.job_settings("bandit10")["env"], "split": "heldout"})
    hand = EnvConfig(**rl_hand_rules.env_kwargs("reinforce", **preset("bandit10"))).replace(split="heldout")
    cores = []
    for config in (learned, hand):
        core = NetworkWeightsCore(config, copies=len(seeds))
        core.seed(seeds)
        core.reset()
        cores.append(core)
    assert torch.equal(cores[0].rl_state["arm_probs"], cores[1].rl_state["arm_probs"])
    assert all(torch.equal(a, b) for a, b in zip(cores[0].params, cores[1].params))
    assert torch.equal(cores[0].rl_state["prev_action"], cores[1].rl_state["prev_action"])  # the first action too


def test_bad_rl_settings_name_the_fix():
    with pytest.raises(ValueError, match="maze_large"):
        rl_job.parse_presets("cartpole")
    with pytest.raises(ValueError, match="--set"):
        rl_job.parse_overrides(["optim.lr=1"])
    with pytest.raises(ValueError, match="RL preset harlow"):
        rl_job.check_settings(["harlow"], {"env": {"reward": "difference"}})
    # the preset's own keys would change meta-training but not the hand rules or the evaluation
    for key, value in (("layers", [9, 20, 3]), ("task_kwargs", {"encoding": "difference"}), ("max_cycles", 19)):
        with pytest.raises(ValueError, match=f"env.{key} is the RL preset's"):
            rl_job.check_settings(["harlow"], {"env": {key: value}})
    rl_job.check_settings(["harlow"], {"env": {"action_scale": 0.1}})  # the job's own settings stay open
    with pytest.raises(ValueError, match="scale factor"):
        rl_job.parse_budget("nan")
    with pytest.raises(ValueError, match="positive"):
        replace(rl_job.BUDGETS["quick"], iterations=0)


def test_supervised_only_options_are_refused_with_family_rl(capsys):
    assert cli.main(["run", "--family", "rl", "--restarts", "2", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "--restarts is an option of --family supervised" in err and len(err.strip().splitlines()) == 1


def test_family_rl_tasks_name_trained_presets(capsys):
    assert cli.main(["run", "--family", "rl", "--tasks", "cartpole", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "maze_large" in err and len(err.strip().splitlines()) == 1


def test_check_takes_the_median_of_several_rl_runs(quick_run, capsys):
    out, results = quick_run
    code = cli.main(["check", str(out), str(out)])
    printed = capsys.readouterr().out
    assert code == (0 if all(t["met"] for t in results["targets"]) else 1)
    assert "rl/harlow" in printed and "median of 2 runs" in printed


def test_weight_max_on_the_same_held_out_tasks_with_the_network_it_requires():
    """Weight Max's env is the preset's with Bernoulli hidden units, incoming ownership and biases:
    the same layer sizes and held-out tasks (arm probabilities) as the other rules for a seed."""
    seeds = rl_job.seeds_for(0, 0, 3)
    cores = []
    for rule in ("reinforce", "weight_max"):
        core = NetworkWeightsCore(rl_baselines.hand_rule_config(rule, "bandit10").replace(split="heldout"),
                                  copies=len(seeds))
        core.seed(seeds)
        core.reset()
        cores.append(core)
    config = cores[1].config
    assert (config.ownership, config.bias, config.hidden_activation) == ("incoming", True, "bernoulli")
    assert config.layers == cores[0].config.layers
    assert torch.equal(cores[0].rl_state["arm_probs"], cores[1].rl_state["arm_probs"])


def test_a_rule_that_cannot_act_on_a_preset_is_skipped_with_the_reason(monkeypatch):
    from marl_net.tasks import rl as rl_tasks

    monkeypatch.setitem(rl_tasks.PRESETS, "bandit2_flat", dict(rl_tasks.PRESETS["bandit2"], layers=(4, 2),
                                                                max_cycles=4))
    results = rl_baselines.measure(["bandit2_flat"], tune_seeds=[0], eval_seeds=[1], grid=[0.1])
    assert "weight_max" not in results["bandit2_flat"] and "reinforce" in results["bandit2_flat"]
    assert "at least one hidden layer" in results["skipped"]["bandit2_flat/weight_max"]
    assert "skipped bandit2_flat/weight_max: weight_max on bandit2_flat" in rl_baselines.table(results)


def test_the_learned_rule_corrects_reinforce_at_its_tuned_step_size():
    """By default (``rl_job.ENV``: ``base_update="reinforce_update"``) the learned rule's
    ``base_rate`` is the step size the ``reinforce`` hand rule is tuned to on train-split lifetimes,
    remembered for the evaluation; a rate given with ``--set env.base_rate`` is kept,
    ``--set env.base_update=null`` has none, and another feature needs a rate given."""
    seeds = rl_job.seeds_for(0, 1, 2)
    over = {"env": {"base_update": "reinforce_update"}}
    assert rl_job.ENV["base_update"] == "reinforce_update"
    tuned: dict = {}
    rates = rl_job.base_rates(["bandit2"], None, tuned, seeds)
    expected = rl_baselines.tuned_step_sizes("reinforce", "bandit2", {}, seeds)["lr"]
    assert rates == {"bandit2": expected} and tuned[("reinforce", "bandit2")] == {"lr": expected}
    env = rl_job.launch("bandit2", rl_job.BUDGETS["quick"], 0, over, base_rate=rates["bandit2"])["env"]
    assert env["base_update"] == "reinforce_update" and env["base_rate"] == expected
    assert rl_job.base_rates(["bandit2"], {"env": {**over["env"], "base_rate": 0.5}}, {}, seeds) == {"bandit2": None}
    assert rl_job.base_rates(["bandit2"], {"env": {"base_update": None}}, {}, seeds) == {"bandit2": None}
    with pytest.raises(ValueError, match="env.base_rate"):
        rl_job.base_rates(["bandit2"], {"env": {"base_update": "output_eligibility"}}, {}, seeds)


def test_harlow_difference_is_trained_and_measured_on_its_own_preset_only_on_request(tmp_path):
    """``--tasks harlow_difference`` (Harlow with one object code for both sides) runs the whole job on
    that preset: the learned rule and every hand rule on its 9-20-3 network; the default run leaves
    it out."""
    assert "harlow_difference" not in rl_job.parse_presets(None)
    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["run", "--family", "rl", "--budget", "quick", "--tasks", "harlow_difference",
                         "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["heldout"]) == ["harlow_difference"]
    row = results["heldout"]["harlow_difference"]
    assert {rl_job.LEARNED, "reinforce", "reinforce_backprop", "weight_max", "uniform"} <= set(row)
    assert all(0.0 <= row[rule]["correct_after_first"] <= 1.0 for rule in row)
    settings = results["settings"]["harlow_difference"]
    assert settings["layers"] == [9, 20, 3] and settings["task_kwargs"] == {"encoding": "difference"}
    _, env, _ = load_policy(tmp_path / "policies" / "rl_harlow_difference.pt")
    assert env.layers == (9, 20, 3) and env.task_kwargs == {"encoding": "difference"}
