"""The ``mnist1d`` task: generated with the package's generator on a small set, cached, split like digits.

Run: ``.venv/bin/pytest -q tests/test_mnist1d.py`` (about 3 s).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from marl_net.tasks import make_task
from marl_net.tasks.base import _SPLIT_SIZE
from marl_net.tasks.mnist1d import cache_dir, load_mnist1d

SMALL = dict(dataset_size=200, train_split=0.8, dataset_seed=3)  # 160 train, 40 held-out signals


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MARL_NET_MNIST1D_CACHE", str(tmp_path / "m1d"))
    return tmp_path / "m1d"


def test_generation_shapes_classes_and_cache_hit(cache):
    np.random.seed(7)
    random.seed(7)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    arrays, path, hit = load_mnist1d(**SMALL)
    assert not hit and path.parent == cache == cache_dir() and path.is_file()
    # the generator reseeds the global generators; we restore them
    assert np.array_equal(np.random.get_state()[1], before_np) and random.getstate() == before_py
    assert arrays["x"].shape == (160, 40) and arrays["x_test"].shape == (40, 40)
    assert arrays["y"].shape == (160,) and arrays["y_test"].shape == (40,)
    assert set(np.unique(np.concatenate([arrays["y"], arrays["y_test"]]))) == set(range(10))  # 20 per class
    # a second load reads the file: overwrite it with marked arrays and see them come back
    marked = {k: v + 1000 if k.startswith("x") else v for k, v in arrays.items()}
    np.savez(path, **marked)
    again, path2, hit2 = load_mnist1d(**SMALL)
    assert hit2 and path2 == path and np.array_equal(again["x"], marked["x"])
    # other generator arguments: another file, regenerated; the same arguments give the same signals
    other, path3, hit3 = load_mnist1d(**{**SMALL, "dataset_seed": 4})
    assert not hit3 and path3 != path and not np.array_equal(other["x"], arrays["x"])
    path.unlink()
    regenerated, _, hit4 = load_mnist1d(**SMALL)
    assert not hit4 and np.array_equal(regenerated["x"], arrays["x"])


def test_task_instances_train_and_heldout_disjoint(cache):
    task = make_task("mnist1d", num_samples=16, **SMALL)
    assert (task.input_dim, task.output_dim, task.loss) == (40, 10, "cross_entropy")
    train_pool, held_pool = task.pool("train")[0], task.pool("heldout")[0]
    assert train_pool.shape == (160, 40) and held_pool.shape == (40, 40)

    def rows_in(rows, pool):
        return (rows[:, None, :] == pool[None]).all(-1).any(1)

    train, held = task.instance(5), task.instance(_SPLIT_SIZE + 5)
    assert train.inputs.shape == (16, 40) and train.targets.dtype == torch.int64
    assert rows_in(train.inputs, train_pool).all() and not rows_in(train.inputs, held_pool).any()
    assert rows_in(held.inputs, held_pool).all() and not rows_in(held.inputs, train_pool).any()
    assert not torch.equal(task.instance(6).inputs, train.inputs)  # instances differ by their samples
    # the test split: the rest of the instance's pool, no sample the instance trains on
    test = task.test_data(_SPLIT_SIZE + 5)
    assert test.inputs.shape == (40 - 16, 40)
    assert not rows_in(test.inputs, held.inputs).any() and rows_in(test.inputs, held_pool).all()


def test_bad_generator_arguments_named(cache):
    with pytest.raises(ValueError, match="train_split"):
        make_task("mnist1d", train_split=1.0)
    with pytest.raises(ValueError, match="dataset_size"):
        make_task("mnist1d", dataset_size=5)
    with pytest.raises(ValueError, match="layers=\\(40, ..., 10\\)"):
        make_task("mnist1d", input_dim=10, output_dim=10, **SMALL)
