"""The held-out suite of the rule ladder: five settings, none of them seen in meta-training.

=======================  ===============================================  ==========  =========
setting                  task and network                                 updates     reported
=======================  ===============================================  ==========  =========
``teacher_student``      unseen teachers, 8-16-4 (the meta-training net)  50          loss
``teacher_student_wide`` unseen teachers, 8-64-4 (4x wider)               50          loss
``teacher_student_long`` unseen teachers, 8-16-4                          500 (10x)   loss
``digits_wide``          scikit-learn digits on 10 principal components,  500         loss, test
                         10-1000-10 (Cai & Cheng's setting)                           accuracy
``mnist1d``              MNIST-1D, 40-128-10                              500         loss, test
                                                                                      accuracy
=======================  ===============================================  ==========  =========

A setting is an :class:`EnvConfig` on the ``heldout`` split, built from the env a rule was
meta-trained with (:func:`setting`): its observations, reward and action scale are kept, the task,
layers and horizon are the setting's. Tuning always uses the same setting on the ``train`` split.
A setting whose task is not registered in this build is skipped by the main job (:func:`available`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from marl_net.config import EnvConfig


@dataclass(frozen=True)
class Setting:
    name: str
    task: str
    layers: tuple[int, ...]
    steps: int
    classification: bool = False  # test accuracy reported beside the loss
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)


SUITE: dict[str, Setting] = {s.name: s for s in (
    Setting("teacher_student", "teacher_student", (8, 16, 4), 50),
    Setting("teacher_student_wide", "teacher_student", (8, 64, 4), 50),
    Setting("teacher_student_long", "teacher_student", (8, 16, 4), 500),
    Setting("digits_wide", "digits", (10, 1000, 10), 500, classification=True, task_kwargs={"pca": 10}),
    Setting("mnist1d", "mnist1d", (40, 128, 10), 500, classification=True),
)}


def setting(name: str, base: EnvConfig, split: str = "heldout") -> EnvConfig:
    """Setting ``name`` as an env config: ``base`` (a level's meta-training env) with the setting's
    task, layers and horizon, on ``split``."""
    s = check_setting(name)
    return base.replace(task=s.task, layers=s.layers, max_cycles=s.steps, task_kwargs=dict(s.task_kwargs),
                        split=split)


def check_setting(name: str) -> Setting:
    if name not in SUITE:
        raise ValueError(f"held-out setting {name!r} is unknown; choose from {list(SUITE)}")
    return SUITE[name]


def available(name: str) -> bool:
    """Whether this build has the setting's task."""
    from marl_net.tasks import TASKS

    return check_setting(name).task in TASKS
