"""Test accuracy of trained networks: classification measured as users measure it.

A classification task (``loss == "cross_entropy"``: digits, mnist, mnist1d, multiplexer) gives each
instance a test split, ``Task.test_data(task_id)``: samples of the same problem that no update of
that instance sees (see ``marl_net.tasks.data`` and ``multiplexer``). :func:`test_accuracy` scores
E trained copies at once on their instances' test splits. It takes weight-space parameters as
``RunResult.params`` holds them, so hand rules (``marl_net.rules.registry.run_rule``) and learned
rules (the env's final ``params``) are scored by the same function::

    from marl_net.accuracy import test_accuracy
    run = run_rule("sgd", config, seeds=range(8), steps=500)
    acc = test_accuracy(config, run.task_ids, run.params)   # [8], fraction correct per copy

A prediction is the argmax of the output layer (the first class on ties); an output that is not
finite counts as wrong, so a diverged copy never scores by accident. Networks with Bernoulli
hidden units are scored with one sample of their units per test input, drawn from a generator
seeded with the copy's task id (the same number on every call).
"""

from __future__ import annotations

from typing import Sequence

import torch

from marl_net import seeding
from marl_net.config import EnvConfig
from marl_net.network import forward, split_bias
from marl_net.tasks import Task, make_task


def classification_task(config: EnvConfig) -> Task:
    """``config``'s task, checked to be a classification task with a test split."""
    spec = config.network_spec()
    task = make_task(config.task, spec.layers[0], spec.layers[-1], **config.task_kwargs)
    if task.loss != "cross_entropy":
        raise ValueError(f"task {config.task!r} ({task.loss} loss) is not a classification task: test accuracy is "
                         "defined for digits, mnist, mnist1d and multiplexer")
    return task


def test_accuracy(config: EnvConfig, task_ids: Sequence[int], params: Sequence[torch.Tensor],
                  task: Task | None = None) -> torch.Tensor:
    """Fraction of each copy's test split classified correctly, ``[E]`` float32 on the CPU.

    ``task_ids``: the E copies' task instances (``RunResult.task_ids``); ``params``: their final
    weight-space parameters, ``[E, rows, cols]`` per layer (``RunResult.params``); ``task``: the
    built task, to skip rebuilding it (default: built from ``config``).
    """
    spec = config.network_spec()
    task = classification_task(config) if task is None else task
    task_ids = [int(t) for t in task_ids]
    params = list(params)
    if len(params) != spec.num_layers:
        raise ValueError(f"params has {len(params)} layers; the network {spec.layers} has {spec.num_layers}")
    e = len(task_ids)
    for l, p in enumerate(params):
        rows, cols = spec.layers[l + 1], spec.layers[l] + int(spec.bias)
        if tuple(p.shape) != (e, rows, cols):
            raise ValueError(f"params[{l}] has shape {tuple(p.shape)}; expected ({e}, {rows}, {cols}) "
                             "(one copy per task id, weight space as RunResult.params holds it)")
    data = [task.test_data(t) for t in task_ids]
    if len({len(d.targets) for d in data}) != 1:
        raise ValueError("the task ids' test splits differ in size: pass task ids of one split")
    device = params[0].device
    x = torch.stack([d.inputs for d in data]).to(device)
    y = torch.stack([d.targets for d in data]).to(device)
    generators = None
    if "bernoulli" in (spec.hidden_activation, spec.output_activation):
        generators = seeding.make_generators([seeding.seed_from(t, 2) for t in task_ids], device=device)
    weights, biases = split_bias(spec, [p.detach() for p in params])
    with torch.no_grad():
        out = forward(spec, weights, x, biases, generators=generators).output
    correct = (out.argmax(-1) == y) & torch.isfinite(out).all(-1)
    return correct.float().mean(-1).cpu()


test_accuracy.__test__ = False  # not a pytest test when a test module imports it by name
