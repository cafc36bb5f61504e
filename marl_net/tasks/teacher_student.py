"""Teacher-student regression (Cai & Cheng): a random teacher network labels Gaussian inputs.

Instance ``task_id`` is the teacher drawn with seed ``task_id`` (weights ``N(0, 1/fan_in)``), its
``num_samples`` inputs ``x ~ N(0, I)`` and targets ``teacher(x) + label_noise * N(0, I)``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from marl_net import seeding
from marl_net.network import NetworkSpec, activate, forward, init_weights
from marl_net.tasks.base import Task, TaskData, register_task


@register_task("teacher_student", "regress the outputs of a random teacher network (MSE), optional label noise")
class TeacherStudent(Task):
    loss = "mse"

    def __init__(
        self,
        input_dim: int | None = None,
        output_dim: int | None = None,
        teacher_hidden: tuple[int, ...] = (16,),
        teacher_activation: str = "tanh",
        label_noise: float = 0.0,
        num_samples: int = 1024,
    ):
        self.input_dim = int(input_dim or 8)
        self.output_dim = int(output_dim or 4)
        if label_noise < 0:
            raise ValueError(f"label_noise={label_noise!r} must be >= 0")
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples!r} must be >= 1")
        self.spec = NetworkSpec(
            (self.input_dim, *teacher_hidden, self.output_dim), hidden_activation=teacher_activation
        )
        self.label_noise = float(label_noise)
        self.num_samples = int(num_samples)
        self._hidden_buffers: dict[int, torch.Tensor] = {}  # see _teacher_output

    def instance(self, task_id: int) -> TaskData:
        x, y = self.instances([task_id])
        return TaskData(inputs=x[0], targets=y[0], task_id=task_id)

    def instances(self, task_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every teacher's draws from its own generator (weights, inputs, label noise, in that
        order), then one batched forward pass for all of them."""
        gens = seeding.make_generators(list(task_ids))
        weights, _ = init_weights(self.spec, gens)
        x = seeding.randn(gens, (self.num_samples, self.input_dim))
        y = self._teacher_output(weights, x)
        if self.label_noise:
            y = y + self.label_noise * seeding.randn(gens, y.shape[1:])
        return x, y

    def _teacher_output(self, weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``forward(self.spec, weights, x).output``, the same products and activations, with each
        hidden layer's activity computed in place in a buffer kept for the next call of the same
        shape: on CPU a fresh buffer of several megabytes per reset costs more (page faults) than
        the arithmetic that fills it. Activations without an in-place form go through ``forward``."""
        if any(self.spec.activation(l) not in _IN_PLACE for l in range(len(weights) - 1)):
            return forward(self.spec, weights, x).output
        h = x
        for l, w in enumerate(weights[:-1]):
            buffer = self._hidden_buffer(l, (*x.shape[:-1], w.shape[-2]), x)
            h = _IN_PLACE[self.spec.activation(l)](torch.matmul(h, w.transpose(-1, -2), out=buffer))
        return activate(torch.matmul(h, weights[-1].transpose(-1, -2)), self.spec.activation(len(weights) - 1))

    def _hidden_buffer(self, layer: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        buffer = self._hidden_buffers.get(layer)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._hidden_buffers[layer] = like.new_empty(shape)
        return buffer


# Hidden activations applied in place (the same kernels as ``network.activate``, writing into their input).
_IN_PLACE = {"tanh": torch.tanh_, "sigmoid": torch.sigmoid_, "linear": lambda z: z}
