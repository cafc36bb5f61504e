"""The Chung reproduction end to end, on tiny budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from marl_net.cli import main as cli_main
from marl_net.reproduce import check, report
from marl_net.reproduce.chung import PAPER_TABLE1, TASKS, run_method
from marl_net.reproduce.control import run_control
from marl_net.reproduce.methods import METHODS, RuleOptions, parse_methods
from marl_net.reproduce.multiplexer import multiplexer_inputs, run_multiplexer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_multiplexer_inputs_address_the_data_bit():
    u = torch.full((1, 20), 0.9)  # every bit 0 -> -1
    u[0, 1] = 0.1  # address bits 0100 -> data bit 4
    u[0, 4 + 4] = 0.1  # that data bit is 1
    x, target = multiplexer_inputs(u)
    assert x[0, 1] == 1 and x[0, 0] == -1 and x[0, 8] == 1
    assert target.tolist() == [1]
    u[0, 8] = 0.9
    assert multiplexer_inputs(u)[1].tolist() == [0]


@pytest.mark.parametrize("name", ["weight_max", "reinforce", "reinforce_thomas", "ste", "backprop"])
def test_multiplexer_batched_seeds_equal_one_by_one(name):
    task, method, opts = TASKS["multiplexer"], METHODS[name], RuleOptions()
    batched = run_multiplexer(task, method, [3, 5, 8], 200, opts)
    for i, seed in enumerate([3, 5, 8]):
        np.testing.assert_array_equal(batched[i], run_multiplexer(task, method, [seed], 200, opts)[0])


@pytest.mark.parametrize("name", ["weight_max", "weight_max_traces"])
def test_cartpole_batched_seeds_equal_one_by_one(name):
    task, method = TASKS["cartpole"], METHODS[name]
    opts = RuleOptions(gamma=task.gamma, lam=task.trace_lambda)
    batched = run_control(task, method, [0, 1], 3, opts)
    assert batched.shape == (2, 3) and np.isfinite(batched).all()
    for i, seed in enumerate([0, 1]):
        np.testing.assert_array_equal(batched[i], run_control(task, method, [seed], 3, opts)[0])


def test_multiplexer_learns_with_weight_max():
    """A short run already beats chance (0) clearly in its last episodes."""
    r = run_multiplexer(TASKS["multiplexer"], METHODS["weight_max"], [0, 1], 4000, RuleOptions())
    assert r[:, -1000:].mean() > 0.05


def test_cli_quick_multiplexer_writes_outputs(tmp_path, capsys):
    out = tmp_path / "mux"
    rc = cli_main(["reproduce", "chung", "--task", "multiplexer", "--budget", "quick", "--seeds", "2",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["task"] == "multiplexer" and payload["seeds"] == [0, 1]
    assert payload["numerics"]["torch"] and payload["numerics"]["cpu"]  # the arithmetic is recorded
    names = [r["method"] for r in payload["results"]]
    assert names == ["weight_max", "reinforce", "reinforce_thomas", "ste", "backprop"]
    for r in payload["results"]:
        assert len(r["average_return_per_seed"]) == 2 and -1 <= r["mean"] <= 1
        assert r["episodes"] == TASKS["multiplexer"].quick_episodes
        assert r["paper"] == list(PAPER_TABLE1["multiplexer"][r["method"]])
    table = (out / "table.md").read_text()
    assert "Weight Max" in table and "0.810" in table
    assert (out / "learning_curves.png").stat().st_size > 1000
    events = list((out / "tb").rglob("events.out.tfevents.*"))
    assert len(events) == len(names)
    assert "Weight Max" in capsys.readouterr().out
    merged = report.merge([str(out / "results.json")], tmp_path / "merged")
    assert merged == table and (tmp_path / "merged" / "learning_curves.png").exists()


def test_cli_quick_cartpole_check_fails_below_budget(tmp_path, capsys):
    """--check on a tiny budget must fail (the targets are for the paper's budget)."""
    rc = cli_main(["reproduce", "chung", "--task", "cartpole", "--methods", "weight_max,reinforce",
                   "--episodes", "2", "--seeds", "1", "--out", str(tmp_path), "--check", "--no-progress"])
    assert rc == 1
    out = capsys.readouterr().out
    assert "[FAIL]" in out and "--budget paper" in out


def test_check_targets_on_made_up_summaries():
    def row(method, mean, n=3, episodes=1000):
        return {"method": method, "mean": mean, "std": 0.0, "seeds": list(range(n)), "episodes": episodes}

    assert all(c.passed for c in check.check_results("cartpole", [row("weight_max", 350), row("reinforce", 150)], 1000))
    assert not all(c.passed for c in check.check_results("cartpole", [row("weight_max", 250), row("reinforce", 150)], 1000))
    assert not all(c.passed for c in check.check_results("cartpole", [row("weight_max", 350, n=2), row("reinforce", 1)], 1000))
    mux = [row("weight_max", 0.8, episodes=800_000), row("reinforce", 0.3, episodes=800_000)]
    assert all(c.passed for c in check.check_results("multiplexer", mux, 800_000))
    mux[0]["mean"] = 0.5
    assert not all(c.passed for c in check.check_results("multiplexer", mux, 800_000))


def test_check_files_combines_runs(tmp_path):
    paths = []
    for method, mean in (("weight_max", 0.8), ("reinforce", 0.3)):
        row = {"method": method, "mean": mean, "std": 0.0, "seeds": [0, 1, 2], "episodes": 800_000}
        path = tmp_path / f"{method}.json"
        path.write_text(json.dumps({"task": "multiplexer", "results": [row]}))
        paths.append(str(path))
    assert check.main(["--results", *paths]) == 0
    assert check.main(["--results", paths[0]]) == 1  # REINFORCE missing


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--methods", "nope"], "unknown method"),
        (["--methods", "weight_max_traces"], "multi-step"),
        (["--seeds", "x"], "--seeds"),
        (["--episodes", "0"], "--episodes"),
    ],
)
def test_cli_bad_input_names_the_fix(argv, message, capsys, tmp_path):
    rc = cli_main(["reproduce", "chung", "--task", "multiplexer", "--out", str(tmp_path), *argv])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_run_method_summary_fields():
    r = run_method(TASKS["multiplexer"], parse_methods("weight_max")[0], [0, 1], 50)
    assert r["returns"].shape == (2, 50)
    assert r["mean"] == pytest.approx(float(np.mean(r["average_return_per_seed"])))
    assert r["wall_s_per_1000_episodes"] > 0
