"""The main job end to end on a tiny budget: files, format, fair comparison, targets check."""

import json

import pytest
import torch

from marl_net import main_job
from marl_net.cli import main as cli_main
from marl_net.observations import FEATURES

TINY = main_job.Budget("test", iterations=2, copies=2, eval_episodes=3, tune_seeds=1, tune_points=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("main")
    results = main_job.run(TINY, out, seed=1, progress=False)
    return out, results


def test_writes_results_table_curves_tensorboard_and_policy(tiny_run):
    out, results = tiny_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["budget"]["name"] == "test" and on_disk["train"]["iterations"] == 2
    assert set(on_disk["heldout"]) == {"teacher_student", "teacher_student_wide", "digits"}
    for task, by_rule in on_disk["heldout"].items():
        assert set(by_rule) == {"learned", "sgd", "np", "wp"}
        for entry in by_rule.values():
            assert {"final_loss_mean", "final_loss_std", "auc_mean"} <= set(entry)
            assert len(entry["curve_mean"]) == 51  # max_cycles + 1
        assert (out / f"curves_{task}.png").stat().st_size > 0
    assert set(on_disk["tuned_lr"]["digits"]) == {"learned", "sgd", "np", "wp"}
    trained_scale = on_disk["train"]["env"]["action_scale"]
    assert on_disk["tuned_lr"]["digits"]["learned"] in [trained_scale * f for f in main_job.LEARNED_SCALE_GRID]
    assert on_disk["train"]["ppo"]["lr_anneal_iterations"] == 2  # the lr reaches 0 with the budget's last iteration
    assert "| teacher_student | learned |" in (out / "table.md").read_text()
    assert list((out / "tb" / "meta_train").glob("events.out.tfevents.*"))
    assert list((out / "tb" / "digits" / "np").glob("events.out.tfevents.*"))
    numerics = on_disk["numerics"]  # the arithmetic that produced the figures (marl_net.numerics)
    assert numerics["policy_path"] == "fused kernel" and numerics["torch"] == torch.__version__
    assert "-ffast-math" not in numerics["kernel_builds"]["synapse_kernel"]["flags"] and numerics["cpu"]
    saved = torch.load(out / "policy.pt")
    assert saved["numerics"]["policy_path"] == "fused kernel"
    assert not any(FEATURES[name].privileged for name in saved["env"]["observations"])  # local features only


def test_the_learned_rule_step_is_tuned_on_the_train_split_then_run_held_out():
    """The learned rule's action_scale is the grid value with the best train-split final loss (the
    tuning metric of every rule), and its held-out curves are those of the policy run at that scale."""
    from marl_net.evaluation import rollout_losses
    from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy
    from marl_net.rules.tuning import score

    setting = main_job.heldout_settings(main_job.train_config())["teacher_student"]
    torch.manual_seed(0)
    policy = SynapsePolicy(PolicyConfig(num_features=len(setting.observations) + 1, action_gain=5.0))
    budget = main_job.Budget("t", iterations=1, tune_seeds=2)
    scale, curves = main_job.learned_rule_curves(policy, setting, list(range(3)), budget, seed=4, device="cpu")
    assert main_job.TUNING_METRIC == "final"
    final = [float(score(rollout_losses(policy, setting.replace(split="train", action_scale=setting.action_scale * f),
                                        episodes=2, seed=4), "final").mean()) for f in main_job.LEARNED_SCALE_GRID]
    assert scale == setting.action_scale * main_job.LEARNED_SCALE_GRID[final.index(min(final))]
    assert len(set(final)) == len(final)  # the step size matters to this policy: the choice is a real one
    expected = rollout_losses(policy, setting.replace(action_scale=scale), episodes=3, seed=main_job.eval_base_seed(4))
    torch.testing.assert_close(curves, expected)


def test_hand_rules_are_tuned_by_the_same_metric_on_the_train_split(tiny_run):
    from marl_net.rules.tuning import default_grid, tune_lr

    _, results = tiny_run
    setting = main_job.heldout_settings(main_job.train_config())["teacher_student"]
    grid = default_grid("np", setting.task, points=TINY.tune_points)
    tuned = tune_lr("np", setting.replace(split="train"), seeds=range(TINY.tune_seeds), grid=grid, metric="final")
    assert results["tuned_lr"]["teacher_student"]["np"] == tuned.best_lr


def test_every_rule_sees_the_same_tasks_and_initial_weights(tiny_run):
    _, results = tiny_run
    for task, by_rule in results["heldout"].items():
        first = {rule: e["curve_mean"][0] for rule, e in by_rule.items()}
        assert max(first.values()) - min(first.values()) < 1e-5, (task, first)


def test_the_wide_setting_is_wider_and_digits_has_ten_classes(tiny_run):
    _, results = tiny_run
    s = results["settings"]
    assert s["teacher_student_wide"]["layers"][1] > s["teacher_student"]["layers"][1]
    assert s["digits"]["layers"][-1] == 10 and all(v["split"] == "heldout" for v in s.values())


def test_check_command_reports_and_fails_on_missed_targets(tiny_run, tmp_path, capsys):
    out, results = tiny_run
    fake = json.loads(json.dumps(results))
    for task in ("teacher_student", "teacher_student_wide"):
        fake["heldout"][task]["learned"]["final_loss_mean"] = 0.5 * fake["heldout"][task]["np"]["final_loss_mean"]
    (tmp_path / "results.json").write_text(json.dumps(fake))
    assert cli_main(["check", str(tmp_path)]) == 0
    fake["heldout"]["teacher_student"]["learned"]["final_loss_mean"] = 10.0
    (tmp_path / "results.json").write_text(json.dumps(fake))
    assert cli_main(["check", str(tmp_path)]) == 1
    assert "[FAIL] teacher_student" in capsys.readouterr().out


def test_budget_parsing():
    assert main_job.parse_budget("quick").name == "quick"
    assert main_job.parse_budget("0.5").iterations == main_job.BUDGETS["default"].iterations // 2
    with pytest.raises(ValueError, match="choose .* or a positive scale factor"):
        main_job.parse_budget("huge")
    with pytest.raises(ValueError, match="must be positive"):
        main_job.parse_budget("-1")


def test_overrides_and_observations_reach_training_and_evaluation(tmp_path, capsys):
    from marl_net.commands.run import parse_job_overrides

    budget = main_job.Budget("test", iterations=1, copies=2, eval_episodes=2, tune_seeds=1, tune_points=2)
    from marl_net.observations import DEFAULT_FEATURES

    names = main_job.parse_observations("default,gradient")
    assert names == (*DEFAULT_FEATURES, "gradient")
    overrides = parse_job_overrides(["env.action_scale=0.1", "ppo.gamma=0.5", "policy.hidden=8"], "default,gradient")
    results = main_job.run(budget, tmp_path, seed=0, progress=False, overrides=overrides)
    train = results["train"]
    assert tuple(train["env"]["observations"]) == names and train["env"]["action_scale"] == 0.1
    assert train["ppo"]["gamma"] == 0.5 and train["policy"]["hidden"] == 8
    assert main_job.ppo_settings(main_job.BUDGETS["default"], {"ppo": {"lr_anneal_iterations": None}})[
        "lr_anneal_iterations"] is None  # --set ppo.lr_anneal_iterations=null: a constant lr
    assert all(tuple(s["observations"]) == names and s["action_scale"] == 0.1 for s in results["settings"].values())
    assert main_job.TRAIN_ENV["action_scale"] == 0.2  # the module's defaults are untouched
    assert main_job.privileged_features(names) == ["gradient"]
    assert main_job.privileged_features(main_job.train_config().observations) == []  # the default is local
    cli_main(["check", str(tmp_path)])
    assert "observed features the registry marks privileged: ['gradient']" in capsys.readouterr().out


@pytest.mark.parametrize("items, message", [
    (["action_scale=0.1"], "write SECTION.KEY=VALUE"),
    (["envv.action_scale=0.1"], "write SECTION.KEY=VALUE"),
    (["env.action_scael=0.1"], "did you mean 'action_scale'"),
    (["env.action_scale=-1"], "action_scale=-1 must be positive"),
    (["ppo.gamam=0.9"], "did you mean 'gamma'"),
    (["policy.hiden=8"], "unknown policy settings \\['hiden'\\]"),
])
def test_bad_set_options_name_the_fix(items, message):
    from marl_net.commands.run import parse_job_overrides

    with pytest.raises(ValueError, match=message):
        parse_job_overrides(items, None)


def test_observations_parsing_refuses_unknown_and_repeated_names():
    assert main_job.parse_observations("default,np_eligibility,np_error") == main_job.train_config().observations
    with pytest.raises(ValueError, match="unknown observation features"):
        main_job.parse_observations("default,gradeint")
    with pytest.raises(ValueError, match="lists a feature twice"):
        main_job.parse_observations("default,weight")


def test_restarts_keep_the_meta_training_best_on_the_train_split(tmp_path):
    budget = main_job.Budget("test", iterations=1, copies=2, eval_episodes=3, tune_seeds=1, tune_points=2, restarts=2)
    results = main_job.run(budget, tmp_path, seed=3, progress=False)
    restarts = results["train"]["restarts"]
    assert [r["seed"] for r in restarts] == [3, main_job.restart_seed(3, 1)] and restarts[0]["seed"] != restarts[1]["seed"]
    finals = [r["train_final_loss"] for r in restarts]
    assert results["train"]["selected_restart"] == finals.index(min(finals))
    assert results["train"]["iterations"] == 2  # both meta-trainings counted
    assert list((tmp_path / "tb" / "meta_train_1").glob("events.out.tfevents.*"))
    with pytest.raises(ValueError, match="restarts"):
        main_job.run(main_job.Budget("bad", iterations=1, restarts=0), tmp_path, progress=False)


def test_beating_np_and_wp_on_the_wide_network_means_strictly_lower():
    def results(learned_wide):
        rules = lambda learned: {"learned": {"final_loss_mean": learned}, "np": {"final_loss_mean": 1.0},  # noqa: E731
                                 "wp": {"final_loss_mean": 2.0}, "sgd": {"final_loss_mean": 0.1}}
        return {"heldout": {"teacher_student": rules(0.8), "teacher_student_wide": rules(learned_wide)}}

    assert [passed for _, passed, _ in main_job.check_targets(results(0.99))] == [True, True]
    assert [passed for _, passed, _ in main_job.check_targets(results(1.0))] == [True, False]  # a tie does not beat
