"""The 20-bit multiplexer of Chung (2022): 4 address bits pick one of 16 data bits.

One-step episodes: the agent sees 20 bits coded +-1, answers with one of two actions and gets
+1 if the action equals the addressed data bit, else -1. There is no critic (the paper's config
gives it learning rate 0): every unit's signal is the reward itself. Seeds run as a batch in the
copy dimension E; one episode per copy per step (online, batch 1).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from marl_net.reproduce.agent import ActorLearner
from marl_net.reproduce.methods import Method, RuleOptions
from marl_net import seeding
from marl_net.reproduce.randomness import STREAM_ACTOR, copy_generators

ADDRESS_BITS = 4
DATA_BITS = 2**ADDRESS_BITS
INPUT_BITS = ADDRESS_BITS + DATA_BITS
CHUNK = 1024  # steps whose random draws are made at once (fixed: it sets which numbers each step gets)


def multiplexer_inputs(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From uniforms ``[E, 20]``: inputs ``[E, 20]`` in {-1, +1} and the correct action ``[E]`` in {0, 1}
    (the addressed data bit; the first 4 bits are the address, most significant first)."""
    if u.dim() != 2 or u.shape[1] != INPUT_BITS:
        raise ValueError(f"uniforms have shape {tuple(u.shape)}; pass [E, {INPUT_BITS}]")
    bits = (u < 0.5).long()
    weights = 2 ** torch.arange(ADDRESS_BITS - 1, -1, -1, device=u.device)
    address = (bits[:, :ADDRESS_BITS] * weights).sum(1)
    target = bits.gather(1, (ADDRESS_BITS + address).unsqueeze(1)).squeeze(1)
    return (2 * bits - 1).to(u.dtype), target


def run_multiplexer(task, method: Method, seeds, episodes: int, opts: RuleOptions, device="cpu",
                    on_progress: Callable[[int, float], None] | None = None) -> np.ndarray:
    """Train one actor per seed for ``episodes`` one-step episodes; returns rewards ``[E, episodes]``."""
    if method.multi_step_only:
        raise ValueError(f"{method.name} needs multi-step episodes (the paper reports n.a. on the multiplexer); "
                         "drop it from --methods for --task multiplexer")
    gens = copy_generators(seeds, STREAM_ACTOR, device)
    learner = ActorLearner(method, opts, gens, INPUT_BITS, 2, task.actor_lr, task.actor_lr_end,
                           task.lr_decay_steps, task.output_temperature, device=device)
    e, width = len(seeds), INPUT_BITS + learner.actor.num_uniforms
    rewards = torch.empty(e, episodes, device=device)
    start = torch.ones(e, dtype=torch.bool, device=device)
    for c0 in range(0, episodes, CHUNK):  # draws and inputs for CHUNK steps at once, per copy
        n = min(CHUNK, episodes - c0)
        u = seeding.rand(gens, (CHUNK, width), device=device)
        xs, targets = multiplexer_inputs(u[..., :INPUT_BITS].reshape(-1, INPUT_BITS))
        xs, targets = xs.view(e, CHUNK, INPUT_BITS), targets.view(e, CHUNK)
        for i in range(n):
            step = learner.act(xs[:, i], u[:, i, INPUT_BITS:])
            r = (step.action == targets[:, i]).to(xs.dtype) * 2 - 1
            rewards[:, c0 + i] = r
            learner.learn(step, r, start)
        if on_progress is not None:
            on_progress(c0 + n, float(rewards[:, c0:c0 + n].mean()))
    return rewards.cpu().numpy()
