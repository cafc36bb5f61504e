"""The ``adam`` rule equals ``torch.optim.Adam`` step for step, one copy or many; ``dfa_adam`` is
``torch.optim.Adam`` (beta1 0.7) fed DFA's update direction.

Run: ``.venv/bin/pytest -q tests/test_adam.py`` (about 3 s).
"""

from __future__ import annotations

import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.feedback_alignment import eligibility
from marl_net.rules.adam import Adam, dfa_adam
from marl_net.rules.registry import run_rule
from marl_net.rules.trainer import train


class Recorder:
    """Runs a real rule inside the trainer and keeps, per step, the weights it saw and the gradient it
    used (the trainer's own ``ctx.gradient()``, or DFA's ``eligibility(ctx)`` for a feedback rule),
    so a reference optimizer can replay them."""

    def __init__(self, rule):
        self.rule, self.name = rule, rule.name
        self.feedback = rule.feedback  # the trainer draws a feedback rule's matrices
        self.params, self.grads = [], []

    def start(self, config, copies):
        self.rule.start(config, copies)

    def update(self, ctx):
        self.params.append([p.clone() for p in ctx.params])
        signal = ctx.gradient() if self.feedback is None else eligibility(ctx)
        self.grads.append([g.clone() for g in signal])
        return self.rule.update(ctx)


@pytest.mark.parametrize("bias,make", [(False, Adam), (True, Adam), (False, dfa_adam), (True, dfa_adam)])
def test_adam_equals_torch_adam_step_for_step_per_copy(bias, make):
    """Two copies with different step sizes in one batched run: each copy's weights after every step
    equal those of a separate torch.optim.Adam over that copy alone, fed the same gradients (DFA's
    update directions for ``dfa_adam``). This is what makes one [E, rows, cols] tensor per layer a
    faithful batch of E Adam runs."""
    config = EnvConfig(task="teacher_student", layers=(3, 5, 2), bias=bias,
                       ownership="incoming" if bias else "outgoing")
    lrs = [0.05, 0.003]
    rec = Recorder(make(lr=lrs))
    steps = 12
    run = train(rec, config, seeds=[4, 9], steps=steps)
    assert len(rec.grads) == steps
    for copy, lr in enumerate(lrs):
        ref = [p[copy].clone().requires_grad_(True) for p in rec.params[0]]
        opt = torch.optim.Adam(ref, lr=float(torch.tensor(lr, dtype=torch.float32)),
                               betas=(rec.rule.beta1, rec.rule.beta2))
        for t in range(steps):
            for p, g in zip(ref, rec.grads[t]):
                p.grad = g[copy].clone()
            opt.step()
            seen = rec.params[t + 1] if t + 1 < steps else run.params
            for p, q in zip(ref, seen):
                torch.testing.assert_close(q[copy], p.detach(), rtol=2e-6, atol=1e-7)
    assert rec.rule.beta1 == (0.7 if make is dfa_adam else 0.9)  # dfa_adam's beta1: DFA_ADAM_BETA1
    # the step actually moved the weights (a rule returning zeros would pass the comparison above only
    # if torch's Adam also did nothing)
    assert not torch.equal(rec.params[0][0], run.params[0])


@pytest.mark.parametrize("name", ["adam", "dfa_adam"])
def test_adam_runs_by_name_and_learns(name):
    run = run_rule(name, EnvConfig(task="teacher_student"), seeds=[0, 1], steps=200)
    assert run.rule == name and run.curves.shape == (2, 201)
    assert bool((run.curves[:, -20:].mean(1) < 0.3 * run.curves[:, 0]).all())


def test_dfa_adam_follows_the_feedback_pathway_not_the_gradient():
    """On a network with a hidden layer DFA's direction differs from backprop's, so dfa_adam's
    weights differ from adam's after the same steps from the same start."""
    config = EnvConfig(task="teacher_student", layers=(4, 6, 2))
    a, d = (run_rule(n, config, seeds=[0], steps=5, lr=0.01) for n in ("adam", "dfa_adam"))
    assert torch.equal(a.curves[:, 0], d.curves[:, 0]) and not torch.equal(a.params[0], d.params[0])


def test_adam_bad_hyperparameters_named():
    with pytest.raises(ValueError, match="beta1"):
        Adam(beta1=1.0)
    with pytest.raises(ValueError, match="eps"):
        Adam(eps=0.0)
    with pytest.raises(ValueError, match="lr"):
        Adam(lr=-1.0)
    with pytest.raises(ValueError, match="deterministic"):
        run_rule("adam", EnvConfig(task="teacher_student", hidden_activation="bernoulli", ownership="incoming",
                                   reward="weight_max"), seeds=[0], steps=1)
    with pytest.raises(ValueError, match="activation derivative"):
        run_rule("dfa_adam", EnvConfig(task="teacher_student", hidden_activation="bernoulli", ownership="incoming",
                                       reward="weight_max"), seeds=[0], steps=1)
    with pytest.raises(ValueError, match="feedback"):
        Adam(feedback="backprop")
