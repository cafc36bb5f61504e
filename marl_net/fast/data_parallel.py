"""Fast PPO on several cores: data-parallel worker processes (``FastPPOConfig.workers``).

A one-process trainer spends its time in many small torch ops (the env step, the minibatch
bookkeeping), which a second intra-op thread does not speed up. Processes do: with
``workers = W`` the trainer the user holds is rank 0 and starts ``W - 1`` worker processes
(``marl_net.fast.worker``), each a :class:`~marl_net.fast.ppo.FastPPO` of its own over ``copies / W`` of the network copies, as DD-PPO
(Wijmans et al., 2020) splits environments over GPUs. Every rank collects its copies' rollout and
computes GAE alone; in each minibatch every rank takes its share of every ownership block's
samples, the advantages are normalized with the whole minibatch's mean and standard deviation,
each rank's loss is its share of the minibatch mean, and the gradients are summed over ranks
before clipping and the optimizer step, so every rank makes the same update and holds the same
policy. Rank 0 broadcasts its policy at the start of every iteration (so a policy changed between
iterations, e.g. calibrated, is everyone's) and gathers the episodes and statistics it reports.

What changes with W: the copies' tasks and initial weights are those of a one-worker run (rank r's
copies are seeded as copies ``r * copies / W ...`` of it), but each rank draws its own action noise
and minibatch shuffles (``seed_from(seed, 4, r)``, ``seed_from(seed, 5, r)``), so the numbers
differ from one worker's; the same seed and the same W give the same run, bit for bit, resumed
from a checkpoint or not.

The collectives run over local connections, a star around rank 0 (:class:`Link`): a sum is rank
0 adding every rank's tensor in rank order and sending the result back. Not ``torch.distributed``:
its gloo backend took 0.23 ms to all-reduce one number and 1.3 ms for the policy's 483 gradients
on the 2-core VM, against 0.04 ms (``python experiments/allreduce_latency.py`` prints both ways
side by side), with three sums per minibatch step and 16 steps per iteration; a gloo group is also
one per process, where a :class:`Link` belongs to its trainer.

:class:`Solo` is the one-process case (every collective the identity); :class:`WorkerPool` rank
0's handle on the worker processes.
"""

from __future__ import annotations

import io
import multiprocessing.connection
import socket
import subprocess
import sys
import weakref
from typing import Any, Mapping, Sequence

import torch

from marl_net import numerics  # a leaf module


class Solo:
    """One process: every collective the identity."""

    rank, world = 0, 1

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def gather_objects(self, obj: Any) -> list[Any]:
        return [obj]

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        pass


TIMEOUT_S = 600.0  # a rank that hears nothing from another inside a collective this long raises


class Link(Solo):
    """Rank ``rank`` of ``world``: rank 0 holds a connection to every worker (in rank order), a
    worker one to rank 0. Tensors travel as raw bytes (CPU, contiguous), objects pickled. A dead
    peer is an error at once (EOF); a hung one after ``timeout_s`` seconds of silence."""

    def __init__(self, rank: int, world: int, conns: Sequence[multiprocessing.connection.Connection],
                 timeout_s: float = TIMEOUT_S):
        self.rank, self.world, self.conns, self.timeout_s = rank, world, list(conns), timeout_s

    def _ready(self, i: int) -> multiprocessing.connection.Connection:
        """Connection ``i`` once it has data (or its peer closed it); a RuntimeError after
        ``timeout_s`` seconds of silence, naming the silent rank."""
        conn = self.conns[i]
        if not conn.poll(self.timeout_s):
            peer = i + 1 if self.rank == 0 else 0
            raise RuntimeError(f"fast PPO rank {self.rank}: rank {peer} sent nothing for {self.timeout_s:g} s inside "
                               "a collective (hung, or far slower than this rank); the run stops")
        return conn

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` (contiguous, CPU) over ranks in place, added in rank order on rank 0: every
        rank gets the same bits."""
        view = tensor.detach().numpy()
        if self.rank == 0:
            other = torch.empty_like(tensor)
            for i in range(len(self.conns)):
                self._ready(i).recv_bytes_into(other.numpy())
                tensor.add_(other)
            for conn in self.conns:
                conn.send_bytes(view)
        else:
            self.conns[0].send_bytes(view)
            self._ready(0).recv_bytes_into(view)
        return tensor

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (objects without torch tensors)."""
        if self.rank == 0:
            out = [obj] + [self._ready(i).recv() for i in range(len(self.conns))]
            for conn in self.conns:
                conn.send(out)
            return out
        self.conns[0].send(obj)
        return self._ready(0).recv()

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Rank 0's values of ``tensors`` (CPU) copied into every rank's, in place."""
        if self.rank == 0:
            arrays = [t.detach().numpy() for t in tensors]
            for conn in self.conns:
                conn.send(arrays)
        else:
            for t, array in zip(tensors, self._ready(0).recv()):
                t.copy_(torch.from_numpy(array))


def sum_gradients(comm: Solo, parameters: Sequence[torch.nn.Parameter]) -> None:
    """Every parameter's ``.grad`` replaced by its sum over ranks (one all-reduce of them all)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if comm.world == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    comm.all_reduce_(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class WorkerPool:
    """Rank 0's worker processes (ranks ``1 .. world - 1``) and its own :class:`Link` to them.

    Workers are started as ``python -m marl_net.fast.worker COMMANDS COLLECTIVES`` (not by
    multiprocessing's spawn, which would re-run the user's main script in every worker), the two
    arguments the worker's ends of two socket pairs it inherits: one for rank 0's commands, one for
    the collectives. A worker that dies closes them, and rank 0 raises instead of waiting."""

    def __init__(self, world: int, env_config: Mapping[str, Any], policy_kwargs: Mapping[str, Any],
                 ppo_kwargs: Mapping[str, Any], seed: int):
        self.conns, self.procs, links = [], [], []
        self._finalizer = weakref.finalize(self, _shut_down, self.conns, self.procs)
        for rank in range(1, world):
            ends = [socket.socketpair() for _ in range(2)]  # (rank 0's end, the worker's end) x 2
            theirs = [child.fileno() for _, child in ends]
            self.procs.append(subprocess.Popen([sys.executable, "-m", "marl_net.fast.worker", *map(str, theirs)],
                                               pass_fds=theirs))
            for parent, child in ends:
                child.close()
            self.conns.append(multiprocessing.connection.Connection(ends[0][0].detach()))
            links.append(multiprocessing.connection.Connection(ends[1][0].detach()))
            self.conns[-1].send((rank, world, dict(env_config), dict(policy_kwargs), dict(ppo_kwargs), seed))
        self.comm = Link(0, world, links)
        self._replies("ready")

    def _replies(self, expected: str) -> list[Any]:
        out = []
        for rank, conn in enumerate(self.conns, start=1):
            try:
                kind, payload = conn.recv()
            except EOFError:
                self.close()
                raise RuntimeError(f"fast PPO worker {rank} exited (exit status {self.procs[rank - 1].poll()}; "
                                   "its error is above)") from None
            if kind == "error":
                self.close()
                raise RuntimeError(f"fast PPO worker {rank} failed:\n{payload}")
            if kind != expected:
                self.close()  # the pool is out of step: its workers cannot be trusted with the next command
                raise RuntimeError(f"fast PPO worker {rank} answered {kind!r} where {expected!r} was due")
            out.append(payload)
        return out

    def train(self) -> None:
        """Every worker starts the iteration rank 0 is starting, with rank 0's kernel switch."""
        self._send("train", [numerics.kernels_on()] * len(self.conns))

    def _send(self, command: str, args: Sequence[Any] | None = None) -> None:
        for i, conn in enumerate(self.conns):
            conn.send((command, None if args is None else args[i]))

    def states(self) -> list[dict[str, Any]]:
        """Every worker's :meth:`FastPPO.shard_state`, in rank order."""
        self._send("state")
        return [unpack(data) for data in self._replies("state")]

    def load(self, states: Sequence[Mapping[str, Any]]) -> None:
        self._send("load", [pack(state) for state in states])
        self._replies("loaded")

    def close(self) -> None:
        self._finalizer()


def pack(state: Mapping[str, Any]) -> bytes:
    """A training state as bytes (torch.save): tensors cross the connection by value, not as
    shared-memory handles, which need multiprocessing's own process tree."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def unpack(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), weights_only=False)


def _shut_down(conns, procs) -> None:
    for conn in conns:
        try:
            conn.send(("close", None))
        except (BrokenPipeError, OSError):
            pass
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

