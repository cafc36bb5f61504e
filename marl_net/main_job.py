"""The main job: meta-learn a local learning rule, then measure it against hand-designed rules on
tasks it never saw.

1. **Meta-train** the shared per-neuron policy (``SynapsePolicy``) with fast-path PPO on the
   teacher-student task distribution (train split). The rule observes only local features, no
   gradient: the environment's local defaults plus node perturbation's three-factor signals
   ``np_eligibility`` (its node's noise times its presynaptic activity) and ``np_error`` (the
   broadcast loss change the noise caused; see ``marl_net.perturbation_features``).
   ``overrides=`` (``marl-net run --set env.action_scale=0.1 --observations ...``) changes the
   meta-training env, policy or PPO settings. What was used is recorded in
   ``results.json`` (``train.env``, ``train.policy``, ``train.ppo``); ``marl-net check`` reports
   features the registry marks privileged. With ``Budget.restarts`` > 1 (``--restarts N``) N
   independent meta-trainings run and the one with the lowest final loss on train-split networks
   is kept (``train.restarts``, ``train.selected_restart``).
2. **Tune** every rule's step size on the *train* split of every evaluation setting, scored by the
   final loss (the mean of a curve's last tenth; :data:`TUNING_METRIC`), the measure the held-out
   comparison and its targets judge: the hand rules' learning rates (SGD, NP, WP; ``marl_net.rules.tuning``)
   and the learned rule's ``action_scale`` (its largest weight change per step), as a multiple of
   the one it was meta-trained with (:data:`LEARNED_SCALE_GRID`). The policy itself is fixed.
3. **Evaluate** on held-out tasks: teachers never seen in training (``teacher_student``), a hidden
   layer wider than the one trained on (``teacher_student_wide``) and scikit-learn's digits
   (``digits``). Every rule gets the same budget: the same number of weight updates, on the same
   tasks, initial weights and minibatches (copy e of every rule is seeded alike).
4. **Write** ``results.json``, ``table.md``, one learning-curve PNG per task, TensorBoard logs
   (meta-training under ``tb/meta_train``, the held-out curves under ``tb/<task>/<rule>``) and the
   trained policy (``policy.pt``).

The kernels' switch (``kernels=``, ``marl-net run --kernels on|off``; unset: ``MARL_NET_FUSED`` or
on) and what ran are recorded in ``results.json["numerics"]`` (``marl_net.numerics.describe``: the
policy's path, fused kernel or torch, the compiler and its flags, torch's version, the CPU model
and the device). The two paths agree to float rounding; ``tests/test_main_job.py`` bounds how far
that moves the quick budget's held-out figures.

``results.json``::

    {"budget": {...}, "train": {"iterations": ..., "agent_steps": ..., "seconds": ..., "env": {...},
                                "final_inner_loss": ...},
     "tuned_lr": {"TASK": {"learned": <action_scale>, "sgd": ..., "np": ..., "wp": ...}},
     "heldout": {"TASK": {"RULE": {"final_loss_mean": ..., "final_loss_std": ..., "auc_mean": ...,
                                   "initial_loss_mean": ..., "curve_mean": [...], "curve_std": [...]}}},
     "numerics": {"policy_path": "fused kernel" | "torch", "kernels": {...}, "kernel_builds": {...},
                  "torch": ..., "cpu": ..., "device": ..., ...}}

with TASK in ``teacher_student``, ``teacher_student_wide``, ``digits`` and RULE in ``learned``,
``sgd``, ``np``, ``wp``. ``marl-net check DIR`` tests the project's targets on it (see
:func:`check_targets`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from marl_net.config import EnvConfig
from marl_net.observations import DEFAULT_FEATURES

HAND_RULES = ("sgd", "np", "wp")
# The learned rule's step sizes tried on the train split: multiples of its meta-training action_scale.
LEARNED_SCALE_GRID = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4)
# How every rule's step size is scored on the train split (``marl_net.rules.tuning.score``): the
# final loss, as the held-out table and ``check_targets`` judge the rules.
TUNING_METRIC = "final"


@dataclass(frozen=True)
class Budget:
    """How much work the main job does. ``default`` fits in 10 minutes on a 2-core machine."""

    name: str
    iterations: int  # PPO iterations of meta-training
    copies: int = 32  # network copies per PPO iteration
    eval_episodes: int = 64  # held-out networks per task and rule
    tune_seeds: int = 8  # train-split networks per step size when tuning a hand rule
    tune_points: int = 6  # step sizes per hand rule
    restarts: int = 1  # independent meta-trainings; the best on the train split is evaluated

    def __post_init__(self):
        if self.restarts < 1:
            raise ValueError(f"restarts={self.restarts!r}: meta-train at least once (--restarts 1 or more)")

    def scaled(self, factor: float) -> "Budget":
        if not factor > 0:
            raise ValueError(f"--budget {factor!r}: a scale factor must be positive, e.g. 0.5 or 3 (or 'quick')")
        return replace(self, name=f"{factor:g}x", iterations=max(1, round(self.iterations * factor)))


BUDGETS = {
    "default": Budget("default", iterations=180, copies=64),
    "quick": Budget("quick", iterations=12, copies=16, eval_episodes=16, tune_seeds=4, tune_points=4),
}


def parse_budget(text: str) -> Budget:
    """``default``, ``quick``, or a factor scaling the default's meta-training (``0.5``, ``2``)."""
    if text in BUDGETS:
        return BUDGETS[text]
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"--budget {text!r}: choose {sorted(BUDGETS)} or a positive scale factor like 0.5") from None
    if not math.isfinite(factor):
        raise ValueError(f"--budget {text!r}: a scale factor must be a finite positive number like 0.5 or 3")
    return BUDGETS["default"].scaled(factor)


# The meta-training setting and the PPO hyperparameters of the main job.
NP_SIGNALS = ("np_eligibility", "np_error")  # node perturbation's three-factor signals (local)
TRAIN_ENV = dict(task="teacher_student", layers=(8, 16, 4), ownership="outgoing", max_cycles=50, batch_size=32,
                 action_scale=0.2, reward="difference", reward_unit="percent",
                 observations=DEFAULT_FEATURES + NP_SIGNALS)
POLICY = dict(hidden=32, depth=2, init_log_std=-2.0)
PPO = dict(lr=1e-3, gamma=0.0, lambda_=0.95, num_epochs=4, minibatch_size=4096, entropy_coeff=0.0, torch_threads=1)


def parse_observations(text: str) -> tuple[str, ...]:
    """``--observations``: comma-separated feature names, ``default`` standing for the env's local
    defaults, e.g. ``default,np_eligibility,np_error``."""
    from marl_net.observations import check_features

    names = [n.strip() for n in text.split(",") if n.strip()]
    expanded = [f for n in names for f in (DEFAULT_FEATURES if n == "default" else (n,))]
    return check_features(expanded)


def privileged_features(observations: Sequence[str]) -> list[str]:
    """The names among ``observations`` that the feature registry marks privileged (not local)."""
    from marl_net.observations import is_privileged

    return [n for n in observations if is_privileged(n)]


SECTIONS = {"env": TRAIN_ENV, "policy": POLICY, "ppo": PPO}


def job_settings(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``TRAIN_ENV``, ``POLICY`` and ``PPO`` as ``{"env": ..., "policy": ..., "ppo": ...}``, with
    ``overrides`` (the same sections, each a dict of settings) applied on top."""
    overrides = dict(overrides or {})
    for section in overrides:
        if section not in SECTIONS:
            raise ValueError(f"override section {section!r} is unknown; choose from {list(SECTIONS)} "
                             "(e.g. --set env.action_scale=0.1)")
    return {name: {**defaults, **(overrides.get(name) or {})} for name, defaults in SECTIONS.items()}


def check_settings(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Raise ValueError, naming the fix, on an override the env, the policy or PPO refuses."""
    from marl_net.fast.ppo import FastPPOConfig
    from marl_net.policies.synapse_policy import PolicyConfig, check_policy_settings

    settings = job_settings(overrides)
    checks = {"env": lambda s: EnvConfig.from_kwargs(**s), "ppo": lambda s: FastPPOConfig.from_kwargs(**s),
              "policy": lambda s: (check_policy_settings(s), PolicyConfig(num_features=2, **s))}
    for section, check in checks.items():
        try:
            check(settings[section])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{section} setting: {exc.args[0] if exc.args else exc}") from exc


def ppo_settings(budget: Budget, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Fast-path PPO's settings for meta-training: ``PPO`` with the budget's copies per iteration
    and its learning rate annealed to 0 over the budget's iterations (CleanRL's anneal_lr), then
    ``overrides["ppo"]`` (``--set ppo.copies=...`` wins over the budget)."""
    return {"copies": budget.copies, "lr_anneal_iterations": budget.iterations, "device": device,
            **job_settings(overrides)["ppo"]}


def train_config(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> EnvConfig:
    """The meta-training setting: ``TRAIN_ENV`` with ``overrides["env"]`` applied."""
    return EnvConfig.from_kwargs(**job_settings(overrides)["env"])


def heldout_settings(train: EnvConfig) -> dict[str, EnvConfig]:
    """The three held-out evaluation settings (split ``heldout``)."""
    hidden = train.layers[1]
    return {
        "teacher_student": train.replace(split="heldout"),
        "teacher_student_wide": train.replace(split="heldout", layers=(train.layers[0], 4 * hidden, *train.layers[2:])),
        "digits": train.replace(split="heldout", task="digits", task_kwargs={"pca": train.layers[0]},
                                layers=(train.layers[0], *train.layers[1:-1], 10)),
    }


def eval_base_seed(seed: int) -> int:
    return 10_000 + seed


def eval_seeds(seed: int, n: int) -> list[int]:
    """The per-copy seeds of the held-out runs, shared by every rule (same tasks, same initial
    weights, same minibatches): those ``rollout_losses(..., seed=eval_base_seed(seed))`` uses."""
    from marl_net.evaluation import episode_seeds

    return episode_seeds(eval_base_seed(seed), n)


def restart_seed(seed: int, restart: int) -> int:
    """The meta-training seed of restart ``restart`` of the job seeded ``seed`` (restart 0: ``seed``)."""
    from marl_net.seeding import seed_from

    return seed if restart == 0 else seed_from(seed, 100 + restart)


def select_restart(policies: Sequence[torch.nn.Module], train: EnvConfig, budget: Budget, seed: int,
                   device: str = "cpu") -> tuple[int, list[float]]:
    """Index of the policy with the lowest mean final loss on ``budget.eval_episodes`` train-split
    networks (never the held-out ones), and every policy's figure."""
    from marl_net.evaluation import rollout_losses
    from marl_net.rules.tuning import lowest

    with torch.no_grad():
        finals = [float(rollout_losses(p, train.replace(split="train"), episodes=budget.eval_episodes, seed=seed,
                                       device=device)[:, -1].mean()) for p in policies]
    return lowest(range(len(finals)), finals), finals


def meta_train(budget: Budget, seed: int, out: Path, device: str = "cpu", progress: bool = True,
               overrides: Mapping[str, Mapping[str, Any]] | None = None, log_name: str = "meta_train"):
    """Fast-path PPO on the training distribution. Returns (trainer, summary dict)."""
    from tqdm import tqdm

    from marl_net.evaluation import sample_observations
    from marl_net.fast.ppo import FastPPO, FastPPOConfig

    settings = job_settings(overrides)
    env = EnvConfig.from_kwargs(**settings["env"])
    ppo = ppo_settings(budget, overrides, device)
    trainer = FastPPO(env, settings["policy"], FastPPOConfig.from_kwargs(**ppo), seed=seed,
                      log_dir=str(out / "tb" / log_name))
    trainer.policy.calibrate(sample_observations(trainer.policy, env, seed=seed))  # as launches do
    start = time.perf_counter()
    metrics: dict = {}
    bar = tqdm(range(budget.iterations), desc="meta-training (fast-path PPO)", unit="it", disable=not progress)
    for _ in bar:
        metrics = trainer.train()
        bar.set_postfix(inner_loss=f"{metrics.get('inner_loss_final', float('nan')):.4f}")
    summary = {
        "iterations": trainer.iteration,
        "agent_steps": trainer.agent_steps,
        "seconds": round(time.perf_counter() - start, 1),
        "env": env.to_dict(),
        "policy": trainer.policy.config.to_dict(),
        "ppo": ppo,
        "final_inner_loss": metrics.get("inner_loss_final"),
    }
    return trainer, summary


def hand_rule_curves(rule: str, setting: EnvConfig, seeds: list[int], budget: Budget, device: str) -> tuple[float, torch.Tensor]:
    """Tune ``rule``'s step size on the train split of ``setting``, then run it on the held-out seeds."""
    from marl_net.rules.registry import run_rule
    from marl_net.rules.tuning import default_grid, tune_lr

    grid = default_grid(rule, setting.task, points=budget.tune_points)
    tuned = tune_lr(rule, setting.replace(split="train"), seeds=range(budget.tune_seeds), grid=grid,
                    metric=TUNING_METRIC, device=device)
    run = run_rule(rule, setting, seeds, device=device, lr=tuned.best_lr)
    return tuned.best_lr, run.curves


def learned_rule_curves(policy, setting: EnvConfig, seeds: list[int], budget: Budget, seed: int,
                        device: str) -> tuple[float, torch.Tensor]:
    """Tune the learned rule's ``action_scale`` on the train split of ``setting`` as the hand
    rules' step sizes are tuned (:data:`TUNING_METRIC` over ``budget.tune_seeds`` networks; a value
    under which a network diverges is out), then run it on the held-out ``seeds``."""
    from marl_net.evaluation import rollout_losses
    from marl_net.rules.tuning import lowest, score

    scores = []
    for factor in LEARNED_SCALE_GRID:
        trial = setting.replace(split="train", action_scale=setting.action_scale * factor)
        curves = rollout_losses(policy, trial, episodes=budget.tune_seeds, seed=seed, device=device)
        diverged = bool((~torch.isfinite(curves) | (curves.abs() > trial.divergence_threshold)).any())
        scores.append(float("inf") if diverged else float(score(curves, TUNING_METRIC).mean()))
    best = setting.action_scale * lowest(LEARNED_SCALE_GRID, scores)
    held_out = rollout_losses(policy, setting.replace(action_scale=best), episodes=len(seeds),
                              seed=eval_base_seed(seed), device=device)
    return best, held_out


def evaluate(policy, budget: Budget, seed: int, device: str = "cpu", progress: bool = True,
             overrides: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[dict, dict, dict]:
    """Held-out loss curves ``{task: {rule: [episodes, T + 1]}}`` and the tuned step sizes
    (``overrides``: those the learned rule was trained with; its held-out settings follow them)."""
    from tqdm import tqdm

    train = train_config(overrides)
    seeds = eval_seeds(seed, budget.eval_episodes)
    curves, tuned, settings = {}, {}, heldout_settings(train)
    jobs = [(task, rule) for task in settings for rule in ("learned", *HAND_RULES)]
    bar = tqdm(jobs, desc="held-out evaluation", unit="run", disable=not progress)
    for task, rule in bar:
        bar.set_postfix(task=task, rule=rule)
        setting = settings[task]
        if rule == "learned":
            with torch.no_grad():
                step, c = learned_rule_curves(policy, setting, seeds, budget, seed, device)
        else:
            step, c = hand_rule_curves(rule, setting, seeds, budget, device)
        tuned.setdefault(task, {})[rule] = step
        curves.setdefault(task, {})[rule] = c
    return curves, tuned, {task: s.to_dict() for task, s in settings.items()}


def summarize_heldout(curves: dict) -> dict:
    from marl_net.results import summarize

    return {task: {rule: summarize(c.float()) for rule, c in by_rule.items()} for task, by_rule in curves.items()}


def table(heldout: dict) -> str:
    """The markdown table of held-out final losses (mean +- std over networks) and AUCs."""
    rows = ["| task | rule | final loss (mean +- std) | AUC | final / best of NP, WP |", "|---|---|---|---|---|"]
    for task, by_rule in heldout.items():
        best_perturbation = min(by_rule[r]["final_loss_mean"] for r in ("np", "wp"))
        for rule, e in by_rule.items():
            ratio = e["final_loss_mean"] / best_perturbation
            rows.append(f"| {task} | {rule} | {e['final_loss_mean']:.4f} +- {e['final_loss_std']:.4f} | "
                        f"{e['auc_mean']:.4f} | {ratio:.2f} |")
    return "\n".join(rows) + "\n"


def write_outputs(out: Path, results: dict, curves: dict, seeds: list[int]) -> list[Path]:
    from marl_net.results import build_results, plot_curves, write_tensorboard

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "table.md"]
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "table.md").write_text(table(results["heldout"]))
    for task, by_rule in curves.items():
        steps = next(iter(by_rule.values())).shape[1] - 1
        per_task = build_results(task, steps, seeds, {r: c.float() for r, c in by_rule.items()})
        plot_curves(out / f"curves_{task}.png", per_task)
        write_tensorboard(out / "tb" / task, per_task)
        written.append(out / f"curves_{task}.png")
    return written


def run(budget: Budget, out: Path, seed: int = 0, device: str = "cpu", progress: bool = True,
        overrides: Mapping[str, Mapping[str, Any]] | None = None, kernels: bool | None = None) -> dict:
    """The whole main job; returns the results dict (also written to ``out/results.json``).
    ``overrides``: ``{"env" | "policy" | "ppo": {setting: value}}`` on top of the main job's
    meta-training settings (see :func:`job_settings`). ``kernels``: run the C++ kernels (True) or
    torch only (False); None leaves ``marl_net.numerics``' setting. Recorded under ``numerics``."""
    from marl_net import numerics

    with numerics.kernels(kernels), numerics.recording() as ran:
        results, curves = _run(budget, Path(out), seed, device, progress, overrides, ran)
        results["numerics"] = numerics.describe(device, ran)
    write_outputs(Path(out), results, curves, eval_seeds(seed, budget.eval_episodes))
    return results


def _run(budget: Budget, out: Path, seed: int, device: str, progress: bool,
         overrides: Mapping[str, Mapping[str, Any]] | None, ran: set[str]) -> tuple[dict, dict]:
    """:func:`run`'s work: the results dict (without ``numerics``) and the held-out curves; ``ran``
    collects the kernels that ran (``policy.pt`` records those of meta-training)."""
    from marl_net import numerics

    out.mkdir(parents=True, exist_ok=True)
    runs = [meta_train(budget, restart_seed(seed, k), out, device, progress, overrides,
                       log_name="meta_train" if k == 0 else f"meta_train_{k}") for k in range(budget.restarts)]
    trainer, train_summary = runs[0]
    if budget.restarts > 1:
        best, finals = select_restart([t.policy for t, _ in runs], train_config(overrides), budget, seed, device)
        trainer, train_summary = runs[best]
        train_summary = {**train_summary, "iterations": sum(t.iteration for t, _ in runs),
                         "agent_steps": sum(t.agent_steps for t, _ in runs),
                         "seconds": round(sum(s["seconds"] for _, s in runs), 1),
                         "restarts": [{"seed": restart_seed(seed, k), "train_final_loss": f}
                                      for k, f in enumerate(finals)], "selected_restart": best}
    torch.save({"config": trainer.policy.config.to_dict(), "state_dict": trainer.policy.state_dict(),
                "env": train_summary["env"], "numerics": numerics.describe(device, ran)}, out / "policy.pt")
    policy = trainer.policy.eval()
    curves, tuned, settings = evaluate(policy, budget, seed, device, progress, overrides)
    results = {
        "budget": asdict(budget),
        "seed": seed,
        "train": train_summary,
        "settings": settings,
        "tuned_lr": tuned,
        "heldout": summarize_heldout(curves),
    }
    return results, curves


def check_targets(results: dict, ratio: float = 0.8) -> list[tuple[str, bool, str]]:
    """The project's learning-quality targets on a main-job results dict: (name, passed, figures).

    - on held-out teacher-student tasks the learned rule's mean final loss is at most ``ratio``
      times the better of NP and WP (the gap to SGD is reported alongside);
    - on the wider network it still beats both NP and WP.
    """
    out = []
    for task, limit in (("teacher_student", ratio), ("teacher_student_wide", 1.0)):
        by_rule = results["heldout"][task]
        learned = by_rule["learned"]["final_loss_mean"]
        best = min(by_rule["np"]["final_loss_mean"], by_rule["wp"]["final_loss_mean"])
        sgd = by_rule["sgd"]["final_loss_mean"]
        strict = limit == 1.0  # "beats": strictly lower
        passed = learned < best if strict else learned <= limit * best
        relation = "<" if strict else f"<= {limit:g} x"
        out.append((f"{task}: learned {relation} best of NP, WP", passed,
                    f"learned {learned:.4f}, best of NP/WP {best:.4f} (ratio {learned / best:.2f}), "
                    f"SGD {sgd:.4f} (learned / SGD {learned / sgd:.1f})"))
    return out
