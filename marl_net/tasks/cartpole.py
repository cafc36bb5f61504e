"""CartPole-v1 through Gymnasium's vectorized CartPole (RL inner task; see ``marl_net.tasks.rl``).

The physics is Gymnasium's own ``CartPoleVectorEnv`` (one numpy vector env over all ``E * B``
inner copies, stepped once per env step): the task hands it the inner copies' states, steps it
with the sampled actions (0 pushes left, 1 right) and reads the new states back. The reward is
Gymnasium's ``sutton_barto_reward`` variant by default: 0 per step, -1 on the step that drops the
pole. CartPole-v1's usual reward, 1 on every step, is constant over a lifetime of fixed length
whose episodes restart, so it would carry no learning signal (``sutton_barto_reward=False``
gives it anyway). An inner episode that ends (pole
beyond 12 degrees, cart beyond 2.4, or 500 steps) restarts at once within the lifetime from a
state ``U(-0.05, 0.05)^4``, CartPole-v1's reset distribution, drawn from the copy's data
generator (4 uniforms per inner copy and step), so the copy's streams stay its own; the next
observation is then the new episode's first. The observation is the 4-d state (float32, as
Gymnasium returns it). All instances are the same CartPole: task ids only name the start states'
stream; the lifetime is the env's ``max_cycles + 1`` steps (preset ``cartpole``: 1,000).

With ``rl_draws="chung"`` (``marl_net.config.EnvConfig``) the start states come instead from
Gymnasium's own reset stream, as ``marl-net reproduce chung`` gets them: copy e's (one inner copy)
is ``gymnasium.utils.seeding.np_random(s_e)`` for its seed ``s_e``, and each start state is its
``uniform(-0.05, 0.05, size=4)``, drawn only when an episode starts (:meth:`CartPole.use_gym_resets`).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.utils.seeding import np_random

from marl_net.tasks.base import register_task
from marl_net.tasks.rl import RLTask, State

RESET_BOUND = 0.05  # CartPole-v1's reset states are U(-0.05, 0.05)^4


@register_task("cartpole", "RL: Gymnasium's CartPole-v1 (vectorized), inner episodes restart within the lifetime")
class CartPole(RLTask):
    obs_dim = 4
    num_actions = 2
    reward_scale = 1.0
    uniforms_per_step = 4

    def __init__(self, input_dim: int | None = None, output_dim: int | None = None, max_episode_steps: int = 500,
                 sutton_barto_reward: bool = True, baseline_rate: float = 0.1, previous_action_reward: bool = True,
                 reference_logit: bool = False):
        if int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps={max_episode_steps!r} must be >= 1 (CartPole-v1: 500)")
        self.max_episode_steps = int(max_episode_steps)
        self.sutton_barto_reward = bool(sutton_barto_reward)
        self._engines: dict[int, CartPoleVectorEnv] = {}
        self._gym_rngs: list[np.random.Generator] | None = None
        super().__init__(input_dim, output_dim, baseline_rate, previous_action_reward, reference_logit)

    def use_gym_resets(self, seeds) -> None:
        """Draw start states from Gymnasium's reset stream of each copy's seed (one inner copy per
        network copy), as Gymnasium's ``CartPole-v1`` seeded ``reset(seed=s)`` and its autoresets do."""
        self._gym_rngs = [np_random(int(s))[0] for s in seeds]

    def _gym_start(self, copies) -> torch.Tensor:
        """``[len(copies), 1, 4]`` float64 start states from the gym streams of ``copies``."""
        return torch.from_numpy(np.stack([self._gym_rngs[i].uniform(low=-RESET_BOUND, high=RESET_BOUND, size=(4,))
                                          for i in copies])).unsqueeze(1)

    def engine(self, n: int) -> CartPoleVectorEnv:
        """Gymnasium's vector CartPole over ``n`` inner copies (kept per size; its own reset and
        random stream are never used)."""
        if n not in self._engines:
            env = CartPoleVectorEnv(num_envs=n, max_episode_steps=self.max_episode_steps,
                                    sutton_barto_reward=self.sutton_barto_reward)
            env.reset(seed=0)
            self._engines[n] = env
        return self._engines[n]

    @staticmethod
    def _fresh(uniforms: torch.Tensor) -> torch.Tensor:
        return (uniforms.double() * 2.0 - 1.0) * RESET_BOUND

    def start(self, task_ids, uniforms) -> State:
        e, b = uniforms.shape[:2]
        physics = self._fresh(uniforms) if self._gym_rngs is None else self._gym_start(range(e))
        no = torch.zeros(e, b, dtype=torch.bool)
        return {"physics": physics, "episode_steps": torch.zeros(e, b, dtype=torch.long), "terminated": no,
                "truncated": no.clone(), "final_physics": physics.clone()}

    def final_observe(self, state: State) -> torch.Tensor:
        return state["final_physics"].float()

    def episode_flags(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        return state["terminated"], state["truncated"]

    def observe(self, state: State) -> torch.Tensor:
        return state["physics"].float()

    def transition(self, state: State, actions: torch.Tensor, uniforms: torch.Tensor):
        physics, steps = state["physics"], state["episode_steps"]
        e, b = actions.shape
        env = self.engine(e * b)
        env.state = physics.reshape(e * b, 4).T.cpu().numpy().copy()
        env.steps = steps.reshape(-1).cpu().numpy().astype(np.int32)
        env.prev_done = np.zeros(e * b, dtype=np.bool_)  # restarts are ours, from the copies' streams
        _, reward, terminated, truncated, _ = env.step(actions.reshape(-1).cpu().numpy().astype(np.int64))
        moved = torch.from_numpy(env.state.T.copy()).reshape(e, b, 4).to(physics.device)
        done = torch.from_numpy(terminated | truncated).reshape(e, b).to(physics.device)
        new = dict(state)
        new["terminated"] = torch.from_numpy(terminated).reshape(e, b).to(physics.device)
        new["truncated"] = torch.from_numpy(truncated).reshape(e, b).to(physics.device)
        new["final_physics"] = moved  # where the episode ended, before a restart (Gymnasium's final_obs)
        if self._gym_rngs is None:
            fresh = self._fresh(uniforms).to(physics.device)
        else:  # only the copies whose episode ended draw, in copy order (one inner copy each)
            fresh = moved.clone()
            ended = torch.nonzero(done.any(1).cpu()).flatten().tolist()
            if ended:
                fresh[ended] = self._gym_start(ended).to(physics.device)
        new["physics"] = torch.where(done.unsqueeze(-1), fresh, moved)
        new["episode_steps"] = torch.where(done, 0, steps + 1)
        rewards = torch.from_numpy(reward).reshape(e, b).to(physics.device)
        return new, rewards
