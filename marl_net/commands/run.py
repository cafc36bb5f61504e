"""``marl-net run``: the project's main job.

Interim version (until the meta-learning job lands): runs a few network-weights episodes with a
simple built-in rule — every neuron moves its weights against the (privileged) gradient
feature — and prints how the inner loss moved.
"""

from __future__ import annotations

HELP = "meta-learn a local learning rule and compare it with SGD, NP and WP (the main job)"


def add_arguments(parser) -> None:
    parser.add_argument("--episodes", type=int, default=3, help="episodes to run (default 3)")
    parser.add_argument("--max-cycles", type=int, default=50, help="steps per episode (default 50)")
    parser.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    import numpy as np

    from marl_net.envs import network_weights_v0

    env = network_weights_v0.parallel_env(
        task="teacher_student", layers=(8, 16, 4), max_cycles=args.max_cycles,
        observations=("gradient",), action_scale=0.5,
    )
    k = env.action_space(env.possible_agents[0]).shape[0]
    print(f"network_weights_v0: {len(env.possible_agents)} neuron agents, rule: gradient-following (built-in)")
    for ep in range(args.episodes):
        obs, infos = env.reset(seed=args.seed + ep)
        first = infos[env.agents[0]]["loss"]
        while env.agents:
            acts = {a: np.clip(-obs[a].reshape(k, 2)[:, 0], -1, 1).astype(np.float32) for a in env.agents}
            obs, rew, term, trunc, infos = env.step(acts)
        last = next(iter(infos.values()))["loss"]
        print(f"episode {ep}: inner loss {first:.4f} -> {last:.4f} ({100 * (last - first) / first:+.1f}%)")
    return 0
