"""Teacher classification: a random teacher network's arg-max labels its Gaussian inputs.

The classification twin of ``teacher_student`` (the same teachers: instance ``task_id`` draws the
teacher's weights ``N(0, 1/fan_in)`` and its ``num_samples`` inputs ``x ~ N(0, I)`` from seed
``task_id``); the label of ``x`` is the index of the teacher's largest output, so a network with
``output_dim`` outputs learns ``output_dim`` classes by cross-entropy. The test split is
``num_samples`` fresh inputs, seeded ``seed_from(task_id, TEST_STREAM)``, labelled by the same
teacher. ``python experiments/level_features.py --train-task teacher_classes`` meta-trains a ladder
level on it (the rows: docs/ladder.md, "The correction's form").
"""

from __future__ import annotations

from typing import Sequence

import torch

from marl_net import seeding
from marl_net.network import init_weights
from marl_net.tasks.base import TEST_STREAM, TaskData, register_task
from marl_net.tasks.teacher_student import TeacherStudent


@register_task("teacher_classes", "classify Gaussian inputs by the arg-max of a random teacher network (cross-entropy)")
class TeacherClasses(TeacherStudent):
    loss = "cross_entropy"

    def __init__(self, input_dim: int | None = None, output_dim: int | None = None,
                 teacher_hidden: tuple[int, ...] = (16,), teacher_activation: str = "tanh", num_samples: int = 512):
        super().__init__(input_dim, output_dim, teacher_hidden, teacher_activation, 0.0, num_samples)
        if self.output_dim < 2:
            raise ValueError(f"teacher_classes needs at least 2 outputs (classes), got {self.output_dim}: "
                             "set layers=(..., 4)")

    def instances(self, task_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().instances(task_ids)
        return x, y.argmax(-1)

    def test_data(self, task_id: int) -> TaskData:
        weights, _ = init_weights(self.spec, seeding.make_generators([task_id]))
        x = seeding.randn(seeding.make_generators([seeding.seed_from(task_id, TEST_STREAM)]),
                          (self.num_samples, self.input_dim))
        return TaskData(inputs=x[0], targets=self._teacher_output(weights, x)[0].argmax(-1), task_id=task_id)
