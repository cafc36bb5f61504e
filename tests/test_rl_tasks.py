"""RL inner tasks' own dynamics on hand-checked cases: bandit reward rates, Harlow's object and
position bookkeeping, maze walls, view and teleport; train and held-out instances disjoint."""

import numpy as np
import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.tasks import make_task, split_of
from marl_net.tasks.harlow import FIXATION, PRESENTATION
from marl_net.tasks.maze import carve_maze, layout_split
from marl_net.tasks.rl import preset, sample_categorical, uniform_choice


def test_bandit_pays_one_when_the_uniform_falls_below_the_pulled_arms_probability():
    task = make_task("bandit", arms=2)
    state = {"arm_probs": torch.tensor([[0.2, 0.9]])}
    _, r = task.transition(state, torch.tensor([[0, 0, 1, 1]]), torch.tensor([[0.1, 0.3, 0.5, 0.95]]))
    assert r.tolist() == [[1.0, 0.0, 1.0, 0.0]]


def test_bandit_arm_probabilities_are_fixed_per_task_id():
    task = make_task("bandit", arms=10)
    a, b = task.arm_probabilities([5, 6]), task.arm_probabilities([5])
    assert a.shape == (2, 10) and torch.equal(a[0], b[0]) and not torch.equal(a[0], a[1])
    assert float(a.min()) >= 0 and float(a.max()) < 1


@pytest.mark.parametrize("name", ["bandit2", "bandit10"])
def test_a_uniform_policy_earns_the_mean_arm_probability(name):
    # init_gain 1e-6: logits ~ 0, so every inner copy pulls a uniform arm; with 4000 inner copies
    # the step's mean reward is mean(p) within 4 standard errors (0.008).
    core = NetworkWeightsCore(EnvConfig(**preset(name, batch_size=4000, init_gain=1e-6)), copies=2)
    core.seed([3, 4])
    core.reset()
    expected = core.rl_state["arm_probs"].mean(1)
    assert torch.allclose(-core.loss, expected, atol=4 * 0.5 / 4000**0.5)
    counts = torch.stack([torch.bincount(a, minlength=core.task.num_actions) for a in core.rl_state["prev_action"]])
    assert float((counts / 4000.0 - 1.0 / core.task.num_actions).abs().max()) < 0.03


def test_network_input_is_observation_previous_action_one_hot_and_previous_reward():
    core = NetworkWeightsCore(EnvConfig(**preset("bandit2", batch_size=6)), copies=1)
    core.seed([0])
    core.reset()
    state = core.rl_state
    x = core.task.network_input(state)[0]
    assert x.shape == (6, 4)
    assert x[:, 0].tolist() == [1.0] * 6  # the bandit's constant observation
    assert x[:, 1:3].argmax(1).tolist() == state["prev_action"][0].tolist() and x[:, 1:3].sum(1).tolist() == [1.0] * 6
    assert x[:, 3].tolist() == state["prev_reward"][0].tolist()
    fresh = core.task.initial_state([1], core.data_gens, 6, core.device)
    assert not core.task.network_input(fresh)[0, :, 1:].any()  # nothing acted yet: no action, no reward


def test_inverse_cdf_sampling_and_uniform_choice():
    probs = torch.tensor([[0.2, 0.5, 0.3]]).expand(5, 3)
    u = torch.tensor([0.0, 0.19, 0.2, 0.69, 0.9999999])
    assert sample_categorical(probs, u).tolist() == [0, 0, 1, 1, 2]
    allowed = torch.tensor([[False, True, False, True, True]]).expand(4, 5)
    assert uniform_choice(allowed, torch.tensor([0.0, 0.34, 0.67, 0.999])).tolist() == [1, 3, 4, 4]


def test_harlow_alternates_fixation_and_presentation_and_pays_the_rewarded_object():
    task = make_task("harlow", line_length=5, object_dim=3)
    state = task.start([11], torch.zeros(1, 2))
    codes, rewarded = state["codes"][0], int(state["rewarded"][0])
    assert (state["phase"] == FIXATION).all()
    obs = task.observe(state)[0]  # fixation: no object shown, the cue on
    assert not obs[:, :-1].any() and obs[:, -1].tolist() == [1.0, 1.0]
    # fixation step: the middle slot (2) pays fixation_reward; objects then shown at the pairs the uniforms pick
    state, r = task.transition(state, torch.tensor([[2, 0]]), torch.tensor([[0.0, 0.999]]))
    torch.testing.assert_close(r, torch.tensor([[0.2, 0.0]]))
    assert (state["phase"] == PRESENTATION).all()
    slots = state["slots"][0].tolist()
    assert slots == [[0, 1], [4, 3]]  # pair 0 = (side 0, side 1); pair 11 = (side 3, side 2) -> slots (4, 3)
    obs = task.observe(state)[0].reshape(2, -1)
    shown = obs[:, :-1].reshape(2, 5, 3)
    for b, (s0, s1) in enumerate(slots):
        torch.testing.assert_close(shown[b, s0], codes[0])
        torch.testing.assert_close(shown[b, s1], codes[1])
        empty = [s for s in range(5) if s not in (s0, s1)]
        assert not shown[b, empty].any() and obs[b, -1] == 0.0
    good = [slots[0][rewarded], slots[1][1 - rewarded]]  # copy 0 picks the rewarded, copy 1 the other object
    state, r = task.transition(state, torch.tensor([good]), torch.rand(1, 2))
    assert r.tolist() == [[1.0, -1.0]]
    assert (state["phase"] == FIXATION).all() and state["presentations"].tolist() == [[1, 1]]
    state, _ = task.transition(state, torch.tensor([[2, 2]]), torch.rand(1, 2))
    state, r = task.transition(state, torch.tensor([[2, 2]]), torch.rand(1, 2))  # middle slot: never an object
    assert r.tolist() == [[0.0, 0.0]]


def test_harlow_difference_encoding_shows_left_minus_right_and_flips_when_the_objects_swap():
    task = make_task("harlow", object_dim=3, encoding="difference")
    assert (task.obs_dim, task.input_dim) == (4, 8)  # + previous action (3) and reward
    state = task.start([5], torch.zeros(1, 2))
    assert task.observe(state)[0].tolist() == [[0.0, 0.0, 0.0, 1.0]] * 2  # fixation: the cue only
    # the two copies get the two placements: objects (0, 1) at slots (0, 2), then at (2, 0)
    state, _ = task.transition(state, torch.tensor([[1, 1]]), torch.tensor([[0.0, 0.999]]))
    assert state["slots"][0].tolist() == [[0, 2], [2, 0]]
    codes = state["codes"][0]
    obs = task.observe(state)[0]
    torch.testing.assert_close(obs[0, :3], codes[0] - codes[1])
    torch.testing.assert_close(obs[1, :3], codes[1] - codes[0])
    assert obs[:, 3].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="line_length=3"):
        make_task("harlow", line_length=5, encoding="difference")
    with pytest.raises(ValueError, match="choose one of"):
        make_task("harlow", encoding="sum")


def test_harlow_positions_cover_every_ordered_pair_of_side_slots_evenly():
    task = make_task("harlow", line_length=5)
    u = (torch.arange(1200) + 0.5) / 1200
    pairs = task.placement(u.view(1, -1))[0].tolist()
    counts = {}
    for p in pairs:
        counts[tuple(p)] = counts.get(tuple(p), 0) + 1
    sides = [0, 1, 3, 4]
    assert set(counts) == {(a, b) for a in sides for b in sides if a != b}
    assert set(counts.values()) == {100}


def test_harlow_objects_are_new_per_task_id_and_rewarded_side_varies():
    task = make_task("harlow")
    codes, rewarded = task.objects(list(range(40)))
    assert len({tuple(c.flatten().tolist()) for c in codes}) == 40
    assert 0 < int(rewarded.sum()) < 40


def test_carved_mazes_have_border_walls_and_every_free_cell_connected():
    for seed in range(5):
        walls = carve_maze(9, np.random.default_rng(seed))
        assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
        free = {tuple(c) for c in np.argwhere(~walls)}
        assert len(free) == 2 * 16 - 1  # 16 cells joined by a spanning tree's 15 openings
        seen, todo = set(), [next(iter(free))]
        while todo:
            r, c = todo.pop()
            if (r, c) in seen:
                continue
            seen.add((r, c))
            todo += [(r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)) if (r + dr, c + dc) in free]
        assert seen == free


HAND_MAZE = np.array([
    [1, 1, 1, 1, 1],
    [1, 0, 0, 0, 1],
    [1, 0, 1, 1, 1],
    [1, 0, 0, 0, 1],
    [1, 1, 1, 1, 1],
], dtype=bool)


def test_maze_walls_block_moves_the_view_is_the_3x3_patch_and_the_goal_teleports():
    task = make_task("maze", size=5)
    cell = lambda r, c: r * 5 + c  # noqa: E731
    state = {"walls": torch.from_numpy(HAND_MAZE.reshape(1, -1).copy()), "goal": torch.tensor([cell(3, 3)]),
             "position": torch.tensor([[cell(1, 1), cell(1, 2), cell(3, 2), cell(1, 3)]])}
    view = task.observe(state)[0]
    assert view[0].tolist() == HAND_MAZE[0:3, 0:3].reshape(-1).astype(float).tolist()
    assert view[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 1]
    # up into the border, right along the corridor, right onto the goal, down into a wall
    state, r = task.transition(state, torch.tensor([[0, 1, 1, 2]]), torch.tensor([[0.1, 0.2, 0.99, 0.3]]))
    pos = state["position"][0].tolist()
    assert pos[0] == cell(1, 1) and pos[1] == cell(1, 3) and pos[3] == cell(1, 3)
    assert r.tolist() == [[0.0, 0.0, 10.0, 0.0]]
    # teleport: the uniform 0.99 picks the last free non-goal cell in row-major order, (3, 2)
    assert pos[2] == cell(3, 2)
    state, r = task.transition(state, torch.tensor([[2, 3, 3, 2]]), torch.zeros(1, 4))
    assert state["position"][0].tolist() == [cell(2, 1), cell(1, 2), cell(3, 1), cell(1, 3)]


def test_maze_starts_and_teleports_land_on_free_non_goal_cells_of_the_task_ids_maze():
    task = make_task("maze", size=7)
    state = task.start([3, 4], torch.rand(2, 500))
    walls, goal = task.layout([3, 4])
    assert torch.equal(state["walls"], walls) and torch.equal(state["goal"], goal)
    assert not torch.equal(walls[0], walls[1])
    pos = state["position"]
    assert not walls.gather(1, pos).any() and not (pos == goal.unsqueeze(1)).any()
    free = (~walls).sum(1)
    assert all(len(set(p.tolist())) == int(f) - 1 for p, f in zip(pos, free))  # 500 draws reach every free cell


@pytest.mark.parametrize("name", ["bandit2", "harlow", "maze", "maze_large", "cartpole"])
def test_train_and_heldout_instances_are_disjoint(name):
    ids = {}
    for split in ("train", "heldout"):
        core = NetworkWeightsCore(EnvConfig(**preset(name, batch_size=2, split=split)), copies=4)
        core.seed([0, 1, 2, 3])
        core.reset()
        seen = set(core.task_ids)
        for _ in range(3):
            core.reset(torch.ones(4, dtype=torch.bool))
            seen |= set(core.task_ids)
        assert {split_of(t) for t in seen} == {split}
        ids[split] = seen
    assert not ids["train"] & ids["heldout"]
    if name.startswith("maze"):  # unseen walls, not only unseen ids
        task = make_task("maze", size=preset(name)["task_kwargs"]["size"])
        train, held = task.layout(sorted(ids["train"]))[0], task.layout(sorted(ids["heldout"]))[0]
        assert not (train.unsqueeze(1) == held.unsqueeze(0)).all(-1).any()
        assert {layout_split(w.view(task.size, task.size).numpy()) for w in held} == {"heldout"}


def test_bad_task_arguments_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="at least 2 arms"):
        make_task("bandit", arms=1)
    with pytest.raises(ValueError, match="odd"):
        make_task("harlow", line_length=4)
    with pytest.raises(ValueError, match="odd"):
        make_task("maze", size=6)
    with pytest.raises(ValueError, match="baseline_rate"):
        make_task("bandit", baseline_rate=0.0)
    with pytest.raises(ValueError, match="inputs"):
        NetworkWeightsCore(EnvConfig(task="bandit", layers=(3, 8, 2)))
    with pytest.raises(ValueError, match="no data set"):
        make_task("maze").instance(0)
    with pytest.raises(ValueError, match="unknown"):
        preset("bandit3")


def test_cartpole_moves_exactly_as_gymnasiums_vector_cartpole_and_restarts_from_its_own_stream():
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    task = make_task("cartpole", max_episode_steps=40)
    reference = CartPoleVectorEnv(num_envs=6, max_episode_steps=40, sutton_barto_reward=True)
    obs, _ = reference.reset(seed=3)
    state = {"physics": torch.from_numpy(reference.state.T.copy()).reshape(2, 3, 4),
             "episode_steps": torch.zeros(2, 3, dtype=torch.long)}
    torch.testing.assert_close(task.observe(state).reshape(6, 4), torch.from_numpy(obs))
    rng = np.random.default_rng(0)
    ended, falls = np.zeros(6, dtype=bool), 0
    for _ in range(60):
        actions = rng.integers(0, 2, 6)
        ref_obs, ref_reward, term, trunc, _ = reference.step(actions)
        uniforms = torch.rand(2, 3, 4)
        state, reward = task.transition(state, torch.from_numpy(actions).view(2, 3), uniforms)
        done = term | trunc
        live = ~(ended | done)  # copies whose episode goes on in both: identical float64 physics
        assert torch.equal(task.observe(state).reshape(6, 4)[torch.from_numpy(live)], torch.from_numpy(ref_obs[live]))
        # Sutton & Barto's reward: -1 on the step the pole falls, else 0 (as Gymnasium pays it)
        assert reward.reshape(-1)[torch.from_numpy(~ended)].tolist() == ref_reward[~ended].tolist()
        fell = torch.from_numpy(term & ~ended)
        assert (reward.reshape(-1)[fell] == -1).all() and (reward.reshape(-1)[torch.from_numpy(~term & ~ended)] == 0).all()
        falls += int(fell.sum())
        restarted = torch.from_numpy(done & ~ended).view(2, 3)
        expected = (uniforms.double() * 2 - 1) * 0.05
        assert torch.equal(state["physics"][restarted], expected[restarted])
        assert not state["episode_steps"][restarted].any()
        ended |= done
    assert falls > 0  # some pole fell within 60 random steps
    plain = make_task("cartpole", sutton_barto_reward=False)
    _, reward = plain.transition(plain.start([0], torch.rand(1, 2, 4)), torch.zeros(1, 2, dtype=torch.long),
                                 torch.rand(1, 2, 4))
    assert reward.tolist() == [[1.0, 1.0]]  # CartPole-v1's usual reward on request
