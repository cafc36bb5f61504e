"""C++ kernels compiled on first use for the machine they run on, cached, loaded with ctypes.

Three sources use it: the policy's fused synapse kernel (``marl_net.policies.fused_layer``), the
per-neuron memory's GRU (``marl_net.policies.fused_gru``) and the observation table's row writer
(``marl_net.observation_rows``). Each is built with the system's C++
compiler (``g++``, or ``$CXX``) once per source (with the headers it includes with quotes, such
as the kernels' shared ``policies/simd.h``), compiler, flags and host, under
``$MARL_NET_KERNEL_CACHE`` (default ``~/.cache/marl_net/kernels``); each Ray node builds its own.
Where a kernel cannot be built (no compiler) or is turned off (``marl_net.numerics``' switch:
``--kernels off``, ``MARL_NET_FUSED=0``) its caller runs its torch path, which tests hold equal to
the kernel. Each kernel loaded is recorded with its compiler and flags (``numerics.describe``).

Flags: never ``-ffast-math`` (it lets the compiler assume no NaN or infinity exists, so a NaN
observation came out of the policy kernel as a finite action; ``tests/test_numerics.py``);
``-march=native`` (the host's vector width: a portable ``-march=x86-64-v3`` build of the policy
kernel ran 27x slower on an AVX-512 host, its 16-float vectors split badly), recorded with the CPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

from marl_net import numerics

_loaded: dict[Path, ctypes.CDLL | None] = {}


def enabled() -> bool:
    """Whether native kernels may run: ``numerics``' switch (``set_kernels``, else ``MARL_NET_FUSED``)."""
    return numerics.kernels_on()


def cache_dir() -> Path:
    return Path(os.environ.get("MARL_NET_KERNEL_CACHE", Path.home() / ".cache" / "marl_net" / "kernels"))


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout


_LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def sources(source: Path) -> list[Path]:
    """``source`` and the files it includes with quotes (``#include "simd.h"``: looked up beside the
    including file), recursively, each once: what a build's cache key covers."""
    out, todo = [], [source]
    while todo:
        path = todo.pop(0)
        if path in out:
            continue
        if not path.is_file():
            raise RuntimeError(f"{path} (included by a kernel source) does not exist")
        out.append(path)
        todo += [path.parent / name for name in _LOCAL_INCLUDE.findall(path.read_text())]
    return out


def build(source: Path, flags: Sequence[str]) -> Path:
    """Compile ``source`` with ``flags`` (once per source, compiler, flags and host) and return the
    shared library's path."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    version = _compiler_version(cxx)
    texts = [path.read_text() for path in sources(source)]
    key = hashlib.sha256("\0".join([*texts, cxx, version, *flags, platform.node(),
                                    platform.machine()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"{source.stem}-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # build aside, then move: safe under races
            out = Path(tmp) / target.name
            subprocess.run([cxx, *flags, str(source), "-o", str(out)], capture_output=True, text=True, check=True)
            os.replace(out, target)
    return target


def load(source: Path, flags: Sequence[str], fallback: str) -> ctypes.CDLL | None:
    """The library built from ``source``, loaded once; None, with one warning naming ``fallback``
    (what runs instead), when it cannot be built here."""
    if source not in _loaded:
        try:
            _loaded[source] = ctypes.CDLL(str(build(source, flags)))
            cxx = _compiler()
            numerics.record_build(source.stem, _compiler_version(cxx).splitlines()[0], [Path(cxx).name, *flags])
        except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or err
            warnings.warn(f"{source.name} could not be built ({detail}); {fallback}")
            _loaded[source] = None
    return _loaded[source]
