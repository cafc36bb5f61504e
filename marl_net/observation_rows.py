"""Writing one ownership block's rows of the observation table: features, mask, padding.

An observation row interleaves the features (``[K, F + 1]`` per agent), so torch writes each
feature as a strided pass over the whole table (every cache line of it, once per feature). On the
CPU a small C++ kernel (``observation_rows.cpp``, built by ``marl_net.native``) writes each agent's
row once instead; elsewhere (a GPU, a feature that is not float32, no compiler,
kernels switched off: ``marl_net.numerics``) torch writes it. A pure copy either way: ``tests/test_dynamics.py`` holds
the two tables equal.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Sequence

import torch

from marl_net import native, numerics

SOURCE = Path(__file__).with_name("observation_rows.cpp")
FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-std=c++17"]


def write_block(dst: torch.Tensor, columns: Sequence[torch.Tensor], fan: int) -> None:
    """Fill ``dst [E, n, K, F + 1]`` (a block's agents in the padded table, or the block's own
    tensor of the block layout, where ``K = fan``): slot ``k < fan`` gets
    ``columns[i] [E, n, fan]`` (any strides: a broadcast column is read, never copied) and the
    mask 1; slots ``k >= fan`` are zeroed."""
    copies, agents, max_fan, width = dst.shape
    if len(columns) != width - 1 or any(tuple(c.shape) != (copies, agents, fan) for c in columns):
        raise ValueError(f"write_block: want {width - 1} columns of shape {(copies, agents, fan)} for dst "
                         f"{tuple(dst.shape)}, got {[tuple(c.shape) for c in columns]}")
    lib = _library() if _native_applies(dst, columns) else None
    if lib is None:
        for i, column in enumerate(columns):
            dst[..., :fan, i] = column
        dst[..., :fan, width - 1] = 1.0
        dst[..., fan:, :] = 0.0
        return
    numerics.record_ran(SOURCE.stem)
    pointers = (ctypes.c_void_p * len(columns))(*(c.data_ptr() for c in columns))
    strides = (ctypes.c_long * (3 * len(columns)))(*(s for c in columns for s in c.stride()))
    if lib.observation_block(dst.data_ptr(), copies, agents, max_fan, fan, width - 1, dst.stride(0), dst.stride(1),
                             pointers, strides) != 0:
        raise ValueError(f"observation_block: fan {fan} does not fit dst {tuple(dst.shape)}")


def _native_applies(dst: torch.Tensor, columns: Sequence[torch.Tensor]) -> bool:
    return (native.enabled() and dst.device.type == "cpu" and dst.dtype == torch.float32
            and dst.stride()[2:] == (dst.shape[3], 1)
            and all(c.device.type == "cpu" and c.dtype == torch.float32 for c in columns))


def _library() -> ctypes.CDLL | None:
    lib = native.load(SOURCE, FLAGS, "observations are written through torch")
    if lib is not None and lib.observation_block.argtypes is None:
        ptr, n = ctypes.c_void_p, ctypes.c_long
        lib.observation_block.argtypes = [ptr] + [n] * 7 + [ptr, ptr]
        lib.observation_block.restype = ctypes.c_int
    return lib
