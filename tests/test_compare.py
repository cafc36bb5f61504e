"""``marl-net compare``: the Cai & Cheng comparison end to end, and the results.json format.

Run: ``.venv/bin/pytest -q tests/test_compare.py`` (about 20 s).
"""

from __future__ import annotations

import json

import pytest
import torch

from marl_net.cli import main
from marl_net.results import RULE_KEYS, TOP_KEYS, auc, build_results, read_results, write_results


@pytest.fixture(scope="module")
def teacher_student(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare_ts")
    code = main(["compare", "--task", "teacher_student", "--rules", "sgd,np,wp", "--steps", "300", "--seeds", "3",
                 "--out", str(out), "--no-progress", "--check"])
    assert code == 0  # --check: every rule lowers the loss and SGD is fastest
    return out


def test_all_rules_lower_the_loss_and_sgd_is_fastest(teacher_student):
    results = read_results(teacher_student)
    rules = results["rules"]
    assert list(rules) == ["sgd", "np", "wp"]
    for name, entry in rules.items():
        tail = sum(entry["curve_mean"][-30:]) / 30
        assert tail < 0.3 * entry["initial_loss_mean"], f"{name} did not learn: {tail:.4f} vs {entry['initial_loss_mean']:.4f}"
    for other in ("np", "wp"):
        assert rules["sgd"]["auc_mean"] < rules[other]["auc_mean"]
        assert rules["sgd"]["final_loss_mean"] < rules[other]["final_loss_mean"]
    initial = {e["initial_loss_mean"] for e in rules.values()}
    assert len(initial) == 1  # same seeds: same tasks, initial weights and first minibatch for every rule


def test_results_json_is_in_the_documented_format(teacher_student):
    raw = json.loads((teacher_student / "results.json").read_text())
    assert set(raw) == {*TOP_KEYS, "numerics"}  # plus the arithmetic that ran (marl_net.numerics.describe)
    assert raw["numerics"]["torch"] == torch.__version__ and raw["numerics"]["policy_path"] == "torch"  # hand rules
    assert raw["task"] == "teacher_student" and raw["steps"] == 300 and raw["seeds"] == [0, 1, 2]
    for entry in raw["rules"].values():
        assert set(entry) == set(RULE_KEYS)
        assert len(entry["curve_mean"]) == len(entry["curve_std"]) == 301
        assert entry["curve_mean"][0] == pytest.approx(entry["initial_loss_mean"])
        assert entry["curve_mean"][-1] == pytest.approx(entry["final_loss_mean"])
    settings = json.loads((teacher_student / "config.json").read_text())
    assert settings["hyperparameters"]["np"]["sigma"] > 0 and settings["config"]["layers"] == [8, 16, 4]


def test_plot_and_tensorboard_logs_are_written(teacher_student):
    png = teacher_student / "loss_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    for rule in ("sgd", "np", "wp"):
        events = list((teacher_student / "tb" / rule).glob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 1000


def test_digits_in_cai_cheng_setting_runs_and_learns(tmp_path):
    code = main(["compare", "--task", "digits", "--rules", "sgd,wp", "--steps", "40", "--seeds", "2",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    results = read_results(tmp_path)
    settings = json.loads((tmp_path / "config.json").read_text())
    assert settings["config"]["layers"] == [10, 1000, 10] and settings["config"]["task_kwargs"] == {"pca": 10}
    sgd = results["rules"]["sgd"]
    assert sum(sgd["curve_mean"][-5:]) / 5 < 0.8 * sgd["initial_loss_mean"]


def test_check_fails_when_sgd_is_crippled(tmp_path, capsys):
    code = main(["compare", "--rules", "sgd,wp", "--lr", "sgd=1e-5", "--steps", "40", "--seeds", "2",
                 "--out", str(tmp_path), "--no-progress", "--check"])
    assert code == 1
    assert "sgd is not the fastest" in capsys.readouterr().out


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    assert main(["compare", "--rules", "sgd,adamw", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'adamw' is unknown" in err and "'adam'" in err  # the valid choices are named
    assert main(["compare", "--rules", "sgd", "--lr", "np=0.1", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "not in --rules" in capsys.readouterr().err
    assert main(["compare", "--task", "mnist", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_compare_runs_sgd_adam_np_wp(tmp_path):
    code = main(["compare", "--rules", "sgd,adam,np,wp", "--steps", "30", "--seeds", "2", "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    rules = read_results(tmp_path)["rules"]
    assert list(rules) == ["sgd", "adam", "np", "wp"]
    assert rules["adam"]["final_loss_mean"] < 0.5 * rules["adam"]["initial_loss_mean"]


def parse(*argv):
    from marl_net.cli import build_parser
    from marl_net.commands.compare import apply_preset, build_config

    args = build_parser().parse_args(["compare", *argv])
    apply_preset(args)
    return args, build_config(args, ["sgd"])


def test_presets_set_cai_cheng_wide_networks_and_tune():
    args, config = parse("--preset", "digits_wide")
    assert args.tune and config.task == "digits" and config.layers == (10, 1000, 10)
    assert config.task_kwargs == {"pca": 10}
    args, config = parse("--preset", "digits_wide", "--task", "digits", "--layers", "10,1000,10", "--pca", "10")
    assert config.layers == (10, 1000, 10)  # restating the preset is fine
    args, config = parse()  # no preset: the old defaults, no tuning
    assert not args.tune and config.task == "teacher_student" and config.layers == (8, 16, 4)
    args, config = parse("--task", "mnist1d")
    assert config.layers == (40, 128, 10) and config.task_kwargs == {}
    args, config = parse("--task", "digits")
    assert config.task_kwargs == {"pca": 10} and not args.tune


def test_preset_errors_name_the_fix(tmp_path, capsys):
    for argv, expected in [
        (["--preset", "mnist_wide"], "--preset mnist_wide needs --data-dir"),
        (["--preset", "digits_huge"], "choose one of ['digits_wide', 'mnist_wide']"),
        (["--preset", "digits_wide", "--layers", "10,100,10"], "drop --layers (10, 100, 10) or drop --preset"),
        (["--preset", "digits_wide", "--task", "mnist1d"], "drop --task mnist1d"),
        (["--preset", "mnist_wide", "--data-dir", str(tmp_path)], "not found in"),
    ]:
        assert main(["compare", *argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (argv, err)


def test_results_reader_and_auc(tmp_path):
    curves = torch.tensor([[1.0, 0.5, 0.0], [3.0, 1.5, 1.0]])
    assert auc(curves).tolist() == [0.5, 1.75]  # trapezoid with unit spacing / steps: (0.75 + 0.25) / 2, (2.25 + 1.25) / 2
    results = build_results("teacher_student", 2, [0, 1], {"sgd": curves})
    entry = results["rules"]["sgd"]
    assert entry["final_loss_mean"] == 0.5 and entry["final_loss_std"] == 0.5 and entry["initial_loss_mean"] == 2.0
    assert entry["curve_mean"] == [2.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="expected"):
        build_results("teacher_student", 3, [0, 1], {"sgd": curves})
    del results["rules"]["sgd"]["auc_mean"]
    with pytest.raises(ValueError, match="auc_mean"):
        write_results(tmp_path / "results.json", results)
    assert not (tmp_path / "results.json").exists()


def test_check_holds_feedback_alignment_to_its_bounds_and_lets_adam_beat_sgd():
    from marl_net.commands.compare import check_expectations

    def results(**finals):  # straight curves from 1.0 to each rule's final loss over 2 steps
        curves = {name: torch.tensor([[1.0, (1.0 + f) / 2, f]] * 2) for name, f in finals.items()}
        return build_results("teacher_student", 2, [0, 1], curves)

    assert check_expectations(results(sgd=0.010, adam=0.005, np=0.150, wp=0.170, dfa=0.019, fa=0.019)) == []
    failures = check_expectations(results(sgd=0.010, np=0.150, dfa=0.021))
    assert failures == ["dfa's final loss 0.021 is above 2x sgd's 0.01"]
    failures = check_expectations(results(sgd=0.010, np=0.050, fa=0.016))
    assert failures == ["fa's final loss 0.016 is not below 0.3x np's 0.05"]
    failures = check_expectations(results(sgd=0.010, wp=0.008))
    assert failures == ["sgd is not the fastest: ['wp'] reach a lower time-averaged loss"]


def test_feedback_alignment_passes_the_check_on_heldout_teacher_student(tmp_path):
    """The issue's command at a smaller scale (default step sizes, 4 seeds): dfa within 2x SGD, below 0.3x NP."""
    code = main(["compare", "--rules", "sgd,np,dfa", "--steps", "50", "--seeds", "4", "--out", str(tmp_path),
                 "--no-progress", "--check"])
    assert code == 0
    rules = read_results(tmp_path)["rules"]
    assert rules["dfa"]["final_loss_mean"] < 0.3 * rules["np"]["final_loss_mean"]
