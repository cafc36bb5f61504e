"""Meta-learn a learning rule with the fast path (vectorized PPO over copies x neurons), no Tune.

    python experiments/fast_ppo.py                                   # defaults below, 1-3 minutes on 2 cores
    python experiments/fast_ppo.py --iterations 100 --copies 128 --log-dir runs/fast
    python experiments/fast_ppo.py --device cuda                     # policy and network core on the GPU
    python experiments/fast_ppo.py --config experiments/configs/fast_teacher_student.yaml  # a launch file's
                                                                     # env/policy/ppo (first grid values)

Trains the shared SynapsePolicy with :class:`marl_net.fast.ppo.FastPPO` on teacher-student
*train* tasks, with difference rewards (every neuron paid for its own contribution to the loss),
printing one line per iteration: the mean per-agent episode return, the inner loss at the end of
an episode (mean of the last 100 copy-episodes), approx_kl, clipfrac, explained variance and
agent-steps per second. TensorBoard events (CleanRL's charts/* and losses/* tags) go to
``--log-dir``; the full training state is saved to ``--save`` at the end.

Expected (2-core CPU, default settings): the inner loss at episode end falls from about 0.41
to about 0.02-0.03 within 40 iterations. The script exits 1 unless it fell by at least ``--min-gain``
(relative, default 20 %) from the first iteration to the mean of the last five.
"""

from __future__ import annotations

import argparse
import sys

LAUNCH = {
    "env": {"task": "teacher_student", "layers": [8, 16, 4], "ownership": "outgoing", "reward": "difference",
            "max_cycles": 20, "observations": ["weight", "prev_delta", "pre_activity", "post_activity",
                                               "pre_post_corr", "loss", "loss_change", "step_fraction", "gradient"]},
    "policy": {"hidden": 32, "depth": 2},
    "ppo": {"lr": 1.0e-3, "gamma": 0.99, "lambda_": 0.95, "clip_param": 0.2, "num_epochs": 4, "minibatch_size": 4096},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="a launch YAML (path: fast or rllib); its first grid values")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--copies", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--log-dir", default=None, help="TensorBoard directory")
    parser.add_argument("--save", default=None, help="directory for the final checkpoint")
    parser.add_argument("--min-gain", type=float, default=0.2)
    args = parser.parse_args(argv)

    import math

    from marl_net.fast.tune_trainable import trainer_from_launch

    launch = {k: dict(v) for k, v in LAUNCH.items()}
    if args.config:
        from marl_net.experiment import _combinations, load_launch

        loaded = load_launch(args.config)
        launch = {s: _combinations(loaded[s])[0] for s in ("env", "policy", "ppo")}
    launch["ppo"].update(copies=args.copies, device=args.device, torch_threads=args.threads)
    launch["run"] = {"seed": args.seed}
    trainer = trainer_from_launch(launch, log_dir=args.log_dir)
    print(f"{trainer.env.copies} copies x {trainer.env.num_agents} agents, {trainer.steps} steps per iteration "
          f"({trainer.steps * trainer.env.num_rows} agent-steps), device {trainer.device}", flush=True)
    losses = []
    for _ in range(args.iterations):
        m = trainer.train()
        losses.append(m["inner_loss_final"])
        print(f"iter {m['iteration']:4d}  return {m['episode_return_mean']:+.4f}  inner_loss_final "
              f"{m['inner_loss_final']:.4f}  approx_kl {m['approx_kl']:.4f}  clipfrac {m['clipfrac']:.3f}  "
              f"expl_var {m['explained_variance']:+.3f}  SPS {m['agent_steps_per_s']:,.0f}", flush=True)
    if args.save:
        print(f"checkpoint: {trainer.save(args.save)}")
    first, last = losses[0], sum(losses[-5:]) / len(losses[-5:])
    gain = (first - last) / first if first and math.isfinite(first) else float("nan")
    print(f"inner loss at episode end: first iteration {first:.4f}, last five {last:.4f} (gain {gain:.0%})")
    return 0 if gain >= args.min_gain else 1


if __name__ == "__main__":
    sys.exit(main())
