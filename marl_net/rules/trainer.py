"""The one trainer loop every hand-designed rule shares: a rule over a network and a task, E copies at once.

It follows the environment's random streams and order exactly (``marl_net.core``), so copy e seeded
``s`` sees what ``network_weights_v0`` reset with seed ``s`` sees in its first episode:

- data generator ``seed_from(s, 0)``: the task id, then the initial weights, then one minibatch
  (``randint`` indices into the instance's samples) per step;
- noise generator ``seed_from(s, 1)``: a feedback rule's (FA / DFA) fixed feedback matrices once,
  before the first forward pass (as the env draws them at reset when a feedback feature is enabled;
  ``marl_net.feedback_alignment``), then Bernoulli units' draws in each forward pass, then the rule's
  perturbations (NP / WP), in that order.

Step t (t = 0..steps): draw minibatch b_t, forward ``params_t`` on it, record its loss ``curve[:, t]``
(exactly the loss the env reports: the step's minibatch loss); for t < steps the rule computes its
change from b_t and ``params_{t+1} = params_t + change``. So ``curve`` has ``steps + 1`` points,
``curve[:, 0]`` is the env's initial loss and ``curve[:, t]`` the loss after t weight updates: a
learned rule run for ``max_cycles = steps`` env steps gets the same budget and, for the same seed,
the same task, initial weights and minibatches.

A copy diverges as the env's does (non-finite loss or weights, or beyond
``config.divergence_threshold``): it stops changing and its curve holds the threshold from then on.

A rule is any object with ``name``, ``start(config, copies)`` and ``update(ctx) -> [change per layer]``
(weight space, see ``marl_net.ownership``); see ``marl_net.rules.registry`` for the built-in ones. A
rule with a ``feedback`` attribute (``"fa"`` or ``"dfa"``) gets its copies' feedback matrices in
``ctx.feedback``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch

from marl_net import losses, seeding
from marl_net.config import EnvConfig
from marl_net.context import StepContext
from marl_net.core import sample_task_id_torch
from marl_net.feedback_alignment import draw_feedback
from marl_net.network import forward, init_weights, join_bias, split_bias
from marl_net.ownership import Ownership
from marl_net.tasks import make_task


class Rule(Protocol):
    name: str

    def start(self, config: EnvConfig, copies: int) -> None: ...

    def update(self, ctx: StepContext) -> list[torch.Tensor]: ...


@dataclass
class RunResult:
    rule: str
    seeds: list[int]
    curves: torch.Tensor  # [E, steps + 1] minibatch loss after t updates
    params: list[torch.Tensor]  # final weight-space parameters, [E, rows, cols] per layer
    diverged: torch.Tensor  # [E] bool
    task_ids: list[int]

    @property
    def steps(self) -> int:
        return self.curves.shape[1] - 1


def train(rule: Rule, config: EnvConfig, seeds: Sequence[int], steps: int | None = None, device: str = "cpu",
          on_step: Callable[[int, torch.Tensor], None] | None = None) -> RunResult:
    """Run ``rule`` for ``steps`` updates (default ``config.max_cycles``) in ``len(seeds)`` copies at once.

    ``on_step(t, loss [E])`` is called after every evaluation (progress bars, logging).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds=[]: pass at least one seed (one network copy per seed)")
    steps = config.max_cycles if steps is None else int(steps)
    if steps < 0:
        raise ValueError(f"steps={steps!r} must be >= 0")
    e, device = len(seeds), torch.device(device)
    spec = config.network_spec()
    ownership = Ownership(spec, config.ownership)
    task = make_task(config.task, spec.layers[0], spec.layers[-1], **config.task_kwargs)
    task.check_network(spec.layers[0], spec.layers[-1])
    rule.start(config, e)

    data_gens = seeding.make_generators([seeding.seed_from(s, 0) for s in seeds])
    noise_gens = seeding.make_generators([seeding.seed_from(s, 1) for s in seeds])
    task_ids = [sample_task_id_torch(g, config.split) for g in data_gens]  # as core.reset draws it
    data = [task.instance(t) for t in task_ids]
    inputs = torch.stack([d.inputs for d in data]).to(device)
    targets = torch.stack([d.targets for d in data]).to(device)
    params = join_bias(*init_weights(spec, data_gens, device=device))
    delta = [torch.zeros_like(p) for p in params]
    mode = getattr(rule, "feedback", None)
    feedback = None if mode is None else draw_feedback(spec, mode, noise_gens, device)

    thr = config.divergence_threshold
    curves = torch.empty(e, steps + 1, device=device)
    diverged = torch.zeros(e, dtype=torch.bool, device=device)
    initial_loss = prev_loss = None
    for t in range(steps + 1):
        x, y = seeding.draw_minibatch(data_gens, inputs, targets, config.batch_size)
        weights, biases = split_bias(spec, params)
        fwd = forward(spec, weights, x, biases, generators=noise_gens)
        loss = losses.compute(task.loss, fwd.output, y)
        bad = ~torch.isfinite(loss) | (loss.abs() > thr)
        for p in params:
            bad |= ~torch.isfinite(p).flatten(1).all(1) | (p.abs().flatten(1).amax(1) > thr)
        diverged |= bad
        curves[:, t] = torch.where(diverged, torch.full_like(loss, thr), loss)
        if on_step is not None:
            on_step(t, curves[:, t])
        if t == steps:
            break
        initial_loss = loss if initial_loss is None else initial_loss
        ctx = StepContext(spec=spec, ownership=ownership, loss_name=task.loss, params=params, delta=delta,
                          inputs=x, targets=y, fwd=fwd, loss=loss,
                          prev_loss=loss if prev_loss is None else prev_loss, initial_loss=initial_loss,
                          t=torch.full((e,), t, dtype=torch.long, device=device), max_cycles=steps,
                          action_scale=config.action_scale,
                          noise_generators=noise_gens, feedback=feedback)
        delta = [torch.where(diverged.view(-1, 1, 1), torch.zeros_like(d), d) for d in rule.update(ctx)]
        params = [p + d for p, d in zip(params, delta)]
        prev_loss = loss
    return RunResult(rule.name, seeds, curves.cpu(), [p.cpu() for p in params], diverged.cpu(), task_ids)
