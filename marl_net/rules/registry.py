"""The hand-designed rules by name, their default step sizes, and :func:`run_rule`.

==============  ======================================================  =========================
name            rule                                                    needs
==============  ======================================================  =========================
``sgd``         backprop SGD, ``dW = -eta dE/dW``                         deterministic units
``adam``        Adam on the backprop gradient (``torch.optim.Adam``'s math)  deterministic units
``np``          node perturbation (Cai & Cheng sec. 4)                  deterministic units
``wp``          weight perturbation (Cai & Cheng sec. 4)                deterministic units
``weight_max``  pipelined Weight Max on minibatches (Chung eq. 4, 13)   ownership="incoming",
                                                                        hidden_activation=
                                                                        "bernoulli"
``fa``          feedback alignment: ``dW = -eta feedback_eligibility``    differentiable units
                (Lillicrap et al. 2016)
``dfa``         direct feedback alignment (Nokland 2016)                differentiable units
``dfa_adam``    Adam on DFA's update direction (the feedback level's    differentiable units
                base)
==============  ======================================================  =========================

Chung's RL-actor versions of REINFORCE / Weight Max / STE live in ``marl_net.rules.reinforce``,
``weight_max`` and ``ste`` (``marl-net reproduce chung``).

Use it from the main job (learned rule vs hand rules under identical budgets)::

    from marl_net.config import EnvConfig
    from marl_net.rules.registry import run_rule
    config = EnvConfig(task="teacher_student", max_cycles=200, split="heldout")
    run = run_rule("np", config, seeds=range(5))          # default eta, sigma for the task
    run.curves            # [5, 201]: the env's minibatch loss after t updates, t = 0..200

For seed s, copy s sees the task, initial weights and minibatches that ``network_weights_v0``
(or the fast path's core) reset with seed s sees in its first episode, so a learned rule run for
``max_cycles`` steps is compared on the same data with the same number of weight updates.

Default step sizes: ``DEFAULT_HYPER[task][rule]``, picked with :func:`marl_net.rules.tuning.tune_lr`
(train split, 1,000 steps, time-averaged loss; docs/rules.md has the grids) on teacher-student
``(8, 16, 4)``, on digits with Cai & Cheng's MNIST setting (10 principal components, layers
``(10, 1000, 10)``) and on mnist1d with ``marl-net compare``'s network ``(40, 128, 10)`` (there Weight
Max keeps the digits values, not tuned). As Cai & Cheng found for MNIST, the
classification step sizes of NP and WP are much smaller (1/30 here; they divided by 100); SGD's is 1/3. FA and DFA were tuned the same way
(train split, 1,000 steps, time-averaged loss; 5 seeds on teacher-student, 3 on digits): on
teacher-student the tuner picks 3 with 9 diverging, and the default stays one grid step below at 1,
as SGD's does; on digits 10-1000-10 it picks 0.3 (SGD's value too). With one hidden layer FA and
DFA are the same rule (the one feedback matrix maps the output error to that layer either way).
``dfa_adam`` starts from Adam's values (not tuned separately: every use tunes it on the setting's
train split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from marl_net.config import EnvConfig
from marl_net.rules.adam import Adam, dfa_adam
from marl_net.rules.feedback_alignment import dfa, fa
from marl_net.rules.node_perturbation import DEFAULT_SIGMA, NodePerturbation
from marl_net.rules.sgd import SGD
from marl_net.rules.trainer import Rule, RunResult, train
from marl_net.rules.weight_max_env import WeightMaxEnv
from marl_net.rules.weight_perturbation import WeightPerturbation


@dataclass(frozen=True)
class RuleSpec:
    name: str
    description: str
    factory: Callable[..., Rule]
    hyperparameters: tuple[str, ...]


RULES: dict[str, RuleSpec] = {
    "sgd": RuleSpec("sgd", "backprop SGD: dW = -eta dE/dW", SGD, ("lr",)),
    "adam": RuleSpec("adam", "Adam on the backprop gradient (torch.optim.Adam, betas 0.9, 0.999)", Adam,
                     ("lr", "beta1")),
    "np": RuleSpec("np", "node perturbation: dW = eta/sigma (E - E_N) sum_b xi x^T (Cai & Cheng)",
                   NodePerturbation, ("lr", "sigma")),
    "wp": RuleSpec("wp", "weight perturbation: dW = eta/sigma (E - E_W) Xi (Cai & Cheng)",
                   WeightPerturbation, ("lr", "sigma")),
    "weight_max": RuleSpec("weight_max", "pipelined Weight Max on minibatches: Bernoulli hidden units paid "
                           "v . dv (the env's weight_max reward), delta-rule output (Chung)",
                           WeightMaxEnv, ("lr", "hidden_lr")),
    "fa": RuleSpec("fa", "feedback alignment: dW = -eta x delta f'(z), hidden errors back through fixed random B "
                   "in place of W^T (Lillicrap et al.)", fa, ("lr",)),
    "dfa": RuleSpec("dfa", "direct feedback alignment: dW = -eta x delta f'(z), the output error straight to each "
                    "hidden layer through fixed random B (Nokland)", dfa, ("lr",)),
    "dfa_adam": RuleSpec("dfa_adam", "Adam (torch.optim.Adam's math, beta1 0.7) on DFA's update direction: no "
                         "weight transport", dfa_adam, ("lr", "beta1")),
}

_TEACHER_STUDENT = {
    "sgd": {"lr": 1.0},
    "adam": {"lr": 0.03},
    "np": {"lr": 0.03, "sigma": DEFAULT_SIGMA},
    "wp": {"lr": 0.03, "sigma": DEFAULT_SIGMA},
    "weight_max": {"lr": 0.5, "hidden_lr": 1000.0},
    "fa": {"lr": 1.0},
    "dfa": {"lr": 1.0},
    "dfa_adam": {"lr": 0.03},
}
_CLASSIFICATION = {  # tuned on digits, 10 PCA dims, layers (10, 1000, 10): NP/WP at 1/30 of teacher-student
    "sgd": {"lr": 0.3},
    "adam": {"lr": 0.003},
    "np": {"lr": 1.0e-3, "sigma": DEFAULT_SIGMA},
    "wp": {"lr": 1.0e-3, "sigma": DEFAULT_SIGMA},
    "weight_max": {"lr": 0.1, "hidden_lr": 1.0e5},
    "fa": {"lr": 0.3},
    "dfa": {"lr": 0.3},
    "dfa_adam": {"lr": 0.003},
}
_MNIST1D = {  # tuned on mnist1d, layers (40, 128, 10); weight_max: the classification values, not tuned
    "sgd": {"lr": 1.0},
    "adam": {"lr": 0.03},
    "np": {"lr": 1.0e-3, "sigma": DEFAULT_SIGMA},
    "wp": {"lr": 3.0e-3, "sigma": DEFAULT_SIGMA},
    "weight_max": dict(_CLASSIFICATION["weight_max"]),
    "fa": {"lr": 1.0},
    "dfa": {"lr": 1.0},
    "dfa_adam": {"lr": 0.03},
}
DEFAULT_HYPER: dict[str, dict[str, dict[str, float]]] = {
    "teacher_student": _TEACHER_STUDENT,
    "digits": _CLASSIFICATION,
    "mnist": _CLASSIFICATION,
    "mnist1d": _MNIST1D,
    "multiplexer": _CLASSIFICATION,
}


def check_rule(name: str) -> RuleSpec:
    if name not in RULES:
        raise ValueError(f"rule {name!r} is unknown; choose one of {sorted(RULES)}")
    return RULES[name]


def default_hyper(name: str, task: str) -> dict[str, float]:
    """The default hyperparameters of rule ``name`` on ``task`` (teacher-student values for unknown tasks)."""
    check_rule(name)
    return dict(DEFAULT_HYPER.get(task, _TEACHER_STUDENT)[name])


def make_rule(name: str, task: str = "teacher_student", **hyper) -> Rule:
    """Rule ``name`` with ``hyper`` over the task's defaults; ``None`` values keep the default."""
    spec = check_rule(name)
    unknown = [k for k in hyper if k not in spec.hyperparameters]
    if unknown:
        raise ValueError(f"rule {name!r} takes {list(spec.hyperparameters)}, not {unknown}")
    merged = default_hyper(name, task)
    merged.update({k: v for k, v in hyper.items() if v is not None})
    return spec.factory(**merged)


def run_rule(name: str, config: EnvConfig, seeds: Sequence[int], steps: int | None = None, device: str = "cpu",
             on_step=None, **hyper) -> RunResult:
    """Run rule ``name`` on ``config``'s task and network for ``len(seeds)`` copies at once, ``steps``
    updates each (default ``config.max_cycles``). Returns the loss curves ``[E, steps + 1]``
    (see ``marl_net.rules.trainer``) and the final weights."""
    return train(make_rule(name, config.task, **hyper), config, list(seeds), steps, device, on_step)
