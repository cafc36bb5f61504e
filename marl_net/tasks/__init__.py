"""Inner tasks: teacher-student, digits, MNIST (PCA), multiplexer; registry and splits."""

from marl_net.tasks.base import SPLITS, TASKS, Task, TaskData, make_task, register_task, sample_task_id, split_of
from marl_net.tasks import digits, mnist, multiplexer, teacher_student  # noqa: F401  (registration)

__all__ = ["SPLITS", "TASKS", "Task", "TaskData", "make_task", "register_task", "sample_task_id", "split_of"]
