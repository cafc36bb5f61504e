"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; no download).

Standardized, optionally projected on ``pca`` principal components (fitted on the train pool).
A fixed permutation puts 30% of the images in the held-out pool.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from marl_net.tasks.base import register_task
from marl_net.tasks.data import PooledClassification, split_indices


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target.astype(np.int64)


@register_task("digits", "scikit-learn's 8x8 digits, standardized, optional PCA to k dims, 10 classes")
class Digits(PooledClassification):
    def __init__(self, input_dim=None, output_dim=None, pca: int | None = None, num_samples: int = 512,
                 heldout_fraction: float = 0.3):
        x, y = _load_digits()
        train, held = split_indices(len(x), heldout_fraction)
        super().__init__(((x[train], y[train]), (x[held], y[held])), 10, input_dim, output_dim, pca, num_samples)
