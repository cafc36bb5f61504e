"""Per-task metrics of a network acting in an RL inner task, recorded step by step from the core.

:class:`LifetimeRecorder` watches a :class:`~marl_net.core.NetworkWeightsCore` running an RL task
(call :meth:`~LifetimeRecorder.record` after the reset and after every step of one episode) and
summarizes the lifetime of every network copy and inner copy:

- ``mean_reward``: the mean reward per inner step over the lifetime (every task);
- ``regret`` (bandit): the cumulative expected regret over the lifetime,
  ``sum_t (max_a p_a - p_{a_t})``, mean over inner copies;
- ``correct_after_first`` (harlow): the fraction of presentations after the first of each
  lifetime on which the rewarded object was chosen (:meth:`~LifetimeRecorder.harlow_slots` splits
  it by whether the rewarded object is at the slot it held at the first presentation);
- ``steps_to_first_reward`` (maze): the inner step (1-based) of the first reward, the lifetime
  plus one where none came;
- ``episode_length`` (cartpole): the mean length of the inner episodes completed in the lifetime
  (the lifetime where none was).

Every value is ``[E]`` (mean over inner copies); :meth:`summary` averages over copies.
:meth:`reward_curve` is the mean reward of every recorded inner step, ``[E, steps]``.
"""

from __future__ import annotations

import torch

from marl_net.tasks.bandit import Bandit
from marl_net.tasks.cartpole import CartPole
from marl_net.tasks.harlow import FIXATION, Harlow
from marl_net.tasks.maze import Maze


class LifetimeRecorder:
    def __init__(self, core):
        if not core.rl:
            raise ValueError(f"task={core.config.task!r} is not an RL task: LifetimeRecorder needs bandit, harlow or maze")
        self.core, self.task = core, core.task
        self.steps = 0
        self.reward_sum = None

    def record(self) -> None:
        """Account for the inner step the core just took (its reset or a step)."""
        state = self.core.rl_state
        reward = state["prev_reward"]
        if self.steps == 0:
            self.reward_sum = torch.zeros_like(reward)
            self.regret = torch.zeros_like(reward)
            self.correct = torch.zeros_like(reward)
            self.judged = torch.zeros_like(reward)
            self.first_reward = torch.zeros_like(reward)
            self.episodes = torch.zeros_like(reward)
            self.first_slot = torch.full_like(reward, -1)  # harlow: the rewarded object's slot at the first presentation
            self.correct_same, self.judged_same = torch.zeros_like(reward), torch.zeros_like(reward)
            self.neither = torch.zeros_like(reward)  # harlow: later presentations paid 0, a slot without an object
            self.curve = []
        self.steps += 1
        self.curve.append(reward.mean(1))
        self.reward_sum += reward
        if isinstance(self.task, Bandit):
            p = state["arm_probs"]
            self.regret += p.max(1, keepdim=True).values - p.gather(1, state["prev_action"])
        elif isinstance(self.task, Harlow):  # a presentation just ended: the phase is back to fixation
            judged = ((state["phase"] == FIXATION) & (state["presentations"] >= 2)).to(reward.dtype)
            self.judged += judged
            self.correct += judged * (reward > 0).to(reward.dtype)
            self.neither += judged * (reward == 0).to(reward.dtype)
            ended = state["phase"] == FIXATION  # the slots are still the presentation's
            rewarded = state["rewarded"].view(-1, 1, 1).expand(-1, reward.shape[1], 1)
            slot = state["slots"].gather(2, rewarded).squeeze(2).to(reward.dtype)
            first = ended & (state["presentations"] == 1)
            self.first_slot = torch.where(first, slot, self.first_slot)
            same = judged * (slot == self.first_slot).to(reward.dtype)
            self.judged_same += same
            self.correct_same += same * (reward > 0).to(reward.dtype)
        elif isinstance(self.task, CartPole):  # an inner episode ended and restarted
            self.episodes += (state["episode_steps"] == 0).to(reward.dtype)
        elif isinstance(self.task, Maze):
            first = (self.first_reward == 0) & (reward > 0)
            self.first_reward = torch.where(first, torch.full_like(reward, self.steps), self.first_reward)

    def metrics(self) -> dict[str, torch.Tensor]:
        """``name -> [E]``, each the mean over inner copies."""
        if self.steps == 0:
            raise ValueError("nothing recorded: call record() after the reset and after every step")
        out = {"mean_reward": (self.reward_sum / self.steps).mean(1)}
        if isinstance(self.task, Bandit):
            out["regret"] = self.regret.mean(1)
        elif isinstance(self.task, Harlow):
            out["correct_after_first"] = (self.correct.sum(1) / self.judged.sum(1).clamp(min=1))
        elif isinstance(self.task, Maze):
            never = self.first_reward == 0
            out["steps_to_first_reward"] = torch.where(never, torch.full_like(self.first_reward, self.steps + 1),
                                                       self.first_reward).mean(1)
        elif isinstance(self.task, CartPole):
            completed = self.steps - self.core.rl_state["episode_steps"].to(self.episodes.dtype)
            out["episode_length"] = torch.where(self.episodes > 0, completed / self.episodes.clamp(min=1),
                                                torch.full_like(completed, self.steps)).mean(1)
        return out

    def harlow_slots(self) -> dict[str, float]:
        """Harlow's presentations after the first, pooled over copies and split by where the rewarded
        object is: ``same_slot`` at the slot it held at the lifetime's first presentation, ``moved``
        at another; each the fraction on which it was chosen (NaN where there was no such
        presentation), with the presentations counted (``same_slot_n``, ``moved_n``). A rule that
        only learns which *slot* paid reaches 1 on the first and 0 on the second. ``neither``: the
        fraction of all of them (same slot or moved) on which a slot without an object was chosen
        (paid 0: on a 3-slot line the middle, the fixation point); the rest chose the unrewarded object."""
        if self.steps == 0 or not isinstance(self.task, Harlow):
            raise ValueError("harlow_slots() needs a recorded Harlow lifetime")
        same_n, all_n = float(self.judged_same.sum()), float(self.judged.sum())
        moved_n, moved_correct = all_n - same_n, float(self.correct.sum() - self.correct_same.sum())
        fraction = lambda hits, n: hits / n if n else float("nan")  # noqa: E731
        return {"same_slot": fraction(float(self.correct_same.sum()), same_n), "same_slot_n": int(same_n),
                "moved": fraction(moved_correct, moved_n), "moved_n": int(moved_n),
                "neither": fraction(float(self.neither.sum()), all_n)}

    def reward_curve(self) -> torch.Tensor:
        """``[E, steps]``: the mean reward over inner copies at every recorded inner step."""
        if self.steps == 0:
            raise ValueError("nothing recorded: call record() after the reset and after every step")
        return torch.stack(self.curve, dim=1)

    def summary(self) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.metrics().items()}
