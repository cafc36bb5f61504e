"""Shared fixtures. One local Ray instance per test session (starting Ray takes ~5 s)."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")


@pytest.fixture(scope="session", autouse=True)
def single_threaded_torch():
    """Every test runs torch on one thread. With two, MKL splits a batched matmul's reduction
    across threads differently for different batch sizes on some CPUs (seen on AMD EPYC: a copy of
    a 2-copy run differed from the 1-copy run by 4e-9), so the bit-exact promises the tests check
    (a batched run equals single-copy runs; the env equals the trainer) hold at one thread."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny per-step tensors: fastest, and two threads on a busy
    2-core machine stall. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_session():
    """A 2-CPU local Ray instance shared by every test that needs one."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def write_idx(path, array, gz=False):
    """Write ``array`` (uint8) as an IDX file, optionally gzipped."""
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture
def tiny_mnist_dir(tmp_path):
    """A directory with small MNIST-format IDX files (60 train, 30 test images; test images gzipped)."""
    return make_tiny_mnist(tmp_path)


def make_tiny_mnist(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 30)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        gz = ".gz" if split == "t10k" else ""  # the loader reads plain and gzipped files
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{gz}", images, gz=bool(gz))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    return tmp_path
