"""A worker process of data-parallel fast PPO (``FastPPOConfig.workers > 1``, marl_net.fast.data_parallel).

``python -m marl_net.fast.worker COMMANDS COLLECTIVES`` (rank 0's ``WorkerPool`` starts it; the
arguments are the file descriptors of its two inherited connections to rank 0) builds its rank's
:class:`~marl_net.fast.ppo.FastPPO` from what rank 0 sends, then runs rank 0's commands in lockstep
with it: ``train`` (one iteration, with rank 0's kernel switch), ``state`` / ``load`` (its part of
a checkpoint), ``close``. An error is sent to rank 0, which raises it.
"""

from __future__ import annotations

import multiprocessing.connection
import sys
import traceback

from marl_net import numerics
from marl_net.fast.data_parallel import Link, pack, unpack
from marl_net.fast.ppo import FastPPO, FastPPOConfig


def main(commands_fd: int, collectives_fd: int) -> None:
    commands = multiprocessing.connection.Connection(commands_fd)
    collectives = multiprocessing.connection.Connection(collectives_fd)
    trainer = None
    try:
        rank, world, env_config, policy_kwargs, ppo_kwargs, seed = commands.recv()
        trainer = FastPPO(env_config, policy_kwargs, FastPPOConfig(**ppo_kwargs), seed=seed,
                          _shard=(rank, Link(rank, world, [collectives])))
        commands.send(("ready", None))
        while True:
            command, arg = commands.recv()
            if command == "train":
                with numerics.kernels(arg):
                    trainer.train()
            elif command == "state":
                commands.send(("state", pack(trainer.shard_state())))
            elif command == "load":
                trainer.load_state_dict(unpack(arg))
                commands.send(("loaded", None))
            elif command == "close":
                break
    except EOFError:  # rank 0 went away
        pass
    except BaseException:  # noqa: BLE001 - reported to rank 0, which raises it
        commands.send(("error", traceback.format_exc()))
    finally:
        if trainer is not None:
            trainer.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
