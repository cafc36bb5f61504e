"""Held-out evaluation: learned and hand-designed rules under identical conditions, step sizes tuned
on the train split.

For one setting (an :class:`EnvConfig` on the ``heldout`` split), every rule:

1. has its step size tuned on the *train* split of the same setting (``marl_net.rules.tuning``:
   a hand rule's learning rate, a learned rule's ``action_scale``; the final loss; the same
   :func:`tuning_seeds` networks for every rule and every grid value);
2. then runs at that step size on the held-out networks :func:`heldout_seeds`: copy e of every
   rule is seeded alike, so every rule sees the same task, the same initial weights and the same
   minibatches, and makes the same number of updates (``marl_net.rules.trainer``).

Classification settings also report test accuracy on samples no update has seen, from the final
weights (``marl_net.accuracy.test_accuracy``).

Used by the main job (:func:`evaluate_suite`) and by ``marl-net eval`` (:func:`evaluate_setting`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from marl_net.config import EnvConfig
from marl_net.evaluation import episode_seeds


def heldout_seeds(seed: int, n: int) -> list[int]:
    """The per-copy seeds of the held-out runs of the job seeded ``seed``, shared by every rule."""
    return episode_seeds(10_000 + seed, n)


def tuning_seeds(seed: int, n: int) -> list[int]:
    """The per-copy seeds of the train-split tuning runs, shared by every rule and step size."""
    return episode_seeds(20_000 + seed, n)


@dataclass
class RuleRun:
    step: float  # the tuned step size (learning rate or action_scale)
    curves: torch.Tensor  # [E, steps + 1] held-out loss curves
    accuracy: torch.Tensor | None  # [E] test accuracy (classification), else None


def test_accuracy(config: EnvConfig, task_ids: Sequence[int], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Test accuracy ``[E]`` of the final weights on the task's test samples (``marl_net.accuracy``)."""
    from marl_net.accuracy import test_accuracy as measure

    return measure(config, list(task_ids), list(params))


def run_hand_rule(rule: str, config: EnvConfig, seeds: Sequence[int], tune_with: Sequence[int], points: int,
                  classification: bool, device: str = "cpu") -> RuleRun:
    """Tune ``rule``'s learning rate on the train split of ``config``, then run it on ``seeds``."""
    from marl_net.rules.registry import run_rule
    from marl_net.rules.tuning import default_grid, tune_lr

    grid = default_grid(rule, config.task, points=points)
    tuned = tune_lr(rule, config.replace(split="train"), seeds=tune_with, grid=grid, device=device)
    run = run_rule(rule, config, seeds, device=device, lr=tuned.best)
    accuracy = test_accuracy(config, run.task_ids, run.params) if classification else None
    return RuleRun(tuned.best, run.curves, accuracy)


def run_learned_rule(policy: torch.nn.Module, config: EnvConfig, seeds: Sequence[int], tune_with: Sequence[int],
                     points: int, classification: bool, device: str = "cpu") -> RuleRun:
    """Tune the learned rule's ``action_scale`` on the train split of ``config`` (multiples of
    ``config.action_scale``, the one it was meta-trained with), then run it on ``seeds``."""
    from marl_net.evaluation import rollout
    from marl_net.rules.tuning import scale_factors, tune_action_scale

    with torch.no_grad():
        tuned = tune_action_scale(policy, config, tune_with, scale_factors(points), device=device)
        run = rollout(policy, config.replace(action_scale=tuned.best), seeds, device)
    accuracy = test_accuracy(config, run.task_ids, run.params) if classification else None
    return RuleRun(tuned.best, run.curves, accuracy)


def evaluate_setting(hand_config: EnvConfig, learned: Mapping[str, tuple[torch.nn.Module, EnvConfig]],
                     hand_rules: Sequence[str], seeds: Sequence[int], tune_with: Sequence[int], points: int,
                     classification: bool, device: str = "cpu", on_rule=None) -> dict[str, RuleRun]:
    """Every rule on one held-out setting: ``learned`` maps a learned rule's name to (policy, its
    env for this setting); ``hand_rules`` run on ``hand_config``. The settings must agree on the
    task, the network and the horizon. ``on_rule(name)`` is called after each rule (progress)."""
    for name, (_, cfg) in learned.items():
        same = ("task", "layers", "max_cycles", "batch_size", "split", "task_kwargs")
        if any(getattr(cfg, k) != getattr(hand_config, k) for k in same):
            raise ValueError(f"learned rule {name!r} runs a different setting from the hand rules; give both the "
                             f"same {list(same)}")
    runs: dict[str, RuleRun] = {}
    for name, (policy, cfg) in learned.items():
        runs[name] = run_learned_rule(policy, cfg, seeds, tune_with, points, classification, device)
        if on_rule:
            on_rule(name)
    for rule in hand_rules:
        runs[rule] = run_hand_rule(rule, hand_config, seeds, tune_with, points, classification, device)
        if on_rule:
            on_rule(rule)
    return runs


def summarize(run: RuleRun) -> dict:
    """A rule's entry of results.json's ``heldout`` section."""
    from marl_net.results import summarize as summarize_curves

    entry = summarize_curves(run.curves.float())
    if run.accuracy is not None:
        acc = run.accuracy.double()
        entry["test_accuracy_mean"] = float(acc.mean())
        entry["test_accuracy_std"] = float(acc.std(unbiased=False))
    return entry


def evaluate_suite(policies: Mapping[str, tuple[torch.nn.Module, EnvConfig]], tasks: Sequence[str],
                   hand_rules: Sequence[str], hand_base: EnvConfig, budget, seed: int, device: str = "cpu",
                   progress: bool = True) -> dict:
    """The held-out suite: ``policies`` maps a learned rule's name to (policy, its meta-training
    env); ``budget`` (``marl_net.budgets.Budget``) says how many networks and step sizes each
    setting gets. Returns ``{"tuned_lr": ..., "heldout": ..., "settings": ..., "networks": ...,
    "curves": {task: {rule: [E, T+1]}}}``."""
    from tqdm import tqdm

    from marl_net import suite

    out: dict = {"tuned_lr": {}, "heldout": {}, "settings": {}, "networks": {}, "curves": {}}
    bar = tqdm(total=len(tasks) * (len(policies) + len(hand_rules)), desc="held-out suite", unit="rule",
               disable=not progress)

    def on_rule(name):
        bar.update(1)
        bar.set_postfix(task=task, done=name)

    for task in tasks:
        spec, sized = suite.check_setting(task), budget.for_setting(task)
        seeds, tune_with = heldout_seeds(seed, sized["eval_episodes"]), tuning_seeds(seed, sized["tune_seeds"])
        hand = suite.setting(task, hand_base)
        learned = {name: (p, suite.setting(task, env)) for name, (p, env) in policies.items()}
        runs = evaluate_setting(hand, learned, hand_rules, seeds, tune_with, sized["tune_points"], spec.classification,
                                device, on_rule)
        out["networks"][task] = sized
        out["tuned_lr"][task] = {r: run.step for r, run in runs.items()}
        out["heldout"][task] = {r: summarize(run) for r, run in runs.items()}
        out["curves"][task] = {r: run.curves for r, run in runs.items()}
        out["settings"][task] = hand.to_dict()
    bar.close()
    return out
