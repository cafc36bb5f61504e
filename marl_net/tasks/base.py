"""The inner-task interface and its registry.

A *task* is a family of supervised problems. Sampling an instance means sampling a teacher, a data
split and a seed: ``Task.instance(task_id, split)`` returns the instance's data set, from which the
environment draws minibatches. Task ids of the ``"train"`` split lie in ``[0, 2**31)`` and those of
the ``"heldout"`` split in ``[2**31, 2**32)``: meta-train and held-out instances are disjoint by
construction. Data tasks (digits, MNIST, MNIST-1D) also split their samples, so no held-out sample
is ever seen in meta-training.

Classification tasks (``loss == "cross_entropy"``) also have a *test split* per instance:
``Task.test_data(task_id)`` holds samples of the same problem that no update of that instance sees
(its minibatches come from ``instance(task_id)`` only). ``marl_net.accuracy.test_accuracy`` scores
trained networks on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch

SPLITS = ("train", "heldout")
TEST_STREAM = 3  # a classification instance's test draws are seeded seed_from(task_id, TEST_STREAM)
_SPLIT_OFFSET = {"train": 0, "heldout": 2**31}
_SPLIT_SIZE = 2**31


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; choose one of {list(SPLITS)}")
    return split


def sample_task_id(rng: np.random.Generator, split: str) -> int:
    """A task id of ``split``, drawn from ``rng``; the two splits' id ranges never overlap."""
    return _SPLIT_OFFSET[check_split(split)] + int(rng.integers(0, _SPLIT_SIZE))


def split_of(task_id: int) -> str:
    return "train" if task_id < _SPLIT_SIZE else "heldout"


@dataclass
class TaskData:
    """One task instance: ``inputs [N, input_dim]`` and ``targets`` (``[N, output_dim]`` floats for
    MSE, ``[N]`` int64 class labels for cross-entropy)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    task_id: int


class Task(ABC):
    """A family of supervised inner problems for a network with ``input_dim`` inputs and
    ``output_dim`` outputs."""

    name: ClassVar[str]
    description: ClassVar[str]
    loss: ClassVar[str]  # "mse" or "cross_entropy"
    input_dim: int
    output_dim: int

    @abstractmethod
    def instance(self, task_id: int) -> TaskData:
        """The data set of instance ``task_id`` (its split follows from the id)."""

    num_samples: int  # samples per instance, the same for every instance so that instances stack

    def instances(self, task_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Instances ``task_ids`` stacked: ``inputs [E, N, input_dim]`` and ``targets`` (what
        stacking :meth:`instance` gives; a task may build them batched)."""
        data = [self.instance(t) for t in task_ids]
        return torch.stack([d.inputs for d in data]), torch.stack([d.targets for d in data])

    def test_data(self, task_id: int) -> TaskData:
        """Samples of instance ``task_id``'s problem that its training data ``instance(task_id)`` does
        not hold: what its test accuracy is measured on. Classification tasks define it."""
        raise ValueError(f"task {self.name!r} ({self.loss} loss) has no test split: test accuracy is defined for "
                         "classification tasks (digits, mnist, mnist1d, multiplexer)")

    def check_network(self, n_in: int, n_out: int) -> None:
        if (n_in, n_out) != (self.input_dim, self.output_dim):
            raise ValueError(
                f"task {self.name!r} needs a network with {self.input_dim} inputs and {self.output_dim} outputs, "
                f"got layers starting at {n_in} and ending at {n_out}: set layers=({self.input_dim}, ..., {self.output_dim})"
            )


TASKS: dict[str, tuple[Callable[..., Task], str]] = {}


def register_task(name: str, description: str):
    """Class decorator: make a task constructible by name."""

    def deco(cls):
        TASKS[name] = (cls, description)
        cls.name = name
        cls.description = description
        return cls

    return deco


def make_task(name: str, input_dim: int | None = None, output_dim: int | None = None, **kwargs) -> Task:
    """Build task ``name`` for a network with the given input/output sizes (None: the task's own)."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} is unknown; choose one of {sorted(TASKS)}")
    cls, _ = TASKS[name]
    try:
        task = cls(input_dim=input_dim, output_dim=output_dim, **kwargs)
    except TypeError as exc:
        raise ValueError(f"task {name!r}: {exc}; check the task_kwargs you passed") from exc
    return task
