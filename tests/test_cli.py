"""The command line: registries, bad input answered in one line with exit status 2, ``eval`` of a
fast-path checkpoint. The main command end to end through the command line: tests/test_main_golden.py."""

import json
import re

import pytest

from marl_net.cli import main


def test_schemes_json_lists_the_registries(capsys):
    assert main(["schemes", "--json"]) == 0
    reg = json.loads(capsys.readouterr().out)
    assert set(reg) == {"rewards", "observations", "tasks"}
    rewards = {r["name"]: r for r in reg["rewards"]}
    assert {"global_loss", "loss_improvement", "weight_max", "difference"} <= set(rewards)
    assert rewards["weight_max"]["requires_ownership"] == "incoming"
    feats = {f["name"]: f for f in reg["observations"]}
    assert feats["gradient"]["privileged"] and not feats["gradient"]["default"]
    assert feats["weight"]["default"] and not feats["weight"]["privileged"]
    assert {"teacher_student", "digits", "mnist", "multiplexer"} <= {t["name"] for t in reg["tasks"]}
    assert all(r["description"] for section in reg.values() for r in section)


def test_schemes_table(capsys):
    assert main(["schemes"]) == 0
    out = capsys.readouterr().out
    assert "weight_max" in out and "[ownership=incoming]" in out and "[privileged]" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


# Bad input: one line on stderr, "marl-net COMMAND: <what is wrong and the fix>", exit status 2.
BAD_INPUT_CASES = {
    "budget not a number": (["run", "--budget", "banana"], r"marl-net run: --budget 'banana': choose \['default', 'quick'\] "
                                                           "or a positive scale factor"),
    "budget zero": (["run", "--budget", "0"], "marl-net run: --budget 0.0: a scale factor must be positive"),
    "budget infinite": (["run", "--budget", "inf"], "marl-net run: --budget 'inf': a scale factor must be a finite"),
    "budget NaN": (["run", "--budget", "nan"], "marl-net run: --budget 'nan': a scale factor must be a finite"),
    "no restarts": (["run", "--restarts", "0"], r"marl-net run: restarts=0: meta-train at least once \(--restarts 1"),
    "set without a value": (["run", "--set", "ppo.lr"], "marl-net run: --set 'ppo.lr': write key=value"),
    "set unknown section": (["run", "--set", "stop.x=1"], "marl-net run: --set 'stop.x=1': write SECTION.KEY=VALUE"),
    "set a string number": (["run", "--set", "ppo.lr=banana"], "marl-net run: ppo setting: lr='banana' must be a number"),
    "set a bad env value": (["run", "--set", "env.layers=84"], "marl-net run: env setting: layers=84 must be a list of integers"),
    "set a bad policy value": (["run", "--set", "policy.hidden=32.5"], "marl-net run: policy setting: hidden=32.5 must be "
                                                                       "an integer"),
    "unknown observation": (["run", "--set", "env.observations=[weight,dopamine]"],
                            "marl-net run: env setting: unknown observation features"),
    "unknown level": (["run", "--levels", "perturbation,dopamine"], "marl-net run: --levels 'perturbation,dopamine': "
                      "choose comma-separated names"),
    "unknown held-out setting": (["run", "--tasks", "digits"], "marl-net run: budget 'default': held-out settings "
                                 r"\['digits'\] are unknown"),
    "missing launch config": (["tune", "--config", "no/such/launch.yaml"], "marl-net tune: launch config "
                                                                           "'no/such/launch.yaml' does not exist"),
    "missing checkpoint": (["eval", "no/such/checkpoint"], "marl-net eval: checkpoint 'no/such/checkpoint' does not exist"),
    "bench without threads": (["bench", "throughput", "--threads", "0"], r"marl-net bench: --threads 0: give at least "
                                                                          "1 torch thread"),
}


def _one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    return err


@pytest.mark.parametrize("case", list(BAD_INPUT_CASES))
def test_bad_input_is_one_line_and_exit_status_2(case, capsys):
    argv, message = BAD_INPUT_CASES[case]
    _one_line_exit_2(capsys, argv, message)


def test_debug_shows_the_traceback_instead():
    with pytest.raises(ValueError, match="a scale factor must be a finite"):
        main(["run", "--budget", "inf", "--debug"])
    with pytest.raises(ValueError, match="a scale factor must be a finite"):
        main(["--debug", "run", "--budget", "inf"])


@pytest.mark.parametrize("text, message", [
    ("path: fast\nppo: {lr: banana}\n", "marl-net tune: ppo section: lr='banana' must be a number"),
    ("path: fast\nstop: {training_iteration: ten}\n", "marl-net tune: stop.training_iteration='ten' must be a number"),
    ("path: fast\nrun: {num_samples: 0}\n", "marl-net tune: run.num_samples=0 must be at least 1"),
    ("path: fast\npolicy: {hidden: '32'}\n", "marl-net tune: policy section: hidden='32' must be an integer"),
    ("path: fast\nenv: {clip_actions: 'no'}\n", "marl-net tune: env section: clip_actions='no' must be a boolean"),
    ("path: fast\nenv: [1, 2\n", "marl-net tune: .*launch.yaml is not valid YAML"),
])
def test_tune_refuses_a_bad_launch_before_ray_starts(tmp_path, capsys, text, message):
    import ray

    config = tmp_path / "launch.yaml"
    config.write_text(text)
    _one_line_exit_2(capsys, ["tune", "--config", str(config)], message)
    assert not ray.is_initialized()


def _fast_checkpoint(directory, **env):
    from marl_net.fast.ppo import FastPPO, FastPPOConfig

    trainer = FastPPO({"layers": (4, 6, 2), "max_cycles": 4, "batch_size": 8, **env}, {"hidden": 8},
                      FastPPOConfig(copies=2, rollout_steps=2, minibatch_size=16, num_epochs=1), seed=0)
    trainer.train()
    trainer.save(str(directory / "checkpoint_000001"))
    return directory / "checkpoint_000001" / FastPPO.CHECKPOINT_FILE


def test_eval_runs_a_fast_path_checkpoint_and_refuses_a_mismatched_one(tmp_path, capsys):
    import torch

    file = _fast_checkpoint(tmp_path / "trial")
    assert main(["eval", str(tmp_path / "trial"), "--episodes", "2", "--out", str(tmp_path / "eval")]) == 0
    curve = json.loads((tmp_path / "eval" / "loss_curve.json").read_text())
    assert curve["env_config"]["layers"] == [4, 6, 2] and len(curve["loss_mean"]) == 5
    capsys.readouterr()

    state = torch.load(file, weights_only=False)
    state["env_config"]["observations"] = ["weight"]  # the env it records is not the one the policy reads
    torch.save(state, file)
    _one_line_exit_2(capsys, ["eval", str(file.parent)], "marl-net eval: the policy reads .* columns per synapse "
                                                         ".*differ in 'observations'")
    state["policy_config"]["hidden"] = 16  # the policy it records is not the one its weights hold
    torch.save(state, file)
    _one_line_exit_2(capsys, ["eval", str(file.parent)], r"marl-net eval: .*its policy configuration .* does not fit "
                                                         r"its saved weights \(keys \[")
    del state["env_config"]
    torch.save(state, file)
    _one_line_exit_2(capsys, ["eval", str(file.parent)], "marl-net eval: .* without its env config")
    (tmp_path / "empty").mkdir()
    _one_line_exit_2(capsys, ["eval", str(tmp_path / "empty")], "marl-net eval: .* is not an RLlib checkpoint of "
                                                                "marl_net")


def test_check_compare_and_reproduce_answer_bad_input_the_same_way(tmp_path, capsys):
    _one_line_exit_2(capsys, ["check", str(tmp_path)], "marl-net check: .*results.json does not exist; run `marl-net run")
    (tmp_path / "results.json").write_text("{not json")
    _one_line_exit_2(capsys, ["check", str(tmp_path)], "marl-net check: .*results.json is not JSON")
    _one_line_exit_2(capsys, ["compare", "--layers", "8,x,4", "--out", str(tmp_path)],
                     "marl-net compare: --layers '8,x,4': give comma-separated integer sizes")
    _one_line_exit_2(capsys, ["reproduce", "chung", "--threads", "0"], "marl-net reproduce: --threads 0: give at least 1")
    with pytest.raises(ValueError, match="give comma-separated integer sizes"):
        main(["compare", "--layers", "8,x,4", "--debug"])
