"""The command line: registries and the main command's smoke run."""

import json

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
