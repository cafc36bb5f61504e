"""The 1-D Harlow task as MetODS describes it (RL inner task; see ``marl_net.tasks.rl``).

A line of ``line_length`` slots (odd; the middle one is the fixation point). Instance ``task_id``
is an episode's two new objects: two codes ``N(0, I_object_dim)`` and which of them is rewarded,
drawn from a generator seeded with the task id (held-out ids: objects never seen in training).
Time steps alternate between

- fixation: the observation shows only the fixation cue; choosing the middle slot pays
  ``fixation_reward``, anything else 0. The next step is a presentation.
- presentation: the two objects appear at two distinct non-middle slots, a random ordered pair
  drawn afresh for every presentation (the step's uniform when the fixation step acts), so a
  side-based strategy cannot work; choosing the rewarded object's slot pays +1, the other
  object's -1, any other slot 0. The next step is a fixation.

Observation ``[line_length * object_dim + 1]``: the object code at each slot (zeros where empty),
then the fixation cue (``encoding="slots"``, the default: MetODS' task). ``encoding="difference"``
(``line_length=3`` only) shows ``[code at the left slot - code at the right slot, cue]`` instead,
``object_dim + 1`` numbers: one object code for both sides, as an embedding learned across
episodes could give (preset ``harlow_difference``, an ablation; docs/rl_tasks.md).
Actions: one per slot. MetODS' episode of five presentations is
``max_cycles=9`` (preset ``harlow``); longer lifetimes go on presenting the same two objects.
The first step of a lifetime is a fixation.
"""

from __future__ import annotations

import torch

from marl_net import seeding
from marl_net.tasks.base import register_task
from marl_net.tasks.rl import RLTask, State

FIXATION, PRESENTATION = 0, 1
ENCODINGS = ("slots", "difference")


@register_task("harlow", "RL: 1-D Harlow one-shot task (MetODS): two new objects per episode at permuted positions")
class Harlow(RLTask):
    reward_scale = 1.0

    def __init__(self, input_dim: int | None = None, output_dim: int | None = None, line_length: int = 3,
                 object_dim: int = 4, fixation_reward: float = 0.2, baseline_rate: float = 0.1,
                 encoding: str = "slots"):
        if int(line_length) < 3 or int(line_length) % 2 == 0:
            raise ValueError(f"line_length={line_length!r} must be odd and >= 3 (a middle fixation slot and two sides)")
        if int(object_dim) < 1:
            raise ValueError(f"object_dim={object_dim!r} must be >= 1")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding={encoding!r}: choose one of {ENCODINGS}")
        if encoding == "difference" and int(line_length) != 3:
            raise ValueError(f"encoding='difference' needs line_length=3 (one left and one right slot), not {line_length!r}")
        self.line_length, self.object_dim, self.encoding = int(line_length), int(object_dim), encoding
        self.center = self.line_length // 2
        self.fixation_reward = float(fixation_reward)
        self.num_actions = self.line_length
        self.obs_dim = (self.object_dim if encoding == "difference" else self.line_length * self.object_dim) + 1
        super().__init__(input_dim, output_dim, baseline_rate)

    def objects(self, task_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """The instances' object codes ``[E, 2, object_dim]`` and rewarded object ``[E]`` (0 or 1)."""
        gens = seeding.make_generators(list(task_ids))
        codes = seeding.randn(gens, (2, self.object_dim))
        rewarded = seeding.randint(gens, 2, ())
        return codes, rewarded

    def start(self, task_ids, uniforms) -> State:
        codes, rewarded = self.objects(task_ids)
        e, b = uniforms.shape
        return {
            "codes": codes,
            "rewarded": rewarded,
            "phase": torch.full((e, b), FIXATION, dtype=torch.long),
            "slots": torch.zeros(e, b, 2, dtype=torch.long),  # slot of object 0 and 1 (presentations)
            "presentations": torch.zeros(e, b, dtype=torch.long),  # presentations completed
        }

    def placement(self, uniforms: torch.Tensor) -> torch.Tensor:
        """``[E, B, 2]``: the slots of object 0 and object 1, a uniform ordered pair of distinct
        non-middle slots (``floor(u * (n - 1) * (n - 2))`` indexes the pairs)."""
        sides = self.line_length - 1
        pair = (uniforms * sides * (sides - 1)).long().clamp(max=sides * (sides - 1) - 1)
        first, second = pair // (sides - 1), pair % (sides - 1)
        second = second + (second >= first).long()  # skip the first object's side
        to_slot = lambda j: j + (j >= self.center).long()  # noqa: E731  (skip the middle slot)
        return torch.stack([to_slot(first), to_slot(second)], dim=-1)

    def observe(self, state: State) -> torch.Tensor:
        shown = (state["phase"] == PRESENTATION).to(state["codes"].dtype)  # [E, B]
        where = torch.nn.functional.one_hot(state["slots"], self.line_length).to(shown.dtype)  # [E, B, 2, L]
        slots = torch.einsum("ebil,eid->ebld", where, state["codes"]) * shown[..., None, None]
        seen = slots[:, :, 0] - slots[:, :, 2] if self.encoding == "difference" else slots.flatten(2)
        return torch.cat([seen, (1.0 - shown).unsqueeze(-1)], dim=-1)

    def transition(self, state: State, actions: torch.Tensor, uniforms: torch.Tensor):
        fixating = state["phase"] == FIXATION
        slots = state["slots"]
        good = slots.gather(2, state["rewarded"].view(-1, 1, 1).expand(-1, slots.shape[1], 1)).squeeze(2)
        bad = slots.gather(2, (1 - state["rewarded"]).view(-1, 1, 1).expand(-1, slots.shape[1], 1)).squeeze(2)
        choice = (actions == good).float() - (actions == bad).float()
        fixated = (actions == self.center).float() * self.fixation_reward
        rewards = torch.where(fixating, fixated, choice)
        new = dict(state)
        new["phase"] = torch.where(fixating, PRESENTATION, FIXATION)
        new["slots"] = torch.where(fixating.unsqueeze(-1), self.placement(uniforms), slots)
        new["presentations"] = state["presentations"] + (~fixating).long()
        return new, rewards
