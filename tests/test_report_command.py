"""``marl-net report RUN_DIR``: the ladder's table.md and curves_LEVEL.png rewritten from results.json.

The results.json holds real held-out curves (SGD and NP, two seeds, a few updates on teacher-student
through the rule trainer) in the ladder's format (``levels``, ``heldout``); a learned rule's row
reads the same way, so the table and figures are exercised on real numbers without meta-training.
"""

from __future__ import annotations

import json

import pytest

from marl_net import cli
from marl_net.config import EnvConfig
from marl_net.report import table
from marl_net.results import build_results
from marl_net.rules.registry import run_rule


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    config = EnvConfig(task="teacher_student", layers=(4, 6, 2), max_cycles=4, split="heldout")
    seeds = [0, 1]
    curves = {rule: run_rule(rule, config, seeds=seeds).curves for rule in ("sgd", "np")}
    heldout = {"teacher_student": build_results("teacher_student", 4, seeds, curves)["rules"]}
    out = tmp_path_factory.mktemp("run")
    results = {"levels": {"perturbation": {}, "gradient": {}}, "heldout": heldout}
    (out / "results.json").write_text(json.dumps(results))
    return out, results


def test_report_writes_the_table_and_a_figure_per_level(run_dir, tmp_path, capsys):
    out, results = run_dir
    assert cli.main(["report", str(out), "--out", str(tmp_path / "img")]) == 0
    written = sorted(p.name for p in (tmp_path / "img").iterdir())
    assert written == ["curves_gradient.png", "curves_perturbation.png", "table.md"]
    for name in ("curves_gradient.png", "curves_perturbation.png"):
        assert (tmp_path / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "img" / "table.md").read_text()
    assert text == table(results)
    # NP is the perturbation level's baseline; SGD is in both levels' rows, with NP's final loss over SGD's
    sgd, np_ = (results["heldout"]["teacher_student"][r]["final_loss_mean"] for r in ("sgd", "np"))
    assert f"| teacher_student | np | {np_:.4f}" in text and f"{np_ / sgd:.2f} |" in text
    assert "wrote" in capsys.readouterr().out

    assert "Tuned to the smallest or largest" not in text  # no step size tuned to an end


def test_the_table_names_rules_whose_step_size_tuned_to_an_end_of_the_values_tried(run_dir):
    _, results = run_dir
    flagged = {**results, "networks": {"teacher_student": {"tuned_at_grid_edge": ["np", "sgd"]},
                                       "mnist1d": {"tuned_at_grid_edge": []}}}
    note = table(flagged).rstrip().splitlines()[-1]
    assert note.startswith("Tuned to the smallest or largest") and note.endswith("teacher_student: np, sgd.")


def test_report_defaults_to_the_run_dir(run_dir):
    out, _ = run_dir
    assert cli.main(["report", str(out)]) == 0
    assert (out / "table.md").is_file() and (out / "curves_gradient.png").is_file()


@pytest.mark.parametrize("content, words", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
    (json.dumps({"task": "teacher_student", "rules": {}}), "not a rule-ladder results.json"),
])
def test_report_refuses_what_is_not_a_ladder_run(tmp_path, capsys, content, words):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("marl-net report: ") and words in err and len(err.strip().splitlines()) == 1
