"""MNIST from the standard IDX files in a directory the user names, projected on 10 principal
components by default (Cai & Cheng). The train files form the train pool, the t10k files the
held-out pool. Gzipped files (``*.gz``) are read as well.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np

from marl_net.tasks.base import register_task
from marl_net.tasks.data import PooledClassification

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "heldout_images": "t10k-images-idx3-ubyte",
    "heldout_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array of its declared shape and type."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {dims} but the file holds {len(raw) - offset} data bytes")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims)


def find_mnist_file(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    expected = ", ".join(f"{s} (or {s}.gz)" for s in MNIST_FILES.values())
    raise FileNotFoundError(
        f"MNIST file {stem!r} not found in {directory}; the directory must hold the four standard IDX files: {expected}"
    )


@lru_cache(maxsize=2)
def load_mnist(directory: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"MNIST directory {d} does not exist; pass data_dir= the folder holding the IDX files")
    arrays = {key: read_idx(find_mnist_file(d, stem)) for key, stem in MNIST_FILES.items()}
    pools = []
    for split in ("train", "heldout"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise ValueError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
        pools.append((images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)))
    return pools[0], pools[1]


@register_task("mnist", "MNIST from the standard IDX files in data_dir, PCA to 10 dims (Cai & Cheng), 10 classes")
class MNIST(PooledClassification):
    def __init__(self, input_dim=None, output_dim=None, data_dir: str | None = None, pca: int | None = 10,
                 num_samples: int = 1024):
        if data_dir is None:
            raise ValueError("task 'mnist' needs data_dir: the folder holding " + ", ".join(MNIST_FILES.values()))
        super().__init__(load_mnist(str(data_dir)), 10, input_dim, output_dim, pca, num_samples)
