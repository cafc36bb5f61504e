"""Test accuracy on each instance's test split: hand-built networks with known accuracy, and compare's keys.

Run: ``.venv/bin/pytest -q tests/test_accuracy.py`` (about 10 s).
"""

from __future__ import annotations

import json

import pytest
import torch

from marl_net import accuracy
from marl_net.cli import main
from marl_net.config import EnvConfig
from marl_net.results import ACCURACY_KEYS, read_results
from marl_net.tasks import make_task
from marl_net.tasks.base import _SPLIT_SIZE


def multiplexer_solver(copies: int) -> list[torch.Tensor]:
    """A 20-16-2 ReLU network that computes the 4-address multiplexer exactly. Hidden unit a fires
    relu(s_a + x_{4+a} - 4), where s_a = sum_i b_i x_i is +4 only when the address bits x_0..x_3 spell
    a (b_i = +-1 its bits, most significant first) and at most +2 otherwise: it is 1 exactly when a is
    the address and data bit a is +1. Output 1 sums the hidden units; output 0 is the constant 0.5."""
    w0 = torch.zeros(16, 21)
    for a in range(16):
        for i in range(4):
            w0[a, i] = 1.0 if (a >> (3 - i)) & 1 else -1.0
        w0[a, 4 + a] = 1.0
        w0[a, 20] = -4.0  # the bias column
    w1 = torch.zeros(2, 17)
    w1[0, 16] = 0.5
    w1[1, :16] = 1.0
    return [w0.expand(copies, -1, -1).clone(), w1.expand(copies, -1, -1).clone()]


MUX = EnvConfig(task="multiplexer", layers=(20, 16, 2), hidden_activation="relu", bias=True, ownership="incoming",
                task_kwargs={"num_samples": 512})


def test_a_network_that_classifies_perfectly_scores_one():
    ids = [3, 77, 1234]
    acc = accuracy.test_accuracy(MUX, ids, multiplexer_solver(3))
    assert acc.shape == (3,) and acc.tolist() == [1.0, 1.0, 1.0]
    # the test split holds both labels in fair numbers and is not the training data
    task = make_task("multiplexer", num_samples=512)
    test, train = task.test_data(3), task.instance(3)
    assert 0.4 < test.targets.float().mean() < 0.6 and not torch.equal(test.inputs, train.inputs)
    # breaking one hidden unit (address 5 never fires) costs exactly the test samples addressed to 5 with bit +1
    params = multiplexer_solver(1)
    params[0][0, 5, 20] = -100.0
    x = task.test_data(77).inputs
    addressed = ((x[:, :4] > 0).long() * torch.tensor([8, 4, 2, 1])).sum(1) == 5
    lost = (addressed & (x[:, 4 + 5] > 0)).float().mean()
    assert accuracy.test_accuracy(MUX, [77], params).item() == pytest.approx(1.0 - lost.item())


@pytest.mark.parametrize("cls", [0, 3])
def test_a_constant_network_scores_the_class_frequency(cls):
    config = EnvConfig(task="digits", layers=(10, 6, 10), bias=True, ownership="incoming", task_kwargs={"pca": 10})
    ids = [11, _SPLIT_SIZE + 11] if cls == 0 else [_SPLIT_SIZE + 5, _SPLIT_SIZE + 6]
    if cls == 0:  # train and held-out ids have test splits of different sizes: one split per call
        with pytest.raises(ValueError, match="one split"):
            accuracy.test_accuracy(config, ids, [torch.zeros(2, 6, 11), torch.zeros(2, 10, 7)])
        ids = ids[:1]
    e = len(ids)
    w1 = torch.zeros(e, 10, 7)
    w1[:, cls, 6] = 1.0  # every output 0 but class cls's bias
    acc = accuracy.test_accuracy(config, ids, [torch.randn(e, 6, 11), w1])
    task = make_task("digits", pca=10)
    expected = [float((task.test_data(t).targets == cls).float().mean()) for t in ids]
    assert acc.tolist() == pytest.approx(expected)
    assert all(0 < v < 0.3 for v in expected)


def test_non_finite_outputs_count_as_wrong_and_bad_input_is_named():
    params = multiplexer_solver(2)
    params[1][1] = float("nan")
    assert accuracy.test_accuracy(MUX, [1, 2], params).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="not a classification task"):
        accuracy.test_accuracy(EnvConfig(task="teacher_student"), [0], [torch.zeros(1, 16, 8), torch.zeros(1, 4, 16)])
    with pytest.raises(ValueError, match=r"expected \(2, 16, 21\)"):
        accuracy.test_accuracy(MUX, [1, 2], multiplexer_solver(3))


def test_compare_writes_test_accuracy_on_classification_tasks(tmp_path, capsys):
    code = main(["compare", "--task", "multiplexer", "--rules", "sgd,adam", "--steps", "30", "--seeds", "2",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    assert "test acc" in capsys.readouterr().out
    rules = read_results(tmp_path)["rules"]
    raw = json.loads((tmp_path / "results.json").read_text())["rules"]
    for name in ("sgd", "adam"):
        assert all(k in raw[name] for k in ACCURACY_KEYS)
        assert 0.0 <= rules[name]["test_accuracy_mean"] <= 1.0 and rules[name]["test_accuracy_std"] >= 0.0


def test_compare_on_mnist1d_reports_test_accuracy_per_rule(tmp_path, capsys):
    """``marl-net compare --task mnist1d``: every rule's accuracy on the 500 held-out signals its instance
    never trained on (the package's generator; the first run caches the 5,000 signals)."""
    code = main(["compare", "--task", "mnist1d", "--rules", "sgd,dfa,np", "--steps", "60", "--seeds", "2",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    assert "test acc" in capsys.readouterr().out
    rules = read_results(tmp_path)["rules"]
    assert list(rules) == ["sgd", "dfa", "np"]
    for name, entry in rules.items():
        assert 0.0 <= entry["test_accuracy_mean"] <= 1.0 and entry["test_accuracy_std"] >= 0.0, name
    assert rules["sgd"]["test_accuracy_mean"] > 0.15 and rules["dfa"]["test_accuracy_mean"] > 0.15  # chance: 0.1
