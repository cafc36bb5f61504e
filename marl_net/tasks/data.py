"""Classification tasks built on a fixed data set: a train pool and a disjoint held-out pool.

Features are standardized (and optionally projected on their first ``pca`` principal components,
then standardized again) with statistics fitted on the train pool only. Instance ``task_id``
is a random subset of ``num_samples`` samples of its split's pool, drawn with seed ``task_id``; its
test split (:meth:`PooledClassification.test_data`) is the rest of that pool (at most
``MAX_TEST_SAMPLES`` of it, in the same random order): samples no update of the instance sees.
"""

from __future__ import annotations

import numpy as np
import torch

from marl_net.tasks.base import Task, TaskData, split_of

MAX_TEST_SAMPLES = 2048  # a test split larger than this is cut (MNIST's 10,000-image pool)


def _standardize(train: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    return (train - mean) / std, (other - mean) / std


class PooledClassification(Task):
    """A classification task over a train pool and a held-out pool (set by subclasses)."""

    loss = "cross_entropy"

    def __init__(self, pools, num_classes: int, input_dim, output_dim, pca: int | None, num_samples: int):
        (x_train, y_train), (x_held, y_held) = pools
        x_train, x_held = _standardize(x_train.astype(np.float64), x_held.astype(np.float64))
        if pca is not None:
            if not 1 <= int(pca) <= x_train.shape[1]:
                raise ValueError(f"pca={pca!r} must be between 1 and the {x_train.shape[1]} raw features")
            from sklearn.decomposition import PCA

            proj = PCA(n_components=int(pca), random_state=0).fit(x_train)
            x_train, x_held = _standardize(proj.transform(x_train), proj.transform(x_held))
        self.input_dim = x_train.shape[1]
        self.output_dim = num_classes
        self.check_network(int(input_dim or self.input_dim), int(output_dim or self.output_dim))
        smallest = min(len(x_train), len(x_held))
        if not 1 <= num_samples <= smallest:
            raise ValueError(f"num_samples={num_samples!r} must be between 1 and {smallest} (the smaller pool)")
        self.num_samples = int(num_samples)
        self._pools = {
            "train": (torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(y_train, dtype=torch.int64)),
            "heldout": (torch.as_tensor(x_held, dtype=torch.float32), torch.as_tensor(y_held, dtype=torch.int64)),
        }

    def pool(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self._pools[split]

    def _order(self, task_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = self._pools[split_of(task_id)]
        g = torch.Generator().manual_seed(task_id)
        return x, y, torch.randperm(len(x), generator=g)

    def instance(self, task_id: int) -> TaskData:
        x, y, order = self._order(task_id)
        idx = order[: self.num_samples]
        return TaskData(inputs=x[idx], targets=y[idx], task_id=task_id)

    def test_data(self, task_id: int) -> TaskData:
        """The samples of instance ``task_id``'s pool that ``instance(task_id)`` leaves out (at most
        ``MAX_TEST_SAMPLES``). A split's pool must hold more than ``num_samples`` samples."""
        x, y, order = self._order(task_id)
        idx = order[self.num_samples: self.num_samples + MAX_TEST_SAMPLES]
        if len(idx) == 0:
            raise ValueError(f"task {self.name!r}: num_samples={self.num_samples} uses the whole {split_of(task_id)} "
                             f"pool of {len(x)} samples, leaving no test split; pass a smaller num_samples")
        return TaskData(inputs=x[idx], targets=y[idx], task_id=task_id)


def split_indices(n: int, heldout_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed permutation of ``range(n)`` cut into disjoint train and held-out index sets."""
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction={heldout_fraction!r} must be in (0, 1)")
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - heldout_fraction)))
    return perm[:cut], perm[cut:]
