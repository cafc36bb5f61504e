"""Inner tasks: teacher-student, digits, MNIST (PCA), MNIST-1D, multiplexer; RL: bandit, harlow, maze, cartpole;
registry and splits."""

from marl_net.tasks.base import SPLITS, TASKS, Task, TaskData, make_task, register_task, sample_task_id, split_of
from marl_net.tasks import digits, mnist, mnist1d, multiplexer, teacher_classes, teacher_student  # noqa: F401  (registration)
from marl_net.tasks import bandit, cartpole, harlow, maze  # noqa: F401  (registration: RL tasks)

__all__ = ["SPLITS", "TASKS", "Task", "TaskData", "make_task", "register_task", "sample_task_id", "split_of"]
