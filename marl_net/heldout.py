"""Held-out evaluation: learned and hand-designed rules under identical conditions, step sizes tuned
on the train split.

For one setting (an :class:`EnvConfig` on the ``heldout`` split), every rule:

1. has its step size tuned on the *train* split of the same setting (``marl_net.rules.tuning``:
   a hand rule's learning rate, a learned rule's ``action_scale``; the final loss; the same
   :func:`tuning_seeds` networks for every rule and every grid value);
2. then runs at that step size on the held-out networks :func:`heldout_seeds`: copy e of every
   rule is seeded alike, so every rule sees the same task, the same initial weights and the same
   minibatches, and makes the same number of updates (``marl_net.rules.trainer``).

A learned rule that runs over a hand rule (``EnvConfig.base_update``, ``marl_net.base_rules``) runs
over it at that hand rule's step size tuned on the same setting's train split (the hand rules run
first; a base rule not among them is tuned for it), so with zero actions it is the tuned hand rule;
a level whose base ran at a fraction of its tuned step in meta-training (``base_factor``) has that
fraction and the full step tried, alongside its ``action_scale``, on the train split.

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
    base: dict | None = None  # a learned rule's base (over_tuned_base's record; marl_net.base_rules)
    at_edge: bool = False  # the step size tuned to an end of the values tried (TuneResult.at_edge)


def test_accuracy(config: EnvConfig, task_ids: Sequence[int], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Test accuracy ``[E]`` of the final weights on the task's test samples (``marl_net.accuracy``)."""
    from marl_net.accuracy import test_accuracy as measure

    return measure(config, list(task_ids), list(params))


def tuned_lr(rule: str, config: EnvConfig, tune_with: Sequence[int], points: int, device: str = "cpu"):
    """Hand rule ``rule``'s learning rate tuned on the train split of ``config`` (its default grid
    of ``points`` values, extended past an end that tunes best; the networks ``tune_with``): the
    ``marl_net.rules.tuning.TuneResult``."""
    from marl_net.rules.tuning import default_grid, tune_lr

    grid = default_grid(rule, config.task, points=points)
    return tune_lr(rule, config.replace(split="train"), seeds=tune_with, grid=grid, device=device)


def run_hand_rule(rule: str, config: EnvConfig, seeds: Sequence[int], tune_with: Sequence[int], points: int,
                  classification: bool, device: str = "cpu") -> RuleRun:
    """Tune ``rule``'s learning rate on the train split of ``config``, then run it on ``seeds``."""
    from marl_net.rules.registry import run_rule

    tuned = tuned_lr(rule, config, tune_with, points, device)
    run = run_rule(rule, config, seeds, device=device, lr=tuned.best)
    accuracy = test_accuracy(config, run.task_ids, run.params) if classification else None
    return RuleRun(tuned.best, run.curves, accuracy, at_edge=tuned.at_edge)


def run_learned_rule(policy: torch.nn.Module, config: EnvConfig | Sequence[tuple[EnvConfig, dict | None]],
                     seeds: Sequence[int], tune_with: Sequence[int], points: int, classification: bool,
                     device: str = "cpu") -> RuleRun:
    """Tune the learned rule's ``action_scale`` on the train split of ``config`` (multiples of
    ``config.action_scale``, the one it was meta-trained with), then run it on ``seeds``. Given
    several (config, base record) options (the same rule over differently scaled bases,
    :func:`learned_options`), each is tuned so, and the one with the lowest tuned score on the train
    split runs (the first on ties); the result carries its base record."""
    from marl_net.evaluation import rollout
    from marl_net.rules.tuning import scale_factors

    options = [(config, None)] if isinstance(config, EnvConfig) else list(config)
    with torch.no_grad():
        _, config, base, tuned = tune_over_options(policy, options, tune_with, scale_factors(points), device)
        run = rollout(policy, config.replace(action_scale=tuned.best), seeds, device)
    accuracy = test_accuracy(config, run.task_ids, run.params) if classification else None
    return RuleRun(tuned.best, run.curves, accuracy, base, tuned.at_edge)


def tune_over_options(policy: torch.nn.Module, options: Sequence[tuple[EnvConfig, dict | None]],
                      tune_with: Sequence[int], factors: Sequence[float],
                      device: str = "cpu") -> tuple[float, EnvConfig, dict | None, "TuneResult"]:
    """Tune the learned rule's ``action_scale`` (``factors`` times each config's, extended past an
    end that tunes best) on the train split of every (config, base record) option; returns the
    lowest tuned score (the first option on ties), its config, its base record and its tuning
    (``marl_net.rules.tuning.TuneResult``)."""
    from marl_net.rules.tuning import tune_action_scale

    best = None
    for cfg, base in options:
        tuned = tune_action_scale(policy, cfg, tune_with, factors, device=device)
        if best is None or min(tuned.scores) < best[0]:
            best = (float(min(tuned.scores)), cfg, base, tuned)
    return best


def over_tuned_base(config: EnvConfig, lrs: dict[str, float], tune_with: Sequence[int], points: int,
                    device: str = "cpu", factor: float = 1.0) -> tuple[EnvConfig, dict | None]:
    """``config`` with its base rule (if any hand rule's, ``marl_net.base_rules.base_of``) at that
    rule's step size tuned on this setting's train split: from ``lrs`` (rule -> tuned lr), or tuned
    here (and added to ``lrs``), times ``factor`` (a level's ``base_factor``). An additive
    correction's ``action_scale`` moves with the base rate (both times the new rate over
    ``config``'s, where that is not 0): the learned correction keeps its size relative to the base
    rule's step, whose tuned value carries the setting's scale (a wider network, a longer horizon,
    another loss); a relative one (``correction="relative"``) already is a factor of that step and
    keeps its scale. The held-out tuning then picks a factor of it. Returns the config and its base
    record, None without a base."""
    from marl_net.base_rules import base_of, without_base

    base = base_of(config)
    if base is None:
        return config, None
    if base.rule not in lrs:
        lrs[base.rule] = tuned_lr(base.rule, without_base(config), tune_with, points, device).best
    rate = base.rate(lrs[base.rule] * factor)
    relative = config.correction == "relative"  # a factor of the base's step: it needs no rescaling
    scale = config.action_scale * (rate / config.base_rate if config.base_rate and not relative else 1.0)
    return config.replace(base_rate=rate, action_scale=scale), {"rule": base.rule, "lr": lrs[base.rule],
                                                                 "factor": factor, "base_rate": rate,
                                                                 "action_scale": scale}


def learned_options(config: EnvConfig, lrs: dict[str, float], tune_with: Sequence[int], points: int,
                    device: str = "cpu", factor: float = 1.0) -> list[tuple[EnvConfig, dict | None]]:
    """The configs a learned rule's held-out tuning tries (:func:`over_tuned_base` each): over its
    base at ``factor`` times the base's tuned step (its meta-training's), and, where ``factor`` is
    not 1, also at the tuned step itself; one config (``factor``'s) without a base."""
    first = over_tuned_base(config, lrs, tune_with, points, device, factor)
    if first[1] is None or factor == 1.0:
        return [first]
    return [first, over_tuned_base(config, lrs, tune_with, points, device, 1.0)]


def evaluate_setting(hand_config: EnvConfig, learned: Mapping[str, tuple[torch.nn.Module, EnvConfig]],
                     hand_rules: Sequence[str], seeds: Sequence[int], tune_with: Sequence[int], points: int,
                     classification: bool, device: str = "cpu", on_rule=None,
                     base_factors: Mapping[str, float] | None = None) -> dict[str, RuleRun]:
    """Every rule on one held-out setting: ``learned`` maps a learned rule's name to (policy, its
    env for this setting); ``hand_rules`` run on ``hand_config`` (its base rule, if any, dropped).
    The settings must agree on the task, the network and the horizon. The hand rules run first: a
    learned rule over a hand rule runs over it at its step size tuned here (:func:`over_tuned_base`),
    times ``base_factors[name]`` (default 1; the main job and ``marl-net eval`` pass the level's
    ``base_factor``) or, where that factor is not 1, times 1 if that tunes lower on the train split
    (:func:`learned_options`).
    ``on_rule(name)`` is called after each rule (progress)."""
    for name, (_, cfg) in learned.items():
        same = ("task", "layers", "max_cycles", "batch_size", "split", "task_kwargs")
        if any(getattr(cfg, k) != getattr(hand_config, k) for k in same):
            raise ValueError(f"learned rule {name!r} runs a different setting from the hand rules; give both the "
                             f"same {list(same)}")
    from marl_net.base_rules import without_base

    hand_config = without_base(hand_config)
    runs: dict[str, RuleRun] = {}
    for rule in hand_rules:
        runs[rule] = run_hand_rule(rule, hand_config, seeds, tune_with, points, classification, device)
        if on_rule:
            on_rule(rule)
    lrs = {rule: run.step for rule, run in runs.items()}
    for name, (policy, cfg) in learned.items():
        options = learned_options(cfg, lrs, tune_with, points, device, (base_factors or {}).get(name, 1.0))
        runs[name] = run_learned_rule(policy, options, seeds, tune_with, points, classification, device)
        if on_rule:
            on_rule(name)
    return {name: runs[name] for name in [*learned, *hand_rules]}  # learned rules first, as reported


def summarize(run: RuleRun) -> dict:
    """A rule's entry of results.json's ``heldout`` section."""
    from marl_net.results import summarize as summarize_curves

    entry = summarize_curves(run.curves.float())
    if run.base is not None:
        entry["base"] = dict(run.base)
    if run.accuracy is not None:
        acc = run.accuracy.double()
        entry["test_accuracy_mean"] = float(acc.mean())
        entry["test_accuracy_std"] = float(acc.std(unbiased=False))
    return entry


def evaluate_suite(policies: Mapping[str, tuple[torch.nn.Module, EnvConfig]], tasks: Sequence[str],
                   hand_rules: Sequence[str], hand_base: EnvConfig, budget, seed: int, device: str = "cpu",
                   progress: bool = True, base_factors: Mapping[str, float] | None = None) -> dict:
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
                                device, on_rule, base_factors)
        out["networks"][task] = {**sized, "tuned_at_grid_edge": [r for r, run in runs.items() if run.at_edge]}
        out["tuned_lr"][task] = {r: run.step for r, run in runs.items()}
        out["heldout"][task] = {r: summarize(run) for r, run in runs.items()}
        out["curves"][task] = {r: run.curves for r, run in runs.items()}
        out["settings"][task] = hand.to_dict()
    bar.close()
    return out
