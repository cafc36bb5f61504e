"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): 40-sample 1-D signals of 10 digit
templates, padded, translated, sheared, scaled and noised; 10 classes.

Generated on this machine with the ``mnist1d`` package's own generator, ``mnist1d.data.make_dataset``
(never its ``get_dataset``, which downloads), with the package's default arguments: 5,000 signals,
the first 80% (4,000) the train pool and the other 1,000 the held-out pool, generator seed 42.
``dataset_size``, ``train_split`` and ``dataset_seed`` override the generator's ``num_samples``,
``train_split`` and ``seed``.

The generated arrays are cached as ``.npz`` under ``$MARL_NET_MNIST1D_CACHE`` (default
``~/.cache/marl_net/mnist1d``), one file per set of generator arguments (and package version), so a
second run, or a Ray worker on the same machine, loads instead of regenerating (generation of the
default set takes about 2 s). ``make_dataset`` reseeds NumPy's and Python's global random
generators; :func:`generate_mnist1d` restores both afterwards.

Task instances are sampled like digits: instance ``task_id`` is ``num_samples`` (default 500) random
signals of its split's pool (train ids: the train pool; held-out ids: the held-out pool); its test
split is the rest of that pool (500 signals for a held-out instance).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from functools import lru_cache
from pathlib import Path

import numpy as np

from marl_net.tasks.base import register_task
from marl_net.tasks.data import PooledClassification

DEFAULT_DATASET_SIZE = 5000  # the package's default num_samples
DEFAULT_TRAIN_SPLIT = 0.8
DEFAULT_DATASET_SEED = 42


def cache_dir() -> Path:
    return Path(os.environ.get("MARL_NET_MNIST1D_CACHE", Path.home() / ".cache" / "marl_net" / "mnist1d")).expanduser()


def generator_args(dataset_size: int = DEFAULT_DATASET_SIZE, train_split: float = DEFAULT_TRAIN_SPLIT,
                   dataset_seed: int = DEFAULT_DATASET_SEED) -> dict:
    """The package's default generator arguments with the three overrides (``url`` dropped: nothing
    is downloaded)."""
    from mnist1d.data import get_dataset_args

    if int(dataset_size) < 20:
        raise ValueError(f"dataset_size={dataset_size!r}: generate at least 20 signals (2 per class)")
    if not 0 < float(train_split) < 1:
        raise ValueError(f"train_split={train_split!r} must be in (0, 1), e.g. 0.8")
    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args.update(num_samples=int(dataset_size), train_split=float(train_split), seed=int(dataset_seed))
    return args


def cache_path(args: dict) -> Path:
    """The cache file of one set of generator arguments."""
    from importlib.metadata import version

    key = json.dumps({"args": args, "mnist1d": version("mnist1d")}, sort_keys=True)
    return cache_dir() / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def generate_mnist1d(args: dict) -> dict[str, np.ndarray]:
    """Run the package's ``make_dataset`` with ``args``; ``x``, ``y``, ``x_test``, ``y_test``. The global
    NumPy and Python random states are restored afterwards."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def load_mnist1d(dataset_size: int = DEFAULT_DATASET_SIZE, train_split: float = DEFAULT_TRAIN_SPLIT,
                 dataset_seed: int = DEFAULT_DATASET_SEED) -> tuple[dict[str, np.ndarray], Path, bool]:
    """The arrays for these generator arguments from the cache, generating and caching them on a
    miss. Returns ``(arrays, cache file, hit)``."""
    args = generator_args(dataset_size, train_split, dataset_seed)
    path = cache_path(args)
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in ("x", "y", "x_test", "y_test")}, path, True
    arrays = generate_mnist1d(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: concurrent workers never read a half-written file
    return arrays, path, False


@lru_cache(maxsize=4)
def _pools(dataset_size: int, train_split: float, dataset_seed: int):
    arrays, _, _ = load_mnist1d(dataset_size, train_split, dataset_seed)
    return ((arrays["x"].astype(np.float32), arrays["y"].astype(np.int64)),
            (arrays["x_test"].astype(np.float32), arrays["y_test"].astype(np.int64)))


@register_task("mnist1d", "MNIST-1D (Greydanus 2020) from the mnist1d package's generator, 40 inputs, 10 classes")
class MNIST1D(PooledClassification):
    def __init__(self, input_dim=None, output_dim=None, num_samples: int = 500, pca: int | None = None,
                 dataset_size: int = DEFAULT_DATASET_SIZE, train_split: float = DEFAULT_TRAIN_SPLIT,
                 dataset_seed: int = DEFAULT_DATASET_SEED):
        pools = _pools(int(dataset_size), float(train_split), int(dataset_seed))
        super().__init__(pools, 10, input_dim, output_dim, pca, num_samples)
