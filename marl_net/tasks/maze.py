"""A grid maze with an invisible goal (RL inner task; see ``marl_net.tasks.rl``), after MetODS.

Instance ``task_id`` is a ``size x size`` grid (odd size, walls on the border) whose walls are a
perfect maze carved by a randomized depth-first search over the cells at odd coordinates, plus
a goal cell; both come from a generator seeded with the task id and the size. Small grids have
few mazes (size 7: 192), so the wall layouts themselves are split: a layout belongs to the split
named by the lowest bit of its SHA-256 hash, and an instance redraws until its layout belongs to
its id's split. Held-out ids therefore give mazes no train id ever gives, and preset ``maze_large`` (size 11) is a larger maze than any train maze
(preset ``maze``, size 7).

Each inner copy starts at a uniform free cell other than the goal. Actions 0..3 move up, right,
down, left by one cell; a move into a wall leaves the agent in place. Reaching the goal pays
``reward`` (10, as in MetODS) and teleports the agent to a uniform free non-goal cell (the step's
uniform); every other step pays 0. The goal is invisible: the observation is the 3x3 patch of
walls around the agent (1 = wall, row-major, the agent in the middle), 9 numbers, so the agent
knows it hit the goal only through the reward input. The lifetime is fixed (``max_cycles + 1``
steps; the presets: 100).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from marl_net import seeding
from marl_net.tasks.base import SPLITS, register_task, split_of
from marl_net.tasks.rl import RLTask, State, uniform_choice

UP, RIGHT, DOWN, LEFT = range(4)


def carve_maze(size: int, rng: np.random.Generator) -> np.ndarray:
    """``[size, size]`` bool walls of a perfect maze: cells at odd coordinates joined by an
    iterative randomized depth-first search (every free cell reachable from every other)."""
    walls = np.ones((size, size), dtype=bool)
    cells = (size - 1) // 2
    start = (int(rng.integers(cells)), int(rng.integers(cells)))
    visited = np.zeros((cells, cells), dtype=bool)
    visited[start] = True
    walls[2 * start[0] + 1, 2 * start[1] + 1] = False
    stack = [start]
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1))
                   if 0 <= r + dr < cells and 0 <= c + dc < cells and not visited[r + dr, c + dc]]
        if not options:
            stack.pop()
            continue
        nr, nc = options[int(rng.integers(len(options)))]
        visited[nr, nc] = True
        walls[r + nr + 1, c + nc + 1] = False  # the wall between the two cells
        walls[2 * nr + 1, 2 * nc + 1] = False
        stack.append((nr, nc))
    return walls


def layout_split(walls: np.ndarray) -> str:
    """The split a wall layout belongs to: the lowest bit of its SHA-256 hash picks it."""
    return SPLITS[hashlib.sha256(np.ascontiguousarray(walls, dtype=bool).tobytes()).digest()[0] & 1]


@register_task("maze", "RL: grid maze (walls per task id), 3x3 view, invisible goal, teleport after reward")
class Maze(RLTask):
    obs_dim = 9
    num_actions = 4

    def __init__(self, input_dim: int | None = None, output_dim: int | None = None, size: int = 7,
                 reward: float = 10.0, baseline_rate: float = 0.1):
        if int(size) < 5 or int(size) % 2 == 0:
            raise ValueError(f"size={size!r} must be odd and >= 5 (walls on the border, cells at odd coordinates)")
        if not float(reward) > 0:
            raise ValueError(f"reward={reward!r} must be positive")
        self.size, self.reward = int(size), float(reward)
        self.reward_scale = self.reward
        n = self.size
        self.moves = torch.tensor([-n, 1, n, -1])
        self.view_offsets = torch.tensor([dr * n + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
        super().__init__(input_dim, output_dim, baseline_rate)

    def layout(self, task_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """The instances' walls ``[E, size * size]`` (bool, row-major) and goal cells ``[E]``."""
        walls, goals = [], []
        for task_id in task_ids:  # one maze per network copy, shared by its inner copies
            rng = np.random.default_rng(seeding.seed_from(task_id, self.size))
            w = carve_maze(self.size, rng)
            while layout_split(w) != split_of(task_id):
                w = carve_maze(self.size, rng)
            free = np.flatnonzero(~w.reshape(-1))
            walls.append(torch.from_numpy(w.reshape(-1)))
            goals.append(int(free[rng.integers(len(free))]))
        return torch.stack(walls), torch.tensor(goals, dtype=torch.long)

    def _random_cells(self, state: State, uniforms: torch.Tensor) -> torch.Tensor:
        """``[E, B]``: a uniform free non-goal cell per inner copy."""
        allowed = ~state["walls"]
        allowed = allowed & (torch.arange(allowed.shape[1], device=allowed.device) != state["goal"].unsqueeze(1))
        e, b = uniforms.shape
        return uniform_choice(allowed.unsqueeze(1).expand(e, b, -1), uniforms)

    def start(self, task_ids, uniforms) -> State:
        walls, goal = self.layout(task_ids)
        state = {"walls": walls, "goal": goal}
        state["position"] = self._random_cells(state, uniforms)
        return state

    def observe(self, state: State) -> torch.Tensor:
        pos = state["position"]  # never on the border, so the 3x3 patch stays inside the grid
        cells = pos.unsqueeze(-1) + self.view_offsets.to(pos.device)  # [E, B, 9]
        e, b = pos.shape
        return state["walls"].gather(1, cells.reshape(e, b * 9)).reshape(e, b, 9).float()

    def transition(self, state: State, actions: torch.Tensor, uniforms: torch.Tensor):
        pos = state["position"]
        target = pos + self.moves.to(pos.device)[actions]
        blocked = state["walls"].gather(1, target)
        moved = torch.where(blocked, pos, target)
        reached = moved == state["goal"].unsqueeze(1)
        new = dict(state)
        new["position"] = torch.where(reached, self._random_cells(state, uniforms), moved)
        return new, reached.float() * self.reward
