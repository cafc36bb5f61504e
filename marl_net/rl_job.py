"""The RL family of the main job (``marl-net run --family rl``): a learned RL rule against the hand RL rules.

The network under the neurons' control is an RL agent (``marl_net.tasks.rl``, docs/rl_tasks.md).
For each trained preset of :data:`TRAINED` one learned rule is meta-trained on **train-split**
lifetimes with fast-path PPO (the ladder's Tune launch, ``marl_net.meta_training.launch_trials``,
a trial per preset), then every rule is measured on **held-out** lifetimes of the presets it
answers for: unseen arm probabilities (``bandit2``, ``bandit10``), unseen Harlow objects
(``harlow``), unseen mazes (``maze``) and the larger maze (``maze_large``, with the rule
meta-trained on ``maze``). Beside the learned rule, under identical conditions (the same per-copy
seeds, hence the same held-out tasks, initial weights and action noise):

- ``reinforce``, ``reinforce_backprop`` and ``weight_max`` (``marl_net.policies.rl_hand_rules``),
  each step size tuned on train-split lifetimes over ``rl_baselines.GRID`` as ``python -m
  marl_net.rl_baselines`` does (``maze_large`` takes ``maze``'s step sizes). Weight Max has three,
  the output layer's ``lr``, the hidden layers' ``hidden_lr`` and its critic's ``critic_lr``, tuned
  one after the other, and
  runs on the network it requires (as in Chung's paper): Bernoulli-logistic hidden units, incoming
  ownership and biases, the same layer sizes, tasks and per-copy seeds (hence different initial
  weights). A hand rule that cannot act on a preset is left out of its row, the reason under
  ``skipped["rules"]["PRESET/RULE"]``;
- ``uniform`` (a network that never changes) and, on the bandits, ``thompson`` (Beta(1, 1)
  Thompson sampling, regret only: the Bayes-optimal-like reference, not a weight-changing rule).

What the learned rule sees (:data:`OBSERVATIONS`): the env's local defaults plus the RL signals
``inner_reward``, ``reward_prediction_error`` (global, neuromodulator-like), ``output_eligibility``
and ``reinforce_update`` (local, output synapses): the information of the three-factor
``reinforce`` rule, nothing privileged (no backprop gradient). The learned rule is a correction to
that rule: each step a synapse moves by ``reinforce``'s change at its tuned step size
(``EnvConfig.base_update="reinforce_update"``, ``base_rate`` from :func:`base_rates`) plus
``action_scale`` (0.05) times the policy's action, so a rule that outputs zeros is ``reinforce``.
The meta-training reward is ``global_loss`` (every synapse is paid the step's mean inner reward) with ``gamma`` 0.99: the
agents maximize the reward of the whole lifetime.

``results.json`` follows the ladder's layout::

    {"family": "rl", "budget": {...}, "seed": S, "seconds": ...,
     "levels": {"rl_PRESET": {"observations", "policy", "memory", "env", "ppo", "train": {...}}},
     "numerics": {...},
     "tuned_lr": {"PRESET": {"reinforce": lr, "reinforce_backprop": lr,
                             "weight_max": {"lr": output, "hidden_lr": hidden, "critic_lr": critic}}},
     "heldout": {"PRESET": {"RULE": {"mean_reward", "regret" | "correct_after_first" |
                                     "steps_to_first_reward", "curve_mean", "curve_std"}}},
     "settings": {"PRESET": {env config of the learned rule}}, "networks": {"PRESET": {...}},
     "skipped": {"rules": {"PRESET/RULE": reason}},  # {} when every rule ran
     "targets": [{"name", "value", "op", "bound", "met"}], "targets_skipped": [...]}

RULE is ``learned_rl`` or ``reinforce``, ``reinforce_backprop``, ``weight_max``, ``uniform``,
``thompson``;
``curve_mean`` / ``curve_std`` are the mean reward per inner step over held-out lifetimes (mean and
std over networks). Targets (:func:`targets`, checked by ``marl-net check``): Harlow
``correct_after_first >= 0.9``; maze ``steps_to_first_reward <= 30`` on held-out mazes; on each
bandit the learned rule's cumulative regret / tuned ``reinforce_backprop``'s ``<= 1``. The larger
maze and Thompson sampling are reported, not targets. Also written: ``table.md``,
``curves_rl.png`` (reward per inner step, a panel per preset), TensorBoard logs (meta-training
under ``tune/``, held-out reward curves under ``tb/heldout/PRESET/RULE``) and the learned rules as
``policies/rl_PRESET.pt`` (``marl_net.meta_training.save_policy``; read back with ``load_policy``).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from marl_net import budgets, rl_baselines
from marl_net.base_rules import BASES
from marl_net.config import EnvConfig
from marl_net.observations import DEFAULT_FEATURES
from marl_net.results import edges_by_setting

# Trained preset -> the held-out presets its learned rule is measured on.
TRAINED: dict[str, tuple[str, ...]] = {"bandit2": ("bandit2",), "bandit10": ("bandit10",), "harlow": ("harlow",),
                                       "maze": ("maze", "maze_large"), "harlow_difference": ("harlow_difference",)}
# what --family rl trains without --tasks (harlow_difference, an ablation of Harlow's encoding, on request)
DEFAULT_TRAINED = ("bandit2", "bandit10", "harlow", "maze")
RL_SIGNALS = ("inner_reward", "reward_prediction_error", "output_eligibility", "reinforce_update")
OBSERVATIONS = tuple(DEFAULT_FEATURES) + RL_SIGNALS
# the learned rule corrects REINFORCE (base_update; its rate: reinforce's tuned step size, base_rates)
ENV = dict(observations=OBSERVATIONS, reward="global_loss", ownership="outgoing", action_scale=0.05,
           base_update="reinforce_update")
POLICY = dict(hidden=32, depth=2, init_log_std=-2.5)
PPO = dict(lr=1e-3, gamma=0.99, lambda_=0.95, num_epochs=4, minibatch_size=4096, entropy_coeff=0.0, torch_threads=1)
SECTIONS = {"env": ENV, "policy": POLICY, "ppo": PPO}
HAND_RULES = ("reinforce", "reinforce_backprop", "weight_max")
LEARNED = "learned_rl"
HARLOW_BOUND, MAZE_BOUND, REGRET_RATIO_BOUND = 0.9, 30.0, 1.0


@dataclass(frozen=True)
class RLBudget:
    """How much work the RL family does. ``copies`` is per PPO iteration; a preset whose lifetime
    is shorter than 100 inner steps (Harlow: 10) gets proportionally more copies, so every trial
    samples about the same number of agent-steps per iteration."""

    name: str
    iterations: int  # PPO iterations per trained preset
    copies: int = 32
    eval_episodes: int = 256  # held-out lifetimes per preset and rule
    tune_seeds: int = 32  # train-split lifetimes per step size when tuning a hand rule

    def __post_init__(self):
        if min(self.iterations, self.copies, self.eval_episodes, self.tune_seeds) < 1:
            raise ValueError(f"RL budget {self.name!r}: iterations, copies, eval_episodes and tune_seeds must be "
                             "positive")

    def copies_for(self, preset_name: str) -> int:
        from marl_net.tasks.rl import preset

        lifetime = preset(preset_name)["max_cycles"] + 1
        return self.copies * max(1, 100 // lifetime)

    def scaled(self, factor: float) -> "RLBudget":
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"--budget {factor!r}: a scale factor must be a finite positive number like 0.5 or 3")
        return RLBudget(f"{factor:g}x", max(1, round(self.iterations * factor)), self.copies, self.eval_episodes,
                        self.tune_seeds)


BUDGETS = {
    "default": RLBudget("default", iterations=150),
    "quick": RLBudget("quick", iterations=2, copies=4, eval_episodes=4, tune_seeds=2),
}


def parse_budget(text: str) -> RLBudget:
    """``default``, ``quick``, or a factor scaling the default's meta-training (``0.5``, ``2``):
    :func:`marl_net.budgets.parse_budget` over this family's budgets."""
    return budgets.parse_budget(text, BUDGETS)


def parse_presets(text: str | None) -> tuple[str, ...]:
    """``--tasks`` for the RL family: comma-separated trained presets of :data:`TRAINED` (default:
    :data:`DEFAULT_TRAINED`)."""
    if text is None:
        return DEFAULT_TRAINED
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in TRAINED]
    if unknown or not names:
        raise ValueError(f"--tasks {text!r}: the RL family meta-trains on {list(TRAINED)} (maze also answers for "
                         "maze_large); e.g. --family rl --tasks bandit2,harlow")
    return names


def job_settings(name: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``{"env", "policy", "ppo"}`` of trained preset ``name``: the preset, :data:`ENV`,
    :data:`POLICY`, :data:`PPO`, then ``overrides`` (``--set env.action_scale=0.2``)."""
    from marl_net.tasks.rl import preset

    overrides = dict(overrides or {})
    unknown = [s for s in overrides if s not in SECTIONS]
    if unknown:
        raise ValueError(f"override section {unknown[0]!r} is unknown; choose from {list(SECTIONS)} "
                         "(e.g. --set env.action_scale=0.2)")
    base = {"env": {**preset(name), **ENV}, "policy": POLICY, "ppo": PPO}
    return {k: {**v, **(overrides.get(k) or {})} for k, v in base.items()}


def check_settings(presets: Sequence[str], overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Raise ValueError, naming the fix, on a setting the env, the policy or PPO refuses."""
    from marl_net.fast.ppo import FastPPOConfig
    from marl_net.policies.synapse_policy import PolicyConfig
    from marl_net.tasks.rl import PRESETS

    preset_keys = {key for p in PRESETS.values() for key in p} | {"task_kwargs"}
    fixed = sorted(preset_keys & set((overrides or {}).get("env") or {}))
    if fixed:
        raise ValueError(f"env.{fixed[0]} is the RL preset's: the job tunes the hand rules and evaluates every rule on "
                         f"the presets' tasks and networks ({', '.join(fixed)} set by --set would apply to "
                         "meta-training only); leave it out")
    for name in presets:
        settings = job_settings(name, overrides)
        for section, check in (("env", lambda s: EnvConfig.from_kwargs(**s)),
                               ("ppo", lambda s: FastPPOConfig.from_kwargs(**s)),
                               ("policy", lambda s: PolicyConfig(num_features=2, **s))):
            try:
                check(settings[section])
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{section} setting: {exc.args[0] if exc.args else exc} (RL preset {name})") from exc


def launch(name: str, budget: RLBudget, seed: int, overrides: Mapping[str, Mapping[str, Any]] | None = None,
           device: str = "cpu", base_rate: float | None = None) -> dict:
    """The fast-path launch dict of trained preset ``name`` (learning rate annealed to 0);
    ``base_rate``: the env's (:func:`base_rates`: None where the settings have no ``base_update`` or
    fix its rate)."""
    settings = job_settings(name, overrides)
    if base_rate is not None:
        settings["env"]["base_rate"] = base_rate
    env = EnvConfig.from_kwargs(**settings["env"]).to_dict()
    ppo = {"copies": budget.copies_for(name), "lr_anneal_iterations": budget.iterations, "device": device,
           **settings["ppo"]}
    return {"env": env, "policy": dict(settings["policy"]), "ppo": ppo,
            "run": {"seed": seed, "checkpoint_frequency": 0, "checkpoint_at_end": True},
            "stop": {"training_iteration": budget.iterations}}


def base_rates(presets: Sequence[str], overrides: Mapping[str, Mapping[str, Any]] | None, tuned: dict,
               tune_seeds: Sequence[int]) -> dict[str, float | None]:
    """The ``base_rate`` of each preset's learned rule: None where its env has no ``base_update``
    or sets the rate itself; over ``reinforce_update``, the ``reinforce`` hand rule's step size
    tuned on train-split lifetimes (remembered in ``tuned``, which the evaluation reuses), so the
    learned rule starts as the tuned hand rule and learns a correction to it."""
    rates = {}
    for name in presets:
        env = job_settings(name, overrides)["env"]
        if env.get("base_update") is None or "base_rate" in env:
            rates[name] = None
        elif env["base_update"] == BASES["reinforce"].feature:
            rates[name] = BASES["reinforce"].rate(rl_baselines.tuned_step_sizes("reinforce", name, tuned,
                                                                                tune_seeds)["lr"])
        else:
            raise ValueError(f"env.base_update={env['base_update']!r} (RL preset {name}): only 'reinforce_update' "
                             "takes its rate from a tuned hand rule; give one with --set env.base_rate=...")
    return rates


def meta_train(presets: Sequence[str], budget: RLBudget, seed: int, out: Path, device: str = "cpu",
               overrides: Mapping[str, Mapping[str, Any]] | None = None, address: str | None = None,
               kernels: bool | None = None, progress: bool = True,
               rates: Mapping[str, float | None] | None = None) -> dict[str, tuple[torch.nn.Module, dict]]:
    """One Tune launch of the ladder's trainable (``marl_net.meta_training.launch_trials``), a
    trial per trained preset; ``{preset: (policy, levels entry)}``. ``rates``: :func:`base_rates`."""
    from marl_net.meta_training import launch_trials, memory_of

    launches = {name: launch(name, budget, seed, overrides, device, (rates or {}).get(name)) for name in presets}
    trials, wall = launch_trials(launches, budget.iterations, out, progress, address, kernels, what="RL meta-training")
    trained = {}
    for name, trial in trials.items():
        policy, metrics = trial.policy.eval(), trial.metrics
        env = launches[name]["env"]
        trained[name] = (policy, {
            "observations": list(env["observations"]), "env": env, "policy": policy.config.to_dict(),
            "ppo": launches[name]["ppo"], "memory": memory_of(policy.config.to_dict(), env["observations"]),
            "numerics": trial.numerics,
            "train": {"iterations": int(metrics["training_iteration"]),
                      "agent_steps": int(metrics.get("num_agent_steps_sampled_lifetime", 0)),
                      "seconds": round(float(metrics.get("time_total_s", 0.0)), 1),
                      "final_mean_reward": -float(metrics.get("inner_loss_final", float("nan"))),
                      "trial_dir": trial.path, "launch_seconds": wall}})
    return trained


def learned_run(policy: torch.nn.Module, config: EnvConfig, seeds: Sequence[int]):
    """One lifetime of the learned rule (its Gaussian means) in one batched core, a copy per seed;
    returns the :class:`~marl_net.rl_metrics.LifetimeRecorder`."""
    from marl_net.core import NetworkWeightsCore
    from marl_net.evaluation import check_policy_fits, policy_means
    from marl_net.rl_metrics import LifetimeRecorder

    check_policy_fits(policy, config)
    act = policy_means(policy)
    core = NetworkWeightsCore(config, copies=len(seeds))
    core.seed([int(s) for s in seeds])
    obs = core.reset()
    recorder = LifetimeRecorder(core)
    recorder.record()
    e, a, k, f = obs.shape
    with torch.no_grad():
        for _ in range(config.max_cycles):
            actions = act(obs.reshape(e * a, k, f)).reshape(e, a, k)
            obs = core.step(torch.nan_to_num(actions.float(), nan=0.0)).obs
            recorder.record()
    return recorder


def _entry(recorder) -> dict:
    curve = recorder.reward_curve()
    return {**recorder.summary(), "curve_mean": curve.mean(0).tolist(),
            "curve_std": (curve.std(0) if curve.shape[0] > 1 else torch.zeros_like(curve[0])).tolist()}


def seeds_for(seed: int, purpose: int, n: int) -> list[int]:
    """``n`` per-copy seeds of the job seeded ``seed``: purpose 0 held-out lifetimes, 1 tuning."""
    from marl_net.seeding import seed_from

    return [seed_from(seed_from(seed, 1000 + purpose), i) for i in range(n)]


def evaluate(policies: Mapping[str, tuple[torch.nn.Module, EnvConfig]], budget: RLBudget, seed: int,
             tuned: dict | None = None) -> dict:
    """Held-out metrics of every learned rule and baseline: ``{"tuned_lr", "heldout", "settings", "networks"}``.
    ``tuned``: hand rules' step sizes already tuned (:func:`rl_baselines.tuned_step_sizes`' memory)."""
    from marl_net.policies import rl_hand_rules
    from marl_net.tasks.rl import preset

    eval_seeds = seeds_for(seed, 0, budget.eval_episodes)
    tune_seeds = seeds_for(seed, 1, budget.tune_seeds)
    tuned = {} if tuned is None else tuned
    out = {"tuned_lr": {}, "heldout": {}, "settings": {}, "networks": {}, "skipped": {}}
    for trained_on, (policy, train_config) in policies.items():
        for name in TRAINED[trained_on]:
            learned_config = EnvConfig.from_kwargs(**{**train_config.to_dict(), **preset(name), "split": "heldout"})
            row = {LEARNED: _entry(learned_run(policy, learned_config, eval_seeds))}
            edge: list[str] = []  # hand rules' step sizes tuned to an end of the grid
            out["tuned_lr"][name] = {}
            for rule in HAND_RULES:
                reason = rl_baselines.refused(rule, name)
                if reason:
                    out["skipped"].setdefault("rules", {})[f"{name}/{rule}"] = reason
                    continue
                steps = rl_baselines.tuned_step_sizes(rule, name, tuned, tune_seeds)
                config = rl_baselines.hand_rule_config(rule, name).replace(split="heldout")
                row[rule] = _entry(rl_hand_rules.run(rule, config, seeds=eval_seeds, strict=False, **steps))
                out["tuned_lr"][name][rule] = steps["lr"] if len(steps) == 1 else steps
                edge += [f"{rule} {e}" for e in rl_baselines.at_grid_edge(steps)]
            base = EnvConfig(**preset(name, observations=("weight",)))
            row["uniform"] = rl_baselines.uniform_policy(base, eval_seeds)
            if base.task == "bandit":
                probs = rl_baselines.heldout_arm_probabilities(base, eval_seeds)
                row["thompson"] = {"regret": float(rl_baselines.thompson_regret(probs, base.max_cycles + 1, 16,
                                                                                seed=seed).mean())}
            out["heldout"][name] = row
            out["settings"][name] = learned_config.to_dict()
            out["networks"][name] = {"eval_episodes": budget.eval_episodes, "tune_seeds": budget.tune_seeds,
                                     "tune_grid": list(rl_baselines.GRID), "tuned_at_grid_edge": edge,
                                     "tuned_on": rl_baselines.TUNED_ON.get(name, name), "rule_trained_on": trained_on,
                                     "weight_max_network": dict(rl_hand_rules.WEIGHT_MAX_NETWORK)}
    return out


class Missing(Exception):
    """A figure a target needs is not in the results."""


def _figure(heldout: Mapping, task: str, rule: str, metric: str) -> float:
    try:
        return float(heldout[task][rule][metric])
    except KeyError:
        raise Missing(f"no {metric} of {rule} on {task}") from None


def targets(results: Mapping) -> tuple[list[dict], list[dict]]:
    """(the RL family's targets results.json's figures allow, the skipped ones with the reason);
    each ``{"name", "value", "op", "bound", "met"}`` as the ladder's."""
    h = results.get("heldout") or {}
    specs = [
        ("rl/harlow: correct_after_first of learned_rl", ">=", HARLOW_BOUND,
         lambda: _figure(h, "harlow", LEARNED, "correct_after_first")),
        ("rl/maze: steps_to_first_reward of learned_rl (held-out mazes)", "<=", MAZE_BOUND,
         lambda: _figure(h, "maze", LEARNED, "steps_to_first_reward")),
    ]
    for task in ("bandit2", "bandit10"):
        specs.append((f"rl/{task}: regret learned_rl / tuned reinforce_backprop", "<=", REGRET_RATIO_BOUND,
                      lambda t=task: _figure(h, t, LEARNED, "regret") / _figure(h, t, "reinforce_backprop", "regret")))
    checked, skipped = [], []
    for name, op, bound, fn in specs:
        try:
            value = float(fn())
        except Missing as exc:
            skipped.append({"name": name, "reason": str(exc)})
            continue
        met = math.isfinite(value) and (value <= bound if op == "<=" else value >= bound)
        checked.append({"name": name, "value": value, "op": op, "bound": bound, "met": met})
    return checked, skipped


METRICS = ("mean_reward", "regret", "correct_after_first", "steps_to_first_reward")


def _step_cell(tuned, action_scale) -> str:
    """A rule's step size(s) in the table: one number, ``lr 0.03, hidden_lr 0.1, ...`` (Weight Max), the
    learned rule's ``action_scale``, or ``-``."""
    if isinstance(tuned, Mapping):
        return ", ".join(f"{k} {v:g}" for k, v in tuned.items())
    if tuned is not None:
        return f"{tuned:g}"
    return f"{action_scale:g}" if action_scale is not None else "-"


def table(results: Mapping) -> str:
    """The markdown table of the held-out metrics, every preset and rule."""
    lines = ["| preset | rule | step size | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for task, by_rule in results["heldout"].items():
        for rule, e in by_rule.items():
            step = _step_cell(results["tuned_lr"].get(task, {}).get(rule),
                              results["settings"][task]["action_scale"] if rule == LEARNED else None)
            cells = [f"{e[m]:.3g}" if m in e else "" for m in METRICS]
            name = f"**{rule}**" if rule == LEARNED else rule
            lines.append(f"| {task} | {name} | {step} | " + " | ".join(cells) + " |")
    networks = results.get("networks", {})
    edges = edges_by_setting(networks)
    if edges:
        grid = next(iter(networks.values()))["tune_grid"]
        lines.append(f"\nTuned to an end of the step-size grid ({min(grid):g} to {max(grid):g}): {edges}.")
    return "\n".join(lines) + "\n"


def plot(path: Path, heldout: Mapping) -> None:
    """Mean reward per inner step (a running mean over 10 steps, or a fifth of a short lifetime),
    a panel per preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(heldout), figsize=(3.6 * len(heldout) + 0.8, 3.4), squeeze=False)
    for ax, (task, by_rule) in zip(axes[0], heldout.items()):
        for rule, e in by_rule.items():
            if "curve_mean" not in e:
                continue
            c = np.asarray(e["curve_mean"])
            w = max(1, min(10, len(c) // 5))  # Harlow's 10 steps: pairs (a fixation and a presentation)
            ax.plot(np.convolve(c, np.ones(w) / w, mode="valid"), label=rule, linewidth=2 if rule == LEARNED else 1)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("inner step")
    axes[0][0].set_ylabel("held-out reward (mean over networks)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, results: Mapping) -> None:
    """results.json, table.md, curves_rl.png and TensorBoard logs of the held-out reward curves."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(out)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "table.md").write_text(table(results))
    plot(out / "curves_rl.png", results["heldout"])
    for task, by_rule in results["heldout"].items():
        for rule, e in by_rule.items():
            if "curve_mean" not in e:
                continue
            with SummaryWriter(log_dir=str(out / "tb" / "heldout" / task / rule)) as writer:
                for t, (m, s) in enumerate(zip(e["curve_mean"], e["curve_std"])):
                    writer.add_scalar("reward/mean", m, t)
                    writer.add_scalar("reward/std", s, t)
                for metric in METRICS:
                    if metric in e:
                        writer.add_scalar(f"summary/{metric}", e[metric], len(e["curve_mean"]))


def run(budget: RLBudget, out: Path, seed: int = 0, presets: Sequence[str] | None = None, device: str = "cpu",
        overrides: Mapping[str, Mapping[str, Any]] | None = None, address: str | None = None,
        kernels: bool | None = None, progress: bool = True) -> dict:
    """The RL family's whole job; returns the results dict (also written to ``out/results.json``).
    ``kernels``: the C++ kernels on or off in meta-training and evaluation (None: as configured);
    ``progress``: a progress bar over the meta-training trials' iterations."""
    from marl_net import numerics

    with numerics.kernels(kernels):
        return _run(budget, out, seed, presets, device, overrides, address, kernels, progress)


def _run(budget, out, seed, presets, device, overrides, address, kernels, progress) -> dict:
    from marl_net import numerics
    from marl_net.meta_training import save_policy

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    presets = tuple(presets or DEFAULT_TRAINED)
    check_settings(presets, overrides)
    tuned: dict = {}  # the hand rules' tuned step sizes: a base rule's rate is one, the evaluation reuses them
    with _one_thread():
        rates = base_rates(presets, overrides, tuned, seeds_for(seed, 1, budget.tune_seeds))
    trained = meta_train(presets, budget, seed, out, device, overrides, address, kernels, progress, rates)
    policies = {}
    for name, (policy, entry) in trained.items():
        save_policy(out / "policies" / f"rl_{name}.pt", policy, entry["env"], f"rl_{name}", entry["numerics"])
        policies[name] = (policy, EnvConfig.from_kwargs(**entry["env"]))
    with _one_thread():
        with numerics.recording() as ran:
            evaluated = evaluate(policies, budget, seed, tuned)
        evaluated_with = numerics.describe("cpu", ran)  # with the threads it ran on
    results = {"family": "rl", "budget": asdict(budget), "seed": seed,
               "levels": {f"rl_{name}": entry for name, (_, entry) in trained.items()},
               **evaluated, "numerics": evaluated_with}
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["targets"], results["targets_skipped"] = targets(results)
    write_report(out, results)
    return results


@contextlib.contextmanager
def _one_thread():
    """Torch on one thread inside (the hand rules' tuning and every held-out lifetime run so)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def parse_overrides(items: Sequence[str]) -> dict[str, dict]:
    """``--set section.key=value`` items (sections env, policy, ppo) -> :func:`run`'s overrides."""
    from marl_net.experiment import parse_override

    overrides: dict[str, dict] = {}
    for item in items:
        parts, value = parse_override(item)
        if len(parts) != 2 or parts[0] not in SECTIONS:
            raise ValueError(f"--set {item!r}: with --family rl write SECTION.KEY=VALUE with SECTION one of "
                             f"{list(SECTIONS)}, e.g. --set env.action_scale=0.2")
        overrides.setdefault(parts[0], {})[parts[1]] = value
    return overrides
